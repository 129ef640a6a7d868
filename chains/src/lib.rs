//! Adapters between the protocol core and the outside world. `da`: where batches are published
//! and found (Arweave in production, a local directory as the embedded default); `arweave`: the
//! Arweave client underneath; `deposit`: the check of a deposit against L1 the confirmer runs;
//! `ethereum`: the vault's deposit watcher and verifier, the withdrawal submitter, holdings.

pub mod arweave;
pub mod da;
pub mod db;
pub mod deposit;
pub mod ethereum;

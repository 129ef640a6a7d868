//! Adapters between the protocol core and the outside world. `da`: where batches are published
//! and found (Arweave in production, a local directory as the embedded default); `arweave`: the
//! Arweave client underneath; `bitcoin`: the Bitcoin Core RPC client, deposit addresses, watcher
//! and checker; `deposit`: the check of a deposit against L1 the confirmer runs; `ethereum`: the
//! vault's deposit watcher and verifier, the withdrawal submitter, holdings; `eth_finality`: when
//! an Ethereum block counts (the `finalized` tag, or a depth); `http`: the one HTTP client
//! builder (rustls, bundled roots, an extra CA file) every role uses; `ethereum_view`: the
//! vault's holdings and payouts per batch at one block, for the solvency watch; `forced_check`:
//! a batch's forced section against the gateway (the `censorship` finding); `preflight`: the
//! checks every role runs before it starts against real networks; `task`: the
//! supervisor that restarts failed background work with backoff and says in `/health` what runs.

pub mod arweave;
pub mod bitcoin;
pub mod da;
pub mod db;
pub mod deposit;
pub mod eth_finality;
pub mod ethereum;
pub mod ethereum_view;
pub mod forced_check;
pub mod http;
pub mod preflight;
pub mod snapshots;
pub mod task;
pub mod vault_admin;

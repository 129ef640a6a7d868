//! Adapters between the protocol core and the outside world. `da`: where batches are published
//! and found (Arweave in production, a local directory as the embedded default); `arweave`: the
//! Arweave client underneath; `bitcoin`: the Bitcoin Core RPC client.

pub mod arweave;
pub mod bitcoin;
pub mod da;
pub mod db;
pub mod deposit;

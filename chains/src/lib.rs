//! Adapters between the protocol core and the outside world. `da`: where batches are published
//! and found (Arweave in production, a local directory as the embedded default).

pub mod da;

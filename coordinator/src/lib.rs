//! The coordinator: accepts users' signed transactions, applies them in one order with the
//! protocol core, acknowledges each only once it is durable, and seals and publishes batches.
//! `store`: the durable ledger; `sequencer`: the single writer; `publisher`: sealed batches to
//! the DA; `deposits`: L1 deposits in from the chain watchers; `arweave_wallet`: what is left to
//! pay the DA with.

pub mod api;
pub mod arweave_wallet;
pub mod config;
pub mod deposit_book;
pub mod deposit_claim;
pub mod deposits;
pub mod forced;
pub mod node;
pub mod payouts;
pub mod preflight;
pub mod publisher;
pub mod seal_rule;
pub mod sequencer;
pub mod snapshot;
pub mod store;
pub mod takeover;
pub mod throughput;

//! The confirmer: follows the coordinator's batches on the DA, checks and replays every one
//! with the protocol core, and knows which are hard-final. It trusts only the DA's bytes, the
//! coordinator's public key and L1 (through [`deposits::DepositVerifier`]s). Anything that does
//! not check out is an [`alarm::Alarm`] with an evidence file anyone can verify offline.
//!
//! `follower`: the loop; `store`: what it has replayed and the alarms; `deposits`: deposit
//! checks against L1; `alarm`: what can go wrong; `evidence`: the files that prove it;
//! `watchman`: signing only what this replay justifies, and settling it on L1; `web`: the
//! explorer and wallet pages served beside the API.

pub mod alarm;
pub mod api;
pub mod deposits;
pub mod evidence;
pub mod fast_sync;
pub mod follower;
pub mod forced;
pub mod logging;
pub mod patience;
pub mod preflight;
pub mod series;
pub mod solvency;
pub mod store;
pub mod watchman;
pub mod web;

//! The protocol core of the settlement bridge: pure and deterministic, no I/O, no clock, no
//! randomness. The coordinator executes with it, confirmers and watchmen replay with it, and
//! a signature on L1 is only as safe as its determinism. See docs/PROTOCOL.md for the formats.

pub mod address;
pub mod amount;
pub mod asset;
pub mod batch;
pub mod btc_payout;
pub mod btc_vault;
pub mod checkpoint;
pub mod codec;
pub mod commitment;
pub mod eip712;
pub mod eth_settlement;
pub mod forced;
pub mod hashing;
pub mod network;
pub mod passkey;
#[cfg(feature = "planted-bugs")]
pub mod planted;
pub mod recipient;
pub mod rotation;
pub mod serde_hex;
pub mod signature;
pub mod state;
pub mod stf;
pub mod sweep;
pub mod tx;
pub mod wallet;
pub mod withdrawals;

pub use address::Address;
pub use amount::Amount;
pub use asset::{AssetId, Chain};
pub use batch::{
    BatchBuilder, BatchHeader, CoordinatorKey, Equivocation, ReplayError, Replayed, SealedBatch, SignedBatch,
    SignedHeader, replay,
};
pub use btc_payout::PayoutPlan;
pub use btc_vault::{BtcVaultParams, OutPoint, VaultKeys, VaultOwner, VaultUtxo};
pub use network::{AssetConfig, BtcNetwork, NetworkParams};
pub use rotation::{KeyEpoch, KeyRotation};
pub use state::snapshot::{Snapshot, SnapshotError};
pub use state::{State, StateKey};
pub use stf::{Receipt, TxError, apply};
pub use tx::{BatchTx, Deposit, L1Ref, SignedUserTx, SystemTx, Transfer, Tx, UserTx, Withdraw};
pub use wallet::Wallet;

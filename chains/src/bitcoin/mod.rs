//! Bitcoin: a client for Bitcoin Core's JSON-RPC (`rpc`), per-account Taproot deposit addresses
//! of the vault's group key (`deposit`), and the deposit watcher (`watcher`). Works against
//! `bitcoind` and against the workspace's regtest node (crate `regtest`, a dev-dependency only:
//! nothing here depends on the kernel).

pub mod deposit;
pub mod rpc;
pub mod watcher;

pub use deposit::{account_merkle_root, deposit_address, vault_address};
pub use rpc::{CoreRpc, RpcError};
pub use watcher::{DepositWatcher, WatchError, WatcherConfig};

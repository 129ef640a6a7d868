//! Bitcoin: a client for Bitcoin Core's JSON-RPC (`rpc`), the node as the bridge sees it (`node`:
//! Core in production, an in-process chain in the simulator), per-account Taproot deposit addresses
//! of the vault's group key (`deposit`), who owns which of them (`book`), the deposit watcher (`watcher`) and the deposit check
//! for the confirmer (`verify`). Works against `bitcoind` and against the workspace's regtest
//! node (crate `regtest`, a dev-dependency only: nothing here depends on the kernel).

pub mod book;
pub mod deposit;
pub mod node;
pub mod payout;
pub mod rpc;
pub mod verify;
pub mod watcher;

pub use ::bitcoin::key::XOnlyPublicKey;
pub use ::bitcoin::{ScriptBuf, Txid};
pub use book::{BookError, DepositBook, MAX_WATCHED_KEYS, MemoryBook, Owner};
pub use deposit::{account_merkle_root, deposit_address, deposit_script, vault_address};
pub use node::BitcoinNode;
pub use payout::{Holdings, PayoutBroadcaster, PayoutRpcError, PayoutStatus, holdings};
pub use rpc::{CoreRpc, RpcError};
pub use verify::{DepositChecker, DepositStatus};
pub use watcher::{DepositWatcher, KeyedDeposit, WatchError, WatcherConfig, keyed_deposits};

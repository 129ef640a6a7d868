//! Arweave, written from the protocol up (no maintained Rust client exists): format-2
//! transactions, deep-hash, `data_root` chunking, RSA-PSS signing with `ring`, and a gateway
//! client with retries. `ArweaveDa` (in `da`) builds on it.

pub mod arlocal;
mod deep_hash;
mod forced;
mod forced_stream;
mod gateway;
pub mod merkle;
mod pss;
mod tx;
mod wallet;

pub use deep_hash::{DeepHashItem, deep_hash};
pub use forced::{FETCHES_IN_FLIGHT, ForcedListingPage, MAX_TXS_PER_BLOCK, NOT_SERVED_ATTEMPTS};
pub use forced_stream::ForcedStream;
pub use gateway::{FoundTx, Gateway, GatewayError, INLINE_LIMIT, PAGE, RetryPolicy, TxStatus, price_bound};
pub use pss::verify as verify_pss;
pub use tx::{Tag, Transaction, TxError, TxJson};
pub use wallet::{ArweaveWallet, WalletError, address_of, b64, to_b64};

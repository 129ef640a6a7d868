//! The forced stream as the roles read it (docs/PROTOCOL.md, Forced transactions): the four
//! calls the coordinator's forced task and the forced check ([`crate::forced_check`]) make,
//! behind one narrow trait, so that the same code runs over a gateway ([`Gateway`], in the
//! binaries) and over the simulator's Arweave.

use async_trait::async_trait;
use bridge::forced::{ForcedEntry, ForcedListing};

use super::forced::ForcedListingPage;
use super::gateway::{Gateway, GatewayError, TxStatus};

/// Arweave's forced stream: entries tagged `App-Name`, `Network` and `Type = forced-tx`, in
/// stream order (block height, then the id's 32 bytes), whoever posted them.
///
/// **Not seen yet is never absent.** An Arweave gateway indexes a block before it serves every
/// transaction in it. An implementation that lists an entry but cannot serve the entry's
/// transaction, or the data that transaction signs, answers
/// [`GatewayError::NotServedYet`] (after a bounded number of tries of its own), never a
/// malformed entry and never a shorter list: the caller waits and asks again at its next turn.
/// Only data that is served and is not what its transaction signs reads as undecodable.
///
/// Every other error is transient for the caller (a gateway down, busy or answering garbage):
/// it retries at its next turn and decides nothing from it. Every call only reads, so any of
/// them may be made again at any time.
#[async_trait]
pub trait ForcedStream: Send + Sync + std::fmt::Debug {
    /// Where the stream is read (a gateway's base URL), for messages and evidence.
    fn base(&self) -> &str;

    /// The height of the newest block the gateway knows.
    async fn height(&self) -> Result<u64, GatewayError>;

    /// The forced entries of `network` at heights `min ..= max`, in stream order, stopping at a
    /// height boundary once `max_rows` rows have been read ([`Gateway::list_forced`]): every
    /// entry at heights `min ..= complete_to` is in the page, and malformed entries (too large,
    /// not a transaction) are listed like any other, since they count against the cap.
    async fn list_forced(
        &self,
        app_name: &str,
        network: &str,
        min: u64,
        max: u64,
        max_rows: usize,
    ) -> Result<ForcedListingPage, GatewayError>;

    /// Each listed entry with its data, in the listings' order ([`Gateway::fetch_forced_all`]):
    /// `data: None` for an entry too large to fetch or whose served data is not what its
    /// transaction signs; [`GatewayError::NotServedYet`] for one listed but not served yet.
    async fn fetch_forced_all(&self, listings: &[ForcedListing]) -> Result<Vec<ForcedEntry>, GatewayError>;

    /// Where the transaction `id` (base64url) stands: not found, pending, or confirmed at a height.
    async fn status(&self, id: &str) -> Result<TxStatus, GatewayError>;
}

#[async_trait]
impl ForcedStream for Gateway {
    fn base(&self) -> &str {
        Gateway::base(self)
    }

    async fn height(&self) -> Result<u64, GatewayError> {
        Gateway::height(self).await
    }

    async fn list_forced(
        &self,
        app_name: &str,
        network: &str,
        min: u64,
        max: u64,
        max_rows: usize,
    ) -> Result<ForcedListingPage, GatewayError> {
        Gateway::list_forced(self, app_name, network, min, max, max_rows).await
    }

    async fn fetch_forced_all(&self, listings: &[ForcedListing]) -> Result<Vec<ForcedEntry>, GatewayError> {
        Gateway::fetch_forced_all(self, listings).await
    }

    async fn status(&self, id: &str) -> Result<TxStatus, GatewayError> {
        Gateway::status(self, id).await
    }
}

//! Forced transactions on the gateway (docs/PROTOCOL.md, Forced transactions): the
//! owner-independent listing a coordinator plans from and a confirmer checks with, and the
//! fetch of one entry's data.
//!
//! Anyone may post a forced transaction, so unlike [`Gateway::find_owned`] nothing here trusts
//! an owner. What keeps it bounded is the protocol: entries count in stream order (height, then
//! id) and a batch takes at most its cap, so a listing only ever needs the heights from the
//! cursor on, and stops after `max_rows` rows at a height boundary. A row a gateway returns
//! against the filter (other tags, no block, outside the range, an id that is not 32 bytes) is
//! skipped and counted (`bridge_forced_rows_skipped_total`), never fetched.

use bridge::forced::{FORCED_TX_TYPE, ForcedEntry, ForcedListing};
use serde::Deserialize;
use serde_json::json;

use super::gateway::{Body, Gateway, GatewayError, PAGE, refused};
use super::wallet::b64;

/// The most base-layer transactions an Arweave block holds: one height's listing never has
/// more forced entries than this, so a listing of `cap + MAX_TXS_PER_BLOCK` rows always ends
/// at least one whole height past the cursor.
pub const MAX_TXS_PER_BLOCK: usize = 1000;

/// What a listing found: the entries in stream order, and the last height it listed whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForcedListingPage {
    pub listings: Vec<ForcedListing>,
    /// Every entry at heights `min ..= complete_to` is in `listings`; `None` if not even the
    /// first height was listed whole (the gateway holds more rows there than `max_rows`).
    pub complete_to: Option<u64>,
    /// Rows skipped as not being forced entries of this network in the range.
    pub skipped: u64,
}

impl Gateway {
    /// Lists the forced entries of `network` at heights `min ..= max`, height ascending,
    /// stopping at a height boundary once `max_rows` rows have been read.
    pub async fn list_forced(
        &self,
        app_name: &str,
        network: &str,
        min: u64,
        max: u64,
        max_rows: usize,
    ) -> Result<ForcedListingPage, GatewayError> {
        const QUERY: &str = "query($tags: [TagFilter!], $after: String, $first: Int, $min: Int, $max: Int) { \
            transactions(tags: $tags, after: $after, first: $first, block: {min: $min, max: $max}, sort: HEIGHT_ASC) { \
              pageInfo { hasNextPage } \
              edges { cursor node { id tags { name value } data { size } block { height } } } } }";
        let tags = [("App-Name", app_name), ("Network", network), ("Type", FORCED_TX_TYPE)];
        let filters: Vec<serde_json::Value> =
            tags.iter().map(|(name, value)| json!({ "name": name, "values": [value] })).collect();
        let mut listings: Vec<ForcedListing> = Vec::new();
        let mut skipped = 0u64;
        let mut after: Option<String> = None;
        let mut rows = 0usize;
        let complete_to = loop {
            let request = json!({
                "query": QUERY,
                "variables": { "tags": filters, "after": after.take(), "first": PAGE, "min": min, "max": max },
            });
            let (status, body) = self.send(true, "/graphql", Body::Json(request)).await?;
            if !status.is_success() {
                return Err(refused(&self.url("/graphql"), status, &body));
            }
            let page: Page = serde_json::from_slice(&body).map_err(|e| self.malformed("/graphql", e))?;
            if let Some(errors) = page.errors {
                return Err(self.malformed("/graphql", format!("errors: {errors}")));
            }
            let connection = page.data.ok_or_else(|| self.malformed("/graphql", "no data"))?.transactions;
            let last_cursor = connection.edges.last().map(|e| e.cursor.clone());
            for edge in connection.edges {
                rows += 1;
                match listing_of(&edge.node, &tags, min, max) {
                    Some(listing) => listings.push(listing),
                    None => skipped += 1,
                }
            }
            let more = connection.page_info.has_next_page;
            if !more {
                break Some(max);
            }
            if rows >= max_rows {
                // Only the heights below the last one read are known to be whole.
                let last = listings.last().map(|l| l.height);
                break last.and_then(|h| h.checked_sub(1)).filter(|h| *h >= min);
            }
            match last_cursor {
                Some(cursor) => after = Some(cursor),
                None => return Err(self.malformed("/graphql", "a next page but no cursor")),
            }
        };
        if skipped > 0 {
            tracing::debug!(url = %self.base(), skipped, "rows that are no forced entries of this network skipped");
            metrics::counter!("bridge_forced_rows_skipped_total").increment(skipped);
        }
        if let Some(complete) = complete_to {
            listings.retain(|l| l.height <= complete);
        } else {
            listings.clear();
        }
        bridge::forced::sort_listings(&mut listings);
        Ok(ForcedListingPage { listings, complete_to, skipped })
    }

    /// An entry with its data: fetched (and checked against the transaction's `data_root`)
    /// only when the listing says it is small enough to be a transaction. A gateway that cannot
    /// be reached is an error to retry. A listed entry the gateway does not serve yet (the
    /// transaction, or data it signs) is asked for again up to [`NOT_SERVED_ATTEMPTS`] times,
    /// then [`GatewayError::NotServedYet`]: "not seen yet" is never "absent", so the caller
    /// waits and asks again, and never records the entry as malformed for it. Data that is
    /// served but does not match the `data_root` the transaction signs reads as `None`
    /// (undecodable), as its poster made it.
    pub async fn fetch_forced(&self, listing: ForcedListing) -> Result<ForcedEntry, GatewayError> {
        if !listing.fetchable() {
            return Ok(ForcedEntry { listing, data: None });
        }
        let id = super::wallet::to_b64(&listing.arweave_id);
        let mut backoff = NOT_SERVED_FIRST_BACKOFF;
        let mut attempt = 1;
        let (tx, data) = loop {
            let served = match self.tx(&id).await? {
                None => Err("transaction"),
                Some(tx) => {
                    // Go by the size the transaction signs, not the listing's.
                    if !(ForcedListing { size: tx.data_size, ..listing }).fetchable() {
                        return Ok(ForcedEntry {
                            listing: ForcedListing { size: tx.data_size, ..listing },
                            data: None,
                        });
                    }
                    match self.served_data(&tx).await? {
                        Some(data) => Ok((tx, data)),
                        None => Err("data"),
                    }
                }
            };
            match served {
                Ok(served) => break served,
                Err(what) if attempt >= NOT_SERVED_ATTEMPTS => {
                    metrics::counter!("bridge_forced_not_served_total").increment(1);
                    return Err(GatewayError::NotServedYet {
                        url: self.url(&format!("/tx/{id}")),
                        id,
                        what,
                        attempts: attempt,
                    });
                }
                Err(what) => {
                    tracing::debug!(%id, what, attempt, "a listed forced entry is not served yet; asking again");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
            }
        };
        let listing = ForcedListing { size: tx.data_size, ..listing };
        match self.checked_data(&tx, data) {
            Ok(data) => Ok(ForcedEntry { listing, data: Some(data) }),
            Err(GatewayError::Malformed { .. }) => Ok(ForcedEntry { listing, data: None }),
            Err(error) => Err(error),
        }
    }
}

/// How often one fetch asks for a listed entry the gateway does not serve yet, and the first
/// pause between (doubling: 0.25 + 0.5 + 1 s). A gateway indexes a block before it has every
/// transaction of it at hand; a couple of seconds covers that in one round, and the caller's
/// next round (the coordinator's forced task, the confirmer's next step) covers a longer lag,
/// so one round stays bounded whatever one entry does.
pub const NOT_SERVED_ATTEMPTS: u32 = 4;
const NOT_SERVED_FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(250);

impl Gateway {
    /// Posts `data` (`borsh(SignedUserTx)`) as a forced transaction of `network`, paid by
    /// `wallet`; returns its Arweave id.
    pub async fn post_forced(
        &self,
        wallet: &super::ArweaveWallet,
        app_name: &str,
        network: &str,
        data: Vec<u8>,
    ) -> Result<String, GatewayError> {
        let tags = vec![
            super::Tag::new("App-Name", app_name),
            super::Tag::new("Network", network),
            super::Tag::new("Type", FORCED_TX_TYPE),
            super::Tag::new("Content-Type", "application/octet-stream"),
        ];
        let anchor = self.tx_anchor().await?;
        let reward = self.price_winston(data.len() as u64).await?;
        let mut tx = super::Transaction::with_data(data, tags, anchor, reward, wallet.owner().to_vec());
        tx.sign(wallet)?;
        self.upload(&tx).await?;
        Ok(tx.id_b64())
    }
}

/// How many entries are fetched at once: a batch's check costs about `cap / FETCHES_IN_FLIGHT`
/// round trips instead of `cap`, while a gateway sees at most this many requests from us.
pub const FETCHES_IN_FLIGHT: usize = 8;

impl Gateway {
    /// [`Gateway::fetch_forced`] for each listing, [`FETCHES_IN_FLIGHT`] at a time, in the
    /// listings' order.
    pub async fn fetch_forced_all(&self, listings: &[ForcedListing]) -> Result<Vec<ForcedEntry>, GatewayError> {
        let mut entries = Vec::with_capacity(listings.len());
        for chunk in listings.chunks(FETCHES_IN_FLIGHT) {
            let mut round = tokio::task::JoinSet::new();
            for (i, listing) in chunk.iter().copied().enumerate() {
                let gateway = self.clone();
                round.spawn(async move { (i, gateway.fetch_forced(listing).await) });
            }
            let mut fetched: Vec<Option<ForcedEntry>> = vec![None; chunk.len()];
            while let Some(done) = round.join_next().await {
                let (i, entry) = done.map_err(|e| self.malformed("/tx", format!("a fetch task died: {e}")))?;
                fetched[i] = Some(entry?);
            }
            for entry in fetched {
                entries.push(entry.ok_or_else(|| self.malformed("/tx", "a fetch did not report back"))?);
            }
        }
        Ok(entries)
    }
}

fn listing_of(node: &Node, tags: &[(&str, &str)], min: u64, max: u64) -> Option<ForcedListing> {
    let tagged = tags.iter().all(|(name, value)| {
        let mut values = node.tags.iter().filter(|t| t.name == *name);
        values.next().is_some_and(|t| t.value == *value) && values.next().is_none()
    });
    let height = node.block.as_ref()?.height;
    let id: [u8; 32] = b64(&node.id).ok()?.try_into().ok()?;
    let size = node.data.as_ref()?.size.parse().ok()?;
    (tagged && (min..=max).contains(&height)).then_some(ForcedListing { arweave_id: id, height, size })
}

#[derive(Deserialize)]
struct Page {
    data: Option<Data>,
    errors: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Data {
    transactions: Connection,
}

#[derive(Deserialize)]
struct Connection {
    #[serde(rename = "pageInfo")]
    page_info: PageInfo,
    edges: Vec<Edge>,
}

#[derive(Deserialize)]
struct PageInfo {
    #[serde(rename = "hasNextPage")]
    has_next_page: bool,
}

#[derive(Deserialize)]
struct Edge {
    cursor: String,
    node: Node,
}

#[derive(Deserialize)]
struct Node {
    id: String,
    tags: Vec<Tag>,
    data: Option<DataMeta>,
    block: Option<Block>,
}

#[derive(Deserialize)]
struct Tag {
    name: String,
    value: String,
}

#[derive(Deserialize)]
struct DataMeta {
    /// GraphQL gives the size as a string.
    #[serde(deserialize_with = "string_or_number")]
    size: String,
}

#[derive(Deserialize)]
struct Block {
    height: u64,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    })
}

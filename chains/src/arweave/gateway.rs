//! An HTTP client for an Arweave gateway (a node, arweave.net, or arlocal): the calls a batch
//! publisher and follower make, each retried with backoff when the gateway is down, slow, busy
//! (429) or failing (5xx). A 4xx other than 429 is an answer, not a fault, and is not retried.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::merkle::ChunkedData;
use super::tx::{Transaction, TxError, TxJson};
use super::wallet::{b64, to_b64};

/// Data up to this size goes inline in `POST /tx`; larger data goes in chunks (as arweave-js).
pub const INLINE_LIMIT: u64 = super::merkle::MAX_CHUNK_SIZE as u64;

/// An Arweave address: the base64url (unpadded) SHA-256 of the owner's modulus.
const ADDRESS_LEN: usize = 43;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(
        "the Arweave gateway at {url} did not answer after {attempts} attempts ({last}); check that it is running and reachable"
    )]
    Unreachable { url: String, attempts: u32, last: String },
    #[error("the Arweave gateway refused {url} with {status}: {body}")]
    Refused { url: String, status: u16, body: String },
    #[error("the Arweave gateway answered {url} with something unreadable: {reason}")]
    Malformed { url: String, reason: String },
    #[error(transparent)]
    Tx(#[from] TxError),
    #[error(
        "more than {max} transactions from {owner} carry the same batch tags at {url}: only that wallet can post them, so its key is flooding its own batches (no other wallet's rows count)"
    )]
    Crowded { url: String, owner: String, max: usize },
    /// A forced entry the gateway lists but does not serve (the transaction or its data) after
    /// [`crate::arweave::NOT_SERVED_ATTEMPTS`] tries: gateways index before they serve,
    /// so this is "not seen yet", never "absent". Ask again later; never skip the entry.
    #[error(
        "the Arweave gateway at {url} lists forced transaction {id} but does not serve its {what} yet ({attempts} tries); asking again later, the entry is never skipped"
    )]
    NotServedYet { url: String, id: String, what: &'static str, attempts: u32 },
    #[error("invalid gateway URL {0:?}")]
    BadUrl(String),
    #[error("{0:?} is not an Arweave address (43 characters of base64url)")]
    BadAddress(String),
    #[error(
        "the Arweave gateway at {url} asks {price} winston for {bytes} bytes, above the bound of {bound} (da.max_price_winston_per_mib); nothing was posted"
    )]
    PriceAboveBound { url: String, bytes: u64, price: u128, bound: u128 },
}

/// Where a transaction stands on the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    NotFound,
    Pending,
    Confirmed { height: u64, confirmations: u64 },
}

/// One transaction found by a GraphQL query: only a lead, to be fetched and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundTx {
    pub id: String,
    pub owner_address: String,
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Gateway {
    http: reqwest::Client,
    base: String,
    retry: RetryPolicy,
}

pub(super) enum Body {
    None,
    Json(serde_json::Value),
}

impl Gateway {
    /// A gateway at `base` (http or https) trusting the bundled roots.
    pub fn new(base: &str, retry: RetryPolicy) -> Result<Self, GatewayError> {
        Self::with_tls(base, retry, &crate::http::Tls::default())
    }

    /// A gateway at `base` (http or https) trusting `tls`: the bundled roots and the operator's
    /// extra CA file, if any.
    pub fn with_tls(base: &str, retry: RetryPolicy, tls: &crate::http::Tls) -> Result<Self, GatewayError> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(GatewayError::BadUrl(base));
        }
        let http = tls
            .client_builder()
            .timeout(retry.request_timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| GatewayError::BadUrl(format!("{base}: {}", crate::http::describe(&e))))?;
        Ok(Gateway { http, base, retry })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request, retrying transport faults, 429 and 5xx; returns the final status and body.
    pub(super) async fn send(&self, post: bool, path: &str, body: Body) -> Result<(StatusCode, Vec<u8>), GatewayError> {
        let url = format!("{}{}", self.base, path);
        let mut backoff = self.retry.first_backoff;
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts.max(1) {
            let request = if post { self.http.post(&url) } else { self.http.get(&url) };
            let request = match &body {
                Body::None => request,
                Body::Json(value) => request.json(value),
            };
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    match response.bytes().await {
                        Ok(bytes) if !(status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()) => {
                            return Ok((status, bytes.to_vec()));
                        }
                        Ok(bytes) => {
                            last = format!("{status}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(200)]))
                        }
                        Err(e) => last = format!("reading the body: {e}"),
                    }
                }
                Err(e) => last = crate::http::describe(&e),
            }
            tracing::debug!(%url, attempt, %last, "arweave gateway request failed; backing off");
            if attempt < self.retry.attempts {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.retry.max_backoff);
            }
        }
        Err(GatewayError::Unreachable { url, attempts: self.retry.attempts, last })
    }

    async fn get_ok(&self, path: &str) -> Result<Option<Vec<u8>>, GatewayError> {
        let (status, body) = self.send(false, path, Body::None).await?;
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(body)),
            s => Err(refused(&self.url(path), s, &body)),
        }
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub(super) fn malformed(&self, path: &str, reason: impl std::fmt::Display) -> GatewayError {
        GatewayError::Malformed { url: self.url(path), reason: reason.to_string() }
    }

    /// The current block height.
    pub async fn height(&self) -> Result<u64, GatewayError> {
        #[derive(Deserialize)]
        struct Info {
            height: u64,
        }
        let body = self.get_ok("/info").await?.ok_or_else(|| self.malformed("/info", "no /info"))?;
        let info: Info = serde_json::from_slice(&body).map_err(|e| self.malformed("/info", e))?;
        Ok(info.height)
    }

    /// An anchor for a new transaction (`last_tx`).
    pub async fn tx_anchor(&self) -> Result<Vec<u8>, GatewayError> {
        let body = self.get_ok("/tx_anchor").await?.ok_or_else(|| self.malformed("/tx_anchor", "no anchor"))?;
        let text = String::from_utf8(body).map_err(|e| self.malformed("/tx_anchor", e))?;
        b64(text.trim()).map_err(|e| self.malformed("/tx_anchor", e))
    }

    /// The reward, in winston, the network asks today for a transaction carrying `bytes` bytes
    /// of data (`GET /price/{bytes}`): what a posted transaction must pay to be mined.
    pub async fn price_winston(&self, bytes: u64) -> Result<u128, GatewayError> {
        let path = format!("/price/{bytes}");
        let body = self.get_ok(&path).await?.ok_or_else(|| self.malformed(&path, "no price"))?;
        self.winston(&path, body)
    }

    /// [`Gateway::price_winston`], refused above `winston_per_mib` for every started MiB: a
    /// gateway gone wrong (or not ours) cannot make one posting spend the wallet.
    pub async fn price_winston_bounded(&self, bytes: u64, winston_per_mib: u128) -> Result<u128, GatewayError> {
        let price = self.price_winston(bytes).await?;
        let bound = price_bound(bytes, winston_per_mib);
        if price > bound {
            return Err(GatewayError::PriceAboveBound {
                url: self.url(&format!("/price/{bytes}")),
                bytes,
                price,
                bound,
            });
        }
        Ok(price)
    }

    /// The balance, in winston, of the wallet at `address` (`GET /wallet/{address}/balance`);
    /// a wallet the network has never seen holds 0.
    pub async fn wallet_balance_winston(&self, address: &str) -> Result<u128, GatewayError> {
        // The address goes into the URL path: only a real address's alphabet and length.
        if address.len() != ADDRESS_LEN || !address.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(GatewayError::BadAddress(address.chars().take(64).collect()));
        }
        let path = format!("/wallet/{address}/balance");
        let body = self.get_ok(&path).await?.ok_or_else(|| self.malformed(&path, "no balance"))?;
        self.winston(&path, body)
    }

    /// An amount of winston as gateways write it: a decimal integer in plain text (arlocal
    /// writes a JSON number, which is the same text while it is an integer).
    fn winston(&self, path: &str, body: Vec<u8>) -> Result<u128, GatewayError> {
        let text = String::from_utf8(body).map_err(|e| self.malformed(path, e))?;
        let text = text.trim().trim_matches('"');
        text.parse().map_err(|e| self.malformed(path, format!("{text:?} is not an amount of winston: {e}")))
    }

    /// Posts a signed transaction: inline if its data fits, otherwise the header then every chunk.
    pub async fn upload(&self, tx: &Transaction) -> Result<(), GatewayError> {
        let chunked = super::merkle::chunk_data(&tx.data);
        let root = chunked.as_ref().map(|c| c.data_root.to_vec()).unwrap_or_default();
        assert!(
            tx.data.len() as u64 == tx.data_size && root == tx.data_root,
            "a transaction is uploaded with the data it commits to"
        );
        let inline = tx.data_size <= INLINE_LIMIT;
        let json = serde_json::to_value(tx.to_json(inline)).map_err(|e| self.malformed("/tx", e))?;
        let (status, body) = self.send(true, "/tx", Body::Json(json)).await?;
        // 208: the gateway already has it, which is what a retried upload wants.
        if !(status.is_success() || status == StatusCode::ALREADY_REPORTED) {
            return Err(refused(&self.url("/tx"), status, &body));
        }
        if !inline && let Some(chunked) = &chunked {
            self.upload_chunks(tx, chunked).await?;
        }
        Ok(())
    }

    async fn upload_chunks(&self, tx: &Transaction, chunked: &ChunkedData) -> Result<(), GatewayError> {
        for chunk in &chunked.chunks {
            let body = json!({
                "data_root": to_b64(&chunked.data_root),
                "data_size": tx.data_size.to_string(),
                "data_path": to_b64(&chunk.data_path),
                "offset": chunk.offset().to_string(),
                "chunk": to_b64(&tx.data[chunk.start..chunk.end]),
            });
            let (status, reply) = self.send(true, "/chunk", Body::Json(body)).await?;
            if !status.is_success() {
                return Err(refused(&self.url("/chunk"), status, &reply));
            }
        }
        Ok(())
    }

    /// A transaction's header (its data is fetched separately).
    pub async fn tx(&self, id: &str) -> Result<Option<Transaction>, GatewayError> {
        let path = format!("/tx/{id}");
        let Some(body) = self.get_ok(&path).await? else { return Ok(None) };
        let json: TxJson = serde_json::from_slice(&body).map_err(|e| self.malformed(&path, e))?;
        Ok(Some(Transaction::from_json(&json)?))
    }

    pub async fn status(&self, id: &str) -> Result<TxStatus, GatewayError> {
        #[derive(Deserialize)]
        struct Confirmed {
            block_height: u64,
            number_of_confirmations: u64,
        }
        let path = format!("/tx/{id}/status");
        let (status, body) = self.send(false, &path, Body::None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(TxStatus::NotFound);
        }
        if !status.is_success() {
            return Err(refused(&self.url(&path), status, &body));
        }
        // Nodes answer 202 "Pending"; arlocal answers 200 "Pending".
        if status == StatusCode::ACCEPTED || body.trim_ascii() == b"Pending" {
            return Ok(TxStatus::Pending);
        }
        let confirmed: Confirmed = serde_json::from_slice(&body).map_err(|e| self.malformed(&path, e))?;
        Ok(TxStatus::Confirmed { height: confirmed.block_height, confirmations: confirmed.number_of_confirmations })
    }

    /// The data of `tx`, checked against its `data_root`: from `/tx/{id}/data` (base64url), or,
    /// when that is empty for chunked data, the gateway's raw `/{id}`.
    pub async fn data(&self, tx: &Transaction) -> Result<Vec<u8>, GatewayError> {
        let data = self.served_data(tx).await?.unwrap_or_default();
        self.checked_data(tx, data)
    }

    /// The bytes the gateway serves for `tx`'s data, unchecked; `None` when it serves none
    /// though the transaction signs some (not uploaded, or not propagated to this gateway yet).
    pub(super) async fn served_data(&self, tx: &Transaction) -> Result<Option<Vec<u8>>, GatewayError> {
        let id = tx.id_b64();
        let path = format!("/tx/{id}/data");
        let mut data = match self.get_ok(&path).await? {
            Some(body) => b64(String::from_utf8_lossy(&body).trim()).map_err(|e| self.malformed(&path, e))?,
            None => Vec::new(),
        };
        if data.is_empty() && tx.data_size > 0 {
            data = self.get_ok(&format!("/{id}")).await?.unwrap_or_default();
        }
        Ok((!data.is_empty() || tx.data_size == 0).then_some(data))
    }

    /// `data` if it is what `tx` signs (its `data_root` and `data_size`), else `Malformed`.
    pub(super) fn checked_data(&self, tx: &Transaction, data: Vec<u8>) -> Result<Vec<u8>, GatewayError> {
        let path = format!("/tx/{}/data", tx.id_b64());
        if !tx.data_matches(&data) {
            return Err(self.malformed(
                &path,
                format!(
                    "{} bytes that do not match the data_root and data_size ({}) the transaction signs",
                    data.len(),
                    tx.data_size
                ),
            ));
        }
        Ok(data)
    }

    /// Every transaction owned by `owner` and carrying all of `tags` (name, value), following
    /// cursors to the end, up to `max` of them.
    ///
    /// Tags are public: any wallet can post a transaction with this bridge's tags. So the owner
    /// is filtered at the query (GraphQL `owners`), where another wallet's rows never reach us,
    /// and checked again on every row, in case a gateway ignores the filter: such a row is
    /// skipped and counted (`bridge_da_foreign_rows_total`), never fetched, and never counts
    /// towards `max`. Only the owner's own rows can exceed `max`, and only the owner can post those.
    pub async fn find_owned(
        &self,
        owner: &str,
        tags: &[(&str, String)],
        max: usize,
    ) -> Result<Vec<FoundTx>, GatewayError> {
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (rows, next) = self.owned_page(owner, tags, after.take(), Sort::Unsorted).await?;
            found.extend(rows);
            if found.len() > max {
                return Err(GatewayError::Crowded { url: self.url("/graphql"), owner: owner.to_owned(), max });
            }
            match next {
                Some(cursor) => after = Some(cursor),
                None => return Ok(found),
            }
        }
    }

    /// The newest transactions (at most one page of [`PAGE`]) owned by `owner` and carrying all
    /// of `tags`, newest first; with the same owner checks as [`Gateway::find_owned`].
    pub async fn newest_owned(&self, owner: &str, tags: &[(&str, String)]) -> Result<Vec<FoundTx>, GatewayError> {
        Ok(self.owned_page(owner, tags, None, Sort::NewestFirst).await?.0)
    }

    /// One page of a query by owner and tags: the owner's rows, and the cursor of the next page.
    async fn owned_page(
        &self,
        owner: &str,
        tags: &[(&str, String)],
        after: Option<String>,
        sort: Sort,
    ) -> Result<(Vec<FoundTx>, Option<String>), GatewayError> {
        const QUERY: &str = "query($owners: [String!], $tags: [TagFilter!], $after: String, $first: Int) { \
            transactions(owners: $owners, tags: $tags, after: $after, first: $first) { \
              pageInfo { hasNextPage } \
              edges { cursor node { id owner { address } tags { name value } } } } }";
        const QUERY_NEWEST: &str = "query($owners: [String!], $tags: [TagFilter!], $after: String, $first: Int) { \
            transactions(owners: $owners, tags: $tags, after: $after, first: $first, sort: HEIGHT_DESC) { \
              pageInfo { hasNextPage } \
              edges { cursor node { id owner { address } tags { name value } } } } }";
        let filters: Vec<serde_json::Value> =
            tags.iter().map(|(name, value)| json!({ "name": name, "values": [value] })).collect();
        let query = match sort {
            Sort::Unsorted => QUERY,
            Sort::NewestFirst => QUERY_NEWEST,
        };
        let request = json!({
            "query": query,
            "variables": { "owners": [owner], "tags": filters, "after": after, "first": PAGE },
        });
        let (status, body) = self.send(true, "/graphql", Body::Json(request)).await?;
        if !status.is_success() {
            return Err(refused(&self.url("/graphql"), status, &body));
        }
        let page: GraphqlPage = serde_json::from_slice(&body).map_err(|e| self.malformed("/graphql", e))?;
        if let Some(errors) = page.errors {
            return Err(self.malformed("/graphql", format!("errors: {errors}")));
        }
        let connection = page.data.ok_or_else(|| self.malformed("/graphql", "no data"))?.transactions;
        let last_cursor = connection.edges.last().map(|e| e.cursor.clone());
        let mut rows = Vec::with_capacity(connection.edges.len());
        let mut foreign = 0u64;
        for edge in connection.edges {
            if edge.node.owner.address != owner {
                foreign += 1;
                continue;
            }
            rows.push(FoundTx {
                id: edge.node.id,
                owner_address: edge.node.owner.address,
                tags: edge.node.tags.into_iter().map(|t| (t.name, t.value)).collect(),
            });
        }
        if foreign > 0 {
            tracing::warn!(url = %self.base, foreign, "the gateway ignored the owner filter; skipped other wallets' rows");
            metrics::counter!("bridge_da_foreign_rows_total").increment(foreign);
        }
        let next = match (connection.page_info.has_next_page, last_cursor) {
            (true, Some(cursor)) => Some(cursor),
            (true, None) => return Err(self.malformed("/graphql", "a next page but no cursor")),
            (false, _) => None,
        };
        Ok((rows, next))
    }
}

/// Rows per GraphQL page (arweave.net's maximum is 100).
pub const PAGE: usize = 100;

#[derive(Debug, Clone, Copy)]
enum Sort {
    /// The gateway's own order: every page is read anyway.
    Unsorted,
    NewestFirst,
}

/// The most a posting of `bytes` may pay: `winston_per_mib` for every started MiB (at least one,
/// since a transaction's price has a fixed part).
pub fn price_bound(bytes: u64, winston_per_mib: u128) -> u128 {
    const MIB: u64 = 1 << 20;
    u128::from(bytes.div_ceil(MIB).max(1)).saturating_mul(winston_per_mib)
}

pub(super) fn refused(url: &str, status: StatusCode, body: &[u8]) -> GatewayError {
    GatewayError::Refused {
        url: url.to_owned(),
        status: status.as_u16(),
        body: String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned(),
    }
}

#[derive(Deserialize)]
struct GraphqlPage {
    data: Option<GraphqlData>,
    errors: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct GraphqlData {
    transactions: GraphqlConnection,
}

#[derive(Deserialize)]
struct GraphqlConnection {
    #[serde(rename = "pageInfo")]
    page_info: GraphqlPageInfo,
    edges: Vec<GraphqlEdge>,
}

#[derive(Deserialize)]
struct GraphqlPageInfo {
    #[serde(rename = "hasNextPage")]
    has_next_page: bool,
}

#[derive(Deserialize)]
struct GraphqlEdge {
    cursor: String,
    node: GraphqlNode,
}

#[derive(Deserialize)]
struct GraphqlNode {
    id: String,
    owner: GraphqlOwner,
    tags: Vec<GraphqlTag>,
}

#[derive(Deserialize)]
struct GraphqlOwner {
    address: String,
}

#[derive(Deserialize)]
struct GraphqlTag {
    name: String,
    value: String,
}

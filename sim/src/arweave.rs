//! A simulated Arweave with the semantics the real one has for the bridge, and the
//! [`DataAvailability`] the roles' own code reads and writes it through.
//!
//! - Postings wait in a mempool and are mined into blocks (one every [`BLOCK_MS`]); each waits
//!   at most [`MAX_PENDING_BLOCKS`] blocks (the bound on how long a later batch can be seen
//!   while an earlier one is not). Order within a block is shuffled: nothing may depend on it.
//! - A reorg drops up to [`MAX_REORG_BLOCKS`] blocks; their postings go back to the mempool
//!   and are mined again (as on Arweave, where orphaned transactions return to the mempool).
//! - A posting is *listed* once mined but *served* only after a delay: a reader that sees a
//!   listing whose data is not served yet must answer "not yet", never "absent".
//! - Anyone can post under the bridge's tags: other wallets' junk is kept out by the owner
//!   filter, as GraphQL's `owners` does.
//! - The coordinator's state snapshots (for confirmers that join late) are postings of their
//!   own: mined at the next block, served [`MAX_SERVE_DELAY_MS`] later, back to the mempool in a
//!   reorg, and kept apart from the batches' postings so that they draw nothing from the
//!   model's stream of choices (a seed's run is the same with them as without).
//!
//! - Forced transactions (docs/PROTOCOL.md, "Forced transactions") are postings anyone makes
//!   under the forced tags: mined at the next block, listed in stream order (height, then id),
//!   served [`forced_serve_delay_ms`] after they are mined, back to the mempool in a reorg; like
//!   the snapshots they draw nothing from the model's stream. The roles read them through
//!   [`SimForcedStream`], the same [`ForcedStream`] the gateway client implements.
//!
//! The reader's rules mirror docs/PROTOCOL.md's (owner, confirmations, the coordinator's
//! signature through the real [`check_published`], one batch per number or an equivocation).
//! The real gateway client (`chains::da::arweave`) is exercised on arlocal by its own tests; a
//! later step drives it against this model.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bridge::SignedBatch;
use bridge::batch::Equivocation;
use bridge::forced::{ForcedEntry, ForcedListing};
use chains::arweave::{ForcedListingPage, ForcedStream, GatewayError, TxStatus};
use chains::da::{DaError, DataAvailability, FetchedBatch, Published, check_published};

use crate::rng::SimRng;

/// Arweave's target block time.
pub const BLOCK_MS: u64 = 120_000;
/// The deepest reorg simulated (Arweave's practical finality is about 18 blocks).
pub const MAX_REORG_BLOCKS: u64 = 18;
/// A posting is mined within this many blocks of entering the mempool.
pub const MAX_PENDING_BLOCKS: u32 = 3;
/// The longest a mined posting's data waits before gateways serve it.
pub const MAX_SERVE_DELAY_MS: u64 = 180_000;
/// Confirmations a reader wants before it takes a batch (its own block counts as one).
pub const READ_CONFIRMATIONS: u64 = 1;

/// Who posted: the coordinator's wallet or another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Coordinator,
    Other(u64),
}

#[derive(Debug, Clone)]
struct Posting {
    id: String,
    owner: Owner,
    /// The `Batch-Number` tag (anyone can set it).
    number: u64,
    bytes: Vec<u8>,
    /// How long after it is mined its data is served.
    serve_delay_ms: u64,
    /// Postings of one bundle are mined together, also after a reorg.
    bundle: u64,
    /// When its data is served, once mined (kept across a reorg: the data is on the network).
    served_at_ms: Option<u64>,
}

/// A state snapshot the coordinator posted, under its own tags.
#[derive(Debug, Clone)]
struct SnapshotPosting {
    id: String,
    number: u64,
    bytes: Vec<u8>,
    /// The height of the block that holds it (1 is the first block), once mined.
    mined_at: Option<u64>,
    served_at_ms: Option<u64>,
}

/// A forced transaction: anyone's posting under the forced tags.
#[derive(Debug, Clone)]
struct ForcedPosting {
    id: [u8; 32],
    /// The `App-Name` and `Network` tags (a junk poster may get them wrong).
    app_name: String,
    network: String,
    data: Vec<u8>,
    /// The size its transaction signs (a junk poster may post more than a transaction's).
    size: u64,
    mined_at: Option<u64>,
    served_at_ms: Option<u64>,
}

/// How long after it is mined a forced posting's data is served: from none to
/// [`MAX_SERVE_DELAY_MS`], by its id (no draw from the model's stream).
pub fn forced_serve_delay_ms(id: &[u8; 32]) -> u64 {
    u64::from(u16::from_le_bytes([id[0], id[1]])) * MAX_SERVE_DELAY_MS / u64::from(u16::MAX)
}

/// Postings mined together (an equivocating coordinator posts its two batches as one bundle).
#[derive(Debug, Clone)]
struct Pending {
    postings: Vec<Posting>,
    blocks_waited: u32,
}

#[derive(Debug)]
pub struct Arweave {
    blocks: Vec<Vec<Posting>>,
    mempool: Vec<Pending>,
    next_id: u64,
    rng: SimRng,
    now_ms: Arc<AtomicU64>,
    snapshots: Vec<SnapshotPosting>,
    forced: Vec<ForcedPosting>,
    /// Until when the coordinator's own gateway refuses its postings (a fault, tasks.rs); the
    /// network, and every reader's gateway, go on.
    gateway_down_until: Option<u64>,
}

impl Arweave {
    pub fn new(rng: SimRng, now_ms: Arc<AtomicU64>) -> Self {
        Arweave {
            blocks: Vec::new(),
            mempool: Vec::new(),
            next_id: 0,
            rng,
            now_ms,
            snapshots: Vec::new(),
            forced: Vec::new(),
            gateway_down_until: None,
        }
    }

    pub fn gateway_down_until(&self) -> Option<u64> {
        self.gateway_down_until
    }

    pub fn set_gateway_down_until(&mut self, until: Option<u64>) {
        self.gateway_down_until = until;
    }

    /// The coordinator's gateway, if it is down: what a posting gets.
    fn gateway_refuses(&self) -> Result<(), DaError> {
        match self.gateway_down_until {
            Some(until) => Err(DaError::Gateway(GatewayError::Unreachable {
                url: "sim".into(),
                attempts: 1,
                last: format!("the coordinator's gateway is down until {} s (a fault)", until / 1000),
            })),
            None => Ok(()),
        }
    }

    pub fn height(&self) -> u64 {
        self.blocks.len() as u64
    }

    fn now(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    /// Posts `bundle` (number, bytes) from `owner`; returns the ids.
    pub fn post(&mut self, owner: Owner, bundle: Vec<(u64, Vec<u8>)>) -> Vec<String> {
        let serve_delay_ms = self.rng.below(MAX_SERVE_DELAY_MS + 1);
        let bundle_id = self.next_id + 1;
        let mut postings = Vec::new();
        for (number, bytes) in bundle {
            self.next_id += 1;
            let id = format!("ar{:06}", self.next_id);
            postings.push(Posting { id, owner, number, bytes, serve_delay_ms, bundle: bundle_id, served_at_ms: None });
        }
        let ids = postings.iter().map(|p| p.id.clone()).collect();
        self.mempool.push(Pending { postings, blocks_waited: 0 });
        ids
    }

    /// Mines one block: each pending bundle with probability 3/4, and any that has waited
    /// [`MAX_PENDING_BLOCKS`]; the block's order is shuffled.
    pub fn mine(&mut self) {
        let now = self.now();
        let mut block = Vec::new();
        let mut left = Vec::new();
        for mut pending in std::mem::take(&mut self.mempool) {
            pending.blocks_waited += 1;
            if pending.blocks_waited >= MAX_PENDING_BLOCKS || self.rng.chance(750_000) {
                for mut posting in pending.postings {
                    posting.served_at_ms.get_or_insert(now + posting.serve_delay_ms);
                    block.push(posting);
                }
            } else {
                left.push(pending);
            }
        }
        self.mempool = left;
        self.rng.shuffle(&mut block);
        self.blocks.push(block);
        let height = self.height();
        for snapshot in self.snapshots.iter_mut().filter(|s| s.mined_at.is_none()) {
            snapshot.mined_at = Some(height);
            snapshot.served_at_ms.get_or_insert(now + MAX_SERVE_DELAY_MS);
        }
        for posting in self.forced.iter_mut().filter(|p| p.mined_at.is_none()) {
            posting.mined_at = Some(height);
            posting.served_at_ms.get_or_insert(now + forced_serve_delay_ms(&posting.id));
        }
    }

    /// Posts a forced transaction under the tags `app_name` and `network` whose transaction
    /// signs `size` bytes of data, `data` (its id chosen by the poster's stream).
    pub fn post_forced(&mut self, id: [u8; 32], app_name: &str, network: &str, data: Vec<u8>, size: u64) {
        let posting = ForcedPosting {
            id,
            app_name: app_name.into(),
            network: network.into(),
            data,
            size,
            mined_at: None,
            served_at_ms: None,
        };
        self.forced.push(posting);
    }

    /// Every forced posting of `network` that a block holds: (id, height), in stream order.
    pub fn forced_mined(&self, network: &str) -> Vec<([u8; 32], u64)> {
        let mut mined: Vec<([u8; 32], u64)> = self
            .forced
            .iter()
            .filter(|p| p.network == network && p.app_name == chains::da::APP_NAME)
            .filter_map(|p| p.mined_at.map(|height| (p.id, height)))
            .collect();
        mined.sort_by_key(|(id, height)| (*height, *id));
        mined
    }

    /// Where the coordinator's posting `id` stands.
    fn batch_status(&self, id: &str) -> TxStatus {
        let height = self.height();
        for (index, block) in self.blocks.iter().enumerate() {
            if block.iter().any(|p| p.id == id) {
                let at = index as u64 + 1;
                return TxStatus::Confirmed { height: at, confirmations: height + 1 - at };
            }
        }
        if self.mempool.iter().flat_map(|p| p.postings.iter()).any(|p| p.id == id) {
            return TxStatus::Pending;
        }
        TxStatus::NotFound
    }

    /// Posts the snapshot of batch `number`; the same bytes again are the same posting.
    pub fn post_snapshot(&mut self, number: u64, bytes: Vec<u8>) -> String {
        if let Some(posted) = self.snapshots.iter().find(|s| s.number == number && s.bytes == bytes) {
            return posted.id.clone();
        }
        let id = self.next_snapshot_id();
        self.snapshots.push(SnapshotPosting { id: id.clone(), number, bytes, mined_at: None, served_at_ms: None });
        id
    }

    /// A forged copy of the snapshot of batch `number`, listed before the ones already posted.
    pub fn post_snapshot_first(&mut self, number: u64, bytes: Vec<u8>) {
        let id = self.next_snapshot_id();
        let at = self.snapshots.iter().position(|s| s.number == number).unwrap_or(self.snapshots.len());
        self.snapshots.insert(at, SnapshotPosting { id, number, bytes, mined_at: None, served_at_ms: None });
    }

    /// Snapshot postings are only ever added, so their count names the next one uniquely.
    fn next_snapshot_id(&self) -> String {
        format!("snap{:06}", self.snapshots.len() + 1)
    }

    /// The coordinator's snapshots of batch `number`, mined with enough confirmations and
    /// served.
    fn snapshots_listed(&self, number: u64) -> Vec<(String, Vec<u8>)> {
        let (now, height) = (self.now(), self.height());
        self.snapshots
            .iter()
            .filter(|s| s.number == number)
            .filter(|s| s.mined_at.is_some_and(|at| height + 1 - at >= READ_CONFIRMATIONS))
            .filter(|s| s.served_at_ms.is_some_and(|at| at <= now))
            .map(|s| (s.id.clone(), s.bytes.clone()))
            .collect()
    }

    /// Drops the top `depth` blocks (at most [`MAX_REORG_BLOCKS`]); their postings return to
    /// the mempool one by one, then a longer fork is mined.
    pub fn reorg(&mut self, depth: u64) -> u64 {
        let depth = depth.min(MAX_REORG_BLOCKS).min(self.height());
        for _ in 0..depth {
            let Some(block) = self.blocks.pop() else { break };
            let mut bundles: std::collections::BTreeMap<u64, Vec<Posting>> = std::collections::BTreeMap::new();
            for posting in block {
                bundles.entry(posting.bundle).or_default().push(posting);
            }
            for (_, postings) in bundles {
                self.mempool.push(Pending { postings, blocks_waited: 0 });
            }
        }
        let height = self.height();
        for snapshot in self.snapshots.iter_mut().filter(|s| s.mined_at.is_some_and(|at| at > height)) {
            snapshot.mined_at = None;
        }
        for posting in self.forced.iter_mut().filter(|p| p.mined_at.is_some_and(|at| at > height)) {
            posting.mined_at = None;
        }
        for _ in 0..=depth {
            self.mine();
        }
        depth
    }

    /// The coordinator's postings tagged `number` with enough confirmations, and whether all of
    /// them are served.
    fn listed(&self, number: u64) -> (Vec<&Posting>, bool) {
        let now = self.now();
        let height = self.height();
        let mut found = Vec::new();
        let mut all_served = true;
        for (index, block) in self.blocks.iter().enumerate() {
            let confirmations = height - index as u64;
            if confirmations < READ_CONFIRMATIONS {
                continue;
            }
            for posting in block {
                // GraphQL's `owners` filter: another wallet's posting is never fetched.
                if posting.owner != Owner::Coordinator || posting.number != number {
                    continue;
                }
                all_served &= posting.served_at_ms.is_some_and(|at| at <= now);
                found.push(posting);
            }
        }
        (found, all_served)
    }

    /// Every number the coordinator's wallet has a listing for above `number`, lowest first.
    fn numbers_above(&self, number: u64) -> Vec<u64> {
        let mut numbers: Vec<u64> = self
            .blocks
            .iter()
            .flatten()
            .filter(|p| p.owner == Owner::Coordinator && p.number > number)
            .map(|p| p.number)
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        numbers
    }

    /// Numbers up to `through` under which the coordinator's mined postings hold different
    /// bytes: where an equivocation may be (bytes are compared first; only these are decoded).
    fn numbers_with_rivals(&self, through: u64) -> Vec<u64> {
        let mut first_bytes: std::collections::BTreeMap<u64, &[u8]> = std::collections::BTreeMap::new();
        let mut rivals = std::collections::BTreeSet::new();
        for posting in self.blocks.iter().flatten() {
            if posting.owner != Owner::Coordinator || posting.number > through {
                continue;
            }
            let first = *first_bytes.entry(posting.number).or_insert(&posting.bytes);
            if first != posting.bytes.as_slice() {
                rivals.insert(posting.number);
            }
        }
        rivals.into_iter().collect()
    }

    /// A posting of the same bytes from the coordinator, mined or pending.
    fn already_posted(&self, bytes: &[u8]) -> Option<String> {
        let mined = self.blocks.iter().flatten();
        let pending = self.mempool.iter().flat_map(|p| p.postings.iter());
        mined.chain(pending).find(|p| p.owner == Owner::Coordinator && p.bytes == bytes).map(|p| p.id.clone())
    }
}

/// The roles' view of the simulated Arweave: a [`DataAvailability`].
#[derive(Debug, Clone)]
pub struct SimDa {
    arweave: Arc<Mutex<Arweave>>,
    coordinator_key: [u8; 32],
}

impl SimDa {
    pub fn new(arweave: Arc<Mutex<Arweave>>, coordinator_key: [u8; 32]) -> Self {
        SimDa { arweave, coordinator_key }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Arweave>, DaError> {
        self.arweave.lock().map_err(|_| DaError::Worker("the simulated Arweave's lock is poisoned".into()))
    }

    /// The one batch numbered `number`: `None` while none is listed or a listing is not served
    /// yet; an equivocation if two different valid batches are.
    fn read(&self, arweave: &Arweave, number: u64) -> Result<Option<FetchedBatch>, DaError> {
        let (listed, all_served) = arweave.listed(number);
        if !all_served {
            return Ok(None);
        }
        let mut found: Option<FetchedBatch> = None;
        for posting in listed {
            // A posting that does not check is refused, as the gateway client refuses it.
            let Ok(batch) = check_published(&posting.bytes, &posting.id, number, &self.coordinator_key) else {
                continue;
            };
            match &found {
                Some(first) if first.batch != batch => {
                    let evidence =
                        Equivocation::new(first.batch.signed_header(), batch.signed_header(), &self.coordinator_key)
                            .map_err(|e| DaError::Invalid { locator: posting.id.clone(), reason: e.to_string() })?;
                    return Err(DaError::Equivocation(Box::new(evidence)));
                }
                Some(_) => {}
                None => found = Some(FetchedBatch { locator: posting.id.clone(), batch, size: posting.bytes.len() }),
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl DataAvailability for SimDa {
    async fn publish(&self, batch: &SignedBatch) -> Result<Published, DaError> {
        let number = batch.header.number;
        let bytes = bridge::codec::encode_batch(batch);
        let mut arweave = self.lock()?;
        arweave.gateway_refuses()?;
        if let Some(locator) = arweave.already_posted(&bytes) {
            return Ok(Published { number, locator });
        }
        let ids = arweave.post(Owner::Coordinator, vec![(number, bytes)]);
        let locator = ids.into_iter().next().ok_or_else(|| DaError::Worker("nothing was posted".into()))?;
        Ok(Published { number, locator })
    }

    async fn fetch(&self, number: u64) -> Result<Option<FetchedBatch>, DaError> {
        let arweave = self.lock()?;
        let Some(fetched) = self.read(&arweave, number)? else { return Ok(None) };
        // A batch is handed out only once its predecessor is (the `Prev-Tx` walk).
        if number > 1 {
            match self.read(&arweave, number - 1)? {
                Some(previous) if previous.batch.hash() == fetched.batch.header.prev_hash => {}
                _ => return Ok(None),
            }
        }
        Ok(Some(fetched))
    }

    async fn confirmations(&self, number: u64) -> Result<Option<u64>, DaError> {
        let arweave = self.lock()?;
        let height = arweave.height();
        let depth = arweave.blocks.iter().enumerate().find_map(|(index, block)| {
            block.iter().any(|p| p.owner == Owner::Coordinator && p.number == number).then(|| height - index as u64)
        });
        Ok(depth)
    }

    async fn latest(&self) -> Result<u64, DaError> {
        let mut number = 0;
        while self.fetch(number + 1).await?.is_some() {
            number += 1;
        }
        Ok(number)
    }

    async fn equivocation_through(&self, through: u64) -> Result<Option<Equivocation>, DaError> {
        let arweave = self.lock()?;
        for number in arweave.numbers_with_rivals(through) {
            // The same reading rules as `fetch`: listed with confirmations, served, signed.
            match self.read(&arweave, number) {
                Err(DaError::Equivocation(evidence)) => return Ok(Some(*evidence)),
                Err(error) => return Err(error),
                Ok(_) => {}
            }
        }
        Ok(None)
    }

    async fn publish_snapshot(&self, number: u64, _root: [u8; 32], bytes: &[u8]) -> Result<Option<String>, DaError> {
        let mut arweave = self.lock()?;
        arweave.gateway_refuses()?;
        Ok(Some(arweave.post_snapshot(number, bytes.to_vec())))
    }

    async fn snapshots_of(&self, number: u64) -> Result<Vec<(String, Vec<u8>)>, DaError> {
        Ok(self.lock()?.snapshots_listed(number))
    }

    async fn signed_after(&self, number: u64) -> Result<Option<FetchedBatch>, DaError> {
        let arweave = self.lock()?;
        for later in arweave.numbers_above(number) {
            if let Some(found) = self.read(&arweave, later)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

/// The forced stream of the simulated Arweave as the roles read it: the gateway's four calls.
#[derive(Debug, Clone)]
pub struct SimForcedStream {
    arweave: Arc<Mutex<Arweave>>,
}

impl SimForcedStream {
    pub fn new(arweave: Arc<Mutex<Arweave>>) -> Self {
        SimForcedStream { arweave }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Arweave>, GatewayError> {
        self.arweave.lock().map_err(|_| GatewayError::Malformed {
            url: "sim".into(),
            reason: "the simulated Arweave's lock is poisoned".into(),
        })
    }
}

#[async_trait]
impl ForcedStream for SimForcedStream {
    fn base(&self) -> &str {
        "sim://arweave"
    }

    async fn height(&self) -> Result<u64, GatewayError> {
        Ok(self.lock()?.height())
    }

    /// As the gateway client: whole heights in stream order, stopping once `max_rows` rows
    /// are read; only the heights below the last one read are then known whole.
    async fn list_forced(
        &self,
        app_name: &str,
        network: &str,
        min: u64,
        max: u64,
        max_rows: usize,
    ) -> Result<ForcedListingPage, GatewayError> {
        let arweave = self.lock()?;
        let mut rows: Vec<ForcedListing> = arweave
            .forced
            .iter()
            .filter(|p| p.app_name == app_name && p.network == network)
            .filter_map(|p| p.mined_at.map(|height| ForcedListing { arweave_id: p.id, height, size: p.size }))
            .filter(|l| (min..=max).contains(&l.height))
            .collect();
        bridge::forced::sort_listings(&mut rows);
        if rows.len() <= max_rows {
            return Ok(ForcedListingPage { listings: rows, complete_to: Some(max), skipped: 0 });
        }
        rows.truncate(max_rows);
        let complete_to = rows.last().and_then(|l| l.height.checked_sub(1)).filter(|h| *h >= min);
        match complete_to {
            Some(complete) => rows.retain(|l| l.height <= complete),
            None => rows.clear(),
        }
        Ok(ForcedListingPage { listings: rows, complete_to, skipped: 0 })
    }

    async fn fetch_forced_all(&self, listings: &[ForcedListing]) -> Result<Vec<ForcedEntry>, GatewayError> {
        let arweave = self.lock()?;
        let now = arweave.now();
        let mut entries = Vec::with_capacity(listings.len());
        for listing in listings {
            if !listing.fetchable() {
                entries.push(ForcedEntry { listing: *listing, data: None });
                continue;
            }
            let posting = arweave.forced.iter().find(|p| p.id == listing.arweave_id);
            match posting {
                Some(posting) if posting.served_at_ms.is_some_and(|at| at <= now) => {
                    entries.push(ForcedEntry { listing: *listing, data: Some(posting.data.clone()) })
                }
                _ => {
                    return Err(GatewayError::NotServedYet {
                        url: "sim://arweave".into(),
                        id: chains::arweave::to_b64(&listing.arweave_id),
                        what: "data",
                        attempts: 1,
                    });
                }
            }
        }
        Ok(entries)
    }

    async fn status(&self, id: &str) -> Result<TxStatus, GatewayError> {
        Ok(self.lock()?.batch_status(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_listed_once_mined_and_served_and_a_reorg_takes_it_back_to_the_mempool() {
        let now = Arc::new(AtomicU64::new(0));
        let mut arweave = Arweave::new(SimRng::new(1), now.clone());
        arweave.mine();
        let id = arweave.post_snapshot(4, vec![1, 2, 3]);
        assert_eq!(arweave.post_snapshot(4, vec![1, 2, 3]), id, "the same bytes again are the same posting");
        assert!(arweave.snapshots_listed(4).is_empty(), "not mined yet");
        arweave.mine();
        assert!(arweave.snapshots_listed(4).is_empty(), "mined but not served yet");
        now.store(MAX_SERVE_DELAY_MS, Ordering::SeqCst);
        assert_eq!(arweave.snapshots_listed(4), vec![(id.clone(), vec![1, 2, 3])]);
        assert!(arweave.snapshots_listed(8).is_empty());
        // A reorg over its block: back to the mempool, mined again on the new fork, its data
        // still served (it is on the network).
        let height = arweave.height();
        arweave.reorg(1);
        assert_eq!(arweave.height(), height + 1);
        assert_eq!(arweave.snapshots_listed(4), vec![(id, vec![1, 2, 3])]);
    }
}

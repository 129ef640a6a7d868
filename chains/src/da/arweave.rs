//! `ArweaveDa`: batches as Arweave transactions signed by the coordinator's Arweave wallet.
//!
//! Each batch is one transaction tagged with its number, the previous batch's hash and the
//! previous batch's Arweave id (`Prev-Tx`), so a follower links batches by ids and never relies
//! on GraphQL's order within a block. GraphQL only gives leads: every lead is fetched and checked
//! (Arweave signature, owner, tags, confirmations, `data_root`, the batch's own coordinator
//! signature, the link to the previous batch) before it is believed. Anything else is a
//! forgery: logged with its Arweave id and counted in `bridge_da_rejected_total{kind}`.
//!
//! The publisher writes each signed transaction to a journal before posting it and keeps it
//! there until the batch is confirmed, so a restart resumes without posting a batch twice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bridge::SignedBatch;
use bridge::batch::Equivocation;
use bridge::codec::{CODEC_NAME, encode_batch};
use serde::{Deserialize, Serialize};

use super::{DaError, DataAvailability, FetchedBatch, Published, check_published};
use crate::arweave::{ArweaveWallet, Gateway, GatewayError, Tag, Transaction, TxJson, TxStatus};
use crate::forced_check::{ForcedChecker, ForcedVerdict};

mod late;
mod snapshots;

/// The `App-Name` tag of every posting of the bridge: batches, snapshots and forced
/// transactions alike.
pub const APP_NAME: &str = "settlement-bridge";
const APP_VERSION: &str = "1";
const CONTENT_TYPE: &str = "application/octet-stream";

#[derive(Debug, Clone)]
pub struct ArweaveDaConfig {
    /// `App-Name` tag shared by every batch of this bridge.
    pub app_name: String,
    /// `Network` tag: the network's name, so that devnets and mainnets never mix.
    pub network: String,
    /// The key that signs batch headers (BIP-340).
    pub coordinator_key: [u8; 32],
    /// The Arweave address of the coordinator's wallet: only its transactions are read.
    pub coordinator_address: String,
    /// Confirmations a batch needs before a follower accepts it.
    pub confirmations: u64,
    /// The most transactions from the coordinator's own wallet that one batch number may carry
    /// before the query is refused (other wallets' transactions are never counted).
    pub max_candidates: usize,
    /// The most a posting may pay per started MiB, in winston: the gateway's `/price` above it
    /// is refused ([`GatewayError::PriceAboveBound`]) and the batch waits.
    pub max_price_winston_per_mib: u128,
}

/// The default bound on a posting's price: 1 AR per started MiB, far above what the network
/// has asked (and ~15 times what arlocal asks), so it only stops a gateway gone wrong.
pub const DEFAULT_MAX_PRICE_WINSTON_PER_MIB: u128 = 1_000_000_000_000;

impl ArweaveDaConfig {
    pub fn new(network: &str, coordinator_key: [u8; 32], coordinator_address: &str) -> Self {
        ArweaveDaConfig {
            app_name: APP_NAME.into(),
            network: network.into(),
            coordinator_key,
            coordinator_address: coordinator_address.into(),
            confirmations: 1,
            max_candidates: 1000,
            max_price_winston_per_mib: DEFAULT_MAX_PRICE_WINSTON_PER_MIB,
        }
    }
}

/// Why a transaction that looked like a batch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rejection {
    /// Posted by a wallet other than the coordinator's.
    WrongOwner,
    /// The Arweave transaction is malformed or its signature does not verify.
    BadTransaction,
    /// Tags missing or disagreeing with the batch inside.
    BadTags,
    /// The data served does not match the `data_root` the transaction signs.
    BadData,
    /// Not a batch signed by the coordinator key (bad codec or bad signature).
    BadBatch,
    /// A batch filed under a number that is not its own.
    Misfiled,
    /// A batch that does not link to the accepted previous batch, or whose previous batch is missing.
    BrokenLink,
    /// The same batch posted again under another id (accepted once, counted).
    Duplicate,
    /// Two different validly signed batches with one number.
    Equivocation,
    /// A signed batch that fails the forced check (a `censorship` finding) while another batch
    /// with its number passes it, or one built on such a batch: superseded by a takeover
    /// (docs/PROTOCOL.md, "Takeover after censorship").
    Superseded,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::WrongOwner => "wrong_owner",
            Rejection::BadTransaction => "bad_transaction",
            Rejection::BadTags => "bad_tags",
            Rejection::BadData => "bad_data",
            Rejection::BadBatch => "bad_batch",
            Rejection::Misfiled => "misfiled",
            Rejection::BrokenLink => "broken_link",
            Rejection::Duplicate => "duplicate",
            Rejection::Equivocation => "equivocation",
            Rejection::Superseded => "superseded",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ArweaveDa {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    gateway: Gateway,
    config: ArweaveDaConfig,
    publisher: Option<Publisher>,
    /// Batches accepted at the configured depth, with every id that carries them.
    accepted: Mutex<BTreeMap<u64, Candidate>>,
    /// (kind, Arweave id) pairs already counted, so polling does not count one forgery twice.
    rejected: Mutex<BTreeSet<(Rejection, String)>>,
    publish_lock: tokio::sync::Mutex<()>,
    /// `latest` so far: every batch up to it was accepted one after another from batch 1.
    latest: Mutex<u64>,
    /// The last answer to `signed_after` (asked number, batch found): a follower at a gap asks
    /// the same question every poll, and a batch on Arweave stays; one entry, the current gap.
    gap_evidence: Mutex<Option<(u64, FetchedBatch)>>,
    /// On a network with forced inclusion: the check that tells, of two batches signed with
    /// one number, the censoring one from its replacement.
    forced: std::sync::OnceLock<ForcedChecker>,
    /// Hashes of batches proven superseded: their descendants are superseded too. Grows by one
    /// per takeover; rebuilt by the same checks after a restart.
    superseded: Mutex<BTreeSet<[u8; 32]>>,
    /// Ids of the coordinator's newest postings already judged not to be a second batch of a
    /// number passed (da/arweave/late.rs).
    judged: Mutex<BTreeSet<String>>,
}

#[derive(Debug)]
struct Publisher {
    wallet: ArweaveWallet,
    journal: PathBuf,
    /// What this process posted: number -> (Arweave id, batch hash), so the next batch's
    /// `Prev-Tx` needs no lookup. Empty after a restart, when lookups by tags take over.
    posted: Mutex<BTreeMap<u64, (String, [u8; 32])>>,
}

/// A checked batch transaction.
#[derive(Debug, Clone)]
struct Candidate {
    ids: Vec<String>,
    batch: SignedBatch,
    hash: [u8; 32],
    prev_tx: Option<String>,
    size: usize,
}

/// What the journal keeps of a posted batch until it is confirmed.
#[derive(Serialize, Deserialize)]
struct JournalEntry {
    number: u64,
    batch_hash: String,
    tx: TxJson,
}

enum Lookup {
    Missing,
    NotDeepEnough,
    Found(Box<Candidate>),
}

impl ArweaveDa {
    /// A reader that follows the coordinator's batches.
    pub fn follower(gateway: Gateway, config: ArweaveDaConfig) -> Self {
        Self::build(gateway, config, None)
    }

    /// The coordinator's publisher: `wallet` must be the configured coordinator wallet;
    /// `journal_dir` keeps posted transactions until they are confirmed.
    pub fn publisher(
        gateway: Gateway,
        config: ArweaveDaConfig,
        wallet: ArweaveWallet,
        journal_dir: &Path,
    ) -> Result<Self, DaError> {
        if wallet.address() != config.coordinator_address {
            return Err(DaError::Journal {
                path: journal_dir.display().to_string(),
                reason: format!(
                    "the wallet {} is not the configured coordinator wallet {}",
                    wallet.address(),
                    config.coordinator_address
                ),
            });
        }
        std::fs::create_dir_all(journal_dir).map_err(|e| journal_error(journal_dir, e))?;
        let publisher = Publisher { wallet, journal: journal_dir.to_path_buf(), posted: Mutex::new(BTreeMap::new()) };
        Ok(Self::build(gateway, config, Some(publisher)))
    }

    fn build(gateway: Gateway, config: ArweaveDaConfig, publisher: Option<Publisher>) -> Self {
        ArweaveDa {
            inner: Arc::new(Inner {
                gateway,
                config,
                publisher,
                accepted: Mutex::new(BTreeMap::new()),
                rejected: Mutex::new(BTreeSet::new()),
                publish_lock: tokio::sync::Mutex::new(()),
                latest: Mutex::new(0),
                gap_evidence: Mutex::new(None),
                forced: std::sync::OnceLock::new(),
                superseded: Mutex::new(BTreeSet::new()),
                judged: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    pub fn gateway(&self) -> &Gateway {
        &self.inner.gateway
    }

    /// On a network with forced inclusion: of several batches signed with one number, the ones
    /// that fail the forced check are superseded (and so is anything built on them), and a
    /// publisher may replace a censoring batch instead of refusing with `Conflict`
    /// (docs/PROTOCOL.md, "Takeover after censorship"). Without it, two signed batches with one
    /// number are always an equivocation.
    pub fn with_forced(self, checker: ForcedChecker) -> Self {
        if self.inner.forced.set(checker).is_err() {
            tracing::warn!("the forced check was set twice on one ArweaveDa; the first is kept");
        }
        self
    }

    /// How many distinct transactions were refused, by kind (also exported as a metric).
    pub fn rejections(&self) -> BTreeMap<Rejection, u64> {
        let mut counts = BTreeMap::new();
        for (kind, _) in lock(&self.inner.rejected).iter() {
            *counts.entry(*kind).or_insert(0) += 1;
        }
        counts
    }

    /// Every Arweave id that carries the accepted batch `number` (more than one if it was reposted).
    pub fn ids_of(&self, number: u64) -> Vec<String> {
        lock(&self.inner.accepted).get(&number).map(|c| c.ids.clone()).unwrap_or_default()
    }

    /// Walks the journal: batches confirmed deep enough are forgotten, batches the gateway lost
    /// are posted again. Returns how many entries remain. The publisher calls it before each
    /// publish; a restart calls it to resume.
    pub async fn settle_journal(&self) -> Result<usize, DaError> {
        let Some(publisher) = &self.inner.publisher else { return Ok(0) };
        let mut remaining = 0;
        for (path, entry) in read_journal(&publisher.journal)? {
            // The data is decoded only for a repost; the status needs the id alone.
            match self.inner.gateway.status(&entry.tx.id).await? {
                TxStatus::Confirmed { confirmations, .. } if confirmations >= self.inner.config.confirmations => {
                    std::fs::remove_file(&path).map_err(|e| journal_error(&path, e))?;
                    sync_dir(&publisher.journal)?;
                    continue;
                }
                TxStatus::NotFound => {
                    let tx = Transaction::from_json(&entry.tx).map_err(GatewayError::from)?;
                    tracing::warn!(number = entry.number, id = %tx.id_b64(), "the gateway lost a posted batch; posting it again");
                    self.inner.gateway.upload(&tx).await?;
                }
                _ => {}
            }
            remaining += 1;
        }
        Ok(remaining)
    }

    fn reject(&self, kind: Rejection, id: &str, why: &str) {
        let fresh = lock(&self.inner.rejected).insert((kind, id.to_owned()));
        if fresh {
            tracing::warn!(kind = kind.as_str(), arweave_id = id, why, "refused a transaction posing as a batch");
            metrics::counter!("bridge_da_rejected_total", "kind" => kind.as_str()).increment(1);
        }
    }

    /// Finds and checks every transaction filed as batch `number`; returns the valid ones with at
    /// least `depth` confirmations (grouped by batch), and whether others are still too shallow.
    async fn candidates(&self, number: u64, depth: u64) -> Result<(Vec<Candidate>, bool), DaError> {
        let config = &self.inner.config;
        // Only the coordinator's wallet is asked for: another wallet's postings under our tags
        // never reach this loop, so they can neither crowd the search nor cost a download.
        let leads = self
            .inner
            .gateway
            .find_owned(
                &config.coordinator_address,
                // The most selective tag first: a gateway that joins in this order looks at
                // one number's postings, not at everything under the app name.
                &[
                    ("Batch-Number", number.to_string()),
                    ("App-Name", config.app_name.clone()),
                    ("Network", config.network.clone()),
                ],
                config.max_candidates,
            )
            .await?;
        let mut ids: Vec<String> = leads.into_iter().map(|lead| lead.id).collect();
        ids.sort();
        ids.dedup();
        let mut valid: Vec<Candidate> = Vec::new();
        let mut shallow = false;
        for id in ids {
            let Some(candidate) = self.check(&id, number, depth, &mut shallow).await? else { continue };
            match valid.iter_mut().find(|c| c.hash == candidate.hash) {
                Some(same) => {
                    self.reject(Rejection::Duplicate, &id, "the same batch posted again");
                    same.ids.extend(candidate.ids);
                }
                None => valid.push(candidate),
            }
        }
        Ok((valid, shallow))
    }

    /// Checks one lead; `None` if it is not (yet) a valid batch transaction.
    async fn check(&self, id: &str, number: u64, depth: u64, shallow: &mut bool) -> Result<Option<Candidate>, DaError> {
        let config = &self.inner.config;
        let gateway = &self.inner.gateway;
        let tx = match gateway.tx(id).await {
            Ok(Some(tx)) => tx,
            Ok(None) => return Ok(None),
            Err(GatewayError::Tx(e)) => {
                self.reject(Rejection::BadTransaction, id, &e.to_string());
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = tx.verify() {
            self.reject(Rejection::BadTransaction, id, &e.to_string());
            return Ok(None);
        }
        if tx.id_b64() != id {
            self.reject(Rejection::BadTransaction, id, "the gateway served another transaction");
            return Ok(None);
        }
        if tx.owner_address() != config.coordinator_address {
            self.reject(Rejection::WrongOwner, id, &format!("owned by {}", tx.owner_address()));
            return Ok(None);
        }
        let number_text = number.to_string();
        let tags_agree = tx.tag("App-Name") == Some(config.app_name.as_str())
            && tx.tag("Network") == Some(config.network.as_str())
            && tx.tag("Batch-Number") == Some(number_text.as_str())
            && tx.tag("Codec") == Some(CODEC_NAME);
        if !tags_agree {
            self.reject(Rejection::BadTags, id, "App-Name, Network, Batch-Number or Codec disagree");
            return Ok(None);
        }
        match gateway.status(id).await? {
            TxStatus::NotFound => return Ok(None),
            TxStatus::Pending if depth > 0 => {
                *shallow = true;
                return Ok(None);
            }
            TxStatus::Confirmed { confirmations, .. } if confirmations < depth => {
                *shallow = true;
                return Ok(None);
            }
            _ => {}
        }
        // Read the data only now, at depth, so what is checked is what is buried.
        let data = match gateway.data(&tx).await {
            Ok(data) => data,
            Err(GatewayError::Malformed { reason, .. }) => {
                self.reject(Rejection::BadData, id, &reason);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let batch = match check_published(&data, id, number, &config.coordinator_key) {
            Ok(batch) => batch,
            Err(DaError::Misfiled { found, .. }) => {
                self.reject(Rejection::Misfiled, id, &format!("holds batch {found}"));
                return Ok(None);
            }
            Err(e) => {
                self.reject(Rejection::BadBatch, id, &e.to_string());
                return Ok(None);
            }
        };
        let header = &batch.header;
        if tx.tag("Prev-Hash") != Some(hex::encode(header.prev_hash).as_str())
            || tx.tag("State-Root") != Some(hex::encode(header.post_state_root).as_str())
        {
            self.reject(Rejection::BadTags, id, "Prev-Hash or State-Root disagree with the batch");
            return Ok(None);
        }
        let prev_tx = tx.tag("Prev-Tx").map(str::to_owned);
        if (number > 1) != prev_tx.is_some() {
            self.reject(Rejection::BadTags, id, "Prev-Tx is missing (or present on batch 1)");
            return Ok(None);
        }
        Ok(Some(Candidate { ids: vec![id.to_owned()], hash: batch.hash(), batch, prev_tx, size: data.len() }))
    }

    /// The batch `number` at `depth`, if exactly one valid batch is filed under it (after the
    /// superseded ones are dropped).
    async fn single(&self, number: u64, depth: u64) -> Result<Lookup, DaError> {
        let (mut valid, shallow) = self.candidates(number, depth).await?;
        self.drop_known_superseded(&mut valid);
        if valid.len() > 1 && !self.drop_superseded(number, depth, &mut valid).await? {
            // One of them cannot be judged yet: neither followed nor called an equivocation.
            return Ok(Lookup::NotDeepEnough);
        }
        if valid.len() > 1 {
            let (first, second) = (&valid[0], &valid[1]);
            for id in first.ids.iter().chain(&second.ids) {
                self.reject(Rejection::Equivocation, id, "two different signed batches with one number");
            }
            let evidence = Equivocation::new(
                first.batch.signed_header(),
                second.batch.signed_header(),
                &self.inner.config.coordinator_key,
            )
            .map_err(|e| DaError::Invalid { locator: first.ids[0].clone(), reason: e.to_string() })?;
            return Err(DaError::Equivocation(Box::new(evidence)));
        }
        Ok(match valid.pop() {
            Some(candidate) => Lookup::Found(Box::new(candidate)),
            None if shallow => Lookup::NotDeepEnough,
            None => Lookup::Missing,
        })
    }

    /// Batch `number` accepted at the follower's depth, linked to batch `number - 1`.
    async fn accepted(&self, number: u64) -> Result<Option<Candidate>, DaError> {
        if let Some(hit) = lock(&self.inner.accepted).get(&number) {
            return Ok(Some(hit.clone()));
        }
        let depth = self.inner.config.confirmations;
        let Lookup::Found(mut candidate) = self.single(number, depth).await? else { return Ok(None) };
        if number > 1 {
            let previous = lock(&self.inner.accepted).get(&(number - 1)).cloned();
            let previous = match previous {
                Some(previous) => previous,
                None => match self.single(number - 1, depth).await? {
                    Lookup::Found(previous) => *previous,
                    Lookup::NotDeepEnough => return Ok(None),
                    Lookup::Missing => {
                        for id in &candidate.ids {
                            self.reject(Rejection::BrokenLink, id, "a gap: the previous batch is missing");
                        }
                        return Ok(None);
                    }
                },
            };
            let links = candidate.batch.header.prev_hash == previous.hash
                && candidate.prev_tx.as_ref().is_some_and(|prev| previous.ids.contains(prev));
            if !links {
                for id in &candidate.ids {
                    self.reject(Rejection::BrokenLink, id, "Prev-Tx or Prev-Hash does not name the previous batch");
                }
                return Ok(None);
            }
        }
        candidate.ids.sort();
        lock(&self.inner.accepted).insert(number, (*candidate).clone());
        Ok(Some(*candidate))
    }

    /// A valid batch of the coordinator's numbered above `number + 1`, among its newest
    /// transactions of this bridge (one page), lowest number first; linked or not.
    async fn newest_signed_above(&self, number: u64, depth: u64) -> Result<Option<Candidate>, DaError> {
        let config = &self.inner.config;
        let leads = self
            .inner
            .gateway
            .newest_owned(
                &config.coordinator_address,
                &[("App-Name", config.app_name.clone()), ("Network", config.network.clone())],
            )
            .await?;
        let mut later: Vec<(u64, String)> = leads
            .into_iter()
            .filter_map(|lead| {
                let (_, value) = lead.tags.iter().find(|(name, _)| name == "Batch-Number")?;
                let filed: u64 = value.parse().ok()?;
                (filed > number + 1).then_some((filed, lead.id))
            })
            .collect();
        later.sort();
        later.dedup();
        // Each check downloads a batch: a few are enough for evidence (and these rows are the
        // coordinator's own, so only its key can make them junk).
        const CHECKS: usize = 8;
        for (filed, id) in later.into_iter().take(CHECKS) {
            let mut shallow = false;
            if let Some(candidate) = self.check(&id, filed, depth, &mut shallow).await? {
                return Ok(Some(candidate));
            }
        }
        Ok(None)
    }

    /// Of several valid batches filed under `number`, drops the superseded ones: built on a
    /// superseded batch, or failing the forced check from the cursor the canonical batch
    /// `number - 1` left (docs/PROTOCOL.md, "Takeover after censorship"). `false` if a check
    /// cannot tell yet (the gateway is behind) and more than one remains: decide later.
    async fn drop_superseded(&self, number: u64, depth: u64, valid: &mut Vec<Candidate>) -> Result<bool, DaError> {
        let Some(checker) = self.inner.forced.get() else { return Ok(true) };
        let Some(previous_to) = self.cursor_before(number, depth, checker).await? else { return Ok(false) };
        let mut undecided = false;
        let mut kept = Vec::with_capacity(valid.len());
        for candidate in valid.drain(..) {
            match checker.check(previous_to, &candidate.batch, &candidate.ids[0]).await? {
                ForcedVerdict::Censored(found) => {
                    lock(&self.inner.superseded).insert(candidate.hash);
                    for id in &candidate.ids {
                        self.reject(Rejection::Superseded, id, &found.describe(number));
                    }
                }
                ForcedVerdict::Wait(why) => {
                    tracing::debug!(number, %why, "a batch's forced section cannot be judged yet");
                    undecided = true;
                    kept.push(candidate);
                }
                ForcedVerdict::Kept => kept.push(candidate),
            }
        }
        *valid = kept;
        Ok(!undecided || valid.len() <= 1)
    }

    /// Drops the batches already found superseded, and those built on one (its descendants
    /// are the censoring coordinator's history, not the network's).
    fn drop_known_superseded(&self, valid: &mut Vec<Candidate>) {
        let mut dropped = Vec::new();
        {
            let superseded = lock(&self.inner.superseded);
            if superseded.is_empty() {
                return;
            }
            valid.retain(|c| {
                let keep = !superseded.contains(&c.hash) && !superseded.contains(&c.batch.header.prev_hash);
                if !keep {
                    dropped.push((c.hash, c.ids.clone()));
                }
                keep
            });
        }
        for (hash, ids) in dropped {
            lock(&self.inner.superseded).insert(hash);
            for id in ids {
                self.reject(Rejection::Superseded, &id, "a batch superseded after censorship, or built on one");
            }
        }
    }

    /// The forced cursor the canonical batch `number - 1` left (the start before batch 1);
    /// `None` if that batch cannot be read at `depth` yet.
    async fn cursor_before(
        &self,
        number: u64,
        depth: u64,
        checker: &ForcedChecker,
    ) -> Result<Option<bridge::forced::ForcedCursor>, DaError> {
        if number <= 1 {
            return Ok(Some(checker.rules().start()));
        }
        let cached =
            lock(&self.inner.accepted).get(&(number - 1)).map(|c| c.batch.header.forced.as_ref().map(|f| f.to));
        let to = match cached {
            Some(to) => to,
            None => {
                // Not accepted yet (a restart, or a publisher): the previous number's batches,
                // less the known superseded ones, must be one (no recursion down the chain: a
                // previous number still holding several is decided when it is followed).
                let (mut previous, _) = self.candidates(number - 1, depth).await?;
                self.drop_known_superseded(&mut previous);
                match previous.as_slice() {
                    [only] => only.batch.header.forced.as_ref().map(|f| f.to),
                    _ => return Ok(None),
                }
            }
        };
        // A batch without a forced commit on a forced network fails replay anyway.
        Ok(to)
    }

    /// Whether the batch `existing` this publisher found filed under `number` is a censoring
    /// batch that the one it is about to publish may replace: it fails the forced check from
    /// the cursor our own batch `number - 1` left.
    async fn supersedable(&self, number: u64, existing: &Candidate) -> Result<bool, DaError> {
        let Some(checker) = self.inner.forced.get() else { return Ok(false) };
        let Some(previous_to) = self.cursor_before(number, 0, checker).await? else { return Ok(false) };
        match checker.check(previous_to, &existing.batch, &existing.ids[0]).await? {
            ForcedVerdict::Censored(found) => {
                tracing::warn!(
                    number,
                    arweave_id = %existing.ids[0],
                    finding = %found.describe(number),
                    "the published batch with this number censors; publishing its replacement"
                );
                lock(&self.inner.superseded).insert(existing.hash);
                for id in &existing.ids {
                    self.reject(Rejection::Superseded, id, &found.describe(number));
                }
                Ok(true)
            }
            ForcedVerdict::Kept | ForcedVerdict::Wait(_) => Ok(false),
        }
    }

    /// Our own valid transactions for `number`, at any depth (pending included).
    async fn own_posting(&self, number: u64) -> Result<Option<Candidate>, DaError> {
        match self.single(number, 0).await? {
            Lookup::Found(candidate) => Ok(Some(*candidate)),
            _ => Ok(None),
        }
    }
}

#[async_trait]
impl DataAvailability for ArweaveDa {
    async fn publish(&self, batch: &SignedBatch) -> Result<Published, DaError> {
        let Some(publisher) = &self.inner.publisher else {
            return Err(DaError::Journal { path: String::new(), reason: "this ArweaveDa only follows".into() });
        };
        let _one_at_a_time = self.inner.publish_lock.lock().await;
        self.settle_journal().await?;
        let number = batch.header.number;
        let hash = batch.hash();

        // Already there (posted before a restart, or by an earlier call)?
        if let Some(existing) = self.own_posting(number).await? {
            if existing.hash == hash {
                lock(&publisher.posted).insert(number, (existing.ids[0].clone(), hash));
                return Ok(Published { number, locator: existing.ids[0].clone() });
            }
            if !self.supersedable(number, &existing).await? {
                return Err(DaError::Conflict { number, locator: existing.ids[0].clone() });
            }
        }
        let journal_path = publisher.journal.join(format!("batch-{number:020}.json"));
        if let Some(entry) = read_entry(&journal_path)? {
            if entry.batch_hash != hex::encode(hash) {
                return Err(DaError::Conflict { number, locator: entry.tx.id.clone() });
            }
            // Posted, but not indexed yet: settle_journal re-posted it if the gateway lost it.
            return Ok(Published { number, locator: entry.tx.id });
        }

        let mut tags = vec![
            Tag::new("App-Name", &self.inner.config.app_name),
            Tag::new("App-Version", APP_VERSION),
            Tag::new("Network", &self.inner.config.network),
            Tag::new("Batch-Number", number.to_string()),
            Tag::new("Prev-Hash", hex::encode(batch.header.prev_hash)),
            Tag::new("State-Root", hex::encode(batch.header.post_state_root)),
            Tag::new("Codec", CODEC_NAME),
            Tag::new("Content-Type", CONTENT_TYPE),
        ];
        if number > 1 {
            let previous =
                self.own_posting(number - 1).await?.ok_or(DaError::OutOfOrder { number, previous: number - 1 })?;
            if previous.hash != batch.header.prev_hash {
                return Err(DaError::Invalid {
                    locator: previous.ids[0].clone(),
                    reason: format!("batch {number} does not follow the published batch {}", number - 1),
                });
            }
            tags.push(Tag::new("Prev-Tx", &previous.ids[0]));
        }
        let data = encode_batch(batch);
        let gateway = &self.inner.gateway;
        let anchor = gateway.tx_anchor().await?;
        let reward =
            gateway.price_winston_bounded(data.len() as u64, self.inner.config.max_price_winston_per_mib).await?;
        let mut tx = Transaction::with_data(data, tags, anchor, reward, publisher.wallet.owner().to_vec());
        tx.sign(&publisher.wallet).map_err(GatewayError::from)?;
        let entry = JournalEntry { number, batch_hash: hex::encode(hash), tx: tx.to_json(true) };
        // Serialising and fsyncing up to tens of megabytes: off the async workers.
        let journal_dir = publisher.journal.clone();
        tokio::task::spawn_blocking(move || write_entry(&journal_dir, &journal_path, &entry))
            .await
            .map_err(|e| DaError::Worker(e.to_string()))??;
        gateway.upload(&tx).await?;
        let mut posted = lock(&publisher.posted);
        posted.insert(number, (tx.id_b64(), hash));
        // Only the latest is ever needed as a `Prev-Tx`.
        posted.retain(|&n, _| n >= number);
        drop(posted);
        tracing::info!(number, arweave_id = %tx.id_b64(), bytes = tx.data_size, "published batch to Arweave");
        Ok(Published { number, locator: tx.id_b64() })
    }

    async fn publish_snapshot(&self, number: u64, root: [u8; 32], bytes: &[u8]) -> Result<Option<String>, DaError> {
        self.post_snapshot(number, root, bytes).await.map(Some)
    }

    async fn snapshots_of(&self, number: u64) -> Result<Vec<(String, Vec<u8>)>, DaError> {
        self.find_snapshots(number).await
    }

    async fn fetch(&self, number: u64) -> Result<Option<FetchedBatch>, DaError> {
        Ok(self.accepted(number).await?.map(|c| FetchedBatch {
            locator: c.ids[0].clone(),
            batch: c.batch,
            size: c.size,
        }))
    }

    /// Batch `number + 1` if the coordinator's wallet holds a valid one at the follower's depth,
    /// else the lowest-numbered valid batch among its newest postings; not linked to anything
    /// (`fetch` and `latest` accept a batch only once its predecessor is there).
    async fn signed_after(&self, number: u64) -> Result<Option<FetchedBatch>, DaError> {
        if let Some((asked, found)) = lock(&self.inner.gap_evidence).as_ref()
            && *asked == number
        {
            return Ok(Some(found.clone()));
        }
        let depth = self.inner.config.confirmations;
        // Two valid batches numbered `number + 1` would be an equivocation, which `fetch` reports
        // once the gap closes; either header is evidence of the gap.
        let next = self.candidates(number + 1, depth).await?.0.into_iter().next();
        let found = match next {
            Some(candidate) => Some(candidate),
            None => self.newest_signed_above(number, depth).await?,
        };
        let Some(found) = found else { return Ok(None) };
        let fetched = FetchedBatch { locator: found.ids[0].clone(), batch: found.batch, size: found.size };
        *lock(&self.inner.gap_evidence) = Some((number, fetched.clone()));
        Ok(Some(fetched))
    }

    async fn equivocation_through(&self, through: u64) -> Result<Option<Equivocation>, DaError> {
        self.late_equivocation(through).await
    }

    async fn confirmations(&self, number: u64) -> Result<Option<u64>, DaError> {
        let Some(posting) = self.own_posting(number).await? else { return Ok(None) };
        let mut best = 0;
        for id in &posting.ids {
            if let TxStatus::Confirmed { confirmations, .. } = self.inner.gateway.status(id).await? {
                best = best.max(confirmations);
            }
        }
        Ok(Some(best))
    }

    fn supersede(&self, number: u64, hash: [u8; 32]) {
        lock(&self.inner.superseded).insert(hash);
        let mut accepted = lock(&self.inner.accepted);
        if accepted.get(&number).is_some_and(|c| c.hash == hash) {
            // It and everything accepted after it: they were built on it.
            accepted.retain(|&n, _| n < number);
            let mut latest = lock(&self.inner.latest);
            *latest = (*latest).min(number - 1);
        }
        drop(accepted);
        *lock(&self.inner.gap_evidence) = None;
    }

    async fn latest(&self) -> Result<u64, DaError> {
        let mut n = *lock(&self.inner.latest);
        while self.accepted(n + 1).await?.is_some() {
            n += 1;
        }
        let mut latest = lock(&self.inner.latest);
        *latest = (*latest).max(n);
        Ok(*latest)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn journal_error(path: &Path, e: impl std::fmt::Display) -> DaError {
    DaError::Journal { path: path.display().to_string(), reason: e.to_string() }
}

fn read_entry(path: &Path) -> Result<Option<JournalEntry>, DaError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| journal_error(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(journal_error(path, e)),
    }
}

fn read_journal(dir: &Path) -> Result<Vec<(PathBuf, JournalEntry)>, DaError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| journal_error(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let mut entries = Vec::with_capacity(paths.len());
    for path in paths {
        if let Some(entry) = read_entry(&path)? {
            entries.push((path, entry));
        }
    }
    Ok(entries)
}

/// Writes the entry atomically: temporary file, fsync, rename, fsync the directory.
fn write_entry(dir: &Path, path: &Path, entry: &JournalEntry) -> Result<(), DaError> {
    use std::io::Write;
    let bytes = serde_json::to_vec(entry).map_err(|e| journal_error(path, e))?;
    let temp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temp).map_err(|e| journal_error(&temp, e))?;
    file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(|e| journal_error(&temp, e))?;
    std::fs::rename(&temp, path).map_err(|e| journal_error(path, e))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), DaError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| journal_error(dir, e))
}

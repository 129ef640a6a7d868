//! Snapshots of the state at a sealed batch: every committed entry, the per-asset totals the tree
//! does not hold, and the chain head. A role saves them so that a restart replays only the
//! batches after the newest one, and a new confirmer can start from one instead of genesis.
//!
//! A snapshot is never trusted on its own: [`State::restore`] rebuilds the tree from its entries
//! and accepts it only if the root equals the `post_state_root` of the batch header it names,
//! signed by the coordinator. What the tree does not commit to (each asset's `deposited` and
//! `withdrawn` totals) is checked for conservation against the balances, which it does commit to.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use borsh::{BorshDeserialize, BorshSerialize};

use super::{AccountEntry, BtcCounters, ChainHead, State, StateKey, Supply};
use crate::amount::Amount;
use crate::asset::AssetId;
use crate::batch::SignedHeader;
use crate::btc_payout::PayoutPlan;
use crate::btc_vault::{QueuedWithdrawal, VaultUtxo};
use crate::codec::{from_bytes, to_bytes};
use crate::commitment::Commitment;
use crate::network::NetworkParams;
use crate::rotation::KeyEpoch;

/// The version of the snapshot layout; a reader refuses any other. 2: a `VaultUtxo` carries
/// the height of the block it came from; 3: the entries include each asset's `DepositHeight`;
/// 4: an account's nonce and balances are one entry (state commitment 2).
pub const SNAPSHOT_VERSION: u16 = 4;
/// The first bytes of an encoded snapshot.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"BRSS";
/// The largest decompressed snapshot accepted (4 GiB): 10^7 accounts with two assets each are
/// under 1 GB; a hostile DA copy cannot make a reader allocate more than this.
pub const MAX_SNAPSHOT_BYTES: u64 = 4 << 30;
const ZSTD_LEVEL: i32 = 1;
/// The largest zstd window a reader accepts (128 MiB); level 1 uses far less.
const ZSTD_MAX_WINDOW_LOG: u32 = 27;

/// An asset's totals that the tree does not commit to (its liabilities are the sum of the
/// balances, which it does).
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct SupplyTotals {
    pub asset: AssetId,
    pub deposited: Amount,
    pub withdrawn: Amount,
}

/// The state as of the end of batch `number`.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Snapshot {
    pub version: u16,
    /// The network's genesis hash.
    pub network: [u8; 32],
    /// The last batch taken in.
    pub number: u64,
    /// That batch's header hash.
    pub header_hash: [u8; 32],
    /// That batch's timestamp.
    pub timestamp: u64,
    /// That batch's `post_state_root`, which `entries` rebuild.
    pub state_root: [u8; 32],
    pub supplies: Vec<SupplyTotals>,
    /// Every entry of the state tree, in key order, with its value bytes (docs/PROTOCOL.md).
    pub entries: Vec<(StateKey, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("a snapshot is taken between batches only: {0} transactions are applied since the last one")]
    OpenBatch(u32),
    #[error("there is no batch yet to take a snapshot at")]
    Genesis,
    #[error("the snapshot does not decode: {0}")]
    Decode(String),
    #[error("snapshot version {0} is not supported (this build reads version {SNAPSHOT_VERSION})")]
    UnsupportedVersion(u16),
    #[error("the snapshot is for another network (genesis {got}, this node's is {expected})")]
    WrongNetwork { expected: String, got: String },
    #[error("the snapshot is at batch {snapshot} but the header given to check it is batch {header}")]
    WrongHeader { snapshot: u64, header: u64 },
    #[error("the snapshot names header {snapshot} for batch {number}, but the signed header there is {header}")]
    HeaderMismatch { number: u64, snapshot: String, header: String },
    #[error("the header of batch {0} given to check the snapshot is not signed by the coordinator")]
    BadSignature(u64),
    #[error("the snapshot of batch {number} rebuilds state root {computed}, but the signed header says {header}")]
    RootMismatch { number: u64, header: String, computed: String },
    #[error("the snapshot's entry {key} is wrong: {reason}")]
    BadEntry { key: String, reason: String },
    #[error("the snapshot's totals for {asset} do not add up: {reason}")]
    BadSupply { asset: String, reason: String },
    #[error("the state tree failed while rebuilding the snapshot: {0}")]
    Commitment(String),
}

impl Snapshot {
    /// `SNAPSHOT_MAGIC ‖ version (u16 LE) ‖ zstd(borsh(snapshot))`.
    pub fn encode(&self) -> Vec<u8> {
        let raw = to_bytes(self);
        let mut out = Vec::with_capacity(raw.len() / 2 + 8);
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        #[allow(clippy::expect_used)]
        let compressed = zstd::bulk::compress(&raw, ZSTD_LEVEL).expect("zstd compresses in memory infallibly");
        out.extend_from_slice(&compressed);
        out
    }

    /// Decodes an encoded snapshot strictly (bounded, canonical). It says nothing about whether
    /// the snapshot is true: that is [`State::restore`]'s check.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        let decode = |what: &str| SnapshotError::Decode(what.to_owned());
        if bytes.len() < 6 || bytes[..4] != SNAPSHOT_MAGIC {
            return Err(decode("it does not start with the snapshot magic bytes"));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let mut decoder =
            zstd::stream::read::Decoder::new(&bytes[6..]).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        decoder.window_log_max(ZSTD_MAX_WINDOW_LOG).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        let mut raw = Vec::new();
        decoder.take(MAX_SNAPSHOT_BYTES + 1).read_to_end(&mut raw).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        if raw.len() as u64 > MAX_SNAPSHOT_BYTES {
            return Err(decode("it decompresses to more than the largest snapshot accepted"));
        }
        let snapshot: Snapshot = from_bytes(&raw).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(snapshot.version));
        }
        Ok(snapshot)
    }
}

impl State {
    /// The state as of the last batch taken in. Fails between a batch's transactions (their
    /// writes are not in the tree yet) and before the first batch.
    pub fn snapshot(&self) -> Result<Snapshot, SnapshotError> {
        if self.open_txs != 0 || !self.dirty.is_empty() {
            return Err(SnapshotError::OpenBatch(self.open_txs));
        }
        let Some(number) = self.head.next_number.checked_sub(1).filter(|n| *n > 0) else {
            return Err(SnapshotError::Genesis);
        };
        // Every entry in the maps is in the tree once the batch is closed; the counters are the
        // one entry the tree lacks until first written (docs/PROTOCOL.md).
        let mut entries: Vec<(StateKey, Vec<u8>)> = Vec::with_capacity(self.commitment.len());
        entries.extend(self.accounts.iter().map(|(a, entry)| (StateKey::Account(*a), to_bytes(entry))));
        entries.extend(self.credited.iter().map(|r| (StateKey::Deposit(*r), vec![1])));
        entries.extend(self.vault_utxos.iter().map(|(o, u)| (StateKey::VaultUtxo(*o), to_bytes(u))));
        entries.extend(self.btc_queue.iter().map(|(q, w)| (StateKey::BtcQueued(*q), to_bytes(w))));
        entries.extend(self.btc_plans.iter().map(|(p, plan)| (StateKey::BtcPlan(*p), to_bytes(plan))));
        entries.extend(self.key_epochs.iter().map(|(e, key)| (StateKey::GroupKey(*e), to_bytes(key))));
        entries
            .extend(self.deposit_heights.iter().map(|(a, h)| (StateKey::DepositHeight(*a), h.to_le_bytes().to_vec())));
        if self.commitment.contains(StateKey::BtcCounters.path()) {
            entries.push((StateKey::BtcCounters, to_bytes(&self.btc_counters)));
        }
        entries.sort_unstable_by_key(|e| e.0);
        assert_eq!(entries.len(), self.commitment.len(), "a closed batch's maps hold exactly the tree's entries");
        let supplies = self
            .supply
            .iter()
            .map(|(asset, s)| SupplyTotals { asset: *asset, deposited: s.deposited, withdrawn: s.withdrawn })
            .collect();
        Ok(Snapshot {
            version: SNAPSHOT_VERSION,
            network: self.genesis,
            number,
            header_hash: self.head.last_hash,
            timestamp: self.head.last_timestamp,
            state_root: self.state_root(),
            supplies,
            entries,
        })
    }

    /// Rebuilds the state from `snapshot` and accepts it only if it is the state `header` (batch
    /// `snapshot.number`, signed by the network's coordinator) commits to. On `Err` the snapshot
    /// must not be used: fall back to an older one, or to genesis. The snapshot is consumed: its
    /// values move into the tree, and its entries are freed before the tree is built, so a start
    /// from a snapshot never holds the ledger three times over.
    pub fn restore(params: NetworkParams, snapshot: Snapshot, header: &SignedHeader) -> Result<State, SnapshotError> {
        let mut state = State::genesis(params);
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(snapshot.version));
        }
        if snapshot.network != state.genesis {
            return Err(SnapshotError::WrongNetwork {
                expected: hex::encode(state.genesis),
                got: hex::encode(snapshot.network),
            });
        }
        let number = snapshot.number;
        if header.header.number != number || number == 0 {
            return Err(SnapshotError::WrongHeader { snapshot: number, header: header.header.number });
        }
        header.verify(&state.params.coordinator_key).map_err(|_| SnapshotError::BadSignature(number))?;
        let header_hash = header.header.hash();
        if header_hash != snapshot.header_hash
            || header.header.timestamp != snapshot.timestamp
            || header.header.post_state_root != snapshot.state_root
        {
            return Err(SnapshotError::HeaderMismatch {
                number,
                snapshot: hex::encode(snapshot.header_hash),
                header: hex::encode(header_hash),
            });
        }
        let mut leaves = Vec::with_capacity(snapshot.entries.len());
        let mut previous: Option<StateKey> = None;
        for (key, value) in snapshot.entries {
            if previous.is_some_and(|p| p >= key) {
                return Err(bad_entry(&key, "entries are not in strictly increasing key order"));
            }
            previous = Some(key);
            state.put_entry(&key, &value)?;
            leaves.push((key.path(), value));
        }
        state.restore_supplies(&snapshot.supplies)?;
        // One bottom-up pass over the sorted keys: every node is hashed once.
        let commitment = Commitment::from_entries(leaves).map_err(|e| SnapshotError::Commitment(e.to_string()))?;
        let computed = commitment.root_or_empty();
        #[cfg(feature = "planted-bugs")]
        let computed = if crate::planted::active(crate::planted::PlantedBug::SnapshotRootUnchecked) {
            header.header.post_state_root
        } else {
            computed
        };
        if computed != header.header.post_state_root {
            return Err(SnapshotError::RootMismatch {
                number,
                header: hex::encode(header.header.post_state_root),
                computed: hex::encode(computed),
            });
        }
        state.commitment = commitment;
        state.head = ChainHead { next_number: number + 1, last_hash: header_hash, last_timestamp: snapshot.timestamp };
        state.assert_conserved();
        Ok(state)
    }

    /// Puts one snapshot entry into the maps, refusing a value that is not canonical.
    fn put_entry(&mut self, key: &StateKey, value: &[u8]) -> Result<(), SnapshotError> {
        let fail = |reason: String| bad_entry(key, &reason);
        match key {
            StateKey::Account(account) => {
                let entry = AccountEntry::decode(value).map_err(|e| fail(e.to_string()))?;
                if entry.balances.iter().any(|(asset, _)| self.params.asset(asset).is_none()) {
                    return Err(fail("the network has no such asset".into()));
                }
                self.accounts.insert(*account, entry);
            }
            StateKey::Deposit(l1_ref) => {
                if value != [1] {
                    return Err(fail("a credited deposit's value is the byte 1".into()));
                }
                self.credited.insert(*l1_ref);
            }
            StateKey::VaultUtxo(outpoint) => {
                let utxo: VaultUtxo = from_bytes(value).map_err(|e| fail(e.to_string()))?;
                if utxo.outpoint != *outpoint {
                    return Err(fail("the output is filed under another outpoint".into()));
                }
                self.vault_utxos.insert(*outpoint, utxo);
            }
            StateKey::BtcQueued(seq) => {
                let queued: QueuedWithdrawal = from_bytes(value).map_err(|e| fail(e.to_string()))?;
                self.btc_queue.insert(*seq, queued);
            }
            StateKey::BtcPlan(id) => {
                let plan: PayoutPlan = from_bytes(value).map_err(|e| fail(e.to_string()))?;
                if plan.id != *id {
                    return Err(fail("the plan is filed under another id".into()));
                }
                self.btc_plans.insert(*id, plan);
            }
            StateKey::BtcCounters => {
                self.btc_counters = from_bytes::<BtcCounters>(value).map_err(|e| fail(e.to_string()))?;
            }
            StateKey::GroupKey(epoch) => {
                if *epoch == 0 {
                    return Err(fail("epoch 0 is the network's own key, never an entry".into()));
                }
                self.key_epochs.insert(*epoch, from_bytes::<KeyEpoch>(value).map_err(|e| fail(e.to_string()))?);
            }
            StateKey::DepositHeight(asset) => {
                let bytes = <[u8; 8]>::try_from(value).map_err(|_| fail("a deposit height is 8 bytes".into()))?;
                if self.params.asset(asset).is_none() {
                    return Err(fail("the network has no such asset".into()));
                }
                self.deposit_heights.insert(*asset, u64::from_le_bytes(bytes));
            }
        }
        Ok(())
    }

    /// Liabilities from the balances, the other totals from the snapshot; conservation must hold
    /// for every asset, and every asset with a balance must have totals.
    fn restore_supplies(&mut self, totals: &[SupplyTotals]) -> Result<(), SnapshotError> {
        let mut liabilities: BTreeMap<AssetId, Amount> = BTreeMap::new();
        for (asset, amount) in self.accounts.values().flat_map(|entry| &entry.balances) {
            let sum = liabilities.entry(*asset).or_default();
            *sum = sum.checked_add(*amount).ok_or_else(|| bad_supply(asset, "the balances overflow"))?;
        }
        let mut seen = BTreeSet::new();
        for t in totals {
            if !seen.insert(t.asset) {
                return Err(bad_supply(&t.asset, "listed twice"));
            }
            let owed = liabilities.get(&t.asset).copied().unwrap_or_default();
            if owed.checked_add(t.withdrawn) != Some(t.deposited) {
                return Err(bad_supply(
                    &t.asset,
                    &format!("balances {owed:?} plus withdrawn {:?} are not deposited {:?}", t.withdrawn, t.deposited),
                ));
            }
            self.supply.insert(t.asset, Supply { deposited: t.deposited, withdrawn: t.withdrawn, liabilities: owed });
        }
        if let Some(asset) = liabilities.keys().find(|a| !seen.contains(*a)) {
            return Err(bad_supply(asset, "balances are held but no totals are given"));
        }
        Ok(())
    }
}

fn bad_entry(key: &StateKey, reason: &str) -> SnapshotError {
    SnapshotError::BadEntry { key: format!("{key:?}"), reason: reason.to_owned() }
}

fn bad_supply(asset: &AssetId, reason: &str) -> SnapshotError {
    SnapshotError::BadSupply { asset: asset.to_string(), reason: reason.to_owned() }
}

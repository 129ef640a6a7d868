//! The ledger: balances, nonces, credited deposits and per-asset supply, with the authenticated
//! commitment over them and an undo journal so a failed batch replay leaves nothing behind.

use std::collections::{BTreeMap, BTreeSet};

use borsh::{BorshDeserialize, BorshSerialize};
use rayon::prelude::*;

use crate::address::Address;
use crate::amount::Amount;
use crate::asset::AssetId;
use crate::btc_payout::PayoutPlan;
use crate::btc_vault::{OutPoint, QueuedWithdrawal, VaultUtxo};
use crate::codec::to_bytes;
use crate::commitment::{Commitment, CommitmentError, KeyHash, PendingRoot, StateProof, Value, key_hash};
use crate::eip712::Domain;
use crate::network::NetworkParams;
use crate::rotation::KeyEpoch;
use crate::tx::{L1Ref, TxPlace};

pub mod account;
pub mod snapshot;

pub use account::{AccountEntry, AccountEntryError};

/// The key of a committed state entry; its borsh bytes are the tree key (docs/PROTOCOL.md).
/// Discriminants 0 and 1 were state commitment 1's per-entry nonce and balance; they are never
/// used again, so no key of one commitment can be read as the other's. Keys order by
/// discriminant (as their borsh bytes do), so `Account` sorts last.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, BorshSerialize, BorshDeserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum StateKey {
    /// Value: borsh([`AccountEntry`]): the account's nonce and every balance it holds.
    Account(Address) = 9,
    /// Value: the single byte `1`: this L1 deposit has been credited.
    Deposit(L1Ref) = 2,
    /// Value: borsh(`VaultUtxo`): an output the Bitcoin vault holds and has not yet planned to spend.
    VaultUtxo(OutPoint) = 3,
    /// Value: borsh(`QueuedWithdrawal`): a Bitcoin withdrawal waiting for a payout plan.
    BtcQueued(u64) = 4,
    /// Value: borsh(`PayoutPlan`): a payout planned and not yet confirmed on Bitcoin.
    BtcPlan(u64) = 5,
    /// Value: borsh(`BtcCounters`).
    BtcCounters = 6,
    /// Value: borsh(`KeyEpoch`): the group key of this epoch (1 and up), from a `KeyRotation`.
    GroupKey(u64) = 7,
    /// Value: the highest L1 block a credited deposit of this asset names, `u64` little-endian.
    DepositHeight(AssetId) = 8,
}

impl StateKey {
    /// The key's path in the tree, `SHA256(borsh(key))`, with the key's bytes on the stack
    /// (every key is shorter than the buffer; an account's, nearly every write, is 21 bytes).
    pub fn path(&self) -> KeyHash {
        const KEY_BUFFER: usize = 64;
        let mut buffer = [0u8; KEY_BUFFER];
        let mut rest = &mut buffer[..];
        match self.serialize(&mut rest) {
            Ok(()) => {
                let len = KEY_BUFFER - rest.len();
                key_hash(&buffer[..len])
            }
            Err(_) => key_hash(&to_bytes(self)),
        }
    }
}

/// The sequence numbers of the Bitcoin queue and of payout plans; both start at 1.
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct BtcCounters {
    pub next_queued: u64,
    pub next_plan: u64,
}

impl Default for BtcCounters {
    fn default() -> Self {
        BtcCounters { next_queued: 1, next_plan: 1 }
    }
}

/// Per-asset totals. Conservation: `liabilities + withdrawn == deposited`, asserted after
/// every write.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Supply {
    /// Everything ever credited from L1.
    pub deposited: Amount,
    /// Everything ever debited for payout on L1.
    pub withdrawn: Amount,
    /// What the ledger owes its users now: the sum of all balances, fees included.
    pub liabilities: Amount,
}

/// The end of the chain of batches this state has taken in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChainHead {
    /// The number the next batch must carry; batch numbers start at 1.
    pub next_number: u64,
    /// The previous batch's header hash, or the genesis hash before the first batch.
    pub last_hash: [u8; 32],
    pub last_timestamp: u64,
}

#[derive(Clone, Debug)]
enum Undo {
    Balance(Address, AssetId, Option<Amount>),
    Nonce(Address, u64),
    Credited(L1Ref),
    Supply(AssetId, Option<Supply>),
    Utxo(OutPoint, Option<VaultUtxo>),
    Queued(u64, Option<QueuedWithdrawal>),
    Plan(u64, Option<PayoutPlan>),
    Counters(BtcCounters),
    OpenTxs(u32),
    KeyEpoch(u64, Option<KeyEpoch>),
    DepositHeight(AssetId, Option<u64>),
    /// The key was not dirty before: a rollback takes it back out, so that a refused batch
    /// leaves the dirty set as it found it (a snapshot needs it empty between batches).
    Dirty(StateKey),
}

/// One transaction's effects, computed in full before any of them is written.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub balances: Vec<(Address, AssetId, Amount)>,
    pub nonce: Option<(Address, u64)>,
    pub credited: Option<L1Ref>,
    /// The asset, the amount, and the L1 block the deposit names.
    pub deposited: Option<(AssetId, Amount, u64)>,
    pub withdrawn: Option<(AssetId, Amount)>,
    /// Outputs the vault now holds (a Bitcoin deposit, a confirmed payout's change).
    pub utxos_added: Vec<VaultUtxo>,
    /// Outputs a new payout plan spends: no other plan may choose them.
    pub utxos_planned: Vec<OutPoint>,
    pub queued: Option<QueuedWithdrawal>,
    pub dequeued: Vec<u64>,
    pub plan_added: Option<PayoutPlan>,
    pub plan_confirmed: Option<u64>,
    /// A key rotation's new epoch (see [`crate::rotation`]).
    pub key_epoch: Option<(u64, KeyEpoch)>,
}

#[derive(Debug)]
pub struct State {
    params: NetworkParams,
    domain: Domain,
    genesis: [u8; 32],
    /// Each account's nonce and balances, as its leaf holds them: one lookup reads or writes
    /// both (a transfer's sender needs both, and the seal encodes both).
    accounts: BTreeMap<Address, AccountEntry>,
    credited: BTreeSet<L1Ref>,
    supply: BTreeMap<AssetId, Supply>,
    vault_utxos: BTreeMap<OutPoint, VaultUtxo>,
    btc_queue: BTreeMap<u64, QueuedWithdrawal>,
    btc_plans: BTreeMap<u64, PayoutPlan>,
    btc_counters: BtcCounters,
    /// The group keys after the genesis key, by epoch (see [`crate::rotation`]).
    key_epochs: BTreeMap<u64, KeyEpoch>,
    /// Per asset, the highest L1 block a credited deposit names (see [`State::deposit_height`]).
    deposit_heights: BTreeMap<AssetId, u64>,
    /// Entries written since the commitment was last updated.
    dirty: BTreeSet<StateKey>,
    journal: Option<Vec<Undo>>,
    commitment: Commitment,
    head: ChainHead,
    /// Transactions applied since the head last moved: the position of the next one in the
    /// open batch, part of a system transaction's id.
    open_txs: u32,
}

impl State {
    /// The state at genesis: empty, with the chain head at the genesis hash.
    pub fn genesis(params: NetworkParams) -> Self {
        let genesis = params.genesis_hash();
        State {
            domain: Domain::new(&params),
            params,
            genesis,
            accounts: BTreeMap::new(),
            credited: BTreeSet::new(),
            supply: BTreeMap::new(),
            vault_utxos: BTreeMap::new(),
            btc_queue: BTreeMap::new(),
            btc_plans: BTreeMap::new(),
            btc_counters: BtcCounters::default(),
            key_epochs: BTreeMap::new(),
            deposit_heights: BTreeMap::new(),
            dirty: BTreeSet::new(),
            journal: None,
            commitment: Commitment::default(),
            head: ChainHead { next_number: 1, last_hash: genesis, last_timestamp: 0 },
            open_txs: 0,
        }
    }

    pub fn params(&self) -> &NetworkParams {
        &self.params
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    pub fn genesis_hash(&self) -> [u8; 32] {
        self.genesis
    }

    /// Where the next transaction applied goes: the open batch (`head().next_number`) and its
    /// position in it.
    pub fn next_place(&self) -> TxPlace {
        TxPlace { network: self.genesis, batch: self.head.next_number, index: self.open_txs }
    }

    pub fn head(&self) -> ChainHead {
        self.head
    }

    pub fn balance(&self, account: &Address, asset: &AssetId) -> Amount {
        self.accounts.get(account).map_or(Amount::ZERO, |entry| entry.balance(asset))
    }

    /// Every asset `account` has ever held, in asset order.
    pub fn balances_of(&self, account: &Address) -> impl Iterator<Item = (AssetId, Amount)> + '_ {
        self.accounts.get(account).into_iter().flat_map(|entry| entry.balances.iter().copied())
    }

    /// The nonce the account's next transaction must carry.
    pub fn nonce(&self, account: &Address) -> u64 {
        self.accounts.get(account).map_or(0, |entry| entry.nonce)
    }

    pub fn is_credited(&self, l1_ref: &L1Ref) -> bool {
        self.credited.contains(l1_ref)
    }

    pub fn supply(&self, asset: &AssetId) -> Supply {
        self.supply.get(asset).copied().unwrap_or_default()
    }

    pub fn supplies(&self) -> impl Iterator<Item = (&AssetId, &Supply)> {
        self.supply.iter()
    }

    /// The highest L1 block a credited deposit of `asset` names (0 before the first). A view of
    /// the vault at an earlier block may lack deposits this ledger counts, so the solvency
    /// watch does not judge the asset against it: "not seen yet" is not "absent". Committed
    /// (`StateKey::DepositHeight`), so a snapshot cannot lie about it.
    pub fn deposit_height(&self, asset: &AssetId) -> u64 {
        self.deposit_heights.get(asset).copied().unwrap_or(0)
    }

    /// The outputs the Bitcoin vault holds and has not planned to spend, in outpoint order.
    pub fn vault_utxos(&self) -> impl Iterator<Item = &VaultUtxo> {
        self.vault_utxos.values()
    }

    /// Bitcoin withdrawals waiting for a payout plan, oldest first, with their sequence numbers.
    pub fn btc_queue(&self) -> impl Iterator<Item = (u64, &QueuedWithdrawal)> {
        self.btc_queue.iter().map(|(seq, q)| (*seq, q))
    }

    /// Payout plans not yet confirmed on Bitcoin, oldest first.
    pub fn btc_plans(&self) -> impl Iterator<Item = &PayoutPlan> {
        self.btc_plans.values()
    }

    pub fn btc_plan(&self, id: u64) -> Option<&PayoutPlan> {
        self.btc_plans.get(&id)
    }

    pub fn btc_counters(&self) -> BtcCounters {
        self.btc_counters
    }

    /// The group keys recorded by key rotations (epoch 1 and up), oldest first; epoch 0 is the
    /// network's own. [`crate::rotation::key_at`] says which one is in force at a batch.
    pub fn key_epochs(&self) -> impl DoubleEndedIterator<Item = (u64, &KeyEpoch)> {
        self.key_epochs.iter().map(|(epoch, key)| (*epoch, key))
    }

    /// What the Bitcoin vault owns on chain by the ledger's account: unplanned outputs plus the
    /// inputs of pending plans (still unspent until a plan confirms).
    pub fn btc_vault_holdings_sat(&self) -> u64 {
        let unplanned: u64 = self.vault_utxos.values().map(|u| u.amount_sat).sum();
        let planned: u64 = self.btc_plans.values().map(|p| p.total_in_sat()).sum();
        unplanned + planned
    }

    /// The committed root: the `post_state_root` of the last batch taken in.
    pub fn state_root(&self) -> [u8; 32] {
        self.commitment.root_or_empty()
    }

    /// A proof for one entry against [`State::state_root`]. Entries written since the last
    /// batch are not yet in the root; the proof shows what the root commits to.
    pub fn prove(&self, key: &StateKey) -> Result<StateProof, CommitmentError> {
        self.commitment.prove(&to_bytes(key))
    }

    /// Every entry of the state tree as of the last batch, in key order: what a replayer's tree
    /// must hold for the same `post_state_root`. An entry in memory is listed only if the tree
    /// holds it (`BtcCounters` is absent until first written, see docs/PROTOCOL.md).
    ///
    /// # Panics
    /// If transactions were applied since the last batch (their writes are not in the tree yet).
    pub fn committed_entries(&self) -> Vec<(StateKey, Vec<u8>)> {
        assert!(self.dirty.is_empty(), "entries are listed between batches only");
        let keys = self
            .accounts
            .keys()
            .map(|a| StateKey::Account(*a))
            .chain(self.credited.iter().map(|r| StateKey::Deposit(*r)))
            .chain(self.vault_utxos.keys().map(|o| StateKey::VaultUtxo(*o)))
            .chain(self.btc_queue.keys().map(|q| StateKey::BtcQueued(*q)))
            .chain(self.btc_plans.keys().map(|p| StateKey::BtcPlan(*p)))
            .chain(std::iter::once(StateKey::BtcCounters))
            .chain(self.key_epochs.keys().map(|e| StateKey::GroupKey(*e)))
            .chain(self.deposit_heights.keys().map(|a| StateKey::DepositHeight(*a)));
        let mut entries: Vec<(StateKey, Vec<u8>)> = keys
            .filter(|key| self.commitment.contains(key.path()))
            .filter_map(|key| self.entry_value(&key).map(|value| (key, value.as_bytes().to_vec())))
            .collect();
        entries.sort_by_key(|a| a.0);
        entries
    }

    /// Writes one transaction's effects. They were checked in full by the caller, so nothing
    /// here can fail for a reason of input; only a broken invariant stops it.
    pub(crate) fn write(&mut self, changes: Changes) {
        for (account, asset, amount) in changes.balances {
            let old = self.accounts.entry(account).or_default().set_balance(asset, amount);
            self.record(Undo::Balance(account, asset, old));
            self.mark_dirty(StateKey::Account(account));
            self.adjust_liabilities(asset, old.unwrap_or_default(), amount);
        }
        if let Some((account, nonce)) = changes.nonce {
            let old = std::mem::replace(&mut self.accounts.entry(account).or_default().nonce, nonce);
            assert_eq!(old + 1, nonce, "nonces advance by one");
            self.record(Undo::Nonce(account, old));
            self.mark_dirty(StateKey::Account(account));
        }
        if let Some(l1_ref) = changes.credited {
            assert!(self.credited.insert(l1_ref), "a deposit was credited twice");
            self.record(Undo::Credited(l1_ref));
            self.mark_dirty(StateKey::Deposit(l1_ref));
        }
        if let Some((asset, amount, height)) = changes.deposited {
            self.update_supply(asset, |s| {
                s.deposited = s.deposited.checked_add(amount).expect_invariant("deposited overflow")
            });
            let old = self.deposit_heights.get(&asset).copied();
            if old.is_none_or(|old| height > old) {
                self.deposit_heights.insert(asset, height);
                self.record(Undo::DepositHeight(asset, old));
                self.mark_dirty(StateKey::DepositHeight(asset));
            }
        }
        if let Some((asset, amount)) = changes.withdrawn {
            self.update_supply(asset, |s| {
                s.withdrawn = s.withdrawn.checked_add(amount).expect_invariant("withdrawn overflow")
            });
        }
        self.write_btc(changes.utxos_added, changes.utxos_planned, changes.queued, changes.dequeued);
        if let Some(plan) = changes.plan_added {
            let id = plan.id;
            assert_eq!(id, self.btc_counters.next_plan, "payout plans are numbered in order");
            let mut counters = self.btc_counters;
            counters.next_plan += 1;
            self.set_counters(counters);
            let old = self.btc_plans.insert(id, plan);
            assert!(old.is_none(), "payout plan {id} was made twice");
            self.record(Undo::Plan(id, old));
            self.mark_dirty(StateKey::BtcPlan(id));
        }
        if let Some(id) = changes.plan_confirmed {
            let old = self.btc_plans.remove(&id);
            assert!(old.is_some(), "payout plan {id} was confirmed but never made");
            self.record(Undo::Plan(id, old));
            self.mark_dirty(StateKey::BtcPlan(id));
        }
        if let Some((epoch, key)) = changes.key_epoch {
            let old = self.key_epochs.insert(epoch, key);
            assert!(old.is_none(), "key epoch {epoch} was recorded twice");
            self.record(Undo::KeyEpoch(epoch, old));
            self.mark_dirty(StateKey::GroupKey(epoch));
        }
        // A batch holds at most `MAX_BATCH_TXS` (100,000), far below u32::MAX.
        let open_txs = self.open_txs.checked_add(1).expect_invariant("open batch position overflow");
        let old = std::mem::replace(&mut self.open_txs, open_txs);
        self.record(Undo::OpenTxs(old));
        self.assert_conserved();
    }

    fn write_btc(
        &mut self,
        added: Vec<VaultUtxo>,
        planned: Vec<OutPoint>,
        queued: Option<QueuedWithdrawal>,
        dequeued: Vec<u64>,
    ) {
        for utxo in added {
            let old = self.vault_utxos.insert(utxo.outpoint, utxo);
            assert!(old.is_none(), "the vault output {:?} was added twice", utxo.outpoint);
            self.record(Undo::Utxo(utxo.outpoint, old));
            self.mark_dirty(StateKey::VaultUtxo(utxo.outpoint));
        }
        for outpoint in planned {
            let old = self.vault_utxos.remove(&outpoint);
            assert!(old.is_some(), "a payout plan spends {outpoint:?}, which the vault does not hold");
            self.record(Undo::Utxo(outpoint, old));
            self.mark_dirty(StateKey::VaultUtxo(outpoint));
        }
        if let Some(withdrawal) = queued {
            let mut counters = self.btc_counters;
            let seq = counters.next_queued;
            counters.next_queued += 1;
            self.set_counters(counters);
            let old = self.btc_queue.insert(seq, withdrawal);
            self.record(Undo::Queued(seq, old));
            self.mark_dirty(StateKey::BtcQueued(seq));
        }
        for seq in dequeued {
            #[cfg(feature = "planted-bugs")]
            if crate::planted::active(crate::planted::PlantedBug::PaidWithdrawalStaysQueued) {
                continue;
            }
            let old = self.btc_queue.remove(&seq);
            assert!(old.is_some(), "queued withdrawal {seq} was paid but never queued");
            self.record(Undo::Queued(seq, old));
            self.mark_dirty(StateKey::BtcQueued(seq));
        }
    }

    /// Notes that `key` was written since the last commitment update.
    fn mark_dirty(&mut self, key: StateKey) {
        if self.dirty.insert(key) {
            self.record(Undo::Dirty(key));
        }
    }

    fn set_counters(&mut self, counters: BtcCounters) {
        let old = std::mem::replace(&mut self.btc_counters, counters);
        self.record(Undo::Counters(old));
        self.mark_dirty(StateKey::BtcCounters);
    }

    fn adjust_liabilities(&mut self, asset: AssetId, old: Amount, new: Amount) {
        self.update_supply(asset, |s| {
            let without = s.liabilities.checked_sub(old).expect_invariant("liabilities below a balance");
            s.liabilities = without.checked_add(new).expect_invariant("liabilities overflow");
        });
    }

    fn update_supply(&mut self, asset: AssetId, change: impl FnOnce(&mut Supply)) {
        let old = self.supply.get(&asset).copied();
        self.record(Undo::Supply(asset, old));
        change(self.supply.entry(asset).or_default());
    }

    /// Conservation, per asset: what users hold plus what left for L1 is what came in.
    fn assert_conserved(&self) {
        for (asset, supply) in &self.supply {
            assert_eq!(
                supply.liabilities.checked_add(supply.withdrawn),
                Some(supply.deposited),
                "conservation broken for {asset}: {supply:?}"
            );
        }
    }

    fn record(&mut self, undo: Undo) {
        if let Some(journal) = &mut self.journal {
            journal.push(undo);
        }
    }

    /// Starts recording undo information, so that [`State::rollback`] can restore this point.
    pub(crate) fn begin(&mut self) {
        assert!(self.journal.is_none(), "journals do not nest");
        self.journal = Some(Vec::new());
    }

    /// Keeps everything written since [`State::begin`].
    pub(crate) fn keep(&mut self) {
        self.journal = None;
    }

    /// Restores the state as it was at [`State::begin`].
    pub(crate) fn rollback(&mut self) {
        let Some(journal) = self.journal.take() else {
            return;
        };
        for undo in journal.into_iter().rev() {
            match undo {
                Undo::Balance(account, asset, old) => self.restore_account(account, |entry| match old {
                    Some(amount) => {
                        entry.set_balance(asset, amount);
                    }
                    None => entry.remove_balance(&asset),
                }),
                Undo::Nonce(account, old) => self.restore_account(account, |entry| entry.nonce = old),
                Undo::Credited(l1_ref) => {
                    self.credited.remove(&l1_ref);
                }
                Undo::Supply(asset, old) => restore(&mut self.supply, asset, old),
                Undo::Utxo(outpoint, old) => restore(&mut self.vault_utxos, outpoint, old),
                Undo::Queued(seq, old) => restore(&mut self.btc_queue, seq, old),
                Undo::Plan(id, old) => restore(&mut self.btc_plans, id, old),
                Undo::Counters(old) => self.btc_counters = old,
                Undo::OpenTxs(old) => self.open_txs = old,
                Undo::KeyEpoch(epoch, old) => restore(&mut self.key_epochs, epoch, old),
                Undo::DepositHeight(asset, old) => restore(&mut self.deposit_heights, asset, old),
                Undo::Dirty(key) => {
                    self.dirty.remove(&key);
                }
            }
        }
    }

    /// Computes the root over every entry written since the last commitment update, without
    /// changing the committed root.
    /// The writes are gathered on every core (a key hash and a lookup in the state's maps each,
    /// about a fifth of a write's cost), in the dirty set's order, so the result does not
    /// depend on the threads.
    pub(crate) fn prepare_root(&self) -> Result<PendingRoot, CommitmentError> {
        let dirty: Vec<&StateKey> = self.dirty.iter().collect();
        let writes = dirty
            .par_iter()
            .filter_map(|key| {
                let hash = key.path();
                match self.entry_value(key) {
                    Some(value) => Some((hash, Some(value))),
                    // Written and then rolled back before it ever reached the tree: nothing to do.
                    None if !self.commitment.contains(hash) => None,
                    None => Some((hash, None)),
                }
            })
            .collect();
        self.commitment.prepare_unsorted(writes)
    }

    /// Makes a prepared root the committed one and moves the chain head to `head`.
    pub(crate) fn commit_root(&mut self, pending: PendingRoot, head: ChainHead) {
        self.commitment.apply(pending);
        self.dirty.clear();
        self.head = head;
        self.open_txs = 0;
    }

    /// The entry's value bytes as the tree holds them; an account of one or two assets without
    /// allocating.
    fn entry_value(&self, key: &StateKey) -> Option<Value> {
        match key {
            StateKey::Account(account) => self.account_value(account),
            StateKey::Deposit(l1_ref) => self.credited.contains(l1_ref).then(|| Value::from_slice(&[1])),
            StateKey::VaultUtxo(outpoint) => self.vault_utxos.get(outpoint).map(to_bytes).map(Value::from),
            StateKey::BtcQueued(seq) => self.btc_queue.get(seq).map(to_bytes).map(Value::from),
            StateKey::BtcPlan(id) => self.btc_plans.get(id).map(to_bytes).map(Value::from),
            StateKey::BtcCounters => Some(Value::from(to_bytes(&self.btc_counters))),
            StateKey::GroupKey(epoch) => self.key_epochs.get(epoch).map(to_bytes).map(Value::from),
            StateKey::DepositHeight(asset) => {
                self.deposit_heights.get(asset).map(|h| Value::from_slice(&h.to_le_bytes()))
            }
        }
    }

    /// A fingerprint of everything the ledger holds, for tests that a rejected input changed
    /// nothing. It covers the uncommitted entries too, unlike the state root.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut bytes = Vec::new();
        for (account, entry) in &self.accounts {
            bytes.extend(to_bytes(&(account, entry)));
        }
        for l1_ref in &self.credited {
            bytes.extend(to_bytes(l1_ref));
        }
        for (asset, s) in &self.supply {
            bytes.extend(to_bytes(&(asset, s.deposited, s.withdrawn, s.liabilities)));
        }
        for utxo in self.vault_utxos.values() {
            bytes.extend(to_bytes(utxo));
        }
        for (seq, queued) in &self.btc_queue {
            bytes.extend(to_bytes(&(seq, queued)));
        }
        for plan in self.btc_plans.values() {
            bytes.extend(to_bytes(plan));
        }
        bytes.extend(to_bytes(&self.btc_counters));
        for (epoch, key) in &self.key_epochs {
            bytes.extend(to_bytes(&(epoch, key)));
        }
        for (asset, height) in &self.deposit_heights {
            bytes.extend(to_bytes(&(asset, height)));
        }
        bytes.extend(self.state_root());
        bytes.extend(to_bytes(&(self.head.next_number, self.head.last_hash, self.head.last_timestamp, self.open_txs)));
        crate::hashing::sha256(bytes)
    }
}

impl State {
    /// Undoes one write to an account; an account left with nonce 0 and no balance had no
    /// entry before, and has none again.
    fn restore_account(&mut self, account: Address, undo: impl FnOnce(&mut AccountEntry)) {
        let entry = self.accounts.get_mut(&account).expect_invariant("an undone write's account exists");
        undo(entry);
        if entry.is_empty() {
            self.accounts.remove(&account);
        }
    }
}

fn restore<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, old: Option<V>) {
    match old {
        Some(value) => {
            map.insert(key, value);
        }
        None => {
            map.remove(&key);
        }
    }
}

/// `expect` for arithmetic that only a broken invariant can make fail (the amounts involved
/// were checked against smaller totals first).
trait ExpectInvariant<T> {
    fn expect_invariant(self, what: &str) -> T;
}

impl<T> ExpectInvariant<T> for Option<T> {
    #[allow(clippy::expect_used)]
    fn expect_invariant(self, what: &str) -> T {
        self.expect(what)
    }
}

#[cfg(test)]
mod tests;

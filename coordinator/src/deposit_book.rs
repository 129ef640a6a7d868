//! The coordinator's Bitcoin deposit book, on its ledger's database (`store::deposit_book`): the
//! accounts that asked for a deposit address, indexed under every group key the ledger watches,
//! so the deposit watcher finds whose address each output pays with one lookup per block.
//!
//! Who could abuse it: anyone may ask for the address of any 20 bytes. Each account costs rows
//! on disk (its script under each watched key), at the rate the API lets a client ask, and
//! never the coordinator's memory, which used to hold every account ever registered and each
//! one's addresses. Who it could stop: nobody. An account is indexed before the watcher reads
//! a block that could pay it (its row is committed before its address is handed out, so before
//! any payment to it exists; the watcher reads the tip, then indexes everything committed, then
//! reads only blocks up to that tip), and a key rotation's new key is indexed for every account
//! before another block is read: a deposit is read late, never skipped.

use std::collections::BTreeMap;

use bridge::BtcNetwork;
use chains::bitcoin::{BookError, DepositBook, Owner, ScriptBuf, XOnlyPublicKey, deposit_script};

use crate::deposits::LedgerKeys;
use crate::store::{BookKey, BookScript, Store, StoreError};

/// Accounts indexed per database transaction: a few tens of milliseconds of key tweaks.
pub const INDEX_PAGE: u32 = 500;

/// Accounts indexed per turn at most, so one turn after a rotation (every account indexed
/// again under the new key) does not hold the task for minutes; the turns after carry on at
/// once, and no block is read until the index is whole.
pub const MAX_INDEXED_PER_TURN: usize = 20_000;

/// The book on the ledger's database of `network`'s vault.
#[derive(Debug, Clone)]
pub struct StoreBook {
    store: Store,
    network: BtcNetwork,
    /// Accounts indexed per turn at most ([`MAX_INDEXED_PER_TURN`]).
    per_turn: usize,
}

impl StoreBook {
    pub fn new(store: Store, network: BtcNetwork) -> Self {
        StoreBook { store, network, per_turn: MAX_INDEXED_PER_TURN }
    }

    /// Indexes at most `accounts` a turn (at least one), instead of [`MAX_INDEXED_PER_TURN`].
    pub fn indexing_at_most(mut self, accounts: usize) -> Self {
        self.per_turn = accounts.max(1);
        self
    }

    /// Makes the book watch the keys the ledger credits: adds each key in force or in its
    /// grace, drops each whose grace is over. Returns the book's keys as they now stand, for
    /// [`StoreBook::catch_up`] (read again only if this changed them).
    pub async fn steer(&self, ledger: &LedgerKeys) -> Result<Vec<BookKey>, StoreError> {
        let held = self.store.deposit_book_keys().await?;
        let mut changed = false;
        for (key, over) in ledger.watched() {
            let book = held.iter().find(|k| k.key == key);
            match (book, over) {
                (None, false) => self.store.add_deposit_book_key(&key).await?,
                (Some(k), true) if !k.dropped => self.store.drop_deposit_book_key(&key).await?,
                _ => continue,
            }
            changed = true;
        }
        if changed { self.store.deposit_book_keys().await } else { Ok(held) }
    }

    /// Indexes the accounts registered since, and every account under a key added since, at
    /// most [`MAX_INDEXED_PER_TURN`] a turn; true once every registered account is indexed under
    /// every watched key (only then may the watcher read blocks). `keys` are the book's, as
    /// [`StoreBook::steer`] left them.
    pub async fn catch_up(&self, keys: &[BookKey]) -> Result<bool, StoreError> {
        let generation = keys.iter().map(|k| k.added).max().unwrap_or(0);
        let mut indexed = 0;
        loop {
            if indexed >= self.per_turn {
                return Ok(self.store.unindexed_btc_deposit_accounts(generation, 1).await?.is_empty());
            }
            let limit = (self.per_turn - indexed).min(INDEX_PAGE as usize);
            let page = self
                .store
                .unindexed_btc_deposit_accounts(generation, u32::try_from(limit).unwrap_or(INDEX_PAGE))
                .await?;
            if page.is_empty() {
                return Ok(true);
            }
            let mut scripts = Vec::new();
            for account in &page {
                for key in keys.iter().filter(|k| !k.dropped && k.added > account.indexed) {
                    let x = XOnlyPublicKey::from_slice(&key.key).map_err(|e| StoreError::Corrupt {
                        what: "btc_deposit_keys".into(),
                        reason: format!("{}: {e}", hex::encode(key.key)),
                    })?;
                    let script = deposit_script(x, self.network, &account.account).into_bytes();
                    scripts.push(BookScript { script, account: account.account, key: key.key });
                }
            }
            let accounts: Vec<_> = page.iter().map(|a| a.account).collect();
            self.store.index_btc_deposit_accounts(generation, &scripts, &accounts).await?;
            indexed += page.len();
            metrics::counter!("bridge_btc_deposit_accounts_indexed_total").increment(page.len() as u64);
        }
    }
}

#[async_trait::async_trait]
impl DepositBook for StoreBook {
    async fn owners(&self, scripts: &[ScriptBuf]) -> Result<BTreeMap<ScriptBuf, Owner>, BookError> {
        let bytes: Vec<Vec<u8>> = scripts.iter().map(|s| s.to_bytes()).collect();
        let rows = self.store.btc_deposit_owners(&bytes).await.map_err(|e| BookError(e.to_string()))?;
        rows.into_iter()
            .map(|row| {
                let key = XOnlyPublicKey::from_slice(&row.key)
                    .map_err(|e| BookError(format!("a stored group key {}: {e}", hex::encode(row.key))))?;
                Ok((ScriptBuf::from_bytes(row.script), Owner { account: row.account, key }))
            })
            .collect()
    }
}

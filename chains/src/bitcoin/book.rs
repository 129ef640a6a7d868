//! The deposit book: which output scripts are a watched account's deposit address, and under
//! which group key. The deposit watcher asks it about each block's Taproot outputs.
//!
//! Anyone may ask a coordinator for an account's deposit address, for any 20 bytes, so the book a
//! coordinator keeps lives in its database (`coordinator::deposit_book`), not in its memory:
//! an outsider asking for the addresses of made-up accounts costs rows on disk, at the rate the
//! API lets it ask, never the process's memory. [`MemoryBook`] keeps the book in memory, for
//! tests and tools that watch a few known accounts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ::bitcoin::ScriptBuf;
use ::bitcoin::key::XOnlyPublicKey;
use bridge::BtcNetwork;

use super::deposit::{deposit_address, deposit_script};

/// The most group keys one book watches at once: the key in force and the old keys still in
/// their grace. Two rotations inside one grace is already unusual; this bounds the book.
pub const MAX_WATCHED_KEYS: usize = 4;

/// Whose deposit address a script is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub account: bridge::Address,
    /// The group key (`x(P)`) the address was derived from.
    pub key: XOnlyPublicKey,
}

/// The book could not be read (its database failed): the block is read again at the next poll.
#[derive(Debug, thiserror::Error)]
#[error("the deposit book could not be read: {0}; the block is read again at the next poll")]
pub struct BookError(pub String);

/// Who owns which deposit address.
#[async_trait::async_trait]
pub trait DepositBook: Send + Sync + std::fmt::Debug {
    /// Of `scripts` (one block's Taproot outputs), those that are a watched deposit address,
    /// with their owners.
    async fn owners(&self, scripts: &[ScriptBuf]) -> Result<BTreeMap<ScriptBuf, Owner>, BookError>;
}

/// A book in memory: every watched account's address under every watched key.
#[derive(Debug)]
pub struct MemoryBook {
    network: BtcNetwork,
    /// The group keys whose deposit addresses are watched, oldest first (the genesis key first).
    keys: Vec<XOnlyPublicKey>,
    genesis_key: XOnlyPublicKey,
    owners: HashMap<ScriptBuf, Owner>,
    /// Every account watched, so a key added later watches them all.
    watched: BTreeSet<bridge::Address>,
}

impl MemoryBook {
    /// A book of the vault with `group_key` on `network`, watching no account yet.
    pub fn new(network: BtcNetwork, group_key: XOnlyPublicKey) -> Self {
        MemoryBook {
            network,
            keys: vec![group_key],
            genesis_key: group_key,
            owners: HashMap::new(),
            watched: BTreeSet::new(),
        }
    }

    /// Watch `account`'s deposit address under every watched key; returns the address under
    /// the newest key.
    pub fn watch(&mut self, account: bridge::Address) -> ::bitcoin::Address {
        self.watched.insert(account);
        let mut newest = None;
        for key in self.keys.clone() {
            let address = deposit_address(key, self.network, &account);
            self.owners.insert(address.script_pubkey(), Owner { account, key });
            newest = Some(address);
        }
        // No key watched (all dropped): the address under the genesis key, watched by none.
        newest.unwrap_or_else(|| deposit_address(self.genesis_key, self.network, &account))
    }

    /// The group keys watched, oldest first.
    pub fn keys(&self) -> &[XOnlyPublicKey] {
        &self.keys
    }

    /// Also watch every account's address under `key` (a key rotation's new key). Keys past
    /// [`MAX_WATCHED_KEYS`] push out the oldest, whose grace is over long before.
    pub fn add_key(&mut self, key: XOnlyPublicKey) {
        if self.keys.contains(&key) {
            return;
        }
        self.keys.push(key);
        if self.keys.len() > MAX_WATCHED_KEYS {
            let dropped = self.keys.remove(0);
            self.drop_key(dropped);
        }
        for account in &self.watched {
            self.owners.insert(deposit_script(key, self.network, account), Owner { account: *account, key });
        }
    }

    /// Stop watching the addresses of `key` (its grace is over: the ledger would refuse them).
    pub fn drop_key(&mut self, key: XOnlyPublicKey) {
        self.keys.retain(|k| *k != key);
        self.owners.retain(|_, owner| owner.key != key);
    }
}

#[async_trait::async_trait]
impl DepositBook for MemoryBook {
    async fn owners(&self, scripts: &[ScriptBuf]) -> Result<BTreeMap<ScriptBuf, Owner>, BookError> {
        Ok(scripts.iter().filter_map(|script| Some((script.clone(), *self.owners.get(script)?))).collect())
    }
}

//! One account's leaf of the state tree: its nonce and every balance it holds, in one entry
//! (`StateKey::Account`, state commitment 2). A transfer writes two leaves (the sender's and the
//! recipient's) instead of three (a nonce and two balances): a third less tree work per
//! transaction, for the state root's share of the transaction budget at 10^6 accounts (issue
//! 23). An account's whole state is also one proof.

use borsh::{BorshDeserialize, BorshSerialize};

use super::State;
use crate::address::Address;
use crate::amount::Amount;
use crate::asset::AssetId;
use crate::codec::{CodecError, from_bytes, to_bytes};
use crate::commitment::Value;

/// The value of `StateKey::Account(a)`: `borsh(AccountEntry)`.
#[derive(Clone, PartialEq, Eq, Debug, Default, BorshSerialize, BorshDeserialize)]
pub struct AccountEntry {
    /// The nonce the account's next transaction must carry; 0 for an account that only received.
    pub nonce: u64,
    /// Every balance the account has held, in strictly increasing asset order; a balance spent
    /// to zero stays listed (docs/PROTOCOL.md, Which entries exist).
    pub balances: Vec<(AssetId, Amount)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountEntryError {
    #[error("an account entry does not decode: {0}")]
    Decode(#[from] CodecError),
    #[error("an account entry's balances are not in strictly increasing asset order")]
    Order,
    #[error("an account entry with nonce 0 and no balance is never written (the account is absent)")]
    Empty,
}

impl AccountEntry {
    /// Decodes a leaf's value strictly: canonical borsh, assets in order, not empty. Which
    /// assets a network lists is the caller's check.
    pub fn decode(bytes: &[u8]) -> Result<AccountEntry, AccountEntryError> {
        let entry: AccountEntry = from_bytes(bytes)?;
        if entry.balances.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
            return Err(AccountEntryError::Order);
        }
        if entry.nonce == 0 && entry.balances.is_empty() {
            return Err(AccountEntryError::Empty);
        }
        Ok(entry)
    }

    /// The balance of `asset` the entry lists, zero if it lists none.
    pub fn balance(&self, asset: &AssetId) -> Amount {
        match self.balances.binary_search_by(|(a, _)| a.cmp(asset)) {
            Ok(i) => self.balances[i].1,
            Err(_) => Amount::ZERO,
        }
    }
}

/// The most bytes an account's value takes without allocating: nonce, length, and two assets of
/// one byte each with their balances (ether and bitcoin).
const STACK_VALUE: usize = 8 + 4 + 2 * (1 + 16);

impl AccountEntry {
    /// The leaf value, `borsh(self)`, written to the stack when it fits (nearly every account):
    /// this runs once per written account in every seal.
    pub(super) fn leaf_value(&self) -> Value {
        let mut buffer = [0u8; STACK_VALUE];
        let mut rest = &mut buffer[..];
        match self.serialize(&mut rest) {
            Ok(()) => {
                let len = STACK_VALUE - rest.len();
                Value::from_slice(&buffer[..len])
            }
            // Longer than the buffer (a token, or three assets): borsh into an allocation.
            Err(_) => Value::from(to_bytes(self)),
        }
    }

    /// Sets `asset`'s balance, keeping the assets in order; returns the balance it replaced.
    pub(super) fn set_balance(&mut self, asset: AssetId, amount: Amount) -> Option<Amount> {
        match self.balances.binary_search_by(|(a, _)| a.cmp(&asset)) {
            Ok(i) => Some(std::mem::replace(&mut self.balances[i].1, amount)),
            Err(i) => {
                self.balances.insert(i, (asset, amount));
                None
            }
        }
    }

    /// Takes `asset` off the list (a rollback of its first credit).
    pub(super) fn remove_balance(&mut self, asset: &AssetId) {
        if let Ok(i) = self.balances.binary_search_by(|(a, _)| a.cmp(asset)) {
            self.balances.remove(i);
        }
    }

    /// Nonce 0 and no balance: the account has no entry.
    pub(super) fn is_empty(&self) -> bool {
        self.nonce == 0 && self.balances.is_empty()
    }
}

impl State {
    /// The account's leaf value as the tree holds it, or `None` if it has no entry.
    pub(super) fn account_value(&self, account: &Address) -> Option<Value> {
        self.accounts.get(account).map(AccountEntry::leaf_value)
    }

    /// The account's entry as the tree holds it (its nonce and every balance it has held), or
    /// `None` if it has neither a nonce nor a balance.
    pub fn account_entry(&self, account: &Address) -> Option<AccountEntry> {
        self.accounts.get(account).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaf_value_is_borsh_on_the_stack_or_not() {
        let token = AssetId::Erc20(Address([7; 20]));
        for balances in [
            vec![],
            vec![(AssetId::Eth, Amount::new(5))],
            vec![(AssetId::Eth, Amount::new(u128::MAX)), (AssetId::Btc, Amount::ZERO)],
            vec![(AssetId::Eth, Amount::new(1)), (token, Amount::new(2)), (AssetId::Btc, Amount::new(3))],
        ] {
            let entry = AccountEntry { nonce: 9, balances };
            let out = entry.leaf_value().as_bytes().to_vec();
            assert_eq!(out, to_bytes(&entry));
            assert_eq!(AccountEntry::decode(&out), Ok(entry));
        }
    }

    #[test]
    fn decoding_refuses_what_is_never_written() {
        let unordered =
            AccountEntry { nonce: 1, balances: vec![(AssetId::Btc, Amount::new(1)), (AssetId::Eth, Amount::new(1))] };
        assert_eq!(AccountEntry::decode(&to_bytes(&unordered)), Err(AccountEntryError::Order));
        let twice =
            AccountEntry { nonce: 1, balances: vec![(AssetId::Eth, Amount::new(1)), (AssetId::Eth, Amount::new(2))] };
        assert_eq!(AccountEntry::decode(&to_bytes(&twice)), Err(AccountEntryError::Order));
        assert_eq!(AccountEntry::decode(&to_bytes(&AccountEntry::default())), Err(AccountEntryError::Empty));
        let mut trailing = to_bytes(&AccountEntry { nonce: 1, balances: vec![] });
        trailing.push(0);
        assert!(matches!(AccountEntry::decode(&trailing), Err(AccountEntryError::Decode(_))));
    }
}

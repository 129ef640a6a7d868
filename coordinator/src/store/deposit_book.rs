//! The Bitcoin deposit book's rows (migration `0027`): the accounts that asked for a deposit
//! address, the group keys watched, and each account's deposit script under each key. The
//! decisions (which keys, how much to index a turn) are `crate::deposit_book`'s.

use bridge::Address;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{ROWS_PER_INSERT, Store, StoreError, to_i64};

pub(super) const UNINDEXED_ACCOUNTS: &str =
    "SELECT account, indexed FROM btc_deposit_accounts WHERE indexed < $1 ORDER BY indexed, account LIMIT $2";
pub(super) const DROP_KEY_SCRIPTS: &str = "DELETE FROM btc_deposit_scripts WHERE group_key = $1";
/// Followed by the parenthesized list of scripts.
pub(super) const OWNERS_OF: &str = "SELECT script, account, group_key FROM btc_deposit_scripts WHERE script IN";

/// A group key the book has held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookKey {
    /// `x(P)`, as the ledger holds it.
    pub key: [u8; 32],
    /// The generation it was added at: 1 for the first, never reused.
    pub added: u64,
    /// Its grace is over: its scripts are gone and it is never watched again.
    pub dropped: bool,
}

/// An account's deposit script under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookScript {
    pub script: Vec<u8>,
    pub account: Address,
    pub key: [u8; 32],
}

/// An account not yet indexed under every key, with the generation it is indexed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unindexed {
    pub account: Address,
    pub indexed: u64,
}

impl Store {
    /// Remembers that `account` asked for its Bitcoin deposit address (idempotent); the deposit
    /// watcher indexes its addresses before it reads another block.
    pub async fn add_btc_deposit_account(&self, account: &Address) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO btc_deposit_accounts (account) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(account.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether `account` asked for its Bitcoin deposit address.
    pub async fn is_btc_deposit_account(&self, account: &Address) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS one FROM btc_deposit_accounts WHERE account = $1")
            .bind(account.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Every group key the book has held, oldest first.
    pub async fn deposit_book_keys(&self) -> Result<Vec<BookKey>, StoreError> {
        let rows = sqlx::query("SELECT group_key, added, dropped FROM btc_deposit_keys ORDER BY added")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let key = key_in(row, "btc_deposit_keys")?;
                let added = non_negative(row.try_get("added")?, "btc_deposit_keys")?;
                let dropped: i64 = row.try_get("dropped")?;
                Ok(BookKey { key, added, dropped: dropped != 0 })
            })
            .collect()
    }

    /// Adds `key` to the book at the next generation (idempotent: a key held or dropped before
    /// keeps its place).
    pub async fn add_deposit_book_key(&self, key: &[u8; 32]) -> Result<(), StoreError> {
        let mut db = self.write_transaction().await?;
        sqlx::query(
            "INSERT INTO btc_deposit_keys (group_key, added) \
             SELECT $1, COALESCE(MAX(added), 0) + 1 FROM btc_deposit_keys WHERE true ON CONFLICT DO NOTHING",
        )
        .bind(key.to_vec())
        .execute(&mut *db)
        .await?;
        db.commit().await?;
        Ok(())
    }

    /// Drops `key` from the book: its scripts go, and it is never watched again.
    pub async fn drop_deposit_book_key(&self, key: &[u8; 32]) -> Result<(), StoreError> {
        let mut db = self.write_transaction().await?;
        sqlx::query("UPDATE btc_deposit_keys SET dropped = 1 WHERE group_key = $1")
            .bind(key.to_vec())
            .execute(&mut *db)
            .await?;
        sqlx::query(DROP_KEY_SCRIPTS).bind(key.to_vec()).execute(&mut *db).await?;
        db.commit().await?;
        Ok(())
    }

    /// At most `limit` accounts indexed through a generation below `generation`, least indexed
    /// first.
    pub async fn unindexed_btc_deposit_accounts(
        &self,
        generation: u64,
        limit: u32,
    ) -> Result<Vec<Unindexed>, StoreError> {
        let rows = sqlx::query(UNINDEXED_ACCOUNTS)
            .bind(to_i64(generation))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let account = account_in(row)?;
                let indexed = non_negative(row.try_get("indexed")?, "btc_deposit_accounts")?;
                Ok(Unindexed { account, indexed })
            })
            .collect()
    }

    /// Writes `scripts` and marks `accounts` indexed through `generation`, in one transaction.
    pub async fn index_btc_deposit_accounts(
        &self,
        generation: u64,
        scripts: &[BookScript],
        accounts: &[Address],
    ) -> Result<(), StoreError> {
        let mut db = self.write_transaction().await?;
        for chunk in scripts.chunks(ROWS_PER_INSERT) {
            let sql = self.multi_row_insert(
                "INSERT INTO btc_deposit_scripts (script, account, group_key) VALUES ",
                chunk.len(),
                3,
                "",
            ) + " ON CONFLICT DO NOTHING";
            let mut query = sqlx::query(&sql);
            for row in chunk {
                query = query.bind(row.script.clone()).bind(row.account.to_string()).bind(row.key.to_vec());
            }
            query.execute(&mut *db).await?;
        }
        for chunk in accounts.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "UPDATE btc_deposit_accounts SET indexed = {} WHERE account IN ({})",
                to_i64(generation),
                self.placeholders(chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for account in chunk {
                query = query.bind(account.to_string());
            }
            query.execute(&mut *db).await?;
        }
        db.commit().await?;
        Ok(())
    }

    /// Of `scripts`, those in the book, with whose they are.
    pub async fn btc_deposit_owners(&self, scripts: &[Vec<u8>]) -> Result<Vec<BookScript>, StoreError> {
        let mut owners = Vec::new();
        for chunk in scripts.chunks(ROWS_PER_INSERT) {
            let sql = format!("{OWNERS_OF} ({})", self.placeholders(chunk.len()));
            let mut query = sqlx::query(&sql);
            for script in chunk {
                query = query.bind(script.clone());
            }
            for row in query.fetch_all(&self.pool).await? {
                let script: Vec<u8> = row.try_get("script")?;
                owners.push(BookScript {
                    script,
                    account: account_in(&row)?,
                    key: key_in(&row, "btc_deposit_scripts")?,
                });
            }
        }
        Ok(owners)
    }

    /// `n` placeholders, the statement's only ones ([`Store::push_placeholders`]).
    fn placeholders(&self, n: usize) -> String {
        let mut list = String::with_capacity(n * 5);
        self.push_placeholders(&mut list, 1, n);
        list
    }
}

fn account_in(row: &AnyRow) -> Result<Address, StoreError> {
    let text: String = row.try_get("account")?;
    text.parse().map_err(|e: bridge::address::AddressError| StoreError::Corrupt {
        what: "btc_deposit_accounts".into(),
        reason: format!("{text:?}: {e}"),
    })
}

fn key_in(row: &AnyRow, table: &str) -> Result<[u8; 32], StoreError> {
    let key: Vec<u8> = row.try_get("group_key")?;
    <[u8; 32]>::try_from(key.as_slice())
        .map_err(|_| StoreError::Corrupt { what: table.into(), reason: format!("a group key of {} bytes", key.len()) })
}

fn non_negative(value: i64, table: &str) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Corrupt { what: table.into(), reason: format!("a negative generation {value}") })
}

//! The coordinator's durable ledger: acknowledged transactions in sequence order and sealed
//! batches, in SQLite (a file in WAL mode, the default) or PostgreSQL (`postgres://…`). The same
//! SQL serves both through sqlx's `Any` driver; only the migrations differ in column types.
//!
//! What is in the ledger is what the coordinator promised: a transaction is acknowledged only
//! after the database transaction holding it commits.

use borsh::BorshDeserialize;
use bridge::{Address, BatchTx, SignedBatch, SystemTx, UserTx};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

mod deposit_book;
#[cfg(test)]
mod plans;

pub use deposit_book::{BookKey, BookScript, Unindexed};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Open(#[from] chains::db::DbError),
    #[error("the database migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a database operation failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the ledger holds a record that does not decode ({what}): {reason}; the database is damaged")]
    Corrupt { what: String, reason: String },
}

pub use chains::db::Backend;
pub use chains::deposit::ScanMark;

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// A sealed batch as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    pub batch: SignedBatch,
    pub locator: Option<String>,
}

impl Store {
    /// Opens (and migrates) the ledger at `url`: `sqlite://PATH` (created if missing) or
    /// `postgres://…`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let (pool, backend) = chains::db::open(url).await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Store { pool, backend })
    }

    /// Refuses every write from now on (`refuse`), or takes them again: the simulator's full or
    /// failing disk (chains::db::refuse_writes). Only for SQLite; call it between the role's steps.
    pub async fn refuse_writes(&self, refuse: bool) -> Result<(), StoreError> {
        Ok(chains::db::refuse_writes(&self.pool, refuse).await?)
    }

    /// A transaction that will write. On SQLite it takes the write lock at `BEGIN IMMEDIATE`: a
    /// deferred transaction that reads and then writes fails at once with `SQLITE_BUSY_SNAPSHOT`
    /// (not after `busy_timeout`) if another connection committed in between, as the publisher's
    /// `set_published` does while a batch is recorded.
    async fn write_transaction(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Appends acknowledged transactions `first_seq..` in one database transaction: the group
    /// commit that makes many acknowledgements cost one fsync.
    pub async fn append_txs(&self, first_seq: u64, txs: &[(/* hash */ [u8; 32], BatchTx)]) -> Result<(), StoreError> {
        if txs.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(txs.len());
        let mut touches = Vec::with_capacity(txs.len() * 2);
        for (i, (hash, tx)) in txs.iter().enumerate() {
            let seq = to_i64(first_seq + i as u64);
            let body =
                borsh::to_vec(tx).map_err(|e| StoreError::Corrupt { what: "tx".into(), reason: e.to_string() })?;
            rows.push((seq, hash.to_vec(), key_of(hash), body));
            for account in accounts_touched(tx) {
                touches.push((key_of(&account.0), seq));
            }
        }
        let mut db = self.write_transaction().await?;
        // Many rows per statement: one round trip per few hundred rows instead of one per row.
        for chunk in chunked(rows, ROWS_PER_INSERT) {
            let sql = self.multi_row_insert("INSERT INTO txs (seq, hash, hash_key, body) VALUES ", chunk.len(), 4, "");
            let mut query = sqlx::query(&sql);
            for (seq, hash, hash_key, body) in chunk {
                query = query.bind(seq).bind(hash).bind(hash_key).bind(body);
            }
            query.execute(&mut *db).await?;
        }
        for chunk in touches.chunks(ROWS_PER_INSERT) {
            let sql = self.multi_row_insert("INSERT INTO account_txs (account_key, seq) VALUES ", chunk.len(), 2, "");
            let mut query = sqlx::query(&sql);
            for (account_key, seq) in chunk {
                query = query.bind(*account_key).bind(*seq);
            }
            query.execute(&mut *db).await?;
        }
        db.commit().await?;
        Ok(())
    }

    /// Records a sealed batch holding the transactions `first_seq..first_seq + tx_count`, which
    /// must be the ledger's next unbatched ones, and indexes its forced records' transactions by
    /// their signing hash under `domain` (the network's EIP-712 domain).
    pub async fn record_batch(
        &self,
        batch: &SignedBatch,
        first_seq: u64,
        domain: &bridge::eip712::Domain,
    ) -> Result<(), StoreError> {
        let number = batch.header.number;
        let count = u64::from(batch.header.tx_count);
        let corrupt = |reason: String| StoreError::Corrupt { what: format!("batch {number}"), reason };
        let body = borsh::to_vec(batch).map_err(|e| corrupt(e.to_string()))?;
        let mut db = self.write_transaction().await?;
        let row = sqlx::query(BATCHED_AND_PRESENT)
            .bind(to_i64(first_seq))
            .bind(to_i64(first_seq + count))
            .fetch_one(&mut *db)
            .await?;
        let batched: i64 = row.try_get("batched")?;
        let present: i64 = row.try_get("present")?;
        if from_i64(batched) != first_seq || from_i64(present) != count || (count == 0 && batch.forced.is_empty()) {
            return Err(corrupt(format!(
                "it would hold transactions {first_seq}..{}, but {batched} are batched and {present} of them are in the ledger",
                first_seq + count
            )));
        }
        sqlx::query(
            "INSERT INTO batches (number, hash, body, locator, first_seq, tx_count) VALUES ($1, $2, $3, NULL, $4, $5)",
        )
        .bind(to_i64(number))
        .bind(batch.hash().to_vec())
        .bind(body)
        .bind(to_i64(first_seq))
        .bind(to_i64(count))
        .execute(&mut *db)
        .await?;
        // At most the network's forced cap (1,024) rows per batch.
        for (idx, record) in batch.forced.iter().enumerate() {
            let Some(tx) = record.outcome.tx() else { continue };
            let hash = tx.tx.signing_hash(domain);
            sqlx::query("INSERT INTO forced_txs (number, idx, hash, hash_key) VALUES ($1, $2, $3, $4)")
                .bind(to_i64(number))
                .bind(to_i64(idx as u64))
                .bind(hash.to_vec())
                .bind(key_of(&hash))
                .execute(&mut *db)
                .await?;
        }
        db.commit().await?;
        Ok(())
    }

    /// The forced records holding transaction `hash`, oldest first (the same signed transaction
    /// can be posted to Arweave more than once: the later copies are duplicates), at most
    /// `FORCED_COPIES_SHOWN` of them.
    pub async fn forced_by_hash(&self, hash: &[u8; 32]) -> Result<Vec<ForcedTx>, StoreError> {
        let rows = sqlx::query(
            "SELECT f.number, f.idx, b.body, b.locator, b.first_seq FROM forced_txs f JOIN batches b ON b.number = f.number \
             WHERE f.hash_key = $1 AND f.hash = $2 ORDER BY f.number, f.idx LIMIT $3",
        )
        .bind(key_of(hash))
        .bind(hash.to_vec())
        .bind(FORCED_COPIES_SHOWN)
        .fetch_all(&self.pool)
        .await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let number = from_i64(row.try_get("number")?);
            let idx = from_i64(row.try_get("idx")?) as usize;
            let batch = batch_in(row)?;
            let record = batch.forced.get(idx).cloned().ok_or_else(|| StoreError::Corrupt {
                what: format!("batch {number}"),
                reason: format!("the forced index names record {idx}, which the batch does not hold"),
            })?;
            let first_seq = from_i64(row.try_get("first_seq")?);
            found.push(ForcedTx { number, first_seq, record, locator: row.try_get("locator")? });
        }
        Ok(found)
    }

    /// Notes where batch `number` was published.
    pub async fn set_published(&self, number: u64, locator: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE batches SET locator = $1 WHERE number = $2")
            .bind(locator.to_owned())
            .bind(to_i64(number))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every sealed batch, in order.
    pub async fn batches(&self) -> Result<Vec<StoredBatch>, StoreError> {
        let rows =
            sqlx::query("SELECT number, body, locator FROM batches ORDER BY number").fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok(StoredBatch { batch: batch_in(row)?, locator: row.try_get("locator")? })).collect()
    }

    /// Sealed batches after `number`, in order, at most `limit` of them: recovery reads the
    /// ledger page by page, never whole.
    pub async fn batches_after(&self, number: u64, limit: u32) -> Result<Vec<SignedBatch>, StoreError> {
        let rows = sqlx::query("SELECT body FROM batches WHERE number > $1 ORDER BY number LIMIT $2")
            .bind(to_i64(number))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(batch_in).collect()
    }

    /// The signed header of sealed batch `number`, if there is one.
    pub async fn header(&self, number: u64) -> Result<Option<bridge::SignedHeader>, StoreError> {
        Ok(self.batch(number).await?.map(|stored| stored.batch.signed_header()))
    }

    /// The snapshots of the sequencer's state in this database.
    pub fn snapshots(&self) -> chains::snapshots::SnapshotStore {
        chains::snapshots::SnapshotStore::new(self.pool.clone(), self.backend)
    }

    /// Sealed batches not yet published, in order.
    pub async fn unpublished_batches(&self) -> Result<Vec<SignedBatch>, StoreError> {
        let rows = sqlx::query(UNPUBLISHED_BATCHES).fetch_all(&self.pool).await?;
        rows.iter().map(batch_in).collect()
    }

    /// Acknowledged transactions not yet in a sealed batch, in sequence order.
    pub async fn unbatched_txs(&self) -> Result<Vec<(u64, BatchTx)>, StoreError> {
        let rows = sqlx::query(UNBATCHED_TXS).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get("seq")?;
                let body: Vec<u8> = row.try_get("body")?;
                let tx = BatchTx::try_from_slice(&body)
                    .map_err(|e| StoreError::Corrupt { what: format!("tx {seq}"), reason: e.to_string() })?;
                Ok((from_i64(seq), tx))
            })
            .collect()
    }

    /// `prefix` followed by `rows` groups of `columns` placeholders, each group ending with
    /// `tail` (constant columns).
    fn multi_row_insert(&self, prefix: &str, rows: usize, columns: usize, tail: &str) -> String {
        let mut sql = String::with_capacity(prefix.len() + rows * (columns * 6 + tail.len() + 4));
        sql.push_str(prefix);
        for row in 0..rows {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            self.push_placeholders(&mut sql, row * columns + 1, columns);
            sql.push_str(tail);
            sql.push(')');
        }
        sql
    }

    /// `count` placeholders, comma-separated, the first numbered `first` on PostgreSQL. SQLite
    /// gets anonymous `?`: it resolves each numbered `$n` by a linear scan, which makes a
    /// statement of hundreds of them quadratic.
    fn push_placeholders(&self, sql: &mut String, first: usize, count: usize) {
        for i in 0..count {
            if i > 0 {
                sql.push_str(", ");
            }
            match self.backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&(first + i).to_string());
                }
            }
        }
    }

    /// Where transaction `hash` stands in the ledger, if it was acknowledged.
    pub async fn tx_by_hash(&self, hash: &[u8; 32]) -> Result<Option<LedgerTx>, StoreError> {
        let row = sqlx::query("SELECT seq, hash, body FROM txs WHERE hash_key = $1 AND hash = $2")
            .bind(key_of(hash))
            .bind(hash.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut txs = vec![ledger_tx(&row)?];
        self.place_in_batches(&mut txs).await?;
        Ok(txs.pop())
    }

    /// Transactions touching `account`, newest first, with sequence numbers below `before`.
    pub async fn txs_of(&self, account: &Address, before: u64, limit: u32) -> Result<Vec<LedgerTx>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.seq, t.hash, t.body FROM account_txs a JOIN txs t ON t.seq = a.seq \
             WHERE a.account_key = $1 AND a.seq < $2 ORDER BY a.seq DESC LIMIT $3",
        )
        .bind(key_of(&account.0))
        .bind(to_i64(before.min(i64::MAX as u64)))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut txs = rows.iter().map(ledger_tx).collect::<Result<Vec<_>, _>>()?;
        // Another account may share the key's 8 bytes (it would take 2^64 work to make one).
        txs.retain(|tx| accounts_touched(&tx.tx).contains(account));
        self.place_in_batches(&mut txs).await?;
        Ok(txs)
    }

    /// Fills in each transaction's batch and locator from the batches' sequence ranges.
    async fn place_in_batches(&self, txs: &mut [LedgerTx]) -> Result<(), StoreError> {
        let (Some(low), Some(high)) = (txs.iter().map(|t| t.seq).min(), txs.iter().map(|t| t.seq).max()) else {
            return Ok(());
        };
        let rows = sqlx::query(BATCHES_HOLDING).bind(to_i64(low)).bind(to_i64(high)).fetch_all(&self.pool).await?;
        let mut ranges = Vec::with_capacity(rows.len());
        for row in &rows {
            let first = from_i64(row.try_get("first_seq")?);
            let count = from_i64(row.try_get("tx_count")?);
            let locator: Option<String> = row.try_get("locator")?;
            ranges.push((first, first + count, from_i64(row.try_get("number")?), locator));
        }
        for tx in txs {
            let holding = ranges.partition_point(|(_, end, _, _)| *end <= tx.seq);
            if let Some((first, end, number, locator)) = ranges.get(holding)
                && (*first..*end).contains(&tx.seq)
            {
                tx.batch = Some(*number);
                tx.locator.clone_from(locator);
            }
        }
        Ok(())
    }

    /// Sealed batch `number`, if there is one.
    pub async fn batch(&self, number: u64) -> Result<Option<StoredBatch>, StoreError> {
        let Ok(number) = i64::try_from(number) else { return Ok(None) };
        let row = sqlx::query("SELECT body, locator FROM batches WHERE number = $1")
            .bind(number)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok(StoredBatch { batch: batch_in(&row)?, locator: row.try_get("locator")? })).transpose()
    }

    /// The hashes of batch `number`'s transactions, in order.
    pub async fn tx_hashes_in(&self, number: u64) -> Result<Vec<[u8; 32]>, StoreError> {
        let Ok(number) = i64::try_from(number) else { return Ok(Vec::new()) };
        let rows = sqlx::query(
            "SELECT t.hash FROM batches b JOIN txs t ON t.seq >= b.first_seq AND t.seq < b.first_seq + b.tx_count \
             WHERE b.number = $1 ORDER BY t.seq",
        )
        .bind(number)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let hash: Vec<u8> = row.try_get("hash")?;
                <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| StoreError::Corrupt {
                    what: format!("batch {number}"),
                    reason: "a transaction hash is not 32 bytes".into(),
                })
            })
            .collect()
    }

    /// The newest sealed batch's number and locator, and the newest published one's number.
    pub async fn publication(&self) -> Result<Publication, StoreError> {
        // Batches are published in order: the newest published is the one before the first
        // unpublished.
        let row = sqlx::query(PUBLICATION).fetch_one(&self.pool).await?;
        let sealed = row.try_get::<Option<i64>, _>("sealed")?.map_or(0, from_i64);
        let unpublished: Option<i64> = row.try_get("unpublished")?;
        let published = unpublished.map_or(sealed, |first| from_i64(first).saturating_sub(1));
        Ok(Publication { sealed, published })
    }

    /// Where the chain watcher of `scope` stands (`crate::deposits::eth_scan_scope`), if it has
    /// saved a mark in this ledger.
    pub async fn scan_mark(&self, scope: &str) -> Result<Option<ScanMark>, StoreError> {
        let Some(row) = sqlx::query("SELECT number, hash FROM chain_scan_marks WHERE scope = $1")
            .bind(scope)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let corrupt = |reason: String| StoreError::Corrupt { what: format!("chain_scan_marks {scope}"), reason };
        let number: i64 = row.try_get("number")?;
        let number = u64::try_from(number).map_err(|_| corrupt(format!("block number {number}")))?;
        let text: String = row.try_get("hash")?;
        let hash = hex::decode(&text)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| corrupt(format!("block hash {text:?}")))?;
        Ok(Some(ScanMark { number, hash }))
    }

    /// Saves where the chain watcher of `scope` stands: every deposit at or below `mark` is
    /// credited in this ledger.
    pub async fn set_scan_mark(&self, scope: &str, mark: ScanMark) -> Result<(), StoreError> {
        let number = i64::try_from(mark.number).map_err(|_| StoreError::Corrupt {
            what: format!("chain_scan_marks {scope}"),
            reason: format!("block number {} above 2^63", mark.number),
        })?;
        sqlx::query(
            "INSERT INTO chain_scan_marks (scope, number, hash) VALUES ($1, $2, $3) \
             ON CONFLICT (scope) DO UPDATE SET number = excluded.number, hash = excluded.hash",
        )
        .bind(scope)
        .bind(number)
        .bind(hex::encode(mark.hash))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The next sequence number to hand out.
    pub async fn next_seq(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT MAX(seq) AS top FROM txs").fetch_one(&self.pool).await?;
        let top: Option<i64> = row.try_get("top")?;
        Ok(top.map_or(0, |t| from_i64(t) + 1))
    }
}

/// An acknowledged transaction and how far it has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerTx {
    pub seq: u64,
    pub hash: [u8; 32],
    pub tx: BatchTx,
    pub batch: Option<u64>,
    pub locator: Option<String>,
}

/// A forced record holding a transaction, with its batch.
#[derive(Debug, Clone)]
pub struct ForcedTx {
    pub number: u64,
    /// The batch's first body transaction's sequence number: forced records run just before it.
    pub first_seq: u64,
    pub record: bridge::forced::ForcedRecord,
    pub locator: Option<String>,
}

// What the sequencer, the publisher and the API ask of the batches table at every seal, publish
// and lookup: each answered from an index (migration 0025), never by reading the table, whose
// rows hold each batch's body before its other columns (SQLite walks a body's overflow pages to
// reach the columns after it, so a scan reads every batch ever sealed). `store/plans.rs` checks
// SQLite's plans.

/// The end of the batched transactions and how many of `$1..$2` the ledger holds. Batches take
/// consecutive ranges, so the one with the highest start (the longer of two sharing it: a
/// forced-only batch holds none) ends last.
const BATCHED_AND_PRESENT: &str = "SELECT COALESCE((SELECT first_seq + tx_count FROM batches \
     ORDER BY first_seq DESC, tx_count DESC LIMIT 1), 0) AS batched, \
     (SELECT COUNT(*) FROM txs WHERE seq >= $1 AND seq < $2) AS present";

/// Acknowledged transactions after the batched ones.
const UNBATCHED_TXS: &str = "SELECT seq, body FROM txs WHERE seq >= COALESCE((SELECT first_seq + tx_count \
     FROM batches ORDER BY first_seq DESC, tx_count DESC LIMIT 1), 0) ORDER BY seq";

/// The batches not published yet (a partial index holds only them).
const UNPUBLISHED_BATCHES: &str = "SELECT body FROM batches WHERE locator IS NULL ORDER BY number";

/// The batches holding transactions `$1..=$2`: from the last batch starting at or before `$1`.
const BATCHES_HOLDING: &str = "SELECT number, locator, first_seq, tx_count FROM batches \
     WHERE first_seq <= $2 \
     AND first_seq >= COALESCE((SELECT MAX(first_seq) FROM batches WHERE first_seq <= $1), 0) \
     AND first_seq + tx_count > $1 AND tx_count > 0 ORDER BY first_seq";

/// The newest sealed batch and the first unpublished one.
const PUBLICATION: &str = "SELECT (SELECT MAX(number) FROM batches) AS sealed, \
     (SELECT MIN(number) FROM batches WHERE locator IS NULL) AS unpublished";

/// How many forced copies of one transaction `GET /tx/{hash}` reads: the first is the one that
/// counted; the rest are duplicates, and anyone may post copies.
const FORCED_COPIES_SHOWN: i64 = 8;

/// How far sealing and publishing have got; 0 means none yet (batch numbers start at 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publication {
    pub sealed: u64,
    pub published: u64,
}

const ROWS_PER_INSERT: usize = 256;

/// `items` in owned chunks of `size` (binding takes values, so no copies).
fn chunked<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut out = Vec::with_capacity(items.len().div_ceil(size));
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        out.push(items.by_ref().take(size).collect());
    }
    out
}

/// The index key of a hash or an address: its first 8 bytes, big-endian, as a signed integer
/// (both databases' 64-bit integer).
fn key_of(bytes: &[u8]) -> i64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    i64::from_be_bytes(first)
}

/// The accounts whose history a transaction belongs in (the fee account's would be everything).
fn accounts_touched(tx: &BatchTx) -> Vec<Address> {
    match tx {
        BatchTx::User(signed) => match &signed.tx {
            UserTx::Transfer(t) => vec![t.from, t.to],
            UserTx::Withdraw(w) => vec![w.from],
        },
        BatchTx::System(SystemTx::Deposit(d) | SystemTx::BtcKeyedDeposit { deposit: d, .. }) => vec![d.account],
        BatchTx::System(
            SystemTx::BtcPayoutPlan { .. }
            | SystemTx::BtcConsolidationPlan { .. }
            | SystemTx::BtcSweepPlan { .. }
            | SystemTx::BtcPayoutConfirmed { .. }
            | SystemTx::KeyRotation(_),
        ) => Vec::new(),
    }
}

/// A `txs` row, not yet placed in a batch.
fn ledger_tx(row: &AnyRow) -> Result<LedgerTx, StoreError> {
    let seq = from_i64(row.try_get("seq")?);
    let hash: Vec<u8> = row.try_get("hash")?;
    let hash = <[u8; 32]>::try_from(hash.as_slice())
        .map_err(|_| StoreError::Corrupt { what: format!("tx {seq}"), reason: "hash is not 32 bytes".into() })?;
    let body: Vec<u8> = row.try_get("body")?;
    let tx = BatchTx::try_from_slice(&body)
        .map_err(|e| StoreError::Corrupt { what: format!("tx {seq}"), reason: e.to_string() })?;
    Ok(LedgerTx { seq, hash, tx, batch: None, locator: None })
}

/// The batch in a `batches` row's `body`.
fn batch_in(row: &AnyRow) -> Result<SignedBatch, StoreError> {
    let body: Vec<u8> = row.try_get("body")?;
    SignedBatch::try_from_slice(&body).map_err(|e| StoreError::Corrupt { what: "batch".into(), reason: e.to_string() })
}

// Sequence and batch numbers stay far below 2^63; the asserts keep a bug from wrapping silently.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or_else(|_| unreachable!("ledger number {value} exceeds i64"))
}

fn from_i64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_else(|_| unreachable!("negative ledger number {value}"))
}

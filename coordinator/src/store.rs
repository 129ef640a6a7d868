//! The coordinator's durable ledger: acknowledged transactions in sequence order and sealed
//! batches, in SQLite (a file in WAL mode, the default) or PostgreSQL (`postgres://…`). The same
//! SQL serves both through sqlx's `Any` driver; only the migrations differ in column types.
//!
//! What is in the ledger is what the coordinator promised: a transaction is acknowledged only
//! after the database transaction holding it commits.

use borsh::BorshDeserialize;
use bridge::{Address, BatchTx, SignedBatch, SystemTx, UserTx};
use sqlx::any::{AnyPoolOptions, AnyRow, install_default_drivers};
use sqlx::{AnyPool, Connection, Executor, Row};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database at {url} cannot be opened: {source}; check DATABASE_URL and that the server is up")]
    Open { url: String, source: sqlx::Error },
    #[error("the database migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a database operation failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the ledger holds a record that does not decode ({what}): {reason}; the database is damaged")]
    Corrupt { what: String, reason: String },
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    Unsupported(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

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
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Unsupported(url.to_owned()));
        };
        let url_with_mode = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_owned(),
        };
        // One direct connection first: a wrong URL or a server that is down fails at once, with
        // the driver's own reason, instead of after the pool's acquire timeout.
        let probe = sqlx::AnyConnection::connect(&url_with_mode)
            .await
            .map_err(|source| StoreError::Open { url: redact(url), source })?;
        probe.close().await.map_err(|source| StoreError::Open { url: redact(url), source })?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never block the writer; FULL: a commit survives power loss.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url_with_mode)
            .await
            .map_err(|source| StoreError::Open { url: redact(url), source })?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Store { pool, backend })
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
            rows.push((seq, hash.to_vec(), body));
            for account in accounts_touched(tx) {
                touches.push((account.0.to_vec(), seq));
            }
        }
        let mut db = self.pool.begin().await?;
        // Many rows per statement: one round trip per few hundred rows instead of one per row.
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let sql = multi_row_insert("INSERT INTO txs (seq, hash, body, batch) VALUES ", chunk.len(), 3, ", NULL");
            let mut query = sqlx::query(&sql);
            for (seq, hash, body) in chunk {
                query = query.bind(*seq).bind(hash.clone()).bind(body.clone());
            }
            query.execute(&mut *db).await?;
        }
        for chunk in touches.chunks(ROWS_PER_INSERT) {
            let sql = multi_row_insert("INSERT INTO account_txs (account, seq) VALUES ", chunk.len(), 2, "");
            let mut query = sqlx::query(&sql);
            for (account, seq) in chunk {
                query = query.bind(account.clone()).bind(*seq);
            }
            query.execute(&mut *db).await?;
        }
        db.commit().await?;
        Ok(())
    }

    /// Records a sealed batch and marks the transactions `first_seq..first_seq + tx_count` as
    /// in it, atomically.
    pub async fn record_batch(&self, batch: &SignedBatch, first_seq: u64) -> Result<(), StoreError> {
        let number = to_i64(batch.header.number);
        let body =
            borsh::to_vec(batch).map_err(|e| StoreError::Corrupt { what: "batch".into(), reason: e.to_string() })?;
        let last_seq = first_seq + u64::from(batch.header.tx_count);
        let mut db = self.pool.begin().await?;
        sqlx::query("INSERT INTO batches (number, hash, body, locator) VALUES ($1, $2, $3, NULL)")
            .bind(number)
            .bind(batch.hash().to_vec())
            .bind(body)
            .execute(&mut *db)
            .await?;
        let marked = sqlx::query("UPDATE txs SET batch = $1 WHERE seq >= $2 AND seq < $3 AND batch IS NULL")
            .bind(number)
            .bind(to_i64(first_seq))
            .bind(to_i64(last_seq))
            .execute(&mut *db)
            .await?
            .rows_affected();
        if marked != u64::from(batch.header.tx_count) {
            return Err(StoreError::Corrupt {
                what: format!("batch {}", batch.header.number),
                reason: format!("{marked} ledger rows for {} transactions", batch.header.tx_count),
            });
        }
        db.commit().await?;
        Ok(())
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

    /// Sealed batches not yet published, in order.
    pub async fn unpublished_batches(&self) -> Result<Vec<SignedBatch>, StoreError> {
        let rows =
            sqlx::query("SELECT body FROM batches WHERE locator IS NULL ORDER BY number").fetch_all(&self.pool).await?;
        rows.iter().map(batch_in).collect()
    }

    /// Acknowledged transactions not yet in a sealed batch, in sequence order.
    pub async fn unbatched_txs(&self) -> Result<Vec<(u64, BatchTx)>, StoreError> {
        let rows =
            sqlx::query("SELECT seq, body FROM txs WHERE batch IS NULL ORDER BY seq").fetch_all(&self.pool).await?;
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

    /// Where transaction `hash` stands in the ledger, if it was acknowledged.
    pub async fn tx_by_hash(&self, hash: &[u8; 32]) -> Result<Option<LedgerTx>, StoreError> {
        let row = sqlx::query(
            "SELECT t.seq, t.hash, t.body, t.batch, b.locator FROM txs t \
             LEFT JOIN batches b ON b.number = t.batch WHERE t.hash = $1",
        )
        .bind(hash.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ledger_tx).transpose()
    }

    /// Transactions touching `account`, newest first, with sequence numbers below `before`.
    pub async fn txs_of(&self, account: &Address, before: u64, limit: u32) -> Result<Vec<LedgerTx>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.seq, t.hash, t.body, t.batch, b.locator FROM account_txs a \
             JOIN txs t ON t.seq = a.seq LEFT JOIN batches b ON b.number = t.batch \
             WHERE a.account = $1 AND a.seq < $2 ORDER BY a.seq DESC LIMIT $3",
        )
        .bind(account.0.to_vec())
        .bind(to_i64(before.min(i64::MAX as u64)))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ledger_tx).collect()
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
        let rows = sqlx::query("SELECT hash FROM txs WHERE batch = $1 ORDER BY seq")
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
        let row = sqlx::query(
            "SELECT MAX(number) AS sealed, MAX(CASE WHEN locator IS NOT NULL THEN number END) AS published \
             FROM batches",
        )
        .fetch_one(&self.pool)
        .await?;
        let sealed: Option<i64> = row.try_get("sealed")?;
        let published: Option<i64> = row.try_get("published")?;
        Ok(Publication { sealed: sealed.map_or(0, from_i64), published: published.map_or(0, from_i64) })
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

/// How far sealing and publishing have got; 0 means none yet (batch numbers start at 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publication {
    pub sealed: u64,
    pub published: u64,
}

const ROWS_PER_INSERT: usize = 256;

/// `prefix` followed by `rows` groups of `columns` numbered placeholders, each group ending
/// with `tail` (constant columns).
fn multi_row_insert(prefix: &str, rows: usize, columns: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(prefix.len() + rows * (columns * 6 + tail.len() + 4));
    sql.push_str(prefix);
    let mut n = 0;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            n += 1;
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&n.to_string());
        }
        sql.push_str(tail);
        sql.push(')');
    }
    sql
}

/// The accounts whose history a transaction belongs in (the fee account's would be everything).
fn accounts_touched(tx: &BatchTx) -> Vec<Address> {
    match tx {
        BatchTx::User(signed) => match &signed.tx {
            UserTx::Transfer(t) => vec![t.from, t.to],
            UserTx::Withdraw(w) => vec![w.from],
        },
        BatchTx::System(SystemTx::Deposit(d)) => vec![d.account],
    }
}

fn ledger_tx(row: &AnyRow) -> Result<LedgerTx, StoreError> {
    let seq = from_i64(row.try_get("seq")?);
    let hash: Vec<u8> = row.try_get("hash")?;
    let hash = <[u8; 32]>::try_from(hash.as_slice())
        .map_err(|_| StoreError::Corrupt { what: format!("tx {seq}"), reason: "hash is not 32 bytes".into() })?;
    let body: Vec<u8> = row.try_get("body")?;
    let tx = BatchTx::try_from_slice(&body)
        .map_err(|e| StoreError::Corrupt { what: format!("tx {seq}"), reason: e.to_string() })?;
    let batch: Option<i64> = row.try_get("batch")?;
    Ok(LedgerTx { seq, hash, tx, batch: batch.map(from_i64), locator: row.try_get("locator")? })
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

/// The URL without its password, for error messages and logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &credentials[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

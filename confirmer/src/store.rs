//! What the confirmer has replayed (so that a restart resumes where it stopped) and the alarms
//! it raised, in SQLite (default) or PostgreSQL (`postgres://…`).

use borsh::BorshDeserialize;
use bridge::SignedBatch;
use bridge::batch::Settlement;
use bridge::btc_payout::PayoutPlan;
use bridge::withdrawals::{BtcPayout, EthWithdrawal, EthWithdrawalTree};
use chains::db::{Backend, DbError};
use chains::snapshots::SnapshotStore;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::alarm::{Alarm, AlarmKind};

mod payout_scan;
#[cfg(test)]
mod plans;
mod watchman;

/// The queries a start and every step run, each answered from an index whatever the history
/// (`store/plans.rs` checks SQLite's plans).
const FIRST_UNVERIFIED: &str = "SELECT number, unverified FROM replayed_batches \
     WHERE number <= $1 AND unverified IS NOT NULL ORDER BY number LIMIT 1";
const REPLAYED_AFTER: &str =
    "SELECT number, body, locator, unverified FROM replayed_batches WHERE number > $1 ORDER BY number LIMIT $2";
const SETTLEMENTS_BETWEEN: &str =
    "SELECT number, body FROM settlements WHERE number >= $1 AND number <= $2 ORDER BY number";
const RECENT_SETTLEMENTS: &str = "SELECT number, body FROM settlements ORDER BY number DESC LIMIT $1";
const BATCH_OF_TX: &str = "SELECT number FROM replayed_txs WHERE hash = $1";
pub use payout_scan::payout_scan_scope;
pub use watchman::{Horizons, SavedStuckLeaf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Open(#[from] DbError),
    #[error("the confirmer's database migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a database operation failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "the confirmer's database holds a record that does not decode ({what}): {reason}; delete it and replay from genesis"
    )]
    Corrupt { what: String, reason: String },
}

#[derive(Debug, Clone)]
pub struct ConfirmerStore {
    pool: AnyPool,
    backend: Backend,
}

/// A batch as the confirmer keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedBatch {
    pub batch: SignedBatch,
    pub locator: String,
    /// Why it is not hard-final although it replays; `None` when nothing is left unchecked.
    pub unverified: Option<String>,
}

impl ConfirmerStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let (pool, backend) = chains::db::open(url).await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(ConfirmerStore { pool, backend })
    }

    /// Refuses every write from now on (`refuse`), or takes them again: the simulator's full or
    /// failing disk (chains::db::refuse_writes). Only for SQLite; call it between the role's steps.
    pub async fn refuse_writes(&self, refuse: bool) -> Result<(), StoreError> {
        Ok(chains::db::refuse_writes(&self.pool, refuse).await?)
    }

    /// Every replayed batch, in order.
    pub async fn replayed(&self) -> Result<Vec<ReplayedBatch>, StoreError> {
        let rows = sqlx::query("SELECT number, body, locator, unverified FROM replayed_batches ORDER BY number")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(replayed_in).collect()
    }

    /// Replayed batch `number`, if there is one.
    pub async fn replayed_batch(&self, number: u64) -> Result<Option<ReplayedBatch>, StoreError> {
        let Ok(number) = i64::try_from(number) else { return Ok(None) };
        let row = sqlx::query("SELECT body, locator, unverified FROM replayed_batches WHERE number = $1")
            .bind(number)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(replayed_in).transpose()
    }

    /// Records a replayed batch, which batch holds each of its transactions (`tx_hashes`, in
    /// order) and what it owes on L1 (`settlement`, if anything), in one database transaction.
    pub async fn record_replayed(
        &self,
        replayed: &ReplayedBatch,
        tx_hashes: &[[u8; 32]],
        settlement: Option<&Settlement>,
    ) -> Result<(), StoreError> {
        let number = replayed.batch.header.number;
        let body = borsh::to_vec(&replayed.batch)
            .map_err(|e| StoreError::Corrupt { what: "a batch".into(), reason: e.to_string() })?;
        let mut db = self.write_transaction().await?;
        sqlx::query(
            "INSERT INTO replayed_batches (number, hash, body, locator, unverified) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(to_i64(number))
        .bind(replayed.batch.hash().to_vec())
        .bind(body)
        .bind(replayed.locator.clone())
        .bind(replayed.unverified.clone())
        .execute(&mut *db)
        .await?;
        index_txs(&mut db, self.backend, number, tx_hashes).await?;
        if let Some(settlement) = settlement.filter(|s| !s.is_empty()) {
            sqlx::query("INSERT INTO settlements (number, body) VALUES ($1, $2)")
                .bind(to_i64(number))
                .bind(SettlementRecord::of(settlement).to_json())
                .execute(&mut *db)
                .await?;
        }
        db.commit().await?;
        Ok(())
    }

    /// Indexes the transactions of batch `number` again (a restart replaying its own record);
    /// rows already there are kept.
    pub async fn index_txs(&self, number: u64, tx_hashes: &[[u8; 32]]) -> Result<(), StoreError> {
        let mut db = self.write_transaction().await?;
        index_txs(&mut db, self.backend, number, tx_hashes).await?;
        db.commit().await?;
        Ok(())
    }

    /// Records what batch `number` owes on L1 unless it is recorded (a record written before the
    /// settlements table existed, replayed again at start).
    pub async fn record_settlement(&self, number: u64, settlement: &Settlement) -> Result<(), StoreError> {
        if settlement.is_empty() {
            return Ok(());
        }
        sqlx::query("INSERT INTO settlements (number, body) VALUES ($1, $2) ON CONFLICT (number) DO NOTHING")
            .bind(to_i64(number))
            .bind(SettlementRecord::of(settlement).to_json())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether the transaction index holds nothing: a record written before the index existed
    /// (migration `0024`) is indexed again at start.
    pub async fn tx_index_is_empty(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT hash FROM replayed_txs LIMIT 1").fetch_optional(&self.pool).await?;
        Ok(row.is_none())
    }

    /// The replayed batch holding transaction `hash`.
    pub async fn batch_of_tx(&self, hash: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query(BATCH_OF_TX).bind(hash.to_vec()).fetch_optional(&self.pool).await?;
        row.map(|row| Ok(from_i64(row.try_get("number")?))).transpose()
    }

    /// What each replayed batch that owes anything on L1 owes, in batch order: the whole table
    /// (tests and tools; a running role reads [`ConfirmerStore::settlements_between`]).
    pub async fn settlements(&self) -> Result<Vec<(u64, Settlement)>, StoreError> {
        let rows = sqlx::query("SELECT number, body FROM settlements ORDER BY number").fetch_all(&self.pool).await?;
        rows.iter().map(settlement_in).collect()
    }

    /// What replayed batch `number` owes on L1; `None` if it owes nothing or was not replayed
    /// (the caller knows which: only batches that owe anything have a row).
    pub async fn settlement(&self, number: u64) -> Result<Option<Settlement>, StoreError> {
        let Ok(number) = i64::try_from(number) else { return Ok(None) };
        let row = sqlx::query("SELECT number, body FROM settlements WHERE number = $1")
            .bind(number)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(|row| settlement_in(row).map(|(_, settlement)| settlement)).transpose()
    }

    /// What the replayed batches in `first..=last` that owe anything owe, in batch order.
    pub async fn settlements_between(&self, first: u64, last: u64) -> Result<Vec<(u64, Settlement)>, StoreError> {
        if last < first {
            return Ok(Vec::new());
        }
        let rows =
            sqlx::query(SETTLEMENTS_BETWEEN).bind(to_i64(first)).bind(to_i64(last)).fetch_all(&self.pool).await?;
        rows.iter().map(settlement_in).collect()
    }

    /// The `limit` newest settlements (by batch number), in batch order.
    pub async fn recent_settlements(&self, limit: u32) -> Result<Vec<(u64, Settlement)>, StoreError> {
        let rows = sqlx::query(RECENT_SETTLEMENTS).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        let mut newest: Vec<(u64, Settlement)> = rows.iter().map(settlement_in).collect::<Result<_, _>>()?;
        newest.reverse();
        Ok(newest)
    }

    /// Replayed batches after `number`, in order, at most `limit` of them: the record is read
    /// page by page, never whole.
    pub async fn replayed_after(&self, number: u64, limit: u32) -> Result<Vec<ReplayedBatch>, StoreError> {
        let rows =
            sqlx::query(REPLAYED_AFTER).bind(to_i64(number)).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(replayed_in).collect()
    }

    /// The first replayed batch up to `number` that is not hard-final though it replays, with
    /// why: what the hard-final prefix stops at.
    pub async fn first_unverified(&self, number: u64) -> Result<Option<(u64, String)>, StoreError> {
        let row = sqlx::query(FIRST_UNVERIFIED).bind(to_i64(number)).fetch_optional(&self.pool).await?;
        row.map(|row| Ok((from_i64(row.try_get("number")?), row.try_get("unverified")?))).transpose()
    }

    /// The snapshots of the replayed state in this database.
    pub fn snapshots(&self) -> SnapshotStore {
        SnapshotStore::new(self.pool.clone(), self.backend)
    }

    async fn write_transaction(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            // The write lock at BEGIN: the snapshot writer shares this database.
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Records an alarm and its evidence once; a repeat (after a restart) is ignored.
    pub async fn record_alarm(&self, alarm: &Alarm, evidence_json: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO alarms (number, kind, detail, evidence) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (number, kind) DO NOTHING",
        )
        .bind(i64::try_from(alarm.number).unwrap_or(i64::MAX))
        .bind(alarm.kind.as_str().to_owned())
        .bind(alarm.detail.clone())
        .bind(evidence_json.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every alarm with its evidence (JSON), oldest batch first.
    pub async fn alarms(&self) -> Result<Vec<(Alarm, String)>, StoreError> {
        let rows = sqlx::query("SELECT number, kind, detail, evidence FROM alarms ORDER BY number, kind")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let number: i64 = row.try_get("number")?;
                let kind: String = row.try_get("kind")?;
                let kind: AlarmKind =
                    serde_json::from_value(serde_json::Value::String(kind.clone())).map_err(|_| {
                        StoreError::Corrupt { what: "an alarm".into(), reason: format!("unknown kind {kind:?}") }
                    })?;
                let alarm = Alarm { number: u64::try_from(number).unwrap_or(0), kind, detail: row.try_get("detail")? };
                Ok((alarm, row.try_get("evidence")?))
            })
            .collect()
    }
}

/// Inserts `(hash, number)` rows, many per statement; a hash already indexed is kept.
async fn index_txs(
    db: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    number: u64,
    tx_hashes: &[[u8; 32]],
) -> Result<(), StoreError> {
    // 256 rows of two parameters: far below either database's parameter limit.
    for chunk in tx_hashes.chunks(256) {
        let mut sql = String::from("INSERT INTO replayed_txs (hash, number) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push_str("(?, ?)"),
                Backend::Postgres => sql.push_str(&format!("(${}, ${})", 2 * i + 1, 2 * i + 2)),
            }
        }
        sql.push_str(" ON CONFLICT (hash) DO NOTHING");
        let mut query = sqlx::query(&sql);
        for hash in chunk {
            query = query.bind(hash.to_vec()).bind(to_i64(number));
        }
        query.execute(&mut **db).await?;
    }
    Ok(())
}

/// A [`Settlement`] as the `settlements` table keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct SettlementRecord {
    eth: Vec<EthWithdrawal>,
    btc: Vec<BtcPayout>,
    btc_plans: Vec<PayoutPlan>,
}

impl SettlementRecord {
    fn of(settlement: &Settlement) -> Self {
        SettlementRecord {
            eth: settlement.eth.withdrawals().to_vec(),
            btc: settlement.btc.clone(),
            btc_plans: settlement.btc_plans.clone(),
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("a settlement serializes to JSON: {e}"))
    }

    fn into_settlement(self) -> Settlement {
        Settlement { eth: EthWithdrawalTree::new(self.eth), btc: self.btc, btc_plans: self.btc_plans }
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_i64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A `settlements` row.
fn settlement_in(row: &AnyRow) -> Result<(u64, Settlement), StoreError> {
    let number = from_i64(row.try_get("number")?);
    let body: String = row.try_get("body")?;
    let record: SettlementRecord = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
        what: format!("the settlement of batch {number}"),
        reason: e.to_string(),
    })?;
    Ok((number, record.into_settlement()))
}

/// A `replayed_batches` row.
fn replayed_in(row: &AnyRow) -> Result<ReplayedBatch, StoreError> {
    let body: Vec<u8> = row.try_get("body")?;
    let batch = SignedBatch::try_from_slice(&body)
        .map_err(|e| StoreError::Corrupt { what: "a replayed batch".into(), reason: e.to_string() })?;
    Ok(ReplayedBatch { batch, locator: row.try_get("locator")?, unverified: row.try_get("unverified")? })
}

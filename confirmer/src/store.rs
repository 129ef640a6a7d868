//! What the confirmer has replayed (so that a restart resumes where it stopped) and the alarms
//! it raised, in SQLite (default) or PostgreSQL (`postgres://…`).

use borsh::BorshDeserialize;
use bridge::SignedBatch;
use chains::db::{Backend, DbError};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::alarm::{Alarm, AlarmKind};

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
        Ok(ConfirmerStore { pool })
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

    pub async fn record_replayed(&self, replayed: &ReplayedBatch) -> Result<(), StoreError> {
        let body = borsh::to_vec(&replayed.batch)
            .map_err(|e| StoreError::Corrupt { what: "a batch".into(), reason: e.to_string() })?;
        sqlx::query(
            "INSERT INTO replayed_batches (number, hash, body, locator, unverified) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(i64::try_from(replayed.batch.header.number).unwrap_or(i64::MAX))
        .bind(replayed.batch.hash().to_vec())
        .bind(body)
        .bind(replayed.locator.clone())
        .bind(replayed.unverified.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
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

/// A `replayed_batches` row.
fn replayed_in(row: &AnyRow) -> Result<ReplayedBatch, StoreError> {
    let body: Vec<u8> = row.try_get("body")?;
    let batch = SignedBatch::try_from_slice(&body)
        .map_err(|e| StoreError::Corrupt { what: "a replayed batch".into(), reason: e.to_string() })?;
    Ok(ReplayedBatch { batch, locator: row.try_get("locator")?, unverified: row.try_get("unverified")? })
}

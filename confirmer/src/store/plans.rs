//! SQLite's plans for the queries a confirmer's start and each of its steps run: each reads an
//! index or the primary key's range, never a scan of the record (a replayed batch's row holds
//! its body before the columns read after it, so a scan walks every body ever replayed).

#![allow(clippy::unwrap_used)]

use sqlx::Row;

use super::{BATCH_OF_TX, ConfirmerStore, FIRST_UNVERIFIED, RECENT_SETTLEMENTS, REPLAYED_AFTER, SETTLEMENTS_BETWEEN};

async fn plan(store: &ConfirmerStore, sql: &str) -> Vec<String> {
    let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}")).fetch_all(&store.pool).await.unwrap();
    rows.iter().map(|row| row.try_get::<String, _>("detail").unwrap()).collect()
}

#[tokio::test]
async fn no_query_of_a_start_or_a_step_scans_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = ConfirmerStore::open(&format!("sqlite://{}", dir.path().join("confirmer.db").display())).await.unwrap();
    // Each query, and what its plan must read.
    let expected = [
        (FIRST_UNVERIFIED, "replayed_batches_unverified"),
        (REPLAYED_AFTER, "INTEGER PRIMARY KEY (rowid>?)"),
        (SETTLEMENTS_BETWEEN, "INTEGER PRIMARY KEY (rowid>? AND rowid<?)"),
        // Backwards from the newest, stopped by its LIMIT.
        (RECENT_SETTLEMENTS, "SCAN settlements"),
        (BATCH_OF_TX, "sqlite_autoindex_replayed_txs_1"),
    ];
    for (sql, reads) in expected {
        let plan = plan(&store, sql).await;
        assert!(plan.iter().any(|line| line.contains(reads)), "{sql} does not read {reads}: {plan:?}");
        assert!(!plan.iter().any(|line| line == "SCAN replayed_batches"), "{sql} reads the whole record: {plan:?}");
        assert!(!plan.iter().any(|line| line.contains("TEMP B-TREE")), "{sql} sorts: {plan:?}");
    }
}

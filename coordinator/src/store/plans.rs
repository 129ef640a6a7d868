//! SQLite's plans for the queries every seal, publish and lookup runs: each reads an index,
//! never the batches table itself (a table scan walks every batch body ever sealed); and for
//! the Bitcoin deposit book's, whose tables anyone can grow by asking for addresses.

#![allow(clippy::unwrap_used)]

use sqlx::Row;

use super::deposit_book::{DROP_KEY_SCRIPTS, OWNERS_OF, UNINDEXED_ACCOUNTS};
use super::{BATCHED_AND_PRESENT, BATCHES_HOLDING, PUBLICATION, Store, UNBATCHED_TXS, UNPUBLISHED_BATCHES};

async fn plan(store: &Store, sql: &str) -> Vec<String> {
    let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}")).fetch_all(&store.pool).await.unwrap();
    rows.iter().map(|row| row.try_get::<String, _>("detail").unwrap()).collect()
}

#[tokio::test]
async fn no_query_of_the_seal_publish_or_lookup_paths_scans_the_batches_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("ledger.db").display())).await.unwrap();
    // Each query, and the index its plan must use.
    let expected = [
        (BATCHED_AND_PRESENT, "batches_by_seq_range"),
        (UNBATCHED_TXS, "batches_by_seq_range"),
        (UNPUBLISHED_BATCHES, "batches_unpublished"),
        (BATCHES_HOLDING, "batches_by_seq_range"),
        (PUBLICATION, "batches_unpublished"),
    ];
    for (sql, index) in expected {
        let plan = plan(&store, sql).await;
        assert!(plan.iter().any(|line| line.contains(index)), "{sql} does not use {index}: {plan:?}");
        assert!(!plan.iter().any(|line| line == "SCAN batches"), "{sql} reads the whole table: {plan:?}");
    }
    // What a table scan's plan says, so the check above can tell one.
    let scan = plan(&store, "SELECT COUNT(*) FROM batches WHERE length(body) > 3").await;
    assert!(scan.iter().any(|line| line == "SCAN batches"), "{scan:?}");
}

#[tokio::test]
async fn the_deposit_book_reads_its_indexes_and_sorts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("ledger.db").display())).await.unwrap();
    let owners = format!("{OWNERS_OF} (?, ?)");
    let expected = [
        (UNINDEXED_ACCOUNTS, "btc_deposit_accounts_by_indexed"),
        (DROP_KEY_SCRIPTS, "btc_deposit_scripts_by_key"),
        (owners.as_str(), "sqlite_autoindex_btc_deposit_scripts_1"),
    ];
    for (sql, index) in expected {
        let plan = plan(&store, sql).await;
        assert!(plan.iter().any(|line| line.contains(index)), "{sql} does not use {index}: {plan:?}");
        assert!(!plan.iter().any(|line| line.starts_with("SCAN") || line.contains("TEMP B-TREE")), "{sql}: {plan:?}");
    }
}

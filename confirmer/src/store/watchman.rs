//! What a watchman keeps across restarts beside its replay (migration `0025`): how far its
//! settlement book has pruned, so that a start reads the book from there and not from genesis,
//! and the Ethereum leaves the vault could not pay, each with its own proof (the pruned book no
//! longer holds their ranges, and a restart does not walk the paid ranges again).

use bridge::withdrawals::EthWithdrawal;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{ConfirmerStore, StoreError, from_i64, to_i64};

/// How far the settlement book has pruned: every batch up to `eth_pruned_through` has its
/// Ethereum leaves paid deep (or recorded as stuck), every batch up to `btc_pruned_through`
/// its Bitcoin payout plans confirmed deep, and no batch up to `settled_through` owes anything
/// more on either chain (paid and pruned, or it never owed). 0: nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Horizons {
    pub eth_pruned_through: u64,
    pub btc_pruned_through: u64,
    pub settled_through: u64,
}

/// A leaf the vault could not pay, with everything a retry or a claim (`withdraw`) needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedStuckLeaf {
    /// The vault's range holding the leaf, and its batches.
    pub range: u64,
    pub range_first: u64,
    pub range_last: u64,
    pub leaf: EthWithdrawal,
    /// The range's root as the vault holds it, and the leaf's proof in its tree.
    pub root: [u8; 32],
    pub proof: Vec<[u8; 32]>,
    /// Retries so far (after the first failure).
    pub attempts: u32,
    /// When the vault first reported it unpaid (Unix seconds, the watchman's clock).
    pub first_failed_at: u64,
}

impl ConfirmerStore {
    /// The horizons saved by the last run; zeros if none was saved.
    pub async fn watchman_horizons(&self) -> Result<Horizons, StoreError> {
        let row = sqlx::query(
            "SELECT eth_pruned_through, btc_pruned_through, settled_through FROM watchman_horizons WHERE id = 0",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(Horizons::default()) };
        Ok(Horizons {
            eth_pruned_through: from_i64(row.try_get("eth_pruned_through")?),
            btc_pruned_through: from_i64(row.try_get("btc_pruned_through")?),
            settled_through: from_i64(row.try_get("settled_through")?),
        })
    }

    /// Saves the horizons; a horizon never moves back (a late writer cannot undo a later one).
    pub async fn save_watchman_horizons(&self, horizons: Horizons) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO watchman_horizons (id, eth_pruned_through, btc_pruned_through, settled_through) \
             VALUES (0, $1, $2, $3) ON CONFLICT (id) DO UPDATE SET \
             eth_pruned_through = CASE WHEN excluded.eth_pruned_through > watchman_horizons.eth_pruned_through \
                 THEN excluded.eth_pruned_through ELSE watchman_horizons.eth_pruned_through END, \
             btc_pruned_through = CASE WHEN excluded.btc_pruned_through > watchman_horizons.btc_pruned_through \
                 THEN excluded.btc_pruned_through ELSE watchman_horizons.btc_pruned_through END, \
             settled_through = CASE WHEN excluded.settled_through > watchman_horizons.settled_through \
                 THEN excluded.settled_through ELSE watchman_horizons.settled_through END",
        )
        .bind(to_i64(horizons.eth_pruned_through))
        .bind(to_i64(horizons.btc_pruned_through))
        .bind(to_i64(horizons.settled_through))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every saved stuck leaf, in (batch, index) order.
    pub async fn stuck_leaves(&self) -> Result<Vec<SavedStuckLeaf>, StoreError> {
        let rows = sqlx::query("SELECT batch, leaf_index, body FROM watchman_stuck_leaves ORDER BY batch, leaf_index")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let body: String = row.try_get("body")?;
                let (batch, index) = (from_i64(row.try_get("batch")?), from_i64(row.try_get("leaf_index")?));
                serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                    what: format!("the stuck leaf {batch}:{index}"),
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// Replaces the saved stuck leaves with `leaves`, in one transaction: a crash leaves the
    /// old list or the new one, never a mix.
    pub async fn save_stuck_leaves(&self, leaves: &[SavedStuckLeaf]) -> Result<(), StoreError> {
        let mut db = self.write_transaction().await?;
        sqlx::query("DELETE FROM watchman_stuck_leaves").execute(&mut *db).await?;
        for saved in leaves {
            let body =
                serde_json::to_string(saved).unwrap_or_else(|e| unreachable!("a stuck leaf serializes to JSON: {e}"));
            sqlx::query("INSERT INTO watchman_stuck_leaves (batch, leaf_index, body) VALUES ($1, $2, $3)")
                .bind(to_i64(saved.leaf.batch))
                .bind(i64::from(saved.leaf.index))
                .bind(body)
                .execute(&mut *db)
                .await?;
        }
        db.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bridge::{Address, Amount};

    fn stuck(batch: u64, index: u32) -> SavedStuckLeaf {
        SavedStuckLeaf {
            range: 2,
            range_first: 5,
            range_last: 9,
            leaf: EthWithdrawal { batch, index, token: Address::ZERO, recipient: Address([7; 20]), amount: Amount(3) },
            root: [1; 32],
            proof: vec![[2; 32], [3; 32]],
            attempts: 4,
            first_failed_at: 1_700_000_000,
        }
    }

    #[tokio::test]
    async fn horizons_and_stuck_leaves_survive_a_reopen_and_horizons_never_move_back() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("w.db").display());
        let store = ConfirmerStore::open(&url).await.unwrap();
        assert_eq!(store.watchman_horizons().await.unwrap(), Horizons::default());
        assert!(store.stuck_leaves().await.unwrap().is_empty());
        let saved = Horizons { eth_pruned_through: 40, btc_pruned_through: 12, settled_through: 41 };
        store.save_watchman_horizons(saved).await.unwrap();
        // A stale writer's lower horizon changes nothing; a higher one moves each on its own.
        let later = Horizons { eth_pruned_through: 30, btc_pruned_through: 20, settled_through: 35 };
        store.save_watchman_horizons(later).await.unwrap();
        store.save_stuck_leaves(&[stuck(6, 1), stuck(5, 0)]).await.unwrap();
        store.save_stuck_leaves(&[stuck(6, 1), stuck(7, 2)]).await.unwrap();
        drop(store);

        let store = ConfirmerStore::open(&url).await.unwrap();
        let horizons = Horizons { eth_pruned_through: 40, btc_pruned_through: 20, settled_through: 41 };
        assert_eq!(store.watchman_horizons().await.unwrap(), horizons);
        assert_eq!(store.stuck_leaves().await.unwrap(), vec![stuck(6, 1), stuck(7, 2)], "the latest list, whole");
    }
}

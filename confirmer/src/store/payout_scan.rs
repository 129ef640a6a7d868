//! Where the solvency watch's scan of the Ethereum vault's payouts stands (migration `0026`):
//! a restart goes on from there instead of reading every block since the vault's deployment.

use std::str::FromStr;

use bridge::AssetId;
use chains::ethereum_view::{PaidByBatch, PayoutScan};
use sqlx::Row;

use super::{ConfirmerStore, StoreError, from_i64, to_i64};

/// The scope a vault's scan is saved under: a database pointed at another vault does not go on
/// from this one's place.
pub fn payout_scan_scope(vault: bridge::Address) -> String {
    format!("ethereum:{vault}")
}

impl ConfirmerStore {
    /// The place saved for `scope`, if any.
    pub async fn payout_scan(&self, scope: &str) -> Result<Option<PayoutScan>, StoreError> {
        let row = sqlx::query("SELECT next_block, pruned_through, paid FROM vault_payout_scans WHERE scope = $1")
            .bind(scope.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let paid: String = row.try_get("paid")?;
        Ok(Some(PayoutScan {
            next_block: from_i64(row.try_get("next_block")?),
            pruned_through: from_i64(row.try_get("pruned_through")?),
            paid: paid_from_json(&paid).map_err(|reason| corrupt(scope, reason))?,
        }))
    }

    /// Saves `place` for `scope`, over the one saved before.
    pub async fn save_payout_scan(&self, scope: &str, place: &PayoutScan) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO vault_payout_scans (scope, next_block, pruned_through, paid) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope) DO UPDATE SET next_block = excluded.next_block, \
             pruned_through = excluded.pruned_through, paid = excluded.paid",
        )
        .bind(scope.to_owned())
        .bind(to_i64(place.next_block))
        .bind(to_i64(place.pruned_through))
        .bind(paid_to_json(&place.paid).map_err(|reason| corrupt(scope, reason))?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn corrupt(scope: &str, reason: String) -> StoreError {
    StoreError::Corrupt { what: format!("the payout scan of {scope}"), reason }
}

/// `[batch, "eth:ETH", "1000"]` rows: amounts as decimal strings, which JSON numbers do not hold
/// past 2^53.
fn paid_to_json(paid: &PaidByBatch) -> Result<String, String> {
    let rows: Vec<(u64, String, String)> = paid
        .iter()
        .flat_map(|(batch, assets)| {
            assets.iter().map(move |(asset, amount)| (*batch, asset.to_string(), amount.to_string()))
        })
        .collect();
    serde_json::to_string(&rows).map_err(|e| e.to_string())
}

fn paid_from_json(text: &str) -> Result<PaidByBatch, String> {
    let rows: Vec<(u64, String, String)> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut paid = PaidByBatch::new();
    for (batch, asset, amount) in rows {
        let asset = AssetId::from_str(&asset).map_err(|e| e.to_string())?;
        let amount: u128 = amount.parse().map_err(|e| format!("amount {amount:?}: {e}"))?;
        let sum = paid.entry(batch).or_default().entry(asset).or_insert(0);
        *sum = sum.saturating_add(amount);
    }
    Ok(paid)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn payouts_round_trip_through_their_json_including_amounts_past_2_to_the_53() {
        let token = AssetId::Erc20(bridge::Address([7; 20]));
        let paid = PaidByBatch::from([
            (4, BTreeMap::from([(AssetId::Eth, u128::MAX), (token, 3)])),
            (9, BTreeMap::from([(AssetId::Eth, 1u128 << 60)])),
        ]);
        assert_eq!(paid_from_json(&paid_to_json(&paid).unwrap()), Ok(paid));
        assert!(paid_from_json(r#"[[4, "eth:nope", "1"]]"#).is_err());
        assert!(paid_from_json(r#"[[4, "eth:ETH", "-1"]]"#).is_err());
    }
}

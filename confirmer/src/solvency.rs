//! The solvency watch: for each asset, what the replayed ledger owes against what the vault
//! holds on its chain. A shortfall means the vault cannot pay what the ledger says users own:
//! an alarm for the operators, whatever its cause (a forged deposit, a bug, a theft).
//!
//! What is owed: every balance (fees included), plus Bitcoin withdrawals debited but not yet
//! paid (queued, or planned and not confirmed). Ethereum withdrawals debited but not yet claimed
//! from the vault are not counted: the vault's bitmap knows them, this ledger does not, so the
//! Ethereum check is the weaker `held ≥ balances`. What is held: the vault contract's balance of
//! each Ethereum asset; on Bitcoin, the vault outputs the ledger records that the chain has
//! unspent (deposits the ledger has not credited yet are not counted).

use bridge::{AssetId, Chain, State};
use chains::bitcoin::{CoreRpc, PayoutBroadcaster, PayoutStatus};

/// One asset's standing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AssetSolvency {
    pub asset: AssetId,
    pub owed: u128,
    pub held: u128,
    /// What the chain lacks that the ledger counts on, if anything.
    pub detail: Option<String>,
}

impl AssetSolvency {
    pub fn shortfall(&self) -> u128 {
        self.owed.saturating_sub(self.held)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the solvency watch could not ask the {chain} node: {reason}; retrying")]
pub struct SolvencyError {
    pub chain: Chain,
    pub reason: String,
}

/// The chain nodes the watch asks; a chain without one is not watched.
#[derive(Debug, Clone, Default)]
pub struct SolvencyWatch {
    pub eth_rpc: Option<String>,
    pub btc_rpc: Option<CoreRpc>,
}

impl SolvencyWatch {
    /// Every watched asset the ledger has seen, in asset order. Records each shortfall in the
    /// `bridge_solvency_shortfall` gauge.
    pub async fn check(&self, state: &State) -> Result<Vec<AssetSolvency>, SolvencyError> {
        let mut report = Vec::new();
        let params = state.params();
        if let Some(url) = &self.eth_rpc {
            let tokens: Vec<bridge::Address> = state
                .supplies()
                .filter_map(|(asset, _)| asset.eth_token())
                .filter(|t| *t != bridge::Address::ZERO)
                .collect();
            let held = chains::ethereum::holdings_of(url, params.eth_vault, &tokens)
                .await
                .map_err(|reason| SolvencyError { chain: Chain::Ethereum, reason })?;
            for (asset, supply) in state.supplies().filter(|(a, _)| a.chain() == Chain::Ethereum) {
                let held = held.get(asset).copied().unwrap_or(0);
                report.push(AssetSolvency { asset: *asset, owed: supply.liabilities.units(), held, detail: None });
            }
        }
        if let (Some(rpc), Some(vault)) = (&self.btc_rpc, params.btc_vault) {
            report.push(
                self.bitcoin(rpc, state, vault)
                    .await
                    .map_err(|reason| SolvencyError { chain: Chain::Bitcoin, reason })?,
            );
        }
        for entry in &report {
            metrics::gauge!("bridge_solvency_shortfall", "asset" => entry.asset.to_string())
                .set(entry.shortfall() as f64);
        }
        Ok(report)
    }

    async fn bitcoin(
        &self,
        rpc: &CoreRpc,
        state: &State,
        vault: bridge::BtcVaultParams,
    ) -> Result<AssetSolvency, String> {
        let mut owed = state.supply(&AssetId::Btc).liabilities.units();
        owed += state.btc_queue().map(|(_, q)| u128::from(q.payout.amount_sat)).sum::<u128>();
        let mut outputs: Vec<bridge::VaultUtxo> = state.vault_utxos().copied().collect();
        let broadcaster = PayoutBroadcaster::new(rpc.clone(), vault, state.params().btc_network);
        for plan in state.btc_plans() {
            // A plan the chain confirmed but the ledger has not recorded yet: its inputs are
            // spent, its payouts paid, and its change is the vault's.
            match broadcaster.status(plan).await.map_err(|e| e.to_string())? {
                PayoutStatus::Confirmed { attempt, .. } => {
                    let built = plan.build(&vault, state.params().btc_network, attempt).map_err(|e| e.to_string())?;
                    outputs.push(built.change);
                }
                PayoutStatus::Pending { .. } | PayoutStatus::Unseen => {
                    owed += u128::from(plan.total_out_sat());
                    outputs.extend(plan.inputs.iter().copied());
                }
            }
        }
        let held = chains::bitcoin::holdings(rpc, &outputs).await.map_err(|e| e.to_string())?;
        let detail = (!held.missing.is_empty()).then(|| {
            format!(
                "{} vault output(s) the ledger records are not unspent on the chain: {:?}",
                held.missing.len(),
                held.missing
            )
        });
        Ok(AssetSolvency { asset: AssetId::Btc, owed, held: u128::from(held.held_sat), detail })
    }
}

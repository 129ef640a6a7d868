//! The solvency watch: for each asset, what the replayed ledger owes against what the vault
//! holds on its chain. A shortfall means the vault cannot pay what the ledger says users own:
//! an alarm for the operators, whatever its cause (a forged deposit, a bug, a theft).
//!
//! What is owed: every balance (fees included), plus Bitcoin withdrawals debited but not yet
//! paid (queued, or planned and not confirmed). Ethereum withdrawals debited but not yet claimed
//! from the vault are not counted: the vault's bitmap knows them, this ledger does not, so the
//! Ethereum check is the weaker `held ≥ balances`. What is held: the vault contract's balance of
//! each Ethereum asset; on Bitcoin, the vault outputs the ledger records that the chain has
//! unspent (deposits the ledger has not credited yet are not counted). An output the node lacks
//! from a block it has not reached is not judged at all: the node may only lag. Likewise an
//! Ethereum asset is not judged against a view of the vault from below the last block the
//! ledger credited a deposit of it from (`State::deposit_height`).
//!
//! Judged at a consistent point ([`SolvencyGuard`]): only once the replay has caught up with the
//! DA (a restart replaying its backlog compares an old ledger with today's vault), with the
//! vault's holdings and its payouts read at one block, and what the vault paid for batches after
//! this replay (other watchmen may be ahead) counted as paid, not missing. A payout for a batch
//! the DA does not have is never excused: it is a forged root.

use bridge::{AssetId, Chain, State};
use std::sync::Arc;

use chains::bitcoin::{BitcoinNode, PayoutBroadcaster, PayoutStatus};
use chains::ethereum_view::{PayoutScan, PayoutScanConfig, VaultRead, VaultSnapshot, VaultSnapshots, VaultView};

use crate::follower::Follower;

/// One asset's standing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AssetSolvency {
    pub asset: AssetId,
    pub owed: u128,
    pub held: u128,
    /// What the vault paid for batches after the replay (and on the DA): owed in this ledger,
    /// already gone from the vault.
    pub paid_ahead: u128,
    /// What the chain lacks that the ledger counts on, if anything.
    pub detail: Option<String>,
}

impl AssetSolvency {
    pub fn shortfall(&self) -> u128 {
        self.owed.saturating_sub(self.held.saturating_add(self.paid_ahead))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the solvency watch could not judge {chain} now: {reason}; retrying")]
pub struct SolvencyError {
    pub chain: Chain,
    pub reason: String,
}

/// The chain nodes the watch asks; a chain without one is not watched.
#[derive(Debug, Clone, Default)]
pub struct SolvencyWatch {
    pub eth_rpc: Option<String>,
    /// The Bitcoin node: a `CoreRpc` in production, the simulator's node in the simulator.
    pub btc: Option<Arc<dyn BitcoinNode>>,
    /// The confirmations the replay requires of a Bitcoin fact (the deposit checker's depth):
    /// an output the node lacks is missing only once the node is that deep past its block.
    pub btc_depth: u32,
    /// The trust the Ethereum client uses (the Bitcoin client carries its own).
    pub tls: chains::http::Tls,
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
            let held = chains::ethereum::holdings_of(url, &self.tls, params.eth_vault, &tokens)
                .await
                .map_err(|reason| SolvencyError { chain: Chain::Ethereum, reason })?;
            for (asset, supply) in state.supplies().filter(|(a, _)| a.chain() == Chain::Ethereum) {
                let held = held.get(asset).copied().unwrap_or(0);
                report.push(AssetSolvency {
                    asset: *asset,
                    owed: supply.liabilities.units(),
                    held,
                    paid_ahead: 0,
                    detail: None,
                });
            }
        }
        if let (Some(node), Some(vault)) = (&self.btc, params.btc_vault) {
            let standing = self.bitcoin(node, state, vault).await;
            report.push(standing.map_err(|reason| SolvencyError { chain: Chain::Bitcoin, reason })?.judged()?);
        }
        for entry in &report {
            metrics::gauge!("bridge_solvency_shortfall", "asset" => entry.asset.to_string())
                .set(entry.shortfall() as f64);
        }
        Ok(report)
    }

    async fn bitcoin(
        &self,
        node: &Arc<dyn BitcoinNode>,
        state: &State,
        vault: bridge::BtcVaultParams,
    ) -> Result<BitcoinStanding, String> {
        let mut owed = state.supply(&AssetId::Btc).liabilities.units();
        owed += state.btc_queue().map(|(_, q)| u128::from(q.payout.amount_sat)).sum::<u128>();
        let mut outputs: Vec<bridge::VaultUtxo> = state.vault_utxos().copied().collect();
        let mut broadcaster = PayoutBroadcaster::shared(node.clone(), vault, state.params().btc_network);
        let keys = bridge::rotation::vault_keys(state).unwrap_or_else(|| bridge::VaultKeys::genesis(vault));
        broadcaster.set_keys(keys.clone());
        for plan in state.btc_plans() {
            // A plan the chain confirmed but the ledger has not recorded yet: its inputs are
            // spent, its payouts paid, and its change is the vault's.
            match broadcaster.status(plan).await.map_err(|e| e.to_string())? {
                PayoutStatus::Confirmed { attempt, .. } => {
                    // Height 0: this node has the payout confirmed, so it has the change too.
                    let built = plan.build(&keys, state.params().btc_network, attempt).map_err(|e| e.to_string())?;
                    outputs.push(built.change);
                }
                PayoutStatus::Pending { .. } | PayoutStatus::Unseen => {
                    owed += u128::from(plan.total_out_sat());
                    outputs.extend(plan.inputs.iter().copied());
                }
            }
        }
        #[allow(unused_mut)] // only the planted bug below changes it
        let mut held = chains::bitcoin::holdings(&**node, &outputs, self.btc_depth).await.map_err(|e| e.to_string())?;
        #[cfg(feature = "planted-bugs")]
        if bridge::planted::active(bridge::planted::PlantedBug::UnseenOutputIsMissing) {
            held.missing.append(&mut held.unseen);
        }
        if !held.unseen.is_empty() {
            return Ok(BitcoinStanding::NodeBehind { tip: held.tip, needed: held.needed, unseen: held.unseen.len() });
        }
        let detail = (!held.missing.is_empty()).then(|| {
            format!(
                "{} vault output(s) the ledger records are not unspent on the chain: {:?}",
                held.missing.len(),
                held.missing
            )
        });
        Ok(BitcoinStanding::Judged(AssetSolvency {
            asset: AssetId::Btc,
            owed,
            held: u128::from(held.held_sat),
            paid_ahead: 0,
            detail,
        }))
    }
}

/// The Bitcoin vault as one check found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BitcoinStanding {
    Judged(AssetSolvency),
    /// The node lacks outputs from blocks it has not reached at depth: it may only lag (a
    /// backend behind its peers, a restart still syncing), so Bitcoin is not judged until its
    /// tip reaches `needed`. Never a shortfall: "not seen yet" is not "absent".
    NodeBehind {
        tip: u64,
        needed: u64,
        unseen: usize,
    },
}

impl BitcoinStanding {
    /// The judged standing, or why there is none now.
    pub fn judged(self) -> Result<AssetSolvency, SolvencyError> {
        match self {
            BitcoinStanding::Judged(asset) => Ok(asset),
            BitcoinStanding::NodeBehind { tip, needed, unseen } => {
                Err(SolvencyError { chain: Chain::Bitcoin, reason: Self::behind(tip, needed, unseen) })
            }
        }
    }

    fn behind(tip: u64, needed: u64, unseen: usize) -> String {
        format!(
            "the Bitcoin node's tip {tip} is behind the ledger: {unseen} vault output(s) the ledger records \
             come from blocks it has not reached at depth (tip {needed} needed)"
        )
    }
}

/// The Ethereum part of a check at one block: the ledger of batch `replayed` against the vault's
/// holdings at the snapshot's block plus what it paid for batches `replayed + 1 ..= da_latest`.
/// Payouts for batches past `da_latest` are named in the detail and not excused.
pub fn ethereum_at(state: &State, snapshot: &VaultSnapshot, replayed: u64, da_latest: u64) -> Vec<AssetSolvency> {
    let mut report = Vec::new();
    for (asset, supply) in state.supplies().filter(|(a, _)| a.chain() == Chain::Ethereum) {
        let held = snapshot.held.get(asset).copied().unwrap_or(0);
        let mut paid_ahead: u128 = 0;
        let mut unknown = Vec::new();
        for (batch, paid) in snapshot.paid_after.range(replayed + 1..) {
            let Some(amount) = paid.get(asset) else { continue };
            if *batch <= da_latest {
                paid_ahead = paid_ahead.saturating_add(*amount);
            } else {
                unknown.push(format!("{amount} for batch {batch}"));
            }
        }
        let detail = (!unknown.is_empty()).then(|| {
            format!(
                "the vault paid for batches the DA does not have (latest {da_latest}), at block {}: {}",
                snapshot.block,
                unknown.join(", ")
            )
        });
        report.push(AssetSolvency { asset: *asset, owed: supply.liabilities.units(), held, paid_ahead, detail });
    }
    report
}

/// The Ethereum assets the ledger credited deposits of from blocks after the snapshot's, each
/// with the highest such block: the vault as read may lack those deposits only because the node
/// is behind (a backend that fell back, a restart still syncing), so these assets are not judged
/// against it. "Not seen yet" is not "absent".
pub fn ethereum_unseen(state: &State, snapshot: &VaultSnapshot) -> Vec<(AssetId, u64)> {
    #[cfg(feature = "planted-bugs")]
    if bridge::planted::active(bridge::planted::PlantedBug::UnseenDepositJudged) {
        return Vec::new();
    }
    state
        .supplies()
        .filter(|(asset, _)| asset.chain() == Chain::Ethereum)
        .map(|(asset, _)| (*asset, state.deposit_height(asset)))
        .filter(|(_, height)| *height > snapshot.block)
        .collect()
}

/// What the guard concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not judged now, and why (the replay is behind the DA, or waits for its L1 node).
    NotJudged(String),
    /// Every asset covered.
    Solvent(Vec<AssetSolvency>),
    /// A shortfall seen in two checks in a row: the watchman stops signing, for this reason.
    Shortfall { why: String, report: Vec<AssetSolvency> },
}

/// A watchman's solvency decision: when to judge, against what, and when a shortfall is real.
#[derive(Debug)]
pub struct SolvencyGuard {
    watch: SolvencyWatch,
    /// The Ethereum vault's holdings and payouts, read at one block; `None`: Ethereum unwatched.
    eth: Option<Box<dyn VaultSnapshots>>,
    /// The view's payout scan as last saved in the follower's database.
    saved_scan: SavedScan,
}

/// What the guard knows of the payout scan saved in the follower's database.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SavedScan {
    /// Not read yet: the first check loads it (and resumes the view there).
    Unread,
    /// Nothing saved (a first start).
    Nothing,
    /// This place.
    At(PayoutScan),
}

/// Checks in a row a shortfall must be seen in before it halts anything: a Bitcoin payout can
/// confirm between two of one check's questions.
const STRIKES_TO_HALT: u32 = 2;

impl SolvencyGuard {
    /// `eth_confirmation`: which Ethereum block the vault is read at (the deposits' rule serves:
    /// the finalized block, or a depth below the head); `payout_scan`: where the vault's
    /// payouts start (its deployment block, or 0) and how many blocks one log request covers.
    pub fn new(
        watch: SolvencyWatch,
        eth_confirmation: chains::ethereum::Confirmation,
        payout_scan: PayoutScanConfig,
        vault: bridge::Address,
    ) -> Result<Self, SolvencyError> {
        let eth = match &watch.eth_rpc {
            Some(url) => Some(Box::new(
                VaultView::connect(url, &watch.tls, vault, eth_confirmation, payout_scan)
                    .map_err(|reason| SolvencyError { chain: Chain::Ethereum, reason })?,
            ) as Box<dyn VaultSnapshots>),
            None => None,
        };
        Ok(SolvencyGuard { watch, eth, saved_scan: SavedScan::Unread })
    }

    /// A guard reading the Ethereum vault through `eth` (the simulator's chain) instead of a
    /// node at `watch.eth_rpc`; `None`: Ethereum unwatched.
    pub fn with_vault(watch: SolvencyWatch, eth: Option<Box<dyn VaultSnapshots>>) -> Self {
        SolvencyGuard { watch, eth, saved_scan: SavedScan::Unread }
    }

    /// Judges `follower`'s replay if it has caught up with the DA (or stopped at an alarm) and
    /// waits for no L1 fact; a shortfall halts only when
    /// it is seen in [`STRIKES_TO_HALT`] checks in a row (checked again at once). Each verdict
    /// counts in `bridge_solvency_judged_total`: a guard that judges nothing for hours is off in
    /// effect, and the alert `SolvencyWatchJudgesNothing` says so.
    pub async fn judge(&mut self, follower: &Follower) -> Result<Verdict, SolvencyError> {
        let mut strikes = 0;
        loop {
            let report = match self.check(follower).await? {
                Err(why) => return Ok(Verdict::NotJudged(why)),
                Ok(report) => report,
            };
            if report.iter().all(|a| a.shortfall() == 0) {
                metrics::counter!("bridge_solvency_judged_total", "verdict" => "solvent").increment(1);
                return Ok(Verdict::Solvent(report));
            }
            strikes += 1;
            if strikes >= STRIKES_TO_HALT {
                let why = report
                    .iter()
                    .filter(|a| a.shortfall() > 0)
                    .map(|a| {
                        format!(
                            "solvency: the {} vault holds {} (and paid {} for batches after this replay) but the \
                             ledger owes {} ({})",
                            a.asset,
                            a.held,
                            a.paid_ahead,
                            a.owed,
                            a.detail.as_deref().unwrap_or("no detail")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                metrics::counter!("bridge_solvency_judged_total", "verdict" => "shortfall").increment(1);
                return Ok(Verdict::Shortfall { why, report });
            }
            tracing::warn!(?report, "a solvency shortfall seen once; checking again");
        }
    }

    /// One check at a consistent point, or why there is none now.
    async fn check(&mut self, follower: &Follower) -> Result<Result<Vec<AssetSolvency>, String>, SolvencyError> {
        let status = follower.status();
        if let Some(waiting) = &status.waiting {
            return Ok(Err(format!("batch {} waits for this node's view of {}", waiting.batch, waiting.chain)));
        }
        let da = |e: chains::da::DaError| SolvencyError { chain: Chain::Ethereum, reason: format!("the DA: {e}") };
        let latest = follower.da().latest().await.map_err(da)?;
        // After an alarm the replay stops for good and signing is halted already: judge what it
        // has (the vault's payouts for later batches on the DA still count as paid).
        if status.replayed < latest && status.alarms.is_empty() {
            return Ok(Err(format!("replaying: batch {} of {latest} on the DA", status.replayed)));
        }
        let state = follower.state();
        let mut report = Vec::new();
        // Why a chain (or some of its assets) is not judged now.
        let mut unjudged = Vec::new();
        if let Some(view) = &mut self.eth {
            let tokens: Vec<bridge::Address> = state
                .supplies()
                .filter_map(|(asset, _)| asset.eth_token())
                .filter(|t| *t != bridge::Address::ZERO)
                .collect();
            let scope = crate::store::payout_scan_scope(state.params().eth_vault);
            let store = follower.store();
            if self.saved_scan == SavedScan::Unread {
                self.saved_scan = match resume_payout_scan(&mut **view, store, &scope).await? {
                    Some(place) => SavedScan::At(place),
                    None => SavedScan::Nothing,
                };
            }
            let read = view.snapshot(&tokens, status.replayed).await;
            // Saved whatever the read concluded: a scan catching up keeps each step.
            if let Some(place) =
                view.place().filter(|place| !matches!(&self.saved_scan, SavedScan::At(saved) if saved == place))
            {
                match store.save_payout_scan(&scope, &place).await {
                    Ok(()) => self.saved_scan = SavedScan::At(place),
                    // Only a restart's cost: it reads those blocks again.
                    Err(error) => tracing::warn!(%error, "the vault's payout scan could not be saved"),
                }
            }
            let snapshot = match read.map_err(|reason| SolvencyError { chain: Chain::Ethereum, reason })? {
                VaultRead::At(snapshot) => snapshot,
                VaultRead::NotYet(why) => return Ok(Err(why)),
            };
            // Batches published since `latest` was read may have been paid already.
            let latest = follower.da().latest().await.map_err(da)?.max(latest);
            let unseen = ethereum_unseen(state, &snapshot);
            let judged = ethereum_at(state, &snapshot, status.replayed, latest);
            report.extend(judged.into_iter().filter(|a| unseen.iter().all(|(asset, _)| *asset != a.asset)));
            if !unseen.is_empty() {
                metrics::counter!("bridge_solvency_unjudged_total", "chain" => "ethereum").increment(1);
                let assets: Vec<String> =
                    unseen.iter().map(|(asset, height)| format!("{asset} from block {height}")).collect();
                unjudged.push(format!(
                    "the Ethereum node's block {} is behind the ledger, which credited deposits of {}",
                    snapshot.block,
                    assets.join(", ")
                ));
            }
        }
        if let (Some(node), Some(vault)) = (&self.watch.btc, state.params().btc_vault) {
            let standing = self.watch.bitcoin(node, state, vault).await;
            match standing.map_err(|reason| SolvencyError { chain: Chain::Bitcoin, reason })? {
                BitcoinStanding::Judged(asset) => report.push(asset),
                BitcoinStanding::NodeBehind { tip, needed, unseen } => {
                    metrics::counter!("bridge_solvency_unjudged_total", "chain" => "bitcoin").increment(1);
                    unjudged.push(BitcoinStanding::behind(tip, needed, unseen));
                }
            }
        }
        for entry in &report {
            metrics::gauge!("bridge_solvency_shortfall", "asset" => entry.asset.to_string())
                .set(entry.shortfall() as f64);
        }
        Ok(with_unjudged(report, unjudged))
    }
}

/// Puts `view` at the payout scan saved for `scope` (if it keeps one and one was saved); what
/// was saved. A saved place that does not decode is left, and the scan starts over: slower,
/// never wrong.
async fn resume_payout_scan(
    view: &mut dyn VaultSnapshots,
    store: &crate::store::ConfirmerStore,
    scope: &str,
) -> Result<Option<PayoutScan>, SolvencyError> {
    if view.place().is_none() {
        return Ok(None);
    }
    match store.payout_scan(scope).await {
        Ok(Some(place)) => {
            tracing::info!(next_block = place.next_block, "the vault's payout scan goes on from its saved place");
            view.resume(place.clone());
            Ok(Some(place))
        }
        Ok(None) => Ok(None),
        Err(error @ crate::store::StoreError::Corrupt { .. }) => {
            tracing::warn!(%error, "the vault's saved payout scan is unreadable; scanning from the start");
            Ok(None)
        }
        Err(error) => {
            Err(SolvencyError { chain: Chain::Ethereum, reason: format!("the confirmer's database: {error}") })
        }
    }
}

/// One check's outcome when assets could not be judged (`unjudged`: why, for each chain): a
/// shortfall among the assets that were judged still counts, so a lagging node on one chain
/// never hides a shortfall on the other; without one, the check is not judged (a vault that
/// looks whole only because assets were skipped is not called solvent).
fn with_unjudged(report: Vec<AssetSolvency>, unjudged: Vec<String>) -> Result<Vec<AssetSolvency>, String> {
    if unjudged.is_empty() || report.iter().any(|a| a.shortfall() > 0) { Ok(report) } else { Err(unjudged.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(owed: u128, held: u128) -> AssetSolvency {
        AssetSolvency { asset: AssetId::Eth, owed, held, paid_ahead: 0, detail: None }
    }

    #[test]
    fn a_lagging_bitcoin_node_does_not_hide_an_ethereum_shortfall() {
        let behind = vec!["the Bitcoin node's tip 5 is behind the ledger".to_owned()];
        let report = with_unjudged(vec![eth(100, 60)], behind).unwrap();
        assert_eq!(report[0].shortfall(), 40);
    }

    #[test]
    fn with_a_chain_unjudged_a_whole_vault_elsewhere_is_not_called_solvent() {
        let behind = vec!["behind".to_owned()];
        assert_eq!(with_unjudged(vec![eth(100, 100)], behind.clone()), Err("behind".to_owned()));
        assert_eq!(with_unjudged(vec![], behind), Err("behind".to_owned()));
        assert_eq!(with_unjudged(vec![eth(100, 100)], Vec::new()), Ok(vec![eth(100, 100)]));
        let both = vec!["eth behind".to_owned(), "btc behind".to_owned()];
        assert_eq!(with_unjudged(vec![], both), Err("eth behind; btc behind".to_owned()));
    }
}

//! A transaction's stages, decided from what each source says, with no I/O: the coordinator's
//! claims (accepted, batched, published), this confirmer's own replay (replayed, hard-final) and
//! the L1 chain read from this confirmer's own node (signed, paid): the Ethereum vault, or the
//! Bitcoin payout built from the replay's plan with its witnesses checked here. The page shows
//! each stage with where it comes from, so a user sees what was verified and what is only a
//! claim.

use bridge::Chain;
use serde::{Deserialize, Serialize};

use super::btc_payout::AttemptOnNode;

/// What the coordinator says of a transaction (`GET /tx/{hash}` there), if it was asked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CoordinatorView {
    pub batch: Option<u64>,
    pub locator: Option<String>,
}

/// What L1 shows of a withdrawal's payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutView {
    /// Not a withdrawal: nothing to look for.
    NotApplicable,
    /// This confirmer reads no node of the withdrawal's chain.
    NoNode(Chain),
    /// The node could not be asked now, or the replay lacks what the lookup needs.
    Unknown(Chain, String),
    /// Ethereum, leaf `index` of the batch: whether the vault holds its root, and the paying
    /// transaction.
    Seen { index: u32, root: Option<String>, paid: Option<L1Tx> },
    /// Bitcoin: the plan paying it and what the node holds of it.
    Bitcoin(BtcPayoutView),
}

/// A Bitcoin withdrawal's payout as this confirmer's replay and node show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BtcPayoutView {
    /// Not hard-final here yet (or known only from the coordinator): no plan is looked for.
    NotFinal,
    /// No hard-final batch in `from..=searched_to` plans it (the search is bounded).
    NotPlanned { from: u64, searched_to: u64 },
    /// Plan `plan` of batch `plan_batch` pays it; the node has none of its attempts.
    Planned { plan: u64, plan_batch: u64 },
    /// The node holds `attempt` of plan `plan`.
    OnNode { plan: u64, plan_batch: u64, attempt: AttemptOnNode },
}

/// The L1 transaction paying a withdrawal, as this confirmer's node shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct L1Tx {
    pub chain: Chain,
    /// The transaction's hash: `0x`-hex on Ethereum, the txid as Bitcoin explorers write it.
    pub hash: String,
    /// Blocks on the node's active chain from the one holding it to the tip; 0 in the mempool.
    pub confirmations: u64,
}

/// Everything known about one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// `None`: the coordinator was not asked (no `--coordinator`) or did not answer.
    pub coordinator: Option<CoordinatorView>,
    /// The batch this confirmer replayed it in, and whether that batch is hard-final.
    pub replayed_in: Option<(u64, bool)>,
    pub payout: PayoutView,
}

/// Who vouches for a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A claim of the coordinator (soft finality).
    Coordinator,
    /// This confirmer's own replay of the DA (hard finality).
    Confirmer,
    /// The Ethereum vault, read from this confirmer's node.
    Ethereum,
    /// This confirmer's Bitcoin node, with the witnesses checked against the replay's plan.
    Bitcoin,
}

impl Source {
    fn of(chain: Chain) -> Self {
        match chain {
            Chain::Ethereum => Source::Ethereum,
            Chain::Bitcoin => Source::Bitcoin,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// `accepted`, `batched`, `published`, `hard-final`, `signed`, `paid` (the names
    /// `bridgectl` prints).
    pub stage: String,
    pub reached: bool,
    pub source: Source,
    /// What shows it: the batch, the Arweave id, the root, the L1 transaction.
    pub detail: Option<String>,
}

fn stage(name: &str, reached: bool, source: Source, detail: Option<String>) -> Stage {
    Stage { stage: name.into(), reached, source, detail }
}

fn chain_name(chain: Chain) -> &'static str {
    match chain {
        Chain::Ethereum => "Ethereum",
        Chain::Bitcoin => "Bitcoin",
    }
}

/// The signed and paid stages: `(source, signed, paid, detail of what is not reached)`.
type L1Stages = (Source, Option<String>, Option<String>, Option<String>);

fn l1_stages(payout: &PayoutView, batch: u64) -> Option<L1Stages> {
    Some(match payout {
        PayoutView::NotApplicable => return None,
        PayoutView::NoNode(chain) => {
            let why = format!("this confirmer reads no {} node", chain_name(*chain));
            (Source::of(*chain), None, None, Some(why))
        }
        PayoutView::Unknown(chain, why) => {
            let why = format!("the {} node did not answer: {why}", chain_name(*chain));
            (Source::of(*chain), None, None, Some(why))
        }
        PayoutView::Seen { index, root, paid } => (
            Source::Ethereum,
            root.as_ref().map(|r| format!("root {r} for batch {batch}")),
            paid.as_ref().map(|tx| format!("Ethereum tx {}, leaf {index} of batch {batch}", tx.hash)),
            None,
        ),
        PayoutView::Bitcoin(view) => {
            let (signed, paid, why) = bitcoin_stages(view);
            (Source::Bitcoin, signed, paid, why)
        }
    })
}

fn bitcoin_stages(view: &BtcPayoutView) -> (Option<String>, Option<String>, Option<String>) {
    match view {
        BtcPayoutView::NotFinal => (None, None, None),
        BtcPayoutView::NotPlanned { from, searched_to } => {
            (None, None, Some(format!("no payout plan in hard-final batches {from} to {searched_to} pays it yet")))
        }
        BtcPayoutView::Planned { plan, plan_batch } => (
            None,
            None,
            Some(format!("payout plan {plan} (batch {plan_batch}) pays it; none of its attempts is on the node yet")),
        ),
        BtcPayoutView::OnNode { plan, plan_batch, attempt } => {
            let AttemptOnNode { attempt: k, txid, confirmations, signatures } = attempt;
            match signatures {
                Err(why) => {
                    (None, None, Some(format!("attempt {k} of payout plan {plan} ({txid}) is on the node, but {why}")))
                }
                Ok(()) => {
                    let signed = format!(
                        "attempt {k} of payout plan {plan} (batch {plan_batch}): Bitcoin tx {txid}, every input signed by the group"
                    );
                    let paid =
                        (*confirmations > 0).then(|| format!("Bitcoin tx {txid}, {confirmations} confirmation(s)"));
                    let why = paid.is_none().then(|| format!("Bitcoin tx {txid} waits in the mempool"));
                    (Some(signed), paid, why)
                }
            }
        }
    }
}

/// The stages in order. A later stage the confirmer or the chain has seen implies the earlier
/// ones even when the coordinator was not asked, so a user never sees "paid" after an unreached
/// "accepted".
pub fn decide(facts: &Facts) -> Vec<Stage> {
    let coordinator = facts.coordinator.clone().unwrap_or_default();
    let replayed = facts.replayed_in;
    let batch = replayed.map(|(b, _)| b).or(coordinator.batch);
    let hard_final = replayed.is_some_and(|(_, f)| f);
    let published = coordinator.locator.clone().map(|l| format!("at {l}"));
    let mut stages = vec![
        stage("accepted", facts.coordinator.is_some() || replayed.is_some(), Source::Coordinator, None),
        stage("batched", batch.is_some(), Source::Coordinator, batch.map(|b| format!("batch {b}"))),
        stage("published", published.is_some() || replayed.is_some(), Source::Coordinator, published),
        stage(
            "hard-final",
            hard_final,
            Source::Confirmer,
            replayed.map(|(b, f)| {
                if f {
                    format!("batch {b} replayed and verified")
                } else {
                    format!("batch {b} replayed, not yet verified")
                }
            }),
        ),
    ];
    if let Some((source, signed, paid, why)) = l1_stages(&facts.payout, batch.unwrap_or_default()) {
        stages.push(stage("signed", signed.is_some() || paid.is_some(), source, signed.or(why.clone())));
        stages.push(stage("paid", paid.is_some(), source, paid.or(why)));
    }
    stages
}

/// The L1 transaction to show: Ethereum's once the vault logged the payment; Bitcoin's once
/// the node holds an attempt whose witnesses are the group's (in the mempool or mined).
pub fn l1_tx(facts: &Facts) -> Option<L1Tx> {
    match &facts.payout {
        PayoutView::Seen { paid, .. } => paid.clone(),
        PayoutView::Bitcoin(BtcPayoutView::OnNode { attempt, .. }) if attempt.signatures.is_ok() => {
            Some(L1Tx { chain: Chain::Bitcoin, hash: attempt.txid.to_string(), confirmations: attempt.confirmations })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reached(stages: &[Stage]) -> Vec<&str> {
        stages.iter().filter(|s| s.reached).map(|s| s.stage.as_str()).collect()
    }

    #[test]
    fn a_transfer_moves_from_accepted_to_hard_final() {
        let accepted = Facts {
            coordinator: Some(CoordinatorView::default()),
            replayed_in: None,
            payout: PayoutView::NotApplicable,
        };
        assert_eq!(reached(&decide(&accepted)), ["accepted"]);
        assert_eq!(decide(&accepted).len(), 4, "a transfer has no L1 stages");
        let published = Facts {
            coordinator: Some(CoordinatorView { batch: Some(3), locator: Some("abc".into()) }),
            ..accepted.clone()
        };
        assert_eq!(reached(&decide(&published)), ["accepted", "batched", "published"]);
        let replayed = Facts { replayed_in: Some((3, false)), ..published.clone() };
        let stages = decide(&replayed);
        assert_eq!(reached(&stages), ["accepted", "batched", "published"]);
        assert_eq!(stages[3].detail.as_deref(), Some("batch 3 replayed, not yet verified"));
        let final_ = Facts { replayed_in: Some((3, true)), ..published };
        assert_eq!(reached(&decide(&final_)), ["accepted", "batched", "published", "hard-final"]);
    }

    #[test]
    fn a_withdrawal_is_signed_then_paid_as_the_vault_shows() {
        let base = Facts {
            coordinator: None,
            replayed_in: Some((7, true)),
            payout: PayoutView::Seen { index: 2, root: None, paid: None },
        };
        // Without the coordinator's word, what the confirmer replayed implies the earlier stages.
        assert_eq!(reached(&decide(&base)), ["accepted", "batched", "published", "hard-final"]);
        let signed =
            Facts { payout: PayoutView::Seen { index: 2, root: Some("0xab".into()), paid: None }, ..base.clone() };
        assert_eq!(decide(&signed)[4].detail.as_deref(), Some("root 0xab for batch 7"));
        let paid = Facts {
            payout: PayoutView::Seen {
                index: 2,
                root: Some("0xab".into()),
                paid: Some(L1Tx { chain: Chain::Ethereum, hash: "0xcd".into(), confirmations: 4 }),
            },
            ..base.clone()
        };
        let stages = decide(&paid);
        assert_eq!(reached(&stages), ["accepted", "batched", "published", "hard-final", "signed", "paid"]);
        assert_eq!(stages[5].detail.as_deref(), Some("Ethereum tx 0xcd, leaf 2 of batch 7"));
        assert_eq!(stages[5].source, Source::Ethereum);
        assert_eq!(l1_tx(&paid).map(|tx| (tx.hash, tx.confirmations)), Some(("0xcd".to_owned(), 4)));
        assert_eq!(l1_tx(&signed), None);
    }

    #[test]
    fn an_unreadable_node_is_said_not_guessed() {
        let facts = Facts {
            coordinator: None,
            replayed_in: Some((1, true)),
            payout: PayoutView::Unknown(Chain::Ethereum, "connection refused".into()),
        };
        let stages = decide(&facts);
        assert!(!stages[5].reached);
        assert_eq!(stages[5].detail.as_deref(), Some("the Ethereum node did not answer: connection refused"));
    }
}

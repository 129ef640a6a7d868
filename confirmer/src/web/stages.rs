//! A transaction's stages, decided from what each source says, with no I/O: the coordinator's
//! claims (accepted, batched, published), this confirmer's own replay (replayed, hard-final) and
//! the Ethereum vault (signed, paid). The page shows each stage with where it comes from, so a
//! user sees what was verified and what is only a claim.

use serde::{Deserialize, Serialize};

/// What the coordinator says of a transaction (`GET /tx/{hash}` there), if it was asked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CoordinatorView {
    pub batch: Option<u64>,
    pub locator: Option<String>,
}

/// What the vault shows of an Ethereum withdrawal's leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutView {
    /// Not an Ethereum withdrawal, or not yet hard-final here: nothing to look for.
    NotApplicable,
    /// This confirmer reads no Ethereum node.
    NoNode,
    /// The node could not be asked now.
    Unknown(String),
    /// Leaf `index` of the batch: whether the vault holds its root, and the paying transaction.
    Seen { index: u32, root: Option<String>, paid_in: Option<String> },
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

/// The stages in order. A later stage the confirmer or the chain has seen implies the earlier
/// ones even when the coordinator was not asked, so a user never sees "paid" after an unreached
/// "accepted".
pub fn decide(facts: &Facts) -> Vec<Stage> {
    let coordinator = facts.coordinator.clone().unwrap_or_default();
    let replayed = facts.replayed_in;
    let batch = replayed.map(|(b, _)| b).or(coordinator.batch);
    let hard_final = replayed.is_some_and(|(_, f)| f);
    let (signed, paid) = match &facts.payout {
        PayoutView::Seen { index, root, paid_in } => (
            root.as_ref().map(|r| format!("root {r} for batch {}", batch.unwrap_or_default())),
            paid_in.as_ref().map(|tx| format!("Ethereum tx {tx}, leaf {index} of batch {}", batch.unwrap_or_default())),
        ),
        _ => (None, None),
    };
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
    let detail = match &facts.payout {
        PayoutView::NoNode => Some("this confirmer reads no Ethereum node".to_owned()),
        PayoutView::Unknown(why) => Some(format!("the Ethereum node did not answer: {why}")),
        _ => None,
    };
    if facts.payout != PayoutView::NotApplicable {
        stages.push(stage("signed", signed.is_some() || paid.is_some(), Source::Ethereum, signed.or(detail.clone())));
        stages.push(stage("paid", paid.is_some(), Source::Ethereum, paid.or(detail)));
    }
    stages
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
            payout: PayoutView::Seen { index: 2, root: None, paid_in: None },
        };
        // Without the coordinator's word, what the confirmer replayed implies the earlier stages.
        assert_eq!(reached(&decide(&base)), ["accepted", "batched", "published", "hard-final"]);
        let signed =
            Facts { payout: PayoutView::Seen { index: 2, root: Some("0xab".into()), paid_in: None }, ..base.clone() };
        assert_eq!(decide(&signed)[4].detail.as_deref(), Some("root 0xab for batch 7"));
        let paid = Facts {
            payout: PayoutView::Seen { index: 2, root: Some("0xab".into()), paid_in: Some("0xcd".into()) },
            ..base.clone()
        };
        let stages = decide(&paid);
        assert_eq!(reached(&stages), ["accepted", "batched", "published", "hard-final", "signed", "paid"]);
        assert_eq!(stages[5].detail.as_deref(), Some("Ethereum tx 0xcd, leaf 2 of batch 7"));
        assert_eq!(stages[5].source, Source::Ethereum);
    }

    #[test]
    fn an_unreadable_node_is_said_not_guessed() {
        let facts = Facts {
            coordinator: None,
            replayed_in: Some((1, true)),
            payout: PayoutView::Unknown("connection refused".into()),
        };
        let stages = decide(&facts);
        assert!(!stages[5].reached);
        assert_eq!(stages[5].detail.as_deref(), Some("the Ethereum node did not answer: connection refused"));
    }
}

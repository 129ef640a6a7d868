//! When an Ethereum block counts as final: at or below the node's `finalized` block (the
//! default: after the merge, a block the beacon chain has finalized cannot be reverted without
//! a third of all stake being slashed), or `depth` blocks below the head, the rule for chains
//! that do not serve the tag and the fallback when a node does not.
//!
//! Every check asks again which rule the node allows, so a node that starts serving the tag
//! (after its sync) is followed by it; [`FinalityWatch`] keeps the last answer for `/status`
//! and the `bridge_eth_*` metrics.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::providers::{DynProvider, Provider};
use alloy::transports::TransportError;
use serde::{Deserialize, Serialize};

/// The rule a role is configured with (`eth_finality` in its config), or the one in force.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinalityRule {
    /// The node's `finalized` block; the depth when the node does not serve the tag.
    #[default]
    Finalized,
    /// A fixed number of blocks on top, whatever the node says is finalized.
    Depth,
}

impl std::fmt::Display for FinalityRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FinalityRule::Finalized => "finalized",
            FinalityRule::Depth => "depth",
        })
    }
}

impl std::str::FromStr for FinalityRule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "finalized" => Ok(FinalityRule::Finalized),
            "depth" => Ok(FinalityRule::Depth),
            other => Err(format!("{other:?} is not an Ethereum finality rule: say \"finalized\" or \"depth\"")),
        }
    }
}

/// How deep a deposit (or a payout read) must be before it counts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Confirmation {
    /// At least this many blocks on top of the block.
    Depth(u64),
    /// At or below the node's `finalized` block; `fallback_depth` blocks on top when the node
    /// does not serve the tag.
    Finalized { fallback_depth: u64 },
}

impl Confirmation {
    /// The rule named in a config, with its depth.
    pub fn new(rule: FinalityRule, depth: u64) -> Self {
        match rule {
            FinalityRule::Finalized => Confirmation::Finalized { fallback_depth: depth },
            FinalityRule::Depth => Confirmation::Depth(depth),
        }
    }

    pub fn configured(self) -> FinalityRule {
        match self {
            Confirmation::Depth(_) => FinalityRule::Depth,
            Confirmation::Finalized { .. } => FinalityRule::Finalized,
        }
    }

    /// The fixed depth: the rule itself, or the fallback.
    pub fn depth(self) -> u64 {
        match self {
            Confirmation::Depth(depth) | Confirmation::Finalized { fallback_depth: depth } => depth,
        }
    }

    /// The node's head and the highest block that counts now. Errors are the node's transport
    /// failing; a node that answers the `finalized` question with an error or nothing does not
    /// serve the tag, and the depth is used.
    pub async fn safe_height(self, provider: &DynProvider) -> Result<SafeHeight, TransportError> {
        let head = provider.get_block_number().await?;
        let by_depth = SafeHeight {
            head,
            rule: FinalityRule::Depth,
            finalized: None,
            safe: head.checked_sub(self.depth()),
            lag: self.depth(),
        };
        let Confirmation::Finalized { .. } = self else {
            return Ok(by_depth);
        };
        match provider.get_block_by_number(BlockNumberOrTag::Finalized).await {
            Ok(Some(block)) => {
                let finalized = block.header.number;
                // A finalized block above the head read just before is the head moving on:
                // never count past the head that was read.
                let safe = finalized.min(head);
                Ok(SafeHeight {
                    head,
                    rule: FinalityRule::Finalized,
                    finalized: Some(finalized),
                    safe: Some(safe),
                    lag: head - safe,
                })
            }
            Ok(None) => Ok(by_depth),
            Err(error) if error.as_error_resp().is_some() => {
                tracing::debug!(%error, "the node does not serve the finalized tag; counting by depth");
                Ok(by_depth)
            }
            Err(error) => Err(error),
        }
    }
}

/// One answer to "what is final now".
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SafeHeight {
    /// The node's head.
    pub head: u64,
    /// The rule that gave `safe`: `depth` when configured so or when the node lacks the tag.
    pub rule: FinalityRule,
    /// The node's `finalized` block, if it serves the tag.
    pub finalized: Option<u64>,
    /// The highest block that counts; none while the chain is shorter than the depth.
    pub safe: Option<u64>,
    /// How far what counts trails the head: the depth, or the distance to the finalized block.
    /// A block at the head counts once the head has moved this far past it (at today's pace).
    pub lag: u64,
}

impl SafeHeight {
    /// Whether block `number` counts.
    pub fn counts(&self, number: u64) -> bool {
        self.safe.is_some_and(|safe| number <= safe)
    }
}

/// What `/status` shows of a role's Ethereum finality.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct FinalityStatus {
    /// The rule configured (`eth_finality`).
    pub configured: FinalityRule,
    /// The rule the last answer was given by (`depth` when the node lacks the tag); none yet.
    pub in_force: Option<FinalityRule>,
    /// The fixed depth (the rule, or the fallback).
    pub depth_blocks: u64,
    pub head: Option<u64>,
    /// The node's `finalized` block at the last answer, if it serves the tag.
    pub finalized: Option<u64>,
    /// The highest block that counted at the last answer.
    pub safe: Option<u64>,
    /// The node's error, if the last question failed (with its cause, e.g. a certificate the
    /// role does not trust).
    pub error: Option<String>,
}

/// The last finality answer a watcher or verifier got, shared with the API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct FinalityWatch(Arc<Mutex<FinalityStatus>>);

impl FinalityWatch {
    pub fn new(confirmation: Confirmation) -> Self {
        FinalityWatch(Arc::new(Mutex::new(FinalityStatus {
            configured: confirmation.configured(),
            in_force: None,
            depth_blocks: confirmation.depth(),
            head: None,
            finalized: None,
            safe: None,
            error: None,
        })))
    }

    pub fn status(&self) -> FinalityStatus {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn record(&self, seen: &SafeHeight) {
        let mut status = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if status.configured == FinalityRule::Finalized
            && seen.rule == FinalityRule::Depth
            && status.in_force != Some(FinalityRule::Depth)
        {
            tracing::warn!(
                depth = status.depth_blocks,
                "the Ethereum node does not serve the finalized tag: counting by depth until it does"
            );
        }
        status.in_force = Some(seen.rule);
        status.head = Some(seen.head);
        status.finalized = seen.finalized;
        status.safe = seen.safe;
        status.error = None;
        let fallback = status.configured == FinalityRule::Finalized && seen.rule == FinalityRule::Depth;
        metrics::gauge!("bridge_eth_finality_fallback").set(if fallback { 1.0 } else { 0.0 });
        if let Some(finalized) = seen.finalized {
            metrics::gauge!("bridge_eth_finalized_block").set(finalized as f64);
        }
        if let Some(safe) = seen.safe {
            metrics::gauge!("bridge_eth_safe_block").set(safe as f64);
        }
    }

    pub fn record_error(&self, error: &str) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).error = Some(error.to_owned());
    }
}

/// How long `/status` waits for the node: a status page must answer even when the node does
/// not; the last answer is shown then, with the timeout as its error.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the node what is final now, for a `/status` that must be current even while no deposit
/// is being checked (a confirmer asks its node only when a batch names a deposit).
#[derive(Clone, Debug)]
pub struct FinalityProbe {
    provider: DynProvider,
    confirmation: Confirmation,
    watch: FinalityWatch,
}

impl FinalityProbe {
    pub fn new(provider: DynProvider, confirmation: Confirmation, watch: FinalityWatch) -> Self {
        FinalityProbe { provider, confirmation, watch }
    }

    /// Asks the node (within [`PROBE_TIMEOUT`]), records the answer or the error, and returns
    /// the status.
    pub async fn refresh(&self) -> FinalityStatus {
        match tokio::time::timeout(PROBE_TIMEOUT, self.confirmation.safe_height(&self.provider)).await {
            Ok(Ok(seen)) => self.watch.record(&seen),
            Ok(Err(error)) => self.watch.record_error(&error.to_string()),
            Err(_) => self.watch.record_error(&format!("the node did not answer in {} s", PROBE_TIMEOUT.as_secs())),
        }
        self.watch.status()
    }
}

//! What this watchman's own replay says each hard-final batch owes, as the signing policy needs
//! it. The follower loop writes after each step; signers read from any thread.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bridge::batch::Settlement;

use crate::follower::Follower;

#[derive(Debug, Default)]
struct Entries {
    hard_final: u64,
    /// Only batches that owe something on L1.
    settlements: BTreeMap<u64, Arc<Settlement>>,
    /// Why signing is stopped, if it is: an alarm, or an operator.
    halted: Option<String>,
}

/// Cheap to clone; all clones share one book.
#[derive(Debug, Clone, Default)]
pub struct SettlementBook(Arc<RwLock<Entries>>);

impl SettlementBook {
    /// Takes what the follower has made hard-final since the last call, and halts on any alarm.
    pub fn update_from(&self, follower: &Follower) {
        let status = follower.status();
        let Ok(mut entries) = self.0.write() else { return };
        for number in entries.hard_final + 1..=status.hard_final {
            if let Some(settlement) = follower.final_settlement(number)
                && !settlement.is_empty()
            {
                entries.settlements.insert(number, settlement);
            }
        }
        entries.hard_final = entries.hard_final.max(status.hard_final);
        if entries.halted.is_none()
            && let Some(alarm) = status.alarms.first()
        {
            tracing::error!(batch = alarm.number, kind = %alarm.kind, "alarm: this watchman stops signing");
            metrics::gauge!("watchman_signing_halted").set(1.0);
            entries.halted = Some(format!("alarm {} at batch {}: {}", alarm.kind, alarm.number, alarm.detail));
        }
    }

    /// Stops all signing (an alarm, or an operator's command).
    pub fn halt(&self, why: String) {
        if let Ok(mut entries) = self.0.write()
            && entries.halted.is_none()
        {
            metrics::gauge!("watchman_signing_halted").set(1.0);
            entries.halted = Some(why);
        }
    }

    pub fn halted(&self) -> Option<String> {
        self.0.read().ok().and_then(|e| e.halted.clone())
    }

    pub fn hard_final(&self) -> u64 {
        self.0.read().map(|e| e.hard_final).unwrap_or(0)
    }

    /// What hard-final batch `number` owes; `None` if it is not hard-final here. A hard-final
    /// batch that owes nothing has an empty settlement.
    pub fn settlement(&self, number: u64) -> Option<Arc<Settlement>> {
        let entries = self.0.read().ok()?;
        if number == 0 || number > entries.hard_final {
            return None;
        }
        Some(entries.settlements.get(&number).cloned().unwrap_or_else(|| Arc::new(Settlement::empty())))
    }

    /// Hard-final batches that owe something on L1, from `from` on.
    pub fn owing_from(&self, from: u64) -> Vec<(u64, Arc<Settlement>)> {
        self.0.read().map(|e| e.settlements.range(from..).map(|(n, s)| (*n, s.clone())).collect()).unwrap_or_default()
    }
}

//! Every running watchman's duty turn, as the binary's `OnDuty` runs it: the real [`Duties`]
//! decides when solvency is judged (the first turn and every tenth after), and the real
//! [`SolvencyGuard`] judges the watchman's own replay against its own Bitcoin and Ethereum
//! nodes, which lag and fall back when their backends do (a fault). A shortfall halts the
//! watchman's signing through its book, as in the binary.
//!
//! `no-false-halt`: while the coordinator is honest, no watchman halts. A node that has not
//! reached a block the ledger names must read as "not seen yet", never as a robbed vault; one
//! halted watchman is one signer fewer, and lagging backends shared by several would stop every
//! payout.

use confirmer::solvency::{SolvencyGuard, SolvencyWatch, Verdict};
use confirmer::watchman::Duties;
use confirmer::watchman::duties::Judged;

use crate::SimError;
use crate::eth_vault_view::SimVaultView;
use crate::l1::L1_BLOCK_MS;
use crate::world::World;

/// One watchman's duties and its solvency guard, in its memory (a crash loses them; the
/// restart builds them again, and judges on its first turn as the binary does).
pub(crate) struct DutyTurns {
    duties: Duties,
    guard: SolvencyGuard,
    /// Why the last judgement was not made, so a reason that repeats is logged once.
    last_unjudged: Option<String>,
}

impl World {
    /// Watchman `index`'s duties as its binary builds them, on its own Bitcoin and Ethereum nodes.
    pub(crate) fn new_duties(&self, index: usize) -> Result<DutyTurns, SimError> {
        let watch = SolvencyWatch {
            eth_rpc: None,
            btc: self.btc.as_ref().map(|chain| chain.view(self.confirmers[index].btc_lag.clone()).shared()),
            btc_depth: crate::btc_chain::BTC_DEPTH as u32,
            tls: Default::default(),
        };
        // The vault as this watchman's Ethereum node shows it (the binary reads it over JSON-RPC).
        let eth = self.evm.is_some().then(|| {
            Box::new(SimVaultView {
                chain: self.eth.clone(),
                l1: self.l1.clone(),
                now_ms: self.now_ms.clone(),
                lag_blocks: self.confirmers[index].lag_blocks.clone(),
            }) as Box<dyn chains::ethereum_view::VaultSnapshots>
        });
        let guard = SolvencyGuard::with_vault(watch, eth);
        Ok(DutyTurns { duties: Duties::new(false), guard, last_unjudged: None })
    }

    /// A duty turn for every running watchman, at each Ethereum block (the binary's loop turns
    /// more often; what matters here is that solvency is judged while nodes lag).
    pub(crate) async fn duty_turns(&mut self) -> Result<(), SimError> {
        let now = self.now();
        if !now.is_multiple_of(L1_BLOCK_MS) {
            return Ok(());
        }
        for index in 0..self.confirmers.len() {
            let role = &mut self.confirmers[index];
            // A confirmer that stopped stepping stopped its watchman's loop too (one process).
            if role.stalled_until.is_some_and(|until| now < until) {
                continue;
            }
            let (Some(follower), Some(watchman)) = (&role.follower, role.watchman.as_mut()) else { continue };
            let plan = watchman.duties.duties.begin();
            if !plan.judge_solvency || watchman.book.halted().is_some() {
                continue;
            }
            let judged = Duties::judged(watchman.duties.guard.judge(follower).await);
            let line = match judged {
                Judged::Halt(why) => {
                    watchman.book.halt(why.clone());
                    if self.bad_from.is_none() {
                        self.violate(
                            "no-false-halt",
                            format!("watchman {index} halted with an honest coordinator: {why}"),
                        );
                    }
                    Some(format!("watchman {index} halts its signing: {why}"))
                }
                Judged::Fine(Verdict::NotJudged(why)) => {
                    let repeated = watchman.duties.last_unjudged.as_ref() == Some(&why);
                    watchman.duties.last_unjudged = Some(why.clone());
                    (!repeated).then(|| format!("watchman {index}'s solvency not judged: {why}"))
                }
                Judged::Fine(_) => {
                    watchman.duties.last_unjudged = None;
                    None
                }
                Judged::Failed(error) => Some(format!("watchman {index}'s solvency check failed: {error}")),
            };
            if let Some(line) = line {
                self.log(line);
            }
        }
        Ok(())
    }
}

//! Every running watchman's duty turn, as the binary's `OnDuty` runs it: the real [`Duties`]
//! decides when solvency is judged (the first turn and every tenth after), and the real
//! [`SolvencyGuard`] judges the watchman's own replay against its own Bitcoin and Ethereum
//! nodes, which lag and fall back when their backends do (a fault). A shortfall halts the
//! watchman's signing through its book, as in the binary.
//!
//! Every watchman holds the vault's guardian key: once its signing is halted (an alarm, or a
//! shortfall), the real `Duties` says when to look at the Ethereum vault's pause (every turn
//! until the pause is [`confirmer::watchman::duties::PAUSE_FINAL_BLOCKS`] deep), and the shell
//! reads `paused()` and, if it is not, sends `pause()` through the mempool as the binary's
//! `Guardian` does, waiting for the block that mines it. An Ethereum reorg can drop a mined
//! pause (eth_reorg.rs).
//!
//! `no-false-halt`: while the coordinator is honest, no watchman halts. A node that has not
//! reached a block the ledger names must read as "not seen yet", never as a robbed vault; one
//! halted watchman is one signer fewer, and lagging backends shared by several would stop every
//! payout. `no-false-pause`: while the coordinator is honest, the vault is never paused.
//! `pause-liveness`: after healing, a vault whose watchmen alarmed bad history is paused.

use confirmer::solvency::{SolvencyGuard, SolvencyWatch, Verdict};
use confirmer::watchman::Duties;
use confirmer::watchman::duties::Judged;

use crate::SimError;
use crate::eth_chain::{Call, PendingSend};
use crate::eth_vault_view::SimVaultView;
use crate::l1::{L1, L1_BLOCK_MS};
use crate::world::World;

/// One watchman's duties and its solvency guard, in its memory (a crash loses them; the
/// restart builds them again, and judges on its first turn as the binary does).
pub(crate) struct DutyTurns {
    duties: Duties,
    guard: SolvencyGuard,
    /// Why the last judgement was not made, so a reason that repeats is logged once.
    last_unjudged: Option<String>,
    /// Its guardian pause, sent and not yet mined: the binary's turn awaits its receipt.
    pausing: Option<tokio::sync::oneshot::Receiver<Result<crate::evm::Settled, String>>>,
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
        // With a guardian key, once the vault is deployed (by the key ceremony).
        let guardian = self.evm.is_some();
        Ok(DutyTurns { duties: Duties::new(guardian), guard, last_unjudged: None, pausing: None })
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
            if plan.judge_solvency && watchman.book.halted().is_none() {
                let judged = Duties::judged(watchman.duties.guard.judge(follower).await);
                self.solvency_judged(index, judged);
            }
            self.guardian_turn(index);
        }
        Ok(())
    }

    /// What watchman `index` does with a solvency judgement.
    fn solvency_judged(&mut self, index: usize, judged: Judged) {
        let Some(watchman) = self.confirmers[index].watchman.as_mut() else { return };
        let line = match judged {
            Judged::Halt(why) => {
                watchman.book.halt(why.clone());
                if self.bad_from.is_none() {
                    self.violate("no-false-halt", format!("watchman {index} halted with an honest coordinator: {why}"));
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

    /// Watchman `index`'s guardian: the pause it sent is heard from, and a pause sent if its
    /// `Duties` says one is due.
    fn guardian_turn(&mut self, index: usize) {
        let tip = L1::tip(self.now());
        let Some(watchman) = self.confirmers[index].watchman.as_mut() else { return };
        let turns = &mut watchman.duties;
        if let Some(receipt) = turns.pausing.as_mut() {
            match receipt.try_recv() {
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => return,
                // Mined in the block just made (the receipt is heard at the tick after).
                Ok(Ok(_)) => {
                    turns.pausing = None;
                    turns.duties.pause_mined(tip);
                }
                // Reverted or dropped: the turn failed, and the next sends it again.
                Ok(Err(_)) | Err(tokio::sync::oneshot::error::TryRecvError::Closed) => turns.pausing = None,
            }
        }
        let halted = watchman.book.halted();
        if !turns.duties.pause_due(halted.is_some()) {
            return;
        }
        // As `chains::ethereum::pause_vault`: a vault paused already is left so.
        let paused = self.evm.as_mut().map(crate::evm::EthVault::paused);
        let Some(watchman) = self.confirmers[index].watchman.as_mut() else { return };
        match paused {
            Some(Ok(true)) => watchman.duties.duties.vault_paused(tip),
            Some(Ok(false)) => {
                let (mined, receipt) = tokio::sync::oneshot::channel();
                let pause = PendingSend { by: index, call: Call::Pause, mined };
                watchman.duties.pausing = Some(receipt);
                self.eth_chain().mempool.push(pause);
                self.log(format!(
                    "watchman {index} pauses the Ethereum vault with its guardian key: {}",
                    halted.unwrap_or_default()
                ));
            }
            Some(Err(error)) => self.log(format!("watchman {index} cannot read whether the vault is paused: {error}")),
            None => {}
        }
    }

    /// `no-false-pause`, after every step: an honest coordinator's vault is never paused.
    pub(crate) fn check_pause(&mut self) {
        if self.bad_from.is_none() && self.eth_chain().paused_at.is_some() {
            self.violate("no-false-pause", "the Ethereum vault is paused though the coordinator is honest".into());
        }
    }

    /// `pause-liveness`, after healing: a vault whose watchmen alarmed bad history is paused.
    pub(crate) fn check_paused(&mut self) {
        let alarmed = self.bad_from.is_some()
            && self.confirmers.iter().any(|r| r.follower.as_ref().is_some_and(|f| !f.status().alarms.is_empty()));
        if alarmed && self.evm.is_some() && self.eth_chain().paused_at.is_none() {
            self.violate(
                "pause-liveness",
                "the watchmen alarmed bad history, but the Ethereum vault is not paused after healing".into(),
            );
        }
    }
}

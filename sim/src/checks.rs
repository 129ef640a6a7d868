//! The invariants, checked after every tick, and liveness at the end of the healing phase.

use bridge::{AssetId, State};

use crate::SimError;
use crate::byzantine::AttackKind;
use crate::world::World;

impl World {
    /// Safety, after every tick.
    pub(crate) async fn check_step(&mut self) -> Result<(), SimError> {
        let mut found: Vec<(&'static str, String)> = Vec::new();
        let honest = self.bad_from.is_none();
        // A late equivocation's batch was final before its rival was posted: it must fall back
        // once the confirmer alarms (and it must alarm: `check_end`).
        let late = self.attack.as_ref().is_some_and(|a| a.kind == AttackKind::LateEquivocation);
        if let Some(sequencer) = &self.coordinator.sequencer {
            let state = sequencer.state();
            if let Some(why) = conservation(state, &self.accounts()) {
                found.push(("conservation", format!("coordinator: {why}")));
            }
            // No acknowledged transaction lost (or applied twice): each account's nonce counts
            // exactly the transactions the coordinator acknowledged for it, across restarts.
            for (account, acked) in &self.acked_per_account {
                let nonce = state.nonce(account);
                if nonce != *acked {
                    found.push((
                        "acknowledged-kept",
                        format!("account {account}: nonce {nonce} after {acked} acknowledged transactions"),
                    ));
                }
            }
            if honest && state.supply(&AssetId::Eth).deposited.0 > self.l1_deposited {
                found.push(("deposits-backed", "the coordinator credited more than L1 received".into()));
            }
        }
        for (index, role) in self.confirmers.iter().enumerate() {
            let Some(follower) = &role.follower else { continue };
            let status = follower.status();
            if let Some(why) = conservation(follower.state(), &self.accounts()) {
                found.push(("conservation", format!("confirmer {index}: {why}")));
            }
            if follower.state().supply(&AssetId::Eth).deposited.0 > self.l1_deposited {
                found.push(("deposits-backed", format!("confirmer {index} replayed credits L1 never received")));
            }
            match self.bad_from {
                // Bad history is never hard-final.
                Some((bad, kind)) if status.hard_final >= bad && (!late || !status.alarms.is_empty()) => found.push((
                    "bad-history-not-final",
                    format!(
                        "confirmer {index} calls batch {} hard-final, but batch {bad} is a {kind}",
                        status.hard_final
                    ),
                )),
                // An honest coordinator is never accused: not by a lagging node, not after a reorg.
                None if !status.alarms.is_empty() => found.push((
                    "no-false-alarm",
                    format!(
                        "confirmer {index} alarmed ({}) at batch {} though the coordinator is honest: {}",
                        status.alarms[0].kind.as_str(),
                        status.alarms[0].number,
                        status.alarms[0].detail
                    ),
                )),
                _ => {}
            }
        }
        // `solvency`: the vault's ether is what came in less what it paid, and it never paid
        // more than the ledger let leave.
        let balance = self.evm.as_ref().map(|vault| vault.balance());
        if let Some(balance) = balance {
            if balance.checked_add(self.paid_wei) != Some(self.l1_deposited) {
                found.push((
                    "solvency",
                    format!(
                        "the vault holds {balance} wei and paid {}, but {} came in",
                        self.paid_wei, self.l1_deposited
                    ),
                ));
            }
            // The chain's record of payouts, from which a lagging node's view of the vault is
            // rebuilt (eth_vault_view.rs), is what the vault paid.
            let recorded: u128 = self.eth_chain().paid_at.values().map(|leaf| leaf.wei).sum();
            if recorded != self.paid_wei {
                found.push((
                    "solvency",
                    format!("the chain records payouts of {recorded} wei, but the vault paid {}", self.paid_wei),
                ));
            }
            if let Some(sequencer) = &self.coordinator.sequencer
                && honest
                && self.paid_wei > sequencer.state().supply(&AssetId::Eth).withdrawn.0
            {
                found
                    .push(("solvency", format!("the vault paid {} wei, more than the ledger withdrew", self.paid_wei)));
            }
        }
        for (invariant, detail) in found {
            self.violate(invariant, detail);
        }
        self.check_btc_deposits();
        self.check_pause();
        Ok(())
    }

    /// After the healing phase: bad history alarmed by every confirmer; honest history final.
    pub(crate) async fn check_end(&mut self) -> Result<(), SimError> {
        let mut found: Vec<(&'static str, String)> = Vec::new();
        let cutoff = self.sealed_before_quiet;
        for (index, role) in self.confirmers.iter().enumerate() {
            let Some(follower) = &role.follower else {
                found.push(("liveness", format!("confirmer {index} is not running after healing")));
                continue;
            };
            let status = follower.status();
            if let Some((bad, kind)) = self.bad_from {
                if status.alarms.is_empty() {
                    found.push((
                        "bad-history-alarmed",
                        format!("confirmer {index} never alarmed the {kind} at batch {bad}"),
                    ));
                }
                continue;
            }
            for (hash, acked) in &self.acked {
                let batch = follower.batch_of_tx(hash).await.map_err(SimError::role("confirmer store"))?;
                if !batch.is_some_and(|number| follower.is_hard_final(number)) {
                    found.push((
                        "liveness",
                        format!(
                            "transaction {} of {} is not hard-final on confirmer {index} after healing (in batch {batch:?}, hard-final {})",
                            hex::encode(&hash[..4]),
                            acked.account,
                            status.hard_final
                        ),
                    ));
                    break;
                }
            }
            // Every batch sealed before the quiet end is replayed, and the replica's head is the
            // batch the honest sequencer sealed under that number (its header commits the state).
            let head = follower.state().head().last_hash;
            if status.replayed < cutoff || self.truth.header(status.replayed).is_some_and(|sealed| sealed != head) {
                found.push((
                    "convergence",
                    format!(
                        "confirmer {index} replayed {} batches (the coordinator sealed {cutoff} before the quiet end), or its head is not the sealed batch",
                        status.replayed
                    ),
                ));
            }
        }
        for (invariant, detail) in found {
            self.violate(invariant, detail);
        }
        self.check_settled();
        self.check_paid();
        self.check_checkpoints();
        self.check_late_joiner_end();
        self.check_forced_end();
        self.check_paused();
        self.check_eth_deposits_end();
        self.check_btc_end().await
    }

    fn accounts(&self) -> Vec<bridge::Address> {
        let mut accounts: Vec<_> = self.users.iter().map(|u| u.address()).collect();
        accounts.push(self.forced.user.address());
        accounts.push(self.claimant.account());
        accounts.push(self.params.fee_account);
        accounts
    }
}

/// Value is conserved: every asset's balances over the known accounts add up to what the
/// ledger owes, and what it owes plus what left equals what came in.
fn conservation(state: &State, accounts: &[bridge::Address]) -> Option<String> {
    for (asset, supply) in state.supplies() {
        let held = accounts.iter().try_fold(0u128, |sum, account| sum.checked_add(state.balance(account, asset).0));
        if held != Some(supply.liabilities.0) {
            return Some(format!("{asset}: balances add up to {held:?}, the ledger owes {}", supply.liabilities.0));
        }
        if supply.liabilities.0.checked_add(supply.withdrawn.0) != Some(supply.deposited.0) {
            return Some(format!(
                "{asset}: owed {} + withdrawn {} != deposited {}",
                supply.liabilities.0, supply.withdrawn.0, supply.deposited.0
            ));
        }
    }
    None
}

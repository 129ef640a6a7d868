//! A Bitcoin depositor who pays before it asks, and claims what the scan passed by.
//!
//! A deposit address is public (the group key tweaked by the account), so a depositor can pay
//! it before it ever asks the coordinator. The coordinator's scan reads each block once and
//! credits only accounts in its deposit book, so such a deposit is read and passed by. This
//! depositor (a wallet of its own, on a stream of its own) pays its address now and then, asks
//! for its address only once its first payment is [`ASK_AFTER`] blocks past the deposit depth,
//! and then, once a Bitcoin block, claims each payment not yet credited with the coordinator's
//! own [`coordinator::deposit_claim::claim`] (the code `POST /accounts/{a}/btc-deposits` runs),
//! on the coordinator's lagging node, with the height its own view of the chain gives (a reorg
//! may move it: the claim says `not_in_block`, and the next one names the new height).
//!
//! It is hostile too: now and then it claims another user's deposit as its own, which must
//! credit nothing (`claim-own-only`). Whether its own payments are credited is the end's
//! `deposit-liveness`: without the claim they never are.

use std::collections::BTreeSet;

use bitcoin::OutPoint;
use bridge::{BtcNetwork, Wallet};
use coordinator::deposit_claim::{ClaimError, ClaimOutcome, DepositClaim, claim};

use crate::SimError;
use crate::btc_chain::BTC_DEPTH;
use crate::btc_payouts::{DepositsLedger, short};
use crate::rng::SimRng;
use crate::world::World;

/// The claimant's stream of choices: the seed, xor this.
const CLAIM_STREAM: u64 = 0xc1a1_b7c0;
/// Blocks past the deposit depth the depositor waits before it asks for its address: by then
/// the scan, unless its node lags, has read the block and passed the payment by.
const ASK_AFTER: u64 = 2;

pub(crate) struct Claimant {
    rng: SimRng,
    wallet: Wallet,
    /// It asked the coordinator for its address (its account is in the deposit book).
    asked: bool,
    /// Its payments not yet known credited, by outpoint.
    open: BTreeSet<OutPoint>,
    /// Payments a claim of its own credited (not the scan).
    pub(crate) credited: usize,
}

impl Claimant {
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = SimRng::new(seed ^ CLAIM_STREAM);
        let wallet = rng.wallet();
        Claimant { rng, wallet, asked: false, open: BTreeSet::new(), credited: 0 }
    }

    pub(crate) fn account(&self) -> bridge::Address {
        self.wallet.address()
    }
}

impl World {
    /// Now and then (while users are active), the claimant pays its deposit address.
    pub(crate) fn claimant_pays(&mut self) -> Result<(), SimError> {
        if !self.claimant.rng.chance(15_000) {
            return Ok(());
        }
        let sat = self.claimant.rng.between(100_000, 2_000_000);
        let account = self.claimant.account();
        let Some(btc) = self.btc.as_mut() else { return Ok(()) };
        if let Some(outpoint) = btc.deposit(account, sat)? {
            self.claimant.open.insert(outpoint);
            let asked = if self.claimant.asked { "asked" } else { "not asked yet" };
            self.log(format!("claimant pays {sat} sat in {} ({asked})", short(&outpoint.txid)));
        }
        Ok(())
    }

    /// Once a Bitcoin block, with the coordinator up: the claimant asks for its address when
    /// its first payment is well past the depth, then claims every payment not yet credited,
    /// and now and then another user's deposit as its own.
    pub(crate) async fn claimant_claims(&mut self) -> Result<(), SimError> {
        let Some(btc) = &self.btc else { return Ok(()) };
        let mut due = Vec::new();
        for outpoint in &self.claimant.open {
            if let Some((height, confirmations)) = btc.depth_of(&outpoint.txid)?
                && confirmations >= BTC_DEPTH
            {
                due.push((*outpoint, height, confirmations));
            }
        }
        if !self.claimant.asked {
            if !due.iter().any(|(_, _, confirmations)| *confirmations >= BTC_DEPTH + ASK_AFTER) {
                return Ok(());
            }
            let Some(store) = &self.coordinator.store else { return Ok(()) };
            // The API's own store call for `GET /accounts/{a}/btc-deposit-address`.
            if let Err(error) = store.add_btc_deposit_account(&self.claimant.account()).await {
                self.log(format!("claimant's deposit address: {error}"));
                return Ok(());
            }
            self.claimant.asked = true;
            self.log("claimant asks for its deposit address");
        }
        for (outpoint, height, _) in due {
            self.claim_own(outpoint, height).await?;
        }
        if self.claimant.rng.chance(300_000) {
            self.claim_anothers().await?;
        }
        Ok(())
    }

    async fn claim_own(&mut self, outpoint: OutPoint, height: u64) -> Result<(), SimError> {
        let account = self.claimant.account();
        let claimed = self.claim(DepositClaim { account, txid: outpoint.txid, height }).await?;
        let txid = short(&outpoint.txid);
        match claimed {
            None => {}
            Some(Ok(outputs)) => {
                for output in &outputs {
                    self.log(format!("claimant's claim of {txid}:{}: {:?}", output.vout, output.outcome));
                }
                let mine = outputs.iter().find(|o| o.vout == outpoint.vout).map(|o| o.outcome);
                match mine {
                    Some(ClaimOutcome::Credited) => {
                        self.claimant.credited += 1;
                        self.claimant.open.remove(&outpoint);
                    }
                    // Credited by the scan after the claimant asked, or refused for good (the
                    // end's deposit-liveness says which was right).
                    Some(ClaimOutcome::AlreadyCredited | ClaimOutcome::Refused) => {
                        self.claimant.open.remove(&outpoint);
                    }
                    Some(ClaimOutcome::NotYet) | None => {}
                }
            }
            // The claimant's own payment to its own address, under the vault's only key.
            Some(Err(error @ ClaimError::PaysNoAddress { .. })) => {
                self.violate("deposit-claim", format!("the claimant's own deposit {txid} was refused: {error}"))
            }
            Some(Err(error)) => self.log(format!("claimant's claim of {txid} at {height}: {error}")),
        }
        Ok(())
    }

    /// Another user's deposit claimed as the claimant's own: it pays no address of the
    /// claimant's, and nothing is credited.
    async fn claim_anothers(&mut self) -> Result<(), SimError> {
        let Some(btc) = &self.btc else { return Ok(()) };
        let theirs: Vec<OutPoint> =
            btc.deposits.iter().filter(|outpoint| !self.claimant.open.contains(outpoint)).copied().collect();
        if theirs.is_empty() {
            return Ok(());
        }
        let outpoint = theirs[self.claimant.rng.below(theirs.len() as u64) as usize];
        let Some((height, _)) = btc.depth_of(&outpoint.txid)? else { return Ok(()) };
        let account = self.claimant.account();
        let claimed = self.claim(DepositClaim { account, txid: outpoint.txid, height }).await?;
        let txid = short(&outpoint.txid);
        match claimed {
            Some(Ok(outputs)) if outputs.iter().any(|o| o.outcome == ClaimOutcome::Credited) => self.violate(
                "claim-own-only",
                format!("the claimant's claim of another user's deposit {txid} credited {outputs:?}"),
            ),
            Some(Ok(_)) => {}
            Some(Err(error)) => self.log(format!("claimant's claim of another's {txid}: {error}")),
            None => {}
        }
        Ok(())
    }

    /// One claim through the coordinator's own code, on its node and its sequencer: `None`
    /// when the coordinator is down or its disk stopped the sequencer.
    async fn claim(
        &mut self,
        claimed: DepositClaim,
    ) -> Result<Option<Result<Vec<coordinator::deposit_claim::ClaimedOutput>, ClaimError>>, SimError> {
        let (Some(btc), Some(sequencer)) = (&self.btc, self.coordinator.sequencer.as_mut()) else {
            return Ok(None);
        };
        let node = btc.view(self.coordinator.btc_lag.clone());
        let mut ledger = DepositsLedger { sequencer, outcomes: Vec::new() };
        let result = claim(&node, &mut ledger, BtcNetwork::Regtest, BTC_DEPTH as u32, claimed).await;
        for outcome in std::mem::take(&mut ledger.outcomes) {
            self.note_outcome("Bitcoin deposit claim", None, &outcome);
        }
        match result {
            Err(ClaimError::Sequencer(error)) => {
                self.sequencer_failed("a deposit claim", error)?;
                Ok(None)
            }
            result => Ok(Some(result)),
        }
    }
}

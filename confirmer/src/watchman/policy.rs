//! The watchman's answer to "sign this?": yes only if this watchman's own replay has made the
//! batch hard-final and produced exactly the message asked for. Anything else is refused with
//! the reason, logged as an error and counted: a mismatch means some watchman's replay (or the
//! session's coordinator) disagrees with this one, which an operator must look at.

use bridge::eth_settlement::{VaultDomain, withdrawals_message};
use bridge::{BtcNetwork, BtcVaultParams};
use tss::{Decision, KeyPath, SigningPolicy, SigningRequest};

use super::admin::{AdminPolicy, SIGN_ETH_ADMIN};
use super::book::SettlementBook;
use super::bump_clock::BumpClock;

/// `SigningContext::purpose` of the Ethereum vault's `submitWithdrawals` message (a range's
/// root; v2 of the message, so a v1 watchman refuses it rather than misreading it).
pub const SETTLE_ETH_WITHDRAWALS: &str = "eth-withdrawals-range";

/// `SigningContext::purpose` of a checkpoint (chain `bridge`): the batch in
/// `SigningContext::batch`, its header hash (32 bytes) in `SigningContext::detail`, the message
/// `bridge::checkpoint::checkpoint_message`, signed with the vault key `Q`.
pub const SIGN_CHECKPOINT: &str = "checkpoint";

/// Which batches a range root covers: the request's `SigningContext::detail`, 16 bytes
/// little-endian (first u64, last u64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeDetail {
    pub first: u64,
    pub last: u64,
}

impl RangeDetail {
    pub fn to_detail(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend(self.first.to_le_bytes());
        out.extend(self.last.to_le_bytes());
        out
    }

    pub fn from_detail(detail: &[u8]) -> Option<Self> {
        let first = u64::from_le_bytes(detail.get(0..8)?.try_into().ok()?);
        let last = u64::from_le_bytes(detail.get(8..16)?.try_into().ok()?);
        (detail.len() == 16).then_some(RangeDetail { first, last })
    }
}
/// `SigningContext::purpose` of one input's sighash of a Bitcoin payout attempt.
pub const SIGN_BTC_PAYOUT_INPUT: &str = "btc-payout-input";

/// Which input of which attempt of which plan a Bitcoin request signs: the request's
/// `SigningContext::detail`, 16 bytes little-endian (plan u64, attempt u32, input u32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayoutInput {
    pub plan: u64,
    pub attempt: u32,
    pub input: u32,
}

impl PayoutInput {
    pub fn to_detail(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend(self.plan.to_le_bytes());
        out.extend(self.attempt.to_le_bytes());
        out.extend(self.input.to_le_bytes());
        out
    }

    pub fn from_detail(detail: &[u8]) -> Option<Self> {
        let plan = u64::from_le_bytes(detail.get(0..8)?.try_into().ok()?);
        let attempt = u32::from_le_bytes(detail.get(8..12)?.try_into().ok()?);
        let input = u32::from_le_bytes(detail.get(12..16)?.try_into().ok()?);
        (detail.len() == 16).then_some(PayoutInput { plan, attempt, input })
    }
}

#[derive(Debug, Clone)]
pub struct ReplayPolicy {
    book: SettlementBook,
    /// The Ethereum vault this watchman signs for; `None` if it signs for none.
    eth_vault: Option<VaultDomain>,
    /// The Bitcoin vault this watchman signs for; `None` if it signs for none.
    btc_vault: Option<(BtcVaultParams, BtcNetwork)>,
    /// What this watchman's own Bitcoin node shows of each plan: fee bumps are signed only when
    /// it shows the previous attempt unconfirmed long enough. `None`: no bump is signed.
    bump_clock: Option<BumpClock>,
    /// This operator's approvals of the vault's admin messages. `None`: every admin request is
    /// refused.
    admin: Option<AdminPolicy>,
    /// The network's genesis hash, which names it in a checkpoint; `None`: no checkpoint is
    /// signed.
    checkpoints: Option<[u8; 32]>,
}

impl ReplayPolicy {
    pub fn new(book: SettlementBook, eth_vault: Option<VaultDomain>) -> Self {
        ReplayPolicy { book, eth_vault, btc_vault: None, bump_clock: None, admin: None, checkpoints: None }
    }

    /// Also sign Bitcoin payouts of this vault (the network's `btc_vault`).
    pub fn with_bitcoin(mut self, vault: BtcVaultParams, network: BtcNetwork) -> Self {
        self.btc_vault = Some((vault, network));
        self
    }

    /// Time fee bumps by this clock (fed by this watchman's own Bitcoin node); without one, only
    /// first attempts are signed.
    pub fn with_bump_clock(mut self, clock: BumpClock) -> Self {
        self.bump_clock = Some(clock);
        self
    }

    /// Also sign checkpoints (batch, header hash) of the network whose genesis hash this is, for
    /// the batches this watchman's own replay made hard-final with that header.
    pub fn with_checkpoints(mut self, genesis_hash: [u8; 32]) -> Self {
        self.checkpoints = Some(genesis_hash);
        self
    }

    /// Also sign the vault's admin messages this watchman's operator approved.
    pub fn with_admin(mut self, admin: AdminPolicy) -> Self {
        self.admin = Some(admin);
        self
    }

    fn check(&self, request: &SigningRequest) -> Result<(), String> {
        // Admin messages are judged by the operator's approvals alone, halted or not: the halt
        // stops what the replay would justify, and an operator who has looked at the alarm may
        // still need to resume the vault or tighten a cap with the others.
        if (request.context.chain.as_str(), request.context.purpose.as_str()) == ("ethereum", SIGN_ETH_ADMIN) {
            return self.check_admin(request);
        }
        if let Some(why) = self.book.halted() {
            return Err(format!("signing is stopped: {why}"));
        }
        match (request.context.chain.as_str(), request.context.purpose.as_str()) {
            ("ethereum", SETTLE_ETH_WITHDRAWALS) => self.check_eth_withdrawals(request),
            ("bitcoin", SIGN_BTC_PAYOUT_INPUT) => self.check_btc_payout_input(request),
            ("bridge", SIGN_CHECKPOINT) => self.check_checkpoint(request),
            (chain, purpose) => Err(format!("unknown request: chain {chain:?}, purpose {purpose:?}")),
        }
    }

    fn check_admin(&self, request: &SigningRequest) -> Result<(), String> {
        let Some(admin) = &self.admin else {
            return Err(super::admin::AdminRefusal::NotApproved {
                asked: "an admin message (this watchman takes no approvals: no [admin] section)".into(),
            }
            .to_string());
        };
        let message = admin.check(request, super::admin::now_s()).map_err(|refusal| {
            metrics::counter!("watchman_admin_refusals_total", "code" => refusal.code()).increment(1);
            refusal.to_string()
        })?;
        tracing::warn!(%message, "signing an admin message this operator approved");
        Ok(())
    }

    fn check_eth_withdrawals(&self, request: &SigningRequest) -> Result<(), String> {
        let Some(domain) = &self.eth_vault else {
            return Err("this watchman is not configured for an Ethereum vault".into());
        };
        if request.key_path != KeyPath::Vault {
            return Err("the vault's messages are signed with the vault key only".into());
        }
        let Some(RangeDetail { first, last }) = RangeDetail::from_detail(&request.context.detail) else {
            return Err("a withdrawals range's detail must be 16 bytes: first and last batch".into());
        };
        if last < first || first == 0 {
            return Err(format!("batches {first}..={last} are no range"));
        }
        // Batches whose leaves this watchman saw paid and pruned are on chain: never again.
        let pruned_through = self.book.eth_pruned_through();
        if first <= pruned_through {
            return Err(format!(
                "batches {first}..={last} reach into the batches up to {pruned_through}, whose withdrawals this watchman saw paid on the vault (pruned from its book)"
            ));
        }
        // No gap and no overlap with the last range the vault holds, as this watchman's own
        // Ethereum node shows it.
        let Some(vault) = self.book.vault() else {
            return Err("this watchman has not read the vault's ranges from its Ethereum node yet".into());
        };
        let expected = vault.settled_through + 1;
        if first < expected {
            return Err(format!(
                "batches {first}..={last} overlap the vault's ranges, which cover batches up to {}",
                vault.settled_through
            ));
        }
        if first > expected {
            return Err(format!(
                "batches {first}..={last} leave a gap after the vault's ranges, which cover batches up to {} \
                 (or this watchman's view of the vault is behind: asked again next turn)",
                vault.settled_through
            ));
        }
        let Some(tree) = self.book.range_tree(first, last) else {
            return Err(format!("batches {first}..={last} are not all hard-final in this watchman's replay"));
        };
        if tree.withdrawals().is_empty() {
            return Err(format!("batches {first}..={last} owe no Ethereum withdrawals in this watchman's replay"));
        }
        #[cfg(feature = "planted-bugs")]
        if bridge::planted::active(bridge::planted::PlantedBug::PolicySkipsRootCheck) {
            return Ok(());
        }
        let root = tree.root();
        let expected = withdrawals_message(domain, first, last, root);
        if request.message.as_slice() != expected.as_slice() {
            return Err(format!(
                "the message is not the withdrawals root {} of batches {first}..={last} ({} leaves) for this vault and epoch as replayed here",
                hex::encode(root),
                tree.withdrawals().len()
            ));
        }
        Ok(())
    }
}

impl ReplayPolicy {
    /// The message must be the sighash of the named input of the named attempt of a plan that
    /// a hard-final batch made in this watchman's replay, rebuilt here byte for byte, and the
    /// key path the one that input's owner spends with. Every attempt spends the same inputs and
    /// pays the same outputs, so at most one is ever mined and none pays more than the plan's fee
    /// budget; a bump (attempt ≥ 1) is signed only when this watchman's own node has shown the
    /// previous attempt unconfirmed for `bump_after_blocks` ([`BumpClock`]), so a requester
    /// cannot spend the whole budget at once. A consolidation (a plan that pays nobody) is
    /// checked the same way, and so is a sweep after a key rotation (a plan that pays nobody and
    /// whose change goes to the new key): a sweep to anywhere else, or of other outputs, is not
    /// the plan this replay made and is refused.
    fn check_btc_payout_input(&self, request: &SigningRequest) -> Result<(), String> {
        let Some((vault, network)) = &self.btc_vault else {
            return Err("this watchman is not configured for a Bitcoin vault".into());
        };
        let Some(batch) = request.context.batch else {
            return Err("a payout input names no batch".into());
        };
        let Some(which) = PayoutInput::from_detail(&request.context.detail) else {
            return Err("a payout input's detail must be 16 bytes: plan, attempt, input".into());
        };
        // Plans confirmed deep have left the book: they are paid on chain.
        let pruned_through = self.book.btc_pruned_through();
        if batch <= pruned_through {
            return Err(format!(
                "every payout plan of the batches up to {pruned_through} (batch {batch} among them) is confirmed on chain in this watchman's node"
            ));
        }
        let Some(settlement) = self.book.settlement(batch) else {
            return Err(format!("batch {batch} is not hard-final in this watchman's replay"));
        };
        let Some(plan) = settlement.btc_plans.iter().find(|p| p.id == which.plan) else {
            return Err(format!(
                "batch {batch} made no payout plan {} in this watchman's replay, or it is confirmed deep and pruned",
                which.plan
            ));
        };
        // The keys of this watchman's replay: after a rotation a plan's change goes to the key in
        // force at its batch (a sweep's to the new key), and each input names its own key.
        let keys = self.book.btc_keys().unwrap_or_else(|| bridge::VaultKeys::genesis(*vault));
        let unsigned = plan.build(&keys, *network, which.attempt).map_err(|e| e.to_string())?;
        let index = which.input as usize;
        let (Some(sighash), Some(root)) = (unsigned.sighashes.get(index), unsigned.merkle_roots.get(index)) else {
            return Err(format!("payout plan {} has no input {}", plan.id, which.input));
        };
        let sighash: &[u8] = sighash.as_slice();
        #[cfg(feature = "planted-bugs")]
        let sighash = if bridge::planted::active(bridge::planted::PlantedBug::PolicySkipsSighashCheck) {
            request.message.as_slice()
        } else {
            sighash
        };
        if request.message.as_slice() != sighash {
            return Err(format!(
                "the message is not input {} of attempt {} of payout plan {} ({}) as replayed here",
                which.input,
                which.attempt,
                plan.id,
                unsigned.tx.compute_txid()
            ));
        }
        if request.key_path != KeyPath::of_merkle_root(*root) {
            return Err(format!("input {} of payout plan {} is not spent with that key", which.input, plan.id));
        }
        match (&self.bump_clock, which.attempt) {
            (Some(clock), attempt) => clock.check(plan.id, attempt),
            (None, 0) => Ok(()),
            (None, attempt) => Err(format!(
                "attempt {attempt} of payout plan {} is a fee bump, and this watchman has no Bitcoin node to time bumps",
                plan.id
            )),
        }
    }
}

impl ReplayPolicy {
    /// The message must be the checkpoint of the named batch with the header hash this
    /// watchman's own replay has for it, the batch hard-final here, signed with the vault key.
    fn check_checkpoint(&self, request: &SigningRequest) -> Result<(), String> {
        let Some(genesis_hash) = &self.checkpoints else {
            return Err("this watchman signs no checkpoints".into());
        };
        if request.key_path != KeyPath::Vault {
            return Err("a checkpoint is signed with the vault key only".into());
        }
        let Some(number) = request.context.batch else {
            return Err("a checkpoint names no batch".into());
        };
        let Ok(asked) = <[u8; 32]>::try_from(request.context.detail.as_slice()) else {
            return Err("a checkpoint's detail must be the 32-byte header hash".into());
        };
        #[cfg(feature = "planted-bugs")]
        if bridge::planted::active(bridge::planted::PlantedBug::PolicySkipsCheckpointHeader) {
            let consistent = bridge::checkpoint::checkpoint_message(genesis_hash, number, &asked);
            return (request.message.as_slice() == consistent.as_slice())
                .then_some(())
                .ok_or_else(|| format!("the message is not this network's checkpoint of batch {number}"));
        }
        let Some(replayed) = self.book.final_header(number) else {
            return Err(format!(
                "batch {number} is not hard-final in this watchman's replay, or too old to vouch for (the latest {} are kept)",
                crate::follower::RECENT_HEADERS
            ));
        };
        if replayed != asked {
            return Err(format!(
                "batch {number} has header hash {} in this watchman's replay, not {}",
                hex::encode(replayed),
                hex::encode(asked)
            ));
        }
        let expected = bridge::checkpoint::checkpoint_message(genesis_hash, number, &replayed);
        if request.message.as_slice() != expected.as_slice() {
            return Err(format!("the message is not this network's checkpoint of batch {number}"));
        }
        Ok(())
    }
}

impl SigningPolicy for ReplayPolicy {
    fn decide(&self, request: &SigningRequest) -> Decision {
        match self.check(request) {
            Ok(()) => {
                metrics::counter!("watchman_policy_approvals_total").increment(1);
                Decision::Approve
            }
            Err(reason) => {
                metrics::counter!("watchman_policy_refusals_total").increment(1);
                tracing::error!(chain = %request.context.chain, batch = ?request.context.batch, %reason, "refused to sign");
                Decision::Refuse { reason }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic
mod tests {
    use super::*;
    use crate::watchman::book::fixtures::book_with;
    use bridge::Address;
    use chains::ethereum::VaultProgress;
    use tss::SigningContext;

    const DOMAIN: VaultDomain = VaultDomain { chain_id: 31_337, vault: Address([0x7a; 20]), epoch: 0 };

    #[test]
    fn a_lagging_view_of_the_vault_signs_no_range_the_book_pruned_as_paid() {
        let book = book_with(10, &[(2, 2, &[]), (3, 1, &[])]);
        // This watchman's view of the vault lags: it has read no range yet.
        book.note_vault(VaultProgress { range_count: 0, settled_through: 0 });
        let policy = ReplayPolicy::new(book.clone(), Some(DOMAIN));
        let root = book.range_tree(1, 3).unwrap().root();
        let request = crate::watchman::EthSettlement::request(&DOMAIN, 1, 3, root);
        assert_eq!(policy.decide(&request), Decision::Approve, "owed and not paid: signed");

        // Its own settlement saw the range paid, 64 blocks ago: the leaves leave the book.
        book.note_eth_done(3, 10);
        book.note_eth_done(3, 10 + crate::watchman::book::ETH_PRUNE_DEPTH_BLOCKS);
        let Decision::Refuse { reason } = policy.decide(&request) else { panic!("a paid range signed again") };
        assert!(reason.contains("saw paid"), "{reason}");
    }

    #[test]
    fn no_payout_input_of_a_batch_at_or_below_the_bitcoin_horizon_is_signed() {
        let book = book_with(10, &[(2, 0, &[1]), (5, 0, &[2])]);
        assert!(book.prune_btc_plan(2, 1));
        assert_eq!(book.btc_pruned_through(), 4);
        let vault = BtcVaultParams { group_key: [2; 32], min_fee_rate: 1, max_fee_rate: 50 };
        let policy = ReplayPolicy::new(book, None).with_bitcoin(vault, BtcNetwork::Regtest);
        let ask = |batch, plan| SigningRequest {
            message: vec![0; 32],
            key_path: KeyPath::Vault,
            context: SigningContext {
                chain: "bitcoin".into(),
                batch: Some(batch),
                purpose: SIGN_BTC_PAYOUT_INPUT.into(),
                detail: PayoutInput { plan, attempt: 0, input: 0 }.to_detail(),
            },
        };
        let Decision::Refuse { reason } = policy.decide(&ask(2, 1)) else { panic!("a confirmed plan signed again") };
        assert!(reason.contains("confirmed on chain"), "{reason}");
        // Above the horizon a pruned plan is simply not in the book.
        let Decision::Refuse { reason } = policy.decide(&ask(5, 1)) else { panic!() };
        assert!(reason.contains("made no payout plan 1"), "{reason}");
    }
}

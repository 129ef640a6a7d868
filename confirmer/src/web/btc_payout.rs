//! A Bitcoin withdrawal's payout as this confirmer can vouch for it: the payout plan that pays
//! it in its own hard-final replay, each attempt's txid built from that plan
//! ([`bridge::btc_payout`], byte for byte what the watchmen sign), and what its own Bitcoin node
//! (the one deposits are checked against) holds of those txids.
//!
//! "Signed" needs more than the node's word: a txid does not commit to witnesses, so each
//! input's witness is checked here as the group's BIP-340 signature over the plan's sighash for
//! that input, under the key the ledger says holds the input.

use std::sync::Arc;

use bitcoin::key::TapTweak;
use bitcoin::secp256k1::{Message, SECP256K1, XOnlyPublicKey, schnorr};
use bitcoin::{TapNodeHash, Transaction, Txid};
use bridge::batch::Settlement;
use bridge::btc_payout::{MAX_BUMPS, PayoutPlan, UnsignedPayout};
use bridge::{BtcNetwork, VaultKeys};
use chains::bitcoin::CoreRpc;
use chains::bitcoin::rpc::{NOT_FOUND, RpcError};

/// How many batches, from the withdrawal's own, are searched for the plan that pays it. The
/// coordinator plans queued withdrawals within a few batches (up to `MAX_PAYOUT_OUTPUTS` per
/// plan); 4,096 batches is far past any honest wait, and bounds what one page view reads under
/// the follower's lock (that many in-memory lookups). Past it the page says "not planned
/// within 4,096 batches", which is an operator's question, not a guess.
pub const MAX_PLAN_SEARCH_BATCHES: u64 = 4_096;

/// The longest one page view waits for the node's answers about a plan's attempts (at most
/// `MAX_BUMPS + 1` lookups, milliseconds on a healthy node; each RPC alone may take a minute):
/// a stuck node makes "the Bitcoin node did not answer", not a hung page.
pub const NODE_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the plan search ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanSearch {
    /// Plan `plan`, made in hard-final batch `batch`, pays the withdrawal.
    Found { batch: u64, plan: PayoutPlan },
    /// No hard-final batch in `from..=searched_to` plans it (yet).
    NotPlanned { from: u64, searched_to: u64 },
}

/// Finds the plan paying withdrawal `tx_hash` (queued in batch `from`) in the settlements of
/// hard-final batches `from..=hard_final`, at most [`MAX_PLAN_SEARCH_BATCHES`] of them.
/// `settlement_of` answers from the follower's `final_settlements` of those batches (`None`:
/// owes nothing).
pub fn find_plan(
    tx_hash: &[u8; 32],
    from: u64,
    hard_final: u64,
    settlement_of: impl Fn(u64) -> Option<Arc<Settlement>>,
) -> PlanSearch {
    let searched_to = hard_final.min(from.saturating_add(MAX_PLAN_SEARCH_BATCHES - 1));
    for batch in from..=searched_to {
        let Some(settlement) = settlement_of(batch) else { continue };
        let paying = settlement.btc_plans.iter().find(|plan| plan.payouts.iter().any(|p| p.tx_hash == *tx_hash));
        if let Some(plan) = paying {
            return PlanSearch::Found { batch, plan: plan.clone() };
        }
    }
    PlanSearch::NotPlanned { from, searched_to }
}

/// Why the node's transaction does not show the group's signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    #[error("the node's transaction has {got} inputs where the plan has {expected}")]
    InputCount { got: usize, expected: usize },
    #[error("input {input}'s witness is not one 64-byte signature (the plan signs with SIGHASH_DEFAULT)")]
    NotOneSignature { input: usize },
    #[error("input {input}'s key in the ledger is not an x-only public key")]
    BadKey { input: usize },
    #[error("input {input}'s witness is not the group's BIP-340 signature over the plan's sighash")]
    NotTheGroups { input: usize },
}

/// Checks that every input of `tx` (the node's copy of `unsigned`, same txid) carries the
/// group's key-path signature: BIP-340 over the plan's sighash, under the input's internal key
/// tweaked with its Taproot Merkle root (BIP-341), as the ledger names them.
pub fn check_group_signatures(unsigned: &UnsignedPayout, tx: &Transaction) -> Result<(), WitnessError> {
    let expected = unsigned.sighashes.len();
    if tx.input.len() != expected || unsigned.input_keys.len() != expected || unsigned.merkle_roots.len() != expected {
        return Err(WitnessError::InputCount { got: tx.input.len(), expected });
    }
    for (input, txin) in tx.input.iter().enumerate() {
        let items: Vec<&[u8]> = txin.witness.iter().collect();
        let signature = match items.as_slice() {
            [item] if item.len() == 64 => {
                schnorr::Signature::from_slice(item).map_err(|_| WitnessError::NotOneSignature { input })?
            }
            _ => return Err(WitnessError::NotOneSignature { input }),
        };
        let internal =
            XOnlyPublicKey::from_slice(&unsigned.input_keys[input]).map_err(|_| WitnessError::BadKey { input })?;
        let root = unsigned.merkle_roots[input].map(TapNodeHash::assume_hidden);
        let (output_key, _) = internal.tap_tweak(SECP256K1, root);
        let message = Message::from_digest(unsigned.sighashes[input]);
        SECP256K1
            .verify_schnorr(&signature, &message, &output_key.to_x_only_public_key())
            .map_err(|_| WitnessError::NotTheGroups { input })?;
    }
    Ok(())
}

/// One attempt of the plan as the node holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOnNode {
    pub attempt: u32,
    pub txid: Txid,
    /// Confirmations on the node's active chain: 0 while in the mempool.
    pub confirmations: u64,
    /// Whether every input carries the group's signature; why not, if not.
    pub signatures: Result<(), WitnessError>,
}

/// Looks up every attempt of `plan` on `rpc` (at most `MAX_BUMPS + 1` `getrawtransaction`
/// calls, the most attempts a plan has). All attempts spend the same inputs, so at most one is
/// in the chain: a confirmed one wins, else the latest attempt the mempool holds. `None`: the
/// node has none of them.
pub async fn attempt_on_node(
    rpc: &CoreRpc,
    keys: &VaultKeys,
    network: BtcNetwork,
    plan: &PayoutPlan,
) -> Result<Option<AttemptOnNode>, RpcError> {
    let mut pending = None;
    for attempt in 0..=MAX_BUMPS {
        // An attempt that does not exist ends the list: later ones do not exist either.
        let Ok(unsigned) = plan.build(keys, network, attempt) else { break };
        let txid = unsigned.tx.compute_txid();
        let info = match rpc.transaction_info(&txid).await {
            Ok(info) => info,
            Err(e) if e.code() == Some(NOT_FOUND) => continue,
            Err(e) => return Err(e),
        };
        let confirmations = if info.block_hash.is_some() { info.confirmations } else { 0 };
        let seen =
            AttemptOnNode { attempt, txid, confirmations, signatures: check_group_signatures(&unsigned, &info.tx) };
        if confirmations > 0 {
            return Ok(Some(seen));
        }
        pending = Some(seen);
    }
    Ok(pending)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::web::stages::{self, BtcPayoutView, Facts, PayoutView};
    use bitcoin::secp256k1::Keypair;
    use bridge::btc_vault::{OutPoint, VaultOwner, VaultUtxo};
    use bridge::withdrawals::BtcPayout;
    use bridge::{Address, BtcVaultParams};

    const WITHDRAWAL: [u8; 32] = [0x77; 32];

    fn group() -> Keypair {
        Keypair::from_seckey_slice(SECP256K1, &[7; 32]).unwrap()
    }

    fn keys(group: &Keypair) -> VaultKeys {
        let group_key = group.x_only_public_key().0.serialize();
        VaultKeys::genesis(BtcVaultParams { group_key, min_fee_rate: 1, max_fee_rate: 50 })
    }

    fn plan() -> PayoutPlan {
        let account = Address([0x11; 20]);
        PayoutPlan {
            id: 1,
            batch: 4,
            fee_rate: 1,
            budget_sat: 10_000,
            inputs: vec![
                VaultUtxo {
                    outpoint: OutPoint { txid: [0x01; 32], vout: 0 },
                    amount_sat: 5_000_000,
                    owner: VaultOwner::Account { account },
                    height: 3,
                },
                VaultUtxo {
                    outpoint: OutPoint { txid: [0x02; 32], vout: 1 },
                    amount_sat: 40_000,
                    owner: VaultOwner::Vault,
                    height: 3,
                },
            ],
            payouts: vec![BtcPayout { tx_hash: WITHDRAWAL, script_pubkey: vec![0x51, 0x20], amount_sat: 2_000_000 }],
        }
    }

    /// Each input signed by `signer` tweaked as the input's key is.
    fn signed_by(signer: &Keypair, unsigned: &UnsignedPayout) -> Transaction {
        let signatures: Vec<[u8; 64]> = unsigned
            .sighashes
            .iter()
            .zip(&unsigned.merkle_roots)
            .map(|(sighash, root)| {
                let tweaked = signer.tap_tweak(SECP256K1, root.map(TapNodeHash::assume_hidden)).to_keypair();
                SECP256K1.sign_schnorr_no_aux_rand(&Message::from_digest(*sighash), &tweaked).serialize()
            })
            .collect();
        unsigned.with_signatures(&signatures)
    }

    fn reached(facts: &Facts) -> Vec<String> {
        stages::decide(facts).into_iter().filter(|s| s.reached).map(|s| s.stage).collect()
    }

    fn facts_of(attempt: AttemptOnNode) -> Facts {
        Facts {
            coordinator: None,
            replayed_in: Some((3, true)),
            payout: PayoutView::Bitcoin(BtcPayoutView::OnNode { plan: 1, plan_batch: 4, attempt }),
        }
    }

    #[test]
    fn the_groups_signatures_reach_signed_and_a_block_reaches_paid() {
        let group = group();
        let unsigned = plan().build(&keys(&group), BtcNetwork::Regtest, 0).unwrap();
        let tx = signed_by(&group, &unsigned);
        assert_eq!(check_group_signatures(&unsigned, &tx), Ok(()));
        let txid = tx.compute_txid();
        let mempool = AttemptOnNode { attempt: 0, txid, confirmations: 0, signatures: Ok(()) };
        let at = reached(&facts_of(mempool.clone()));
        assert_eq!(at, ["accepted", "batched", "published", "hard-final", "signed"]);
        let l1 = stages::l1_tx(&facts_of(mempool)).unwrap();
        assert_eq!((l1.chain, l1.hash, l1.confirmations), (bridge::Chain::Bitcoin, txid.to_string(), 0));
        let mined = AttemptOnNode { attempt: 0, txid, confirmations: 2, signatures: Ok(()) };
        assert_eq!(reached(&facts_of(mined)).last().map(String::as_str), Some("paid"));
    }

    #[test]
    fn a_witness_that_is_not_the_groups_signature_does_not_reach_signed() {
        let group = group();
        let unsigned = plan().build(&keys(&group), BtcNetwork::Regtest, 0).unwrap();
        let stranger = Keypair::from_seckey_slice(SECP256K1, &[8; 32]).unwrap();
        let forged = signed_by(&stranger, &unsigned);
        assert_eq!(forged.compute_txid(), unsigned.tx.compute_txid(), "the txid does not commit to witnesses");
        let checked = check_group_signatures(&unsigned, &forged);
        assert_eq!(checked, Err(WitnessError::NotTheGroups { input: 0 }));
        // The group's key, but untweaked: not the key the output is locked to.
        let untweaked: Vec<[u8; 64]> = unsigned
            .sighashes
            .iter()
            .map(|h| SECP256K1.sign_schnorr_no_aux_rand(&Message::from_digest(*h), &group).serialize())
            .collect();
        let wrong_tweak = unsigned.with_signatures(&untweaked);
        assert_eq!(check_group_signatures(&unsigned, &wrong_tweak), Err(WitnessError::NotTheGroups { input: 0 }));
        // The group's signatures swapped between inputs: each over the other input's sighash.
        let mut swapped = signed_by(&group, &unsigned);
        let first = swapped.input[0].witness.clone();
        swapped.input[0].witness = swapped.input[1].witness.clone();
        swapped.input[1].witness = first;
        assert!(matches!(check_group_signatures(&unsigned, &swapped), Err(WitnessError::NotTheGroups { .. })));
        assert_eq!(check_group_signatures(&unsigned, &unsigned.tx), Err(WitnessError::NotOneSignature { input: 0 }));

        // Even mined, a transaction the group did not sign reaches neither stage.
        let attempt = AttemptOnNode { attempt: 0, txid: forged.compute_txid(), confirmations: 3, signatures: checked };
        let stages = stages::decide(&facts_of(attempt.clone()));
        assert_eq!(reached(&facts_of(attempt.clone())), ["accepted", "batched", "published", "hard-final"]);
        assert!(stages[4].detail.as_deref().unwrap().contains("not the group's BIP-340 signature"), "{stages:?}");
        assert_eq!(stages::l1_tx(&facts_of(attempt)), None, "no L1 transaction is shown for it");
    }

    #[test]
    fn the_plan_search_finds_the_paying_plan_within_its_bound() {
        let plan = plan();
        let settlement = Arc::new(Settlement { btc_plans: vec![plan.clone()], ..Settlement::empty() });
        // The plan made in batch `n` only.
        let at = |n: u64| {
            let settlement = settlement.clone();
            move |batch: u64| (batch == n).then(|| settlement.clone())
        };
        assert_eq!(find_plan(&WITHDRAWAL, 3, 10, at(6)), PlanSearch::Found { batch: 6, plan: plan.clone() });
        assert_eq!(find_plan(&[0; 32], 3, 10, at(6)), PlanSearch::NotPlanned { from: 3, searched_to: 10 });
        // Not yet hard-final here: not searched.
        assert_eq!(find_plan(&WITHDRAWAL, 3, 5, at(6)), PlanSearch::NotPlanned { from: 3, searched_to: 5 });
        // Past the bound: not searched, and said so.
        let far = 3 + MAX_PLAN_SEARCH_BATCHES;
        assert_eq!(
            find_plan(&WITHDRAWAL, 3, u64::MAX, at(far)),
            PlanSearch::NotPlanned { from: 3, searched_to: far - 1 }
        );
    }
}

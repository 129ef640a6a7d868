//! A Bitcoin deposit its payer points at: the way in for one the deposit scan passed by.
//!
//! The scan reads each block once and credits the outputs paying an account in the ledger's
//! deposit book. An account added to the book later was paid in a block already read, and no
//! scan reads that block again: its owner derived the address offline (it is public: the group
//! key and the account) and paid before asking the coordinator, say. Not seen is not absent:
//! the payer names the transaction and the height of its block, and the claim reads that block
//! at depth from the coordinator's own node and credits what the transaction pays the
//! account's addresses, with the same keyed crediting the scan uses ([`crate::deposits::LedgerKeys::credit_tx`]).
//! Nothing here is trusted more than the scan: every confirmer checks each credited deposit
//! against its own node, however the coordinator found it, and the ledger refuses an output
//! credited twice.

use std::collections::BTreeMap;

use bridge::TxError;
use bridge::batch::ApplyError;
use chains::bitcoin::{BitcoinNode, Owner, RpcError, deposit_script};

use crate::deposits::{Credit, DepositLedger, credit_outcome};
use crate::sequencer::SequencerError;

/// A transaction its payer says pays `account`'s deposit address, in the block at `height` of
/// the node's active chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepositClaim {
    pub account: bridge::Address,
    pub txid: chains::bitcoin::Txid,
    pub height: u64,
}

/// What became of one output the claim found paying the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Credited now.
    Credited,
    /// Credited before (by the scan or an earlier claim): nothing changed.
    AlreadyCredited,
    /// Not yet: a coinbase output not mature, or a key whose rotation's first batch has not
    /// opened. The same claim later credits it (the scan will not: it read the block).
    NotYet,
    /// The state-transition function refused it for good.
    Refused,
}

/// One output of the claimed transaction that pays the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimedOutput {
    pub vout: u32,
    pub sat: u64,
    pub outcome: ClaimOutcome,
}

/// Why a claim credited nothing. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "block {height} has {confirmations} of the {depth} confirmations a deposit needs (the node's tip is {tip}): \
         claim again once block {ready} is mined"
    )]
    NotDeepYet { height: u64, confirmations: u64, depth: u32, tip: u64, ready: u64 },
    #[error(
        "transaction {txid} is not in block {height} of the coordinator's node's active chain: name the height of the \
         block that holds it (a reorg may have moved it)"
    )]
    NotInBlock { txid: chains::bitcoin::Txid, height: u64 },
    #[error(
        "transaction {txid} pays no deposit address of {account} under a key the vault watches: nothing to credit \
         (an address of another account, or of a key retired after its grace)"
    )]
    PaysNoAddress { txid: chains::bitcoin::Txid, account: bridge::Address },
    #[error("the coordinator's Bitcoin node: {0}")]
    Node(#[from] RpcError),
    #[error(transparent)]
    Sequencer(#[from] SequencerError),
}

/// Reads `claim`'s block from `node`, which must hold it `depth` blocks deep, and credits into
/// `ledger` every output of the transaction paying the account under a key the ledger still
/// watches (the keys the scan watches). Idempotent: a claimed output credited before is
/// [`ClaimOutcome::AlreadyCredited`].
pub async fn claim(
    node: &dyn BitcoinNode,
    ledger: &mut impl DepositLedger,
    network: bridge::BtcNetwork,
    depth: u32,
    claim: DepositClaim,
) -> Result<Vec<ClaimedOutput>, ClaimError> {
    let DepositClaim { account, txid, height } = claim;
    let keys = ledger.keys().await?;
    let owners: BTreeMap<_, _> = keys
        .watched()
        .filter(|(_, over)| !over)
        .filter_map(|(key, _)| chains::bitcoin::XOnlyPublicKey::from_slice(&key).ok())
        .map(|key| (deposit_script(key, network, &account), Owner { account, key }))
        .collect();
    let tip = node.block_count().await?;
    let confirmations = (tip + 1).saturating_sub(height);
    if confirmations < u64::from(depth) {
        let ready = height.saturating_add(u64::from(depth) - 1);
        return Err(ClaimError::NotDeepYet { height, confirmations, depth, tip, ready });
    }
    let block = node.block(&node.block_hash(height).await?).await?;
    let tx = block.txdata.iter().find(|tx| tx.compute_txid() == txid).ok_or(ClaimError::NotInBlock { txid, height })?;
    let found = chains::bitcoin::keyed_deposits(tx, height, &owners);
    if found.is_empty() {
        return Err(ClaimError::PaysNoAddress { txid, account });
    }
    let mut claimed = Vec::with_capacity(found.len());
    for seen in found {
        let bridge::tx::L1Ref::Bitcoin { vout, .. } = seen.deposit.l1_ref else { continue };
        let sat = u64::try_from(seen.deposit.amount.0).unwrap_or(u64::MAX);
        let outcome = match keys.credit_tx(&seen, tip) {
            None => ClaimOutcome::NotYet,
            Some(tx) => match ledger.submit(tx).await? {
                // The scan's reading counts a repeat as done; the claimant is told which.
                Err(ApplyError::Tx(TxError::DepositAlreadyCredited(_))) => ClaimOutcome::AlreadyCredited,
                outcome => match credit_outcome(&seen, &outcome) {
                    Credit::Done => ClaimOutcome::Credited,
                    Credit::Wait => ClaimOutcome::NotYet,
                    Credit::Refused => ClaimOutcome::Refused,
                },
            },
        };
        tracing::info!(%txid, vout, %account, sat, ?outcome, "bitcoin deposit claimed");
        claimed.push(ClaimedOutput { vout, sat, outcome });
    }
    Ok(claimed)
}

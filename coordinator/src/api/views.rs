//! What the API answers with. Hashes, keys and addresses are `0x` hex; amounts are decimal
//! strings (JSON numbers lose precision above 2^53).

use bridge::{BatchTx, SignedBatch};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ErrorBody;
use crate::store::LedgerTx;

pub fn hex32(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// A transaction the coordinator has durably accepted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// The transaction's hash (its EIP-712 signing hash).
    pub hash: String,
    /// Always `accepted`: it is in the ledger and will be in a batch.
    pub status: String,
}

/// One element of `POST /txs`'s answer, in the order the transactions were sent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TxResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// `accepted` or `refused`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TxResults {
    pub results: Vec<TxResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeeRule {
    pub asset: String,
    /// The least fee a transaction in this asset must carry, in base units.
    pub min_fee: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LatestBatch {
    /// 0 before the first batch.
    pub number: u64,
    pub hash: String,
    pub state_root: String,
    /// The newest batch the DA has accepted (0: none yet).
    pub published: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DaInfo {
    /// `dir` or `arweave`.
    pub kind: String,
    /// The directory, or the Arweave gateway.
    pub location: String,
    /// Arweave only: the coordinator's wallet address, whose transactions alone are batches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Info {
    pub network: String,
    pub genesis_hash: String,
    /// The EIP-712 domain's `chainId`.
    pub chain_id: u64,
    /// The Ethereum vault: the EIP-712 domain's `verifyingContract`.
    pub eth_vault: String,
    /// The EIP-712 domain as `eth_signTypedData_v4` takes it: `name`, `version`, `chainId` (the
    /// vault's Ethereum chain) and `verifyingContract` (the vault).
    #[schema(value_type = Object)]
    pub eip712_domain: bridge::eip712::DomainFields,
    pub btc_network: String,
    /// The BIP-340 key that signs batch headers.
    pub coordinator_key: String,
    pub fee_account: String,
    pub fees: Vec<FeeRule>,
    pub latest_batch: LatestBatch,
    pub da: DaInfo,
    /// The most transactions one `POST /txs` may carry.
    pub max_txs_per_request: usize,
    /// The Bitcoin vault (null when the network takes no bitcoin): both of its keys and the
    /// fee-rate bounds every payout plan must respect.
    pub btc_vault: Option<BtcVaultInfo>,
    /// How deep this coordinator waits before it records an L1 fact or calls a batch published.
    pub confirmations: Confirmations,
    /// The complete network parameters, exactly the value whose borsh bytes hash to
    /// `genesis_hash` (docs/PROTOCOL.md): all a replay needs from the network. A replayer
    /// recomputes the genesis hash from them rather than trusting `genesis_hash`.
    #[schema(value_type = Object)]
    pub params: bridge::NetworkParams,
}

/// The Bitcoin vault's keys, named as `tss::GroupKey` names them, and its fee-rate bounds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BtcVaultInfo {
    /// `x(P)`: the watchmen's FROST group key, the Taproot internal key (`params.btc_vault.group_key`).
    pub group_key: String,
    /// `x(Q)`: `P` with BIP-341's tweak and no script tree; the vault's change goes to it.
    pub output_key: String,
    /// The Taproot address of `Q` on `btc_network`.
    pub address: String,
    /// sat/vB bounds of a payout plan (consolidations: at most 4 x `min_fee_rate`).
    pub min_fee_rate: u64,
    pub max_fee_rate: u64,
}

impl BtcVaultInfo {
    pub fn new(params: &bridge::NetworkParams) -> Option<Self> {
        let vault = params.btc_vault.as_ref()?;
        let address = chains::bitcoin::vault_address(vault.internal_key(), params.btc_network);
        Some(BtcVaultInfo {
            group_key: hex32(&vault.group_key),
            output_key: hex32(&vault.output_key()),
            address: address.to_string(),
            min_fee_rate: vault.min_fee_rate,
            max_fee_rate: vault.max_fee_rate,
        })
    }
}

/// Confirmation counts (this node's configuration, not part of the genesis hash): a replayer
/// must wait at least as deep before it calls a fact absent.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct Confirmations {
    /// Ethereum blocks on top of a deposit's block before it is credited.
    pub ethereum_blocks: u64,
    /// Bitcoin confirmations (the block itself counts as one) before a deposit is credited
    /// or a payout's change is recorded.
    pub bitcoin_blocks: u64,
    /// Arweave confirmations before a batch counts as published.
    pub arweave: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Balance {
    pub asset: String,
    pub amount: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub address: String,
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
    /// Non-zero balances, by asset.
    pub balances: Vec<Balance>,
}

/// Where an account deposits bitcoin: the watchmen's group key tweaked for this account, so a
/// deposit there is credited to it and to no one else.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BtcDepositAddress {
    pub account: String,
    /// A Taproot (bech32m) address on `btc_network`.
    pub address: String,
    pub btc_network: String,
}

/// An acknowledged transaction and how far it has got: `accepted` (in the ledger), then
/// `batched` (sealed into batch `batch`), then `published` (on the DA at `locator`). Hard
/// finality is the confirmer's to report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TxStatus {
    pub hash: String,
    pub status: String,
    /// The order the sequencer applied it in.
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locator: Option<String>,
    /// The transaction as it is (or will be) in the batch.
    #[schema(value_type = Object)]
    pub tx: BatchTx,
    /// A forced transaction (posted to Arweave, docs/PROTOCOL.md "Forced transactions"): what
    /// its batch recorded. `seq` is then the batch's first body transaction's: forced records
    /// run just before the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced: Option<ForcedRecordView>,
}

/// What a batch recorded for a forced transaction.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ForcedRecordView {
    /// The Arweave transaction that carried it, and its block height.
    pub arweave_id: String,
    pub height: u64,
    /// `applied`, `refused` (the STF refused it: `code` says why) or `duplicate` (the same
    /// transaction was applied before, through the API or an earlier copy).
    pub outcome: String,
    /// The STF's refusal code (`overdraft`, `nonce_replayed`, `signer_mismatch`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Later copies of the same transaction on Arweave, recorded as duplicates (at most 7 shown).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<String>,
}

impl TxStatus {
    /// The view of a forced transaction from its records (the first is the one that counted).
    pub fn forced(hash: [u8; 32], records: &[crate::store::ForcedTx]) -> Option<Self> {
        use bridge::forced::ForcedOutcome;
        let first = records.first()?;
        let tx = first.record.outcome.tx()?.clone();
        let (outcome, code) = match &first.record.outcome {
            ForcedOutcome::Applied { .. } => ("applied", None),
            ForcedOutcome::Refused { code, .. } => ("refused", Some(code.clone())),
            ForcedOutcome::Duplicate { .. } => ("duplicate", None),
            ForcedOutcome::Malformed { .. } => return None,
        };
        Some(TxStatus {
            hash: hex32(&hash),
            status: if first.locator.is_some() { "published" } else { "batched" }.into(),
            seq: first.first_seq,
            batch: Some(first.number),
            locator: first.locator.clone(),
            tx: BatchTx::User(tx),
            forced: Some(ForcedRecordView {
                arweave_id: chains::arweave::to_b64(&first.record.arweave_id),
                height: first.record.height,
                outcome: outcome.into(),
                code,
                copies: records[1..].iter().map(|r| chains::arweave::to_b64(&r.record.arweave_id)).collect(),
            }),
        })
    }
}

impl From<LedgerTx> for TxStatus {
    fn from(tx: LedgerTx) -> Self {
        let status = match (&tx.batch, &tx.locator) {
            (None, _) => "accepted",
            (Some(_), None) => "batched",
            (Some(_), Some(_)) => "published",
        };
        TxStatus {
            hash: hex32(&tx.hash),
            status: status.into(),
            seq: tx.seq,
            batch: tx.batch,
            locator: tx.locator,
            tx: tx.tx,
            forced: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountTxs {
    pub txs: Vec<TxStatus>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Batch {
    pub number: u64,
    pub hash: String,
    /// The header as signed, with the coordinator's signature.
    #[schema(value_type = Object)]
    pub header: bridge::batch::BatchHeader,
    pub signature: String,
    /// The hashes of its transactions, in order.
    pub tx_hashes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locator: Option<String>,
}

impl Batch {
    pub fn new(batch: &SignedBatch, locator: Option<String>, tx_hashes: Vec<String>) -> Self {
        Batch {
            number: batch.header.number,
            hash: hex32(&batch.hash()),
            header: batch.header.clone(),
            signature: hex32(&batch.signature),
            tx_hashes,
            locator,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`; `degraded` when sealed batches wait to be published or a task is restarting;
    /// `dead` (with status 503) when a background task is dead and the process is stopping.
    pub status: String,
    pub sealed: u64,
    pub published: u64,
    /// Every background task: the publisher, the chain watchers, the payout keeper.
    pub tasks: Vec<TaskView>,
}

/// `/status`: what the chain watchers count as final.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// The Ethereum deposit watcher, if an Ethereum node is configured: `configured` and
    /// `in_force` rule (`finalized` or `depth`), `depth_blocks`, and the node's `head`,
    /// `finalized` and `safe` (highest credited-from) block at the last look, or its `error`.
    #[schema(value_type = Option<Object>)]
    pub ethereum: Option<chains::eth_finality::FinalityStatus>,
    /// Forced inclusion, on a network with it: the `cursor` (`{height, taken}`) the last
    /// sealed batch left, the gateway's `arweave_height`, and the `oldest_pending` forced
    /// entry (`{arweave_id, height}`) not yet consumed, with the `pending` count.
    #[schema(value_type = Option<Object>)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced: Option<crate::forced::ForcedStatus>,
}

/// A background task as `/health` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    /// `publisher`, `ethereum-deposits`, `bitcoin-deposits`, `bitcoin-payouts`, `sequencer`, `deposit-intake`.
    pub task: String,
    /// `running`, `restarting` (its last turn failed; retried after a backoff) or `dead`.
    pub state: String,
    /// Consecutive failed turns (0 while running).
    pub attempt: u32,
    /// Failed turns since the process started.
    pub restarts: u64,
    /// The last failure, kept after the task recovers.
    pub last_error: Option<String>,
}

impl From<chains::task::TaskHealth> for TaskView {
    fn from(health: chains::task::TaskHealth) -> Self {
        let state = match health.state {
            chains::task::TaskState::Running => "running",
            chains::task::TaskState::Restarting => "restarting",
            chains::task::TaskState::Dead => "dead",
        };
        TaskView {
            task: health.task,
            state: state.into(),
            attempt: health.attempt,
            restarts: health.restarts,
            last_error: health.last_error,
        }
    }
}

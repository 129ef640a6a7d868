//! The explorer's reads, all from this confirmer's own replay: the latest batches, a batch with
//! its transactions, a transaction with its stages, an account's Bitcoin deposit address.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use bridge::eip712::Domain;
use bridge::tx::TxPlace;
use bridge::withdrawals::EthWithdrawal;
use bridge::{Address, AssetId, BatchTx, Chain, SignedBatch, UserTx};
use serde::{Deserialize, Serialize};

use super::btc_payout::{self, PlanSearch};
use super::stages::{self, BtcPayoutView, CoordinatorView, Facts, L1Tx, PayoutView, Stage};
use super::{WebContext, WebError};
use crate::store::ReplayedBatch;

/// The most batches one listing returns: a page of them, and a bound on the store reads one
/// request makes while holding the follower's lock for reading.
pub const MAX_BATCHES_LISTED: u64 = 50;

type Ctx = State<Arc<WebContext>>;

#[derive(Debug, Serialize, Deserialize)]
pub struct BatchSummary {
    pub number: u64,
    pub hash: String,
    /// Milliseconds since the Unix epoch, as the coordinator sealed it.
    pub timestamp_ms: u64,
    pub tx_count: u32,
    pub post_state_root: String,
    pub hard_final: bool,
    /// Why it is replayed but not hard-final, if so.
    pub unverified: Option<String>,
    /// Where it was read: the Arweave transaction id, or the file of a directory DA.
    pub locator: String,
    /// The gateway's page of that Arweave transaction, when the DA is Arweave.
    pub arweave_url: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BatchListing {
    /// The last batch replayed and the last hard-final one (0: none).
    pub replayed: u64,
    pub hard_final: u64,
    /// The alarms this confirmer raised: the page shows them before anything else.
    pub alarms: Vec<crate::alarm::Alarm>,
    /// Newest first.
    pub batches: Vec<BatchSummary>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TxEntry {
    /// The id both services answer `GET /tx/{id}` for.
    pub id: String,
    pub index: u32,
    pub tx: BatchTx,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BatchDetail {
    #[serde(flatten)]
    pub summary: BatchSummary,
    pub txs: Vec<TxEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TxDetail {
    pub hash: String,
    /// The batch holding it: this confirmer's replay, else the coordinator's word.
    pub batch: Option<u64>,
    /// The transaction as replayed here, else as the coordinator reports it (null if neither).
    pub tx: Option<serde_json::Value>,
    pub stages: Vec<Stage>,
    /// The L1 transaction paying a withdrawal, once this confirmer's node shows it (Ethereum:
    /// the vault's payment; Bitcoin: an attempt carrying the group's signatures).
    pub l1_tx: Option<L1Tx>,
    /// Why the coordinator's stages are missing, if they are.
    pub coordinator_error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub limit: Option<u64>,
}

fn summary(context: &WebContext, stored: &ReplayedBatch, hard_final: bool) -> BatchSummary {
    let header = &stored.batch.header;
    BatchSummary {
        number: header.number,
        hash: hex32(&stored.batch.hash()),
        timestamp_ms: header.timestamp,
        tx_count: header.tx_count,
        post_state_root: hex32(&header.post_state_root),
        hard_final,
        unverified: stored.unverified.clone(),
        locator: stored.locator.clone(),
        arweave_url: context
            .config
            .gateway
            .as_ref()
            .map(|g| format!("{}/tx/{}", g.trim_end_matches('/'), stored.locator)),
    }
}

/// `GET /web/v1/batches?limit=N`: the newest replayed batches, newest first, with the alarms.
pub async fn list_batches(
    State(context): Ctx,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<BatchListing>, WebError> {
    let Query(query) = query.map_err(|e| WebError::bad_request("bad_query", e.to_string()))?;
    let limit = query.limit.unwrap_or(20).clamp(1, MAX_BATCHES_LISTED);
    let follower = context.follower.read().await;
    let status = follower.status();
    let mut batches = Vec::new();
    let oldest = status.replayed.saturating_sub(limit - 1).max(1);
    for number in (oldest..=status.replayed).rev() {
        if let Some(stored) = follower.store().replayed_batch(number).await.map_err(WebError::internal)? {
            batches.push(summary(&context, &stored, follower.is_hard_final(number)));
        }
    }
    Ok(Json(BatchListing { replayed: status.replayed, hard_final: status.hard_final, alarms: status.alarms, batches }))
}

/// The id of each transaction of `batch`, in body order.
fn tx_ids(batch: &SignedBatch, domain: &Domain, network: [u8; 32]) -> Vec<[u8; 32]> {
    let number = batch.header.number;
    batch
        .body
        .iter()
        .enumerate()
        .map(|(i, tx)| match tx {
            BatchTx::User(signed) => signed.tx.signing_hash(domain),
            BatchTx::System(system) => {
                system.id(TxPlace { network, batch: number, index: u32::try_from(i).unwrap_or(u32::MAX) })
            }
        })
        .collect()
}

/// `GET /web/v1/batches/{n}`: a replayed batch and its transactions with their ids.
pub async fn get_batch(
    State(context): Ctx,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<BatchDetail>, WebError> {
    let text = path.map(|Path(t)| t).map_err(|e| WebError::bad_request("bad_path", e.to_string()))?;
    let number: u64 = text.parse().map_err(|_| {
        WebError::bad_request("bad_batch_number", format!("a batch number is a whole number, got {text:?}"))
    })?;
    let follower = context.follower.read().await;
    let stored = follower.store().replayed_batch(number).await.map_err(WebError::internal)?.ok_or_else(|| {
        WebError::new(StatusCode::NOT_FOUND, "unknown_batch", format!("batch {number} has not been replayed here"))
    })?;
    let params = follower.params();
    let ids = tx_ids(&stored.batch, &Domain::new(params), params.genesis_hash());
    let txs = stored
        .batch
        .body
        .iter()
        .zip(ids)
        .enumerate()
        .map(|(i, (tx, id))| TxEntry { id: hex32(&id), index: u32::try_from(i).unwrap_or(u32::MAX), tx: tx.clone() })
        .collect();
    Ok(Json(BatchDetail { summary: summary(&context, &stored, follower.is_hard_final(number)), txs }))
}

/// Leaf `k` of a batch's Ethereum withdrawals tree is its `k`-th withdrawal to an Ethereum
/// recipient in body order (`bridge::batch`); the leaf must say the same recipient and amount.
fn eth_leaf(batch: &SignedBatch, position: usize, leaves: &[EthWithdrawal]) -> Option<EthWithdrawal> {
    let BatchTx::User(signed) = batch.body.get(position)? else { return None };
    let UserTx::Withdraw(withdraw) = &signed.tx else { return None };
    if withdraw.asset.chain() != Chain::Ethereum {
        return None;
    }
    let k = batch.body[..position]
        .iter()
        .filter(|tx| {
            matches!(tx, BatchTx::User(s) if matches!(&s.tx, UserTx::Withdraw(w) if w.asset.chain() == Chain::Ethereum))
        })
        .count();
    let leaf = leaves.get(k)?;
    let token = withdraw.asset.eth_token().unwrap_or(Address::ZERO);
    let same = leaf.amount == withdraw.amount
        && leaf.token == token
        && withdraw.recipient.parse::<Address>().ok() == Some(leaf.recipient);
    same.then(|| leaf.clone())
}

/// The chain a withdrawal pays out on; `None` for anything else.
fn withdrawal_chain(tx: &BatchTx) -> Option<Chain> {
    match tx {
        BatchTx::User(signed) => match &signed.tx {
            UserTx::Withdraw(w) => Some(w.asset.chain()),
            UserTx::Transfer(_) => None,
        },
        BatchTx::System(_) => None,
    }
}

/// What a Bitcoin payout lookup needs from the replay, read under its lock.
struct BtcLookup {
    search: PlanSearch,
    keys: Option<bridge::VaultKeys>,
    network: bridge::BtcNetwork,
}

/// What the replay here knows of one transaction: its batch, finality, body entry, and (for a
/// hard-final withdrawal) its Ethereum leaf or the Bitcoin plan paying it.
struct Replayed {
    batch: u64,
    hard_final: bool,
    tx: Option<BatchTx>,
    leaf: Option<EthWithdrawal>,
    withdrawal: Option<Chain>,
    btc: Option<BtcLookup>,
}

async fn replayed(context: &WebContext, hash: &[u8; 32]) -> Result<Option<Replayed>, WebError> {
    let follower = context.follower.read().await;
    let Some(batch) = follower.batch_of_tx(hash).await.map_err(WebError::internal)? else { return Ok(None) };
    let hard_final = follower.is_hard_final(batch);
    let Some(stored) = follower.store().replayed_batch(batch).await.map_err(WebError::internal)? else {
        return Ok(Some(Replayed { batch, hard_final, tx: None, leaf: None, withdrawal: None, btc: None }));
    };
    let params = follower.params();
    let ids = tx_ids(&stored.batch, &Domain::new(params), params.genesis_hash());
    let position = ids.iter().position(|id| id == hash);
    let tx = position.and_then(|p| stored.batch.body.get(p).cloned());
    let withdrawal = tx.as_ref().and_then(withdrawal_chain);
    let leaf = match (position, follower.final_settlement(batch).await.map_err(WebError::internal)?) {
        (Some(p), Some(settlement)) => eth_leaf(&stored.batch, p, settlement.eth.withdrawals()),
        _ => None,
    };
    let btc = if withdrawal == Some(Chain::Bitcoin) && hard_final {
        // The batches the search may look at, read at once (one query beyond the recent ones).
        let hard_final = follower.status().hard_final;
        let last = hard_final.min(batch.saturating_add(btc_payout::MAX_PLAN_SEARCH_BATCHES - 1));
        let owing: std::collections::BTreeMap<u64, _> =
            follower.final_settlements(batch, last).await.map_err(WebError::internal)?.into_iter().collect();
        Some(BtcLookup {
            search: btc_payout::find_plan(hash, batch, hard_final, |n| owing.get(&n).cloned()),
            keys: bridge::rotation::vault_keys(follower.state()),
            network: params.btc_network,
        })
    } else {
        None
    };
    Ok(Some(Replayed { batch, hard_final, tx, leaf, withdrawal, btc }))
}

/// `GET /web/v1/tx/{hash}`: the transaction and each of its stages with who vouches for it.
pub async fn get_tx(
    State(context): Ctx,
    peer: super::relay::Peer,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TxDetail>, WebError> {
    let text = path.map(|Path(t)| t).map_err(|e| WebError::bad_request("bad_path", e.to_string()))?;
    let hash = bridge::serde_hex::parse_fixed::<32>(&text)
        .map_err(|e| WebError::bad_request("bad_hex", format!("a transaction hash is 0x and 64 hex digits: {e}")))?;
    let hex = hex32(&hash);
    let ours = replayed(&context, &hash).await?;
    let (mut coordinator, mut coordinator_error, mut coordinator_tx) = (None, None, None);
    match &context.coordinator {
        None => coordinator_error = Some("this confirmer has no --coordinator to ask".to_owned()),
        Some(url) => match super::relay::for_client(context.http.get(format!("{url}/tx/{hex}")), &peer).send().await {
            Ok(answer) if answer.status().is_success() => match answer.json::<serde_json::Value>().await {
                Ok(view) => {
                    coordinator = Some(CoordinatorView {
                        batch: view["batch"].as_u64(),
                        locator: view["locator"].as_str().map(str::to_owned),
                    });
                    coordinator_tx = Some(view["tx"].clone());
                }
                Err(error) => coordinator_error = Some(format!("the coordinator's answer is not JSON: {error}")),
            },
            Ok(answer) if answer.status() == reqwest::StatusCode::NOT_FOUND => {
                coordinator_error = Some("the coordinator does not know this transaction".to_owned());
            }
            Ok(answer) => coordinator_error = Some(format!("the coordinator answered {}", answer.status())),
            Err(error) => {
                coordinator_error = Some(format!("the coordinator did not answer: {}", chains::http::describe(&error)))
            }
        },
    }
    if ours.is_none() && coordinator.is_none() {
        return Err(WebError::new(
            StatusCode::NOT_FOUND,
            "unknown_tx",
            format!(
                "no replayed batch holds {hex}, and {}",
                coordinator_error.as_deref().unwrap_or("the coordinator does not know it")
            ),
        ));
    }
    let payout = match &ours {
        Some(r) => match r.withdrawal {
            Some(Chain::Ethereum) if r.hard_final => eth_payout(&context, r).await,
            Some(Chain::Ethereum) => PayoutView::Seen { index: 0, root: None, paid: None },
            Some(Chain::Bitcoin) => btc_payout_view(&context, r).await,
            None => PayoutView::NotApplicable,
        },
        None => match coordinator_tx.as_ref().and_then(withdrawal_chain_claimed) {
            Some(Chain::Ethereum) => PayoutView::Seen { index: 0, root: None, paid: None },
            Some(Chain::Bitcoin) => PayoutView::Bitcoin(BtcPayoutView::NotFinal),
            None => PayoutView::NotApplicable,
        },
    };
    let facts = Facts { coordinator, replayed_in: ours.as_ref().map(|r| (r.batch, r.hard_final)), payout };
    let stages = stages::decide(&facts);
    let l1_tx = stages::l1_tx(&facts);
    let batch = ours.as_ref().map(|r| r.batch).or(facts.coordinator.as_ref().and_then(|c| c.batch));
    let tx = match ours.and_then(|r| r.tx) {
        Some(tx) => serde_json::to_value(tx).ok(),
        None => coordinator_tx,
    };
    Ok(Json(TxDetail { hash: hex, batch, tx, stages, l1_tx, coordinator_error }))
}

/// A hard-final Ethereum withdrawal's leaf as the vault on this confirmer's node shows it.
async fn eth_payout(context: &WebContext, r: &Replayed) -> PayoutView {
    match (&r.leaf, &context.config.eth_rpc, &context.vault) {
        (_, None, _) | (_, _, None) => PayoutView::NoNode(Chain::Ethereum),
        (None, Some(_), Some(_)) => {
            PayoutView::Unknown(Chain::Ethereum, "its leaf is not in this confirmer's settlement".into())
        }
        (Some(leaf), Some(_), Some(reader)) => {
            match super::payout::leaf(reader, leaf.batch, leaf.index, leaf.token).await {
                Ok(on_chain) => PayoutView::Seen { index: leaf.index, root: on_chain.root, paid: on_chain.paid },
                Err(why) => PayoutView::Unknown(Chain::Ethereum, why),
            }
        }
    }
}

/// A Bitcoin withdrawal's payout: the plan paying it in the hard-final replay here, and what
/// this confirmer's Bitcoin node holds of that plan's attempts.
async fn btc_payout_view(context: &WebContext, r: &Replayed) -> PayoutView {
    let Some(lookup) = &r.btc else { return PayoutView::Bitcoin(BtcPayoutView::NotFinal) };
    let (plan_batch, plan) = match &lookup.search {
        PlanSearch::NotPlanned { from, searched_to } => {
            return PayoutView::Bitcoin(BtcPayoutView::NotPlanned { from: *from, searched_to: *searched_to });
        }
        PlanSearch::Found { batch, plan } => (*batch, plan),
    };
    let Some(rpc) = &context.btc_rpc else { return PayoutView::NoNode(Chain::Bitcoin) };
    let Some(keys) = &lookup.keys else {
        return PayoutView::Unknown(Chain::Bitcoin, "this network has no Bitcoin vault".into());
    };
    let on_node = btc_payout::attempt_on_node(rpc, keys, lookup.network, plan);
    let Ok(answer) = tokio::time::timeout(btc_payout::NODE_LOOKUP_TIMEOUT, on_node).await else {
        let why = format!("no answer within {} s", btc_payout::NODE_LOOKUP_TIMEOUT.as_secs());
        return PayoutView::Unknown(Chain::Bitcoin, why);
    };
    match answer {
        Ok(None) => PayoutView::Bitcoin(BtcPayoutView::Planned { plan: plan.id, plan_batch }),
        Ok(Some(attempt)) => PayoutView::Bitcoin(BtcPayoutView::OnNode { plan: plan.id, plan_batch, attempt }),
        Err(error) => PayoutView::Unknown(Chain::Bitcoin, error.to_string()),
    }
}

/// The chain a coordinator's `tx` JSON (a `BatchTx`) withdraws on, if it is a withdrawal.
fn withdrawal_chain_claimed(tx: &serde_json::Value) -> Option<Chain> {
    if tx["tx"]["type"] != "withdraw" {
        return None;
    }
    tx["tx"]["asset"].as_str().and_then(|a| a.parse::<AssetId>().ok()).map(|a| a.chain())
}

pub(super) fn hex32(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

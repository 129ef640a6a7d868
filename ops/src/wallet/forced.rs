//! `transfer|withdraw --force`: the way around a coordinator that ignores you (docs/PROTOCOL.md,
//! Forced transactions; README, "If the coordinator ignores you"). The signed transaction is
//! posted to Arweave with your Arweave wallet instead of to the coordinator, and followed:
//! posted → confirmed on Arweave → included in batch N (a confirmer's replay) → hard-final →
//! paid on L1 (a withdrawal). The network's parameters and your nonce come from a confirmer, so
//! the coordinator is never asked. If Arweave passes the network's deadline and the transaction
//! is still not in a batch, the command fails naming the confirmer's `censorship` alarm.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bridge::NetworkParams;
use bridge::forced::ForcedParams;
use chains::arweave::{ArweaveWallet, Gateway, RetryPolicy, TxStatus};
use serde::Deserialize;

use super::endpoints::{Api, Endpoints};
use super::stages::{self, ConfirmerTx, Tracker};

pub const POSTED: &str = "posted";
pub const ON_ARWEAVE: &str = "confirmed-on-arweave";
pub const INCLUDED: &str = "included";

/// The flags of a forced send.
#[derive(Debug, Clone, clap::Args)]
pub struct ForceArgs {
    /// Post the signed transaction to Arweave as a forced transaction, not to the coordinator:
    /// for when the coordinator refuses you or does not answer. Needs --arweave-wallet.
    #[arg(long, requires = "arweave_wallet")]
    pub force: bool,
    /// The Arweave wallet (a JWK file) that pays for posting the forced transaction. Without
    /// --force it is the fallback: when the coordinator is unreachable, silent past 15 s, busy
    /// (429) or failing (5xx), the same signed transaction goes to Arweave. A refusal with a
    /// reason (nonce, overdraft, fee, signature) is reported and never posted.
    #[arg(long)]
    pub arweave_wallet: Option<PathBuf>,
    /// The Arweave gateway to post to (default: the devnet's).
    #[arg(long)]
    pub arweave: Option<String>,
}

/// What a forced send needs to know, from a confirmer.
pub struct ForcedNetwork {
    pub params: NetworkParams,
    pub rules: ForcedParams,
}

#[derive(Deserialize)]
struct InfoParams {
    params: NetworkParams,
}

#[derive(Deserialize)]
struct AccountNonce {
    nonce: u64,
}

/// `GET /alarms` on a confirmer: each alarm with its evidence.
#[derive(Deserialize)]
struct AlarmEntry {
    alarm: AlarmView,
}

#[derive(Deserialize)]
struct AlarmView {
    number: u64,
    kind: String,
    detail: String,
}

impl ForcedNetwork {
    pub async fn fetch(confirmer: &Api) -> anyhow::Result<Self> {
        let info: InfoParams = confirmer.get("/info").await.context("the confirmer's /info")?;
        let rules = info.params.forced.ok_or_else(|| {
            anyhow!("network {} takes no forced transactions (its parameters have no `forced` rules)", info.params.name)
        })?;
        Ok(ForcedNetwork { params: info.params, rules })
    }

    /// The account's next nonce by the confirmer's replay (`given` wins).
    pub async fn nonce(confirmer: &Api, address: bridge::Address, given: Option<u64>) -> anyhow::Result<u64> {
        if let Some(nonce) = given {
            return Ok(nonce);
        }
        let account: AccountNonce = confirmer.get(&format!("/accounts/{address}")).await?;
        Ok(account.nonce)
    }
}

/// Posts `signed` to Arweave; returns its signing hash, the Arweave id and a tracker started now.
pub async fn post(
    args: &ForceArgs,
    endpoints: &Endpoints,
    network: &ForcedNetwork,
    signed: &bridge::SignedUserTx,
    timeout: Duration,
    poll: Duration,
) -> anyhow::Result<(String, String, Gateway, Tracker)> {
    let url = match &args.arweave {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => endpoints.arweave()?,
    };
    let gateway = Gateway::with_tls(&url, RetryPolicy::default(), &endpoints.tls()?)?;
    let path = args.arweave_wallet.as_ref().context("--force needs --arweave-wallet JWK")?;
    let wallet =
        ArweaveWallet::load(path).with_context(|| format!("--arweave-wallet {}: not a JWK wallet", path.display()))?;
    let app_name = chains::da::ArweaveDaConfig::new(&network.params.name, network.params.coordinator_key, "").app_name;
    let data = bridge::forced::encode_payload(signed);
    let id = gateway
        .post_forced(&wallet, &app_name, &network.params.name, data)
        .await
        .with_context(|| format!("posting the forced transaction to {url}"))?;
    let hash = format!("0x{}", hex::encode(signed.tx.signing_hash(&bridge::eip712::Domain::new(&network.params))));
    let mut tracker = Tracker::new(Instant::now(), timeout, poll);
    eprintln!("forced {hash} (Arweave {id})");
    tracker.reach(POSTED, Some(format!("Arweave transaction {id}")));
    Ok((hash, id, gateway, tracker))
}

/// Follows a posted forced transaction until a confirmer calls its batch hard-final; returns
/// the batch. Fails once Arweave is past the deadline with the transaction in no batch.
pub async fn until_hard_final(
    tracker: &mut Tracker,
    gateway: &Gateway,
    confirmer: &Api,
    network: &ForcedNetwork,
    arweave_id: &str,
    hash: &str,
) -> anyhow::Result<u64> {
    let mut problem: Option<String> = None;
    let mut confirmed_at = None;
    loop {
        if confirmed_at.is_none() {
            match gateway.status(arweave_id).await {
                Ok(TxStatus::Confirmed { height, .. }) => {
                    confirmed_at = Some(height);
                    tracker.reach(ON_ARWEAVE, Some(format!("block {height}")));
                }
                Ok(_) => {}
                Err(e) => problem = Some(e.to_string()),
            }
        }
        match confirmer.get::<ConfirmerTx>(&format!("/tx/{hash}")).await {
            Ok(tx) => {
                tracker.batch = Some(tx.batch);
                tracker.reach(INCLUDED, Some(format!("batch {}", tx.batch)));
                if tx.hard_final {
                    tracker.reach(stages::HARD_FINAL, Some(format!("batch {} replayed and verified", tx.batch)));
                    return Ok(tx.batch);
                }
            }
            Err(failure) if failure.is_not_found() => {
                if let Some(height) = confirmed_at
                    && let Some(late) = overdue(gateway, confirmer, &network.rules, height, arweave_id).await?
                {
                    problem = Some(late);
                }
            }
            Err(failure) if stages::is_transient(&failure) => problem = Some(failure.to_string()),
            Err(failure) => return Err(failure.into()),
        }
        let waiting_for = if confirmed_at.is_none() {
            "Arweave to confirm the forced transaction"
        } else if tracker.has(INCLUDED) {
            "a confirmer to call the batch hard-final"
        } else {
            "a batch to include the forced transaction (or a refusal: see the batch's forced records)"
        };
        tracker.pause(waiting_for, &problem).await?;
    }
}

/// Fails if the deadline for the entry `arweave_id` confirmed at `height` has passed and a
/// confirmer raised `censorship` (the alarm naming this entry if there is one); `Some(note)` if
/// it has passed without one (the batches may be full of forced transactions, which lets the
/// cursor lag: the note says so and the wait goes on).
async fn overdue(
    gateway: &Gateway,
    confirmer: &Api,
    rules: &ForcedParams,
    height: u64,
    arweave_id: &str,
) -> anyhow::Result<Option<String>> {
    let Ok(tip) = gateway.height().await else { return Ok(None) };
    // The entry is safe at `height + confirmations - 1`; a batch confirmed `deadline_blocks`
    // after that must have consumed it unless it was full.
    let due = height + rules.confirmations + rules.deadline_blocks;
    if tip <= due {
        return Ok(None);
    }
    let alarms: Vec<AlarmEntry> = confirmer.get("/alarms").await.unwrap_or_default();
    let censorship: Vec<&AlarmView> = alarms.iter().map(|a| &a.alarm).filter(|a| a.kind == "censorship").collect();
    let mine = censorship.iter().find(|a| a.detail.contains(arweave_id));
    match mine.or(censorship.first()) {
        Some(alarm) => bail!(
            "the coordinator missed the forced-inclusion deadline: Arweave is at {tip}, past {due}, and the \
             transaction (Arweave entry {arweave_id}) is in no batch. The confirmer raised alarm `censorship` at \
             batch {}{}: {}. Payouts halt until a new coordinator takes over from the DA (`coordinator recover \
             --from-da`); your transaction stays on Arweave and the new coordinator must include it.",
            alarm.number,
            if mine.is_some() { ", which skipped this entry" } else { "" },
            alarm.detail
        ),
        None => Ok(Some(format!(
            "Arweave is at {tip}, past the deadline {due}, and no batch has the transaction yet; the confirmer \
             raised no censorship alarm (full batches of forced transactions may be ahead of it)"
        ))),
    }
}

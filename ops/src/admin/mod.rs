//! `bridgectl admin`: an operator's side of governing the vault. `approve` records this
//! operator's approval of one admin message with its own watchman (authenticated by the watchman's
//! admin token file); `propose` asks a watchman to have the group sign the message and send it to
//! the vault; `status` gathers every watchman's approvals; `revoke` withdraws one. The group signs
//! only when `t` operators approved exactly the same message.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use confirmer::watchman::admin::{
    AdminAction, AdminToken, Approval, ApprovalsView, ApproveRequest, ErrorBody, ProposeRequest, ProposeResponse,
};

/// How long a request to a watchman may take: a proposal waits for a signing session (its
/// deadline is the watchman's `session_timeout_s`, 60 s by default) and a transaction.
const REQUEST_TIMEOUT_S: u64 = 180;

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Approve one admin message with your own watchman.
    Approve {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        at: At,
        /// Seconds the approval holds (at most 7 days).
        #[arg(long, default_value_t = 86_400)]
        expires_in: u64,
        #[command(subcommand)]
        action: Action,
    },
    /// Ask your watchman to have the group sign the message and send it to the vault (a
    /// key-rotation: to the coordinator named by --coordinator, or print it).
    Propose {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        at: At,
        /// For key-rotation: the coordinator's API to post the signed rotation to.
        #[arg(long)]
        coordinator: Option<String>,
        #[command(subcommand)]
        action: Action,
    },
    /// Withdraw an approval (by the digest `approve` or `status` printed).
    Revoke {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        digest: String,
    },
    /// Every watchman's approvals, grouped by message, with how many of the threshold approved.
    Status {
        /// A watchman's public address (its metrics listener, e.g. http://10.0.0.5:9100);
        /// repeat for each.
        #[arg(long = "watchman", required = true)]
        watchmen: Vec<String>,
    },
}

/// Your own watchman's admin endpoint and its token.
#[derive(Debug, Args)]
struct Target {
    /// The admin endpoint (`[admin] listen` of your watchman).
    #[arg(long, default_value = "http://127.0.0.1:9101")]
    admin: String,
    /// The watchman's admin token file (made at its first start; must be 0600).
    #[arg(long, default_value = "admin.token")]
    token_file: PathBuf,
}

/// Which vault state the message is for; the vault's current values unless named.
#[derive(Debug, Args)]
struct At {
    /// The vault's admin nonce the call consumes (default: the vault's current `adminNonce`).
    #[arg(long)]
    nonce: Option<u64>,
    /// The key epoch (default: the vault's current `keyEpoch`; the next one for accept-key).
    #[arg(long)]
    epoch: Option<u64>,
}

#[derive(Debug, Clone, Subcommand)]
enum Action {
    /// `unpause`: resume deposits and withdrawals.
    Unpause,
    /// `setCap`: at most LIMIT base units of TOKEN per WINDOW seconds (LIMIT 0 removes the cap).
    SetCap {
        /// `eth` for ether, or the ERC-20's address.
        #[arg(long)]
        token: String,
        #[arg(long)]
        limit: u128,
        #[arg(long)]
        window: u64,
    },
    /// `proposeKey`: the current key names its successor (x-only, 32 bytes hex).
    ProposeKey {
        #[arg(long)]
        new_key: String,
    },
    /// `acceptKey`: the new key accepts (signed by the new group).
    AcceptKey {
        #[arg(long)]
        new_key: String,
    },
    /// The ledger's `KeyRotation` (signed by the current group; the epoch is the next one).
    KeyRotation {
        /// The bridge network's genesis hash (`GET /info` of the coordinator).
        #[arg(long)]
        network: String,
        /// The current group's x-only output key x(Q) (the vault's `groupKey`).
        #[arg(long)]
        old_key: String,
        /// The new group's internal key x(P), as `bridgectl keygen` printed it.
        #[arg(long)]
        new_key: String,
        /// The hash of the new watchmen file (`bridgectl devnet rotate` prints it).
        #[arg(long)]
        roster_hash: String,
    },
}

impl Action {
    fn parse(self) -> anyhow::Result<AdminAction> {
        Ok(match self {
            Action::Unpause => AdminAction::Unpause,
            Action::SetCap { token, limit, window } => {
                let token = if token.eq_ignore_ascii_case("eth") {
                    bridge::Address::ZERO
                } else {
                    bridge::Address::from_str(&token).map_err(|e| anyhow::anyhow!("--token {token}: {e}"))?
                };
                if limit != 0 && window == 0 {
                    bail!("--window must be at least 1 second for a cap (the vault refuses 0)");
                }
                AdminAction::SetCap { token, limit, window_secs: window }
            }
            Action::ProposeKey { new_key } => AdminAction::ProposeKey { new_key: key(&new_key)? },
            Action::AcceptKey { new_key } => AdminAction::AcceptKey { new_key: key(&new_key)? },
            Action::KeyRotation { network, old_key, new_key, roster_hash } => AdminAction::KeyRotation {
                network: hex32("--network", &network)?,
                old_key: hex32("--old-key", &old_key)?,
                new_key: key(&new_key)?,
                roster_hash: hex32("--roster-hash", &roster_hash)?,
            },
        })
    }
}

fn hex32(flag: &str, text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(text.trim_start_matches("0x")).with_context(|| format!("{flag} is not hex"))?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("{flag} is 32 bytes (64 hex digits)"))
}

fn key(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(text.trim_start_matches("0x")).context("--new-key is not hex")?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("--new-key is a 32-byte x-only key (64 hex digits)"))
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(REQUEST_TIMEOUT_S)).build()?;
    match args.command {
        AdminCommand::Approve { target, at, expires_in, action } => {
            let request = ApproveRequest {
                action: action.parse()?,
                nonce: at.nonce,
                epoch: at.epoch,
                expires_in_s: Some(expires_in),
            };
            let approval: Approval = send(&http, &target, reqwest::Method::POST, "/admin/approvals", &request).await?;
            println!(
                "approved {}\n  digest {}\n  expires at {} (unix seconds)",
                approval.message, approval.digest, approval.expires_at_s
            );
        }
        AdminCommand::Propose { target, at, coordinator, action } => {
            let request = ProposeRequest { action: action.parse()?, nonce: at.nonce, epoch: at.epoch };
            let done: ProposeResponse = send(&http, &target, reqwest::Method::POST, "/admin/propose", &request).await?;
            if let Some(rotation) = &done.key_rotation {
                return carry_rotation(&http, rotation, coordinator.as_deref(), &done.signers).await;
            }
            println!(
                "the vault took {}\n  transaction {}\n  signed by {}",
                done.message,
                done.tx_hash,
                done.signers.join(", ")
            );
        }
        AdminCommand::Revoke { target, digest } => {
            let path = format!("/admin/approvals/{digest}");
            let _: serde_json::Value = send(&http, &target, reqwest::Method::DELETE, &path, &()).await?;
            println!("revoked {digest}");
        }
        AdminCommand::Status { watchmen } => status(&http, &watchmen).await?,
    }
    Ok(())
}

/// Prints the signed rotation and, with a coordinator, posts it there.
async fn carry_rotation(
    http: &reqwest::Client,
    rotation: &bridge::KeyRotation,
    coordinator: Option<&str>,
    signers: &[String],
) -> anyhow::Result<()> {
    println!("the group signed the key rotation to epoch {}\n  signed by {}", rotation.epoch, signers.join(", "));
    println!("{}", serde_json::to_string_pretty(rotation)?);
    let Some(coordinator) = coordinator else {
        println!("post it to the coordinator: bridgectl admin propose … --coordinator URL, or POST /key-rotation");
        return Ok(());
    };
    let url = format!("{}/key-rotation", coordinator.trim_end_matches('/'));
    let response = http.post(&url).json(rotation).send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let text = response.text().await.with_context(|| format!("reading the answer of {url}"))?;
    if !status.is_success() {
        bail!("the coordinator refused the key rotation ({status}): {text}");
    }
    println!("the ledger took the key rotation: {text}");
    Ok(())
}

/// One authenticated request to the operator's own watchman; a refusal comes back as an error
/// naming every watchman's reason.
async fn send<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    target: &Target,
    method: reqwest::Method,
    path: &str,
    body: &impl serde::Serialize,
) -> anyhow::Result<T> {
    let token = AdminToken::read(&target.token_file).map_err(anyhow::Error::msg)?;
    let url = format!("{}{path}", target.admin.trim_end_matches('/'));
    let response = http
        .request(method, &url)
        .bearer_auth(token.as_str())
        .json(body)
        .send()
        .await
        .with_context(|| format!("cannot reach the watchman's admin endpoint {url}"))?;
    let status = response.status();
    let text = response.text().await.with_context(|| format!("reading the answer of {url}"))?;
    if !status.is_success() {
        let Ok(body) = serde_json::from_str::<ErrorBody>(&text) else {
            bail!("{url} answered {status}: {text}");
        };
        let mut said = body.error;
        for refusal in body.refusals {
            said.push_str(&format!("\n  watchman {}: [{}] {}", refusal.peer, refusal.code, refusal.reason));
        }
        bail!("{said}");
    }
    if text.is_empty() {
        return serde_json::from_str("null").context("an empty answer");
    }
    serde_json::from_str(&text).with_context(|| format!("{url} answered something unexpected: {text}"))
}

/// Each watchman's approvals, grouped by message digest.
async fn status(http: &reqwest::Client, watchmen: &[String]) -> anyhow::Result<()> {
    let mut by_digest: std::collections::BTreeMap<String, (String, Vec<String>, Vec<String>)> = Default::default();
    let mut threshold = None;
    for base in watchmen {
        let url = format!("{}/approvals", base.trim_end_matches('/'));
        let view: ApprovalsView = match http.get(&url).send().await.and_then(reqwest::Response::error_for_status) {
            Ok(response) => response.json().await.with_context(|| format!("{url} is not a watchman's approvals"))?,
            Err(error) => {
                println!("{base}: unreachable ({error})");
                continue;
            }
        };
        threshold = Some(view.threshold);
        for approval in view.approvals {
            let entry = by_digest
                .entry(approval.digest.clone())
                .or_insert_with(|| (approval.message.to_string(), Vec::new(), Vec::new()));
            if approval.is_expired(view.now_s) {
                entry.2.push(view.peer_id.clone());
            } else {
                entry.1.push(view.peer_id.clone());
            }
        }
    }
    if by_digest.is_empty() {
        println!("no approvals pending");
    }
    let threshold = threshold.map_or("?".to_owned(), |t| t.to_string());
    for (digest, (message, live, expired)) in by_digest {
        println!(
            "{message}\n  digest {digest}\n  approved by {} of {threshold} needed: {}",
            live.len(),
            live.join(", ")
        );
        if !expired.is_empty() {
            println!("  expired at: {}", expired.join(", "));
        }
    }
    Ok(())
}

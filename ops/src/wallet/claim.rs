//! `claim`: pays an Ethereum withdrawal leaf the vault could not pay in its batch (its recipient
//! refused ether or burnt its gas, or the token refused the transfer), by calling the vault's
//! `withdraw` with the leaf's proof. Anyone may claim, and the caller pays the gas; `withdraw`
//! forwards all of it to the transfer, so a recipient that needs more than a batch payout's
//! stipend is paid this way. The leaves and proofs come from a watchman's
//! `GET /withdrawals/stuck`; each proof is checked here against the root the vault holds, so a
//! wrong answer costs nothing.

use alloy::primitives::U256;
use anyhow::{Context, anyhow, bail};
use bridge::withdrawals::{EthWithdrawal, verify_eth_proof};
use bridge::{Address, Amount};
use contracts::Vault;
use serde::Deserialize;
use serde_json::json;

use super::endpoints::{Api, EndpointArgs, Endpoints};
use super::network::Network;
use super::{OutputArgs, WalletArgs, print_json};

#[derive(Debug, clap::Args)]
pub struct ClaimArgs {
    /// The batch of the leaf to claim (with --index).
    #[arg(long, requires = "index")]
    batch: Option<u64>,
    /// The leaf's index in its batch.
    #[arg(long, requires = "batch")]
    index: Option<u32>,
    /// Claim every stuck leaf paying this Ethereum address.
    #[arg(long, conflicts_with_all = ["batch", "all"])]
    recipient: Option<String>,
    /// Claim every stuck leaf listed.
    #[arg(long, conflicts_with = "batch")]
    all: bool,
    /// The vault, 0x…; default: the coordinator's (from its /info).
    #[arg(long)]
    vault: Option<String>,
    /// The wallet whose Ethereum address sends the claims and pays their gas.
    #[command(flatten)]
    wallet: WalletArgs,
    /// --confirmer is the watchman serving /withdrawals/stuck.
    #[command(flatten)]
    endpoints: EndpointArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// A leaf as `GET /withdrawals/stuck` lists it.
#[derive(Debug, Clone, Deserialize)]
struct StuckLeaf {
    /// The vault's range holding the leaf.
    range: u64,
    batch: u64,
    index: u32,
    token: String,
    recipient: String,
    amount: String,
    proof: Vec<String>,
}

impl StuckLeaf {
    fn withdrawal(&self) -> anyhow::Result<(EthWithdrawal, Vec<[u8; 32]>)> {
        let bad = |what: &str, e: &dyn std::fmt::Display| anyhow!("the confirmer's leaf has a bad {what}: {e}");
        let token: Address = self.token.parse().map_err(|e| bad("token", &e))?;
        let recipient: Address = self.recipient.parse().map_err(|e| bad("recipient", &e))?;
        let amount: Amount = self.amount.parse().map_err(|e| bad("amount", &e))?;
        let proof = self
            .proof
            .iter()
            .map(|p| bridge::serde_hex::parse_fixed::<32>(p).map_err(|e| bad("proof", &e)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok((EthWithdrawal { batch: self.batch, index: self.index, token, recipient, amount }, proof))
    }
}

pub async fn run(args: ClaimArgs) -> anyhow::Result<()> {
    if args.batch.is_none() && args.recipient.is_none() && !args.all {
        bail!("say which leaves to claim: --batch N --index I, --recipient 0x…, or --all");
    }
    let endpoints = Endpoints::resolve(&args.endpoints);
    let confirmer = Api::confirmer(endpoints.confirmer()?, &endpoints.tls()?)?;
    let eth_rpc = endpoints.eth_rpc()?;
    let vault: Address = match &args.vault {
        Some(text) => text.trim().parse().map_err(|e| anyhow!("--vault {text}: {e}"))?,
        None => Network::fetch(&endpoints.coordinator_api()?).await?.eth_vault,
    };
    let recipient: Option<Address> = match &args.recipient {
        Some(text) => Some(text.trim().parse().map_err(|e| anyhow!("--recipient {text}: {e}"))?),
        None => None,
    };
    let listed: Vec<StuckLeaf> = confirmer.get("/withdrawals/stuck").await?;
    let mut chosen = Vec::new();
    for leaf in &listed {
        let (withdrawal, proof) = leaf.withdrawal()?;
        let wanted = args.all
            || recipient.is_some_and(|r| r == withdrawal.recipient)
            || (args.batch == Some(leaf.batch) && args.index == Some(leaf.index));
        if wanted {
            chosen.push((leaf.range, withdrawal, proof));
        }
    }
    if chosen.is_empty() {
        bail!(
            "the confirmer lists no stuck leaf matching that ({} listed): it may have been paid already",
            listed.len()
        );
    }

    let wallet = args.wallet.open()?;
    let key = format!("0x{}", hex::encode(wallet.secret_bytes()));
    let (provider, _) = chains::ethereum::signing_provider(&eth_rpc, &endpoints.tls()?, &key)
        .map_err(|e| anyhow!("{e} (--eth-rpc)"))?;
    let vault = Vault::new(contracts::to_alloy(vault), provider);
    let mut results = Vec::new();
    let mut failures = 0;
    for (range, w, proof) in chosen {
        // The range is checked against the vault, not taken from the confirmer: it must cover
        // the leaf's batch, and the proof must open its root.
        let held = vault.ranges(range).call().await.context("reading the vault's range")?;
        if held.root.is_zero() || w.batch < held.first || w.batch > held.last {
            bail!(
                "the confirmer names range {range} for batch {} leaf {}, and the vault's range {range} does not cover that batch: ask another confirmer",
                w.batch,
                w.index
            );
        }
        let root = held.root;
        if !verify_eth_proof(&proof, root.0, w.leaf()) {
            bail!(
                "the confirmer's proof for batch {} leaf {} does not open the root {root} of the vault's range {range}: ask another confirmer",
                w.batch,
                w.index
            );
        }
        let call = vault.withdraw(
            range,
            w.batch,
            w.index,
            contracts::to_alloy(w.token),
            contracts::to_alloy(w.recipient),
            U256::from(w.amount.units()),
            proof.into_iter().map(contracts::b256).collect(),
        );
        let outcome = match call.send().await {
            Ok(pending) => match pending.get_receipt().await {
                Ok(receipt) if receipt.status() => Ok(receipt.transaction_hash.to_string()),
                Ok(receipt) => Err(format!("transaction {} reverted", receipt.transaction_hash)),
                Err(e) => Err(format!("not mined: {e}")),
            },
            Err(e) => Err(match contracts::harness::vault_error(&e) {
                Some(Vault::VaultErrors::WithdrawalRefused(_)) => {
                    "the recipient (or the token) still refuses the payment".to_owned()
                }
                Some(Vault::VaultErrors::AlreadyPaid(_)) => "already paid".to_owned(),
                Some(other) => format!("the vault refused: {other:?}"),
                None => e.to_string(),
            }),
        };
        match &outcome {
            Ok(tx) => eprintln!("claimed batch {} leaf {}: {} to {} in {tx}", w.batch, w.index, w.amount, w.recipient),
            Err(why) => {
                failures += 1;
                eprintln!("batch {} leaf {} not claimed: {why}", w.batch, w.index);
            }
        }
        results.push(json!({
            "range": range,
            "batch": w.batch,
            "index": w.index,
            "recipient": w.recipient.to_string(),
            "amount": w.amount.to_string(),
            "l1_tx": outcome.as_ref().ok(),
            "error": outcome.as_ref().err(),
        }));
    }
    if args.output.json {
        print_json(&json!({ "claims": results }))?;
    }
    if failures > 0 {
        bail!("{failures} of {} claims failed (see above)", results.len());
    }
    Ok(())
}

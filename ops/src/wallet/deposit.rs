//! `deposit eth | erc20 | btc`: ether and ERC-20 tokens are sent to the vault from the wallet's
//! own Ethereum address (the same key as the bridge account) and credited to that account once
//! the coordinator's watcher sees them deep enough; bitcoin goes to the account's own Taproot
//! deposit address, which `deposit btc` prints (`deposit btc-claim` has one paid before that
//! credited: the coordinator's scan passed it by).

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use anyhow::{Context, anyhow, bail};
use bridge::{Address, Amount, AssetId};
use clap::Subcommand;
use contracts::{TestToken, Vault};
use coordinator::api::deposit_claims::DepositClaimed;
use coordinator::api::views::BtcDepositAddress;
use serde_json::json;

use super::endpoints::{Api, EndpointArgs, Endpoints};
use super::network::{Network, parse_amount};
use super::stages::is_transient;
use super::{Account, OutputArgs, WalletArgs, print_json};

#[derive(Debug, Subcommand)]
pub enum DepositCommand {
    /// Send ether to the vault from the wallet's Ethereum address (it pays the gas too).
    Eth {
        /// Wei, a whole number.
        #[arg(long)]
        amount: String,
        #[command(flatten)]
        common: DepositArgs,
    },
    /// Approve the vault for an ERC-20 token and deposit it from the wallet's Ethereum address.
    Erc20 {
        /// The token contract, 0x…; default: the devnet's test token.
        #[arg(long)]
        token: Option<String>,
        /// The token's smallest units, a whole number.
        #[arg(long)]
        amount: String,
        #[command(flatten)]
        common: DepositArgs,
    },
    /// Print the account's Bitcoin deposit address: bitcoin sent there is credited to it.
    Btc {
        #[command(flatten)]
        wallet: WalletArgs,
        #[command(flatten)]
        endpoints: EndpointArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Have a Bitcoin deposit credited that the coordinator passed by: one paid to the account's
    /// address before `deposit btc` asked for it. Claiming again changes nothing.
    BtcClaim {
        /// The paying transaction's id (64 hex digits).
        #[arg(long)]
        txid: String,
        /// The height of the block holding it.
        #[arg(long)]
        height: u64,
        #[command(flatten)]
        wallet: WalletArgs,
        #[command(flatten)]
        endpoints: EndpointArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct DepositArgs {
    /// Return once the L1 transaction is mined, without waiting for the bridge to credit it.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the credit.
    #[arg(long, default_value = "300")]
    timeout_secs: u64,
    /// How often to ask the coordinator, in milliseconds.
    #[arg(long, default_value = "200")]
    poll_ms: u64,
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    endpoints: EndpointArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub async fn run(command: DepositCommand) -> anyhow::Result<()> {
    match command {
        DepositCommand::Eth { amount, common } => {
            let amount = parse_amount("amount", &amount)?;
            to_vault(&common, None, amount).await
        }
        DepositCommand::Erc20 { token, amount, common } => {
            let amount = parse_amount("amount", &amount)?;
            let endpoints = Endpoints::resolve(&common.endpoints);
            let token = match (token, endpoints.devnet_erc20()) {
                (Some(token), _) => token,
                (None, Some(devnet)) => devnet.to_owned(),
                (None, None) => {
                    bail!("give --token 0x<token address> (there is no devnet state file to take its token from)")
                }
            };
            let token: Address = token.trim().parse().map_err(|e| anyhow!("--token {token}: {e}"))?;
            to_vault(&common, Some(token), amount).await
        }
        DepositCommand::Btc { wallet, endpoints, output } => {
            let endpoints = Endpoints::resolve(&endpoints);
            let coordinator = endpoints.coordinator_api()?;
            let address = wallet.open()?.address();
            let answer: BtcDepositAddress =
                coordinator.get(&format!("/accounts/{address}/btc-deposit-address")).await?;
            if output.json {
                print_json(&answer)
            } else {
                eprintln!(
                    "bitcoin sent to this {} address is credited to {address} once it is deep enough:",
                    answer.btc_network
                );
                println!("{}", answer.address);
                Ok(())
            }
        }
        DepositCommand::BtcClaim { txid, height, wallet, endpoints, output } => {
            let endpoints = Endpoints::resolve(&endpoints);
            let coordinator = endpoints.coordinator_api()?;
            let address = wallet.open()?.address();
            let claimed: DepositClaimed = coordinator
                .post(&format!("/accounts/{address}/btc-deposits"), &json!({ "txid": txid, "height": height }))
                .await?;
            if output.json {
                return print_json(&claimed);
            }
            for out in &claimed.outputs {
                println!("{}:{} {} sat: {}", claimed.txid, out.vout, out.sat, out.outcome.replace('_', " "));
            }
            Ok(())
        }
    }
}

/// Sends ether (`token` None) or a token to the vault for the wallet's account, then waits
/// for the credit unless `--no-wait`.
async fn to_vault(args: &DepositArgs, token: Option<Address>, amount: Amount) -> anyhow::Result<()> {
    let endpoints = Endpoints::resolve(&args.endpoints);
    let coordinator = endpoints.coordinator_api()?;
    let eth_rpc = endpoints.eth_rpc()?;
    let wallet = args.wallet.open()?;
    let account = wallet.address();
    let network = Network::fetch(&coordinator).await?;
    let asset = token.map_or(AssetId::Eth, AssetId::Erc20);
    network.min_fee(&asset).context("a deposit of an asset the network does not take would not be credited")?;
    let before = balance_of(&coordinator, account, &asset).await?;
    let key = format!("0x{}", hex::encode(wallet.secret_bytes()));
    let (provider, _) = chains::ethereum::signing_provider(&eth_rpc, &endpoints.tls()?, &key)
        .map_err(|e| anyhow!("{e} (--eth-rpc)"))?;
    let vault = Vault::new(contracts::to_alloy(network.eth_vault), provider.clone());
    let value = U256::from(amount.units());
    let hint = "does the wallet's Ethereum address hold enough for the amount and the gas?";
    let l1_tx = match token {
        None => {
            let pending = vault
                .depositETH(contracts::to_alloy(account))
                .value(value)
                .send()
                .await
                .map_err(|e| anyhow!("sending depositETH from {account}: {e} ({hint})"))?;
            confirm(pending, "depositETH").await?
        }
        Some(token) => {
            let erc20 = TestToken::new(contracts::to_alloy(token), provider.clone());
            let pending = erc20
                .approve(contracts::to_alloy(network.eth_vault), value)
                .send()
                .await
                .map_err(|e| anyhow!("approving the vault for {amount} of {token}: {e} ({hint})"))?;
            confirm(pending, "approve").await?;
            let pending = vault
                .depositERC20(contracts::to_alloy(token), value, contracts::to_alloy(account))
                .send()
                .await
                .map_err(|e| {
                    anyhow!("sending depositERC20 from {account}: {e} (does it hold {amount} of the token?)")
                })?;
            confirm(pending, "depositERC20").await?
        }
    };
    eprintln!("deposited {amount} {asset} for {account} in Ethereum tx {l1_tx}");
    let credit =
        if args.no_wait { None } else { Some(wait_for_credit(args, &coordinator, account, &asset, before).await) };
    let (credited, error) = match credit {
        Some(Ok((balance, ms))) => (Some((balance, ms)), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    if args.output.json {
        print_json(&json!({
            "account": account.to_string(),
            "asset": asset.to_string(),
            "amount": amount.to_string(),
            "l1_tx": l1_tx,
            "credited": credited.is_some(),
            "balance": credited.map(|(balance, _)| balance.to_string()),
            "credited_after_ms": credited.map(|(_, ms)| ms),
            "error": error.as_ref().map(|e| format!("{e:#}")),
        }))?;
    } else {
        println!("{l1_tx}");
    }
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Waits for a mined receipt with a success status; returns the transaction hash.
async fn confirm<N: alloy::network::Network>(
    pending: alloy::providers::PendingTransactionBuilder<N>,
    what: &str,
) -> anyhow::Result<String> {
    let hash = pending.tx_hash().to_string();
    let receipt = pending
        .with_timeout(Some(Duration::from_secs(120)))
        .get_receipt()
        .await
        .map_err(|e| anyhow!("{what} transaction {hash} was not mined: {e}"))?;
    if !alloy::network::ReceiptResponse::status(&receipt) {
        bail!("{what} transaction {hash} reverted (is the vault paused? does the wallet hold enough?)");
    }
    Ok(hash)
}

async fn balance_of(coordinator: &Api, account: Address, asset: &AssetId) -> anyhow::Result<u128> {
    let view: Account = coordinator.get(&format!("/accounts/{account}")).await?;
    let wanted = asset.to_string();
    let Some(balance) = view.balances.iter().find(|b| b.asset.eq_ignore_ascii_case(&wanted)) else {
        return Ok(0);
    };
    let amount: Amount = balance.amount.parse().map_err(|e| anyhow!("the coordinator's balance of {asset}: {e}"))?;
    Ok(amount.units())
}

/// Polls the coordinator until the account's balance of `asset` rises above `before`.
async fn wait_for_credit(
    args: &DepositArgs,
    coordinator: &Api,
    account: Address,
    asset: &AssetId,
    before: u128,
) -> anyhow::Result<(u128, u64)> {
    let start = Instant::now();
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut problem = None;
    loop {
        match balance_of(coordinator, account, asset).await {
            Ok(balance) if balance > before => {
                let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                eprintln!("  {:>8.3}s  credited    balance {balance} {asset}", start.elapsed().as_secs_f64());
                return Ok((balance, ms));
            }
            Ok(_) => {}
            Err(e) => match e.downcast_ref::<super::endpoints::ApiFailure>() {
                Some(failure) if is_transient(failure) => problem = Some(failure.to_string()),
                _ => return Err(e),
            },
        }
        if start.elapsed() >= timeout {
            let seen = problem.map(|p| format!("; the last problem seen: {p}")).unwrap_or_default();
            bail!(
                "the coordinator has not credited the deposit after {}s{seen}: it credits a deposit once it is deep enough on Ethereum (raise --timeout-secs, or check later with `bridgectl balance`)",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(args.poll_ms.max(1))).await;
    }
}

//! The user's commands: `wallet new | import | address`, `deposit eth | erc20 | btc`,
//! `transfer`, `withdraw`, `balance`, `tx HASH` and `claim`. Transactions are signed here (EIP-712, with
//! the key from the encrypted wallet file) and followed through their stages; `--json` prints
//! one JSON object on stdout, progress goes to stderr, and any error exits non-zero.

mod claim;
mod deposit;
mod endpoints;
pub(crate) mod file;
mod forced;
mod l1;
mod network;
mod route;
mod send;
mod stages;

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::keygen::PassphraseArgs;
use endpoints::{Api, EndpointArgs, Endpoints};
use stages::{ConfirmerTx, CoordinatorTx};

pub use deposit::DepositCommand;
pub use send::{TransferArgs, WithdrawArgs};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// The account's encrypted key file.
    Wallet {
        #[command(subcommand)]
        command: WalletCommand,
    },
    /// Move funds from L1 into your bridge account (`deposit btc` prints your Bitcoin address).
    Deposit {
        #[command(subcommand)]
        command: DepositCommand,
    },
    /// Send funds to another bridge account; follows it to hard finality.
    Transfer(TransferArgs),
    /// Take funds out to an L1 address; follows it until it is paid on L1.
    Withdraw(WithdrawArgs),
    /// The account's balances: the coordinator's (soft) and a confirmer's (hard-final).
    Balance(BalanceArgs),
    /// A transaction as the coordinator and a confirmer see it.
    Tx(TxArgs),
    /// Pay an Ethereum withdrawal the vault could not pay in its batch (listed by a watchman's
    /// /withdrawals/stuck), with its proof; anyone may, paying the gas.
    Claim(claim::ClaimArgs),
}

#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Create a wallet with a new random key and print its address.
    New {
        /// Where to write the encrypted wallet (never overwritten).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Encrypt an existing private key (64 hex digits, read from standard input) into a wallet.
    Import {
        /// Where to write the encrypted wallet (never overwritten).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Print the wallet's address: the bridge account and its Ethereum address.
    Address {
        #[command(flatten)]
        wallet: WalletArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// The wallet file and its passphrase.
#[derive(Debug, clap::Args)]
pub struct WalletArgs {
    /// The encrypted wallet file (from `bridgectl wallet new` or `import`).
    #[arg(long)]
    pub wallet: PathBuf,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

impl WalletArgs {
    pub fn open(&self) -> anyhow::Result<bridge::Wallet> {
        let passphrase = self.passphrase.passphrase()?;
        Ok(file::open(&self.wallet, &passphrase)?)
    }
}

#[derive(Debug, Clone, Copy, clap::Args)]
pub struct OutputArgs {
    /// Print one JSON object on stdout for scripts (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct BalanceArgs {
    /// The wallet whose account to show (or give --address).
    #[arg(long, required_unless_present = "address", conflicts_with = "address")]
    wallet: Option<PathBuf>,
    /// Any account, `0x` and 40 hex digits (no passphrase needed).
    #[arg(long)]
    address: Option<String>,
    #[command(flatten)]
    passphrase: PassphraseArgs,
    #[command(flatten)]
    endpoints: EndpointArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, clap::Args)]
pub struct TxArgs {
    /// The transaction's hash, `0x` and 64 hex digits.
    hash: String,
    #[command(flatten)]
    endpoints: EndpointArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub async fn run(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Wallet { command } => wallet(command),
        UserCommand::Deposit { command } => deposit::run(command).await,
        UserCommand::Transfer(args) => send::transfer(args).await,
        UserCommand::Withdraw(args) => send::withdraw(args).await,
        UserCommand::Balance(args) => balance(args).await,
        UserCommand::Tx(args) => tx(args).await,
        UserCommand::Claim(args) => claim::run(args).await,
    }
}

/// Prints `value` as one line of JSON on stdout.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value).context("encoding the JSON output")?);
    Ok(())
}

fn wallet(command: WalletCommand) -> anyhow::Result<()> {
    let (wallet, file, output, verb) = match command {
        WalletCommand::New { out, passphrase, output } => {
            let passphrase = passphrase.passphrase()?;
            (file::create(&out, &file::random_secret(), &passphrase)?, out, output, "created")
        }
        WalletCommand::Import { out, passphrase, output } => {
            // Read the key before anything else, so a bad key fails before the passphrase is asked.
            let secret = file::read_secret_from_stdin()?;
            let passphrase = passphrase.passphrase()?;
            (file::create(&out, &secret, &passphrase)?, out, output, "imported")
        }
        WalletCommand::Address { wallet, output } => (wallet.open()?, wallet.wallet, output, ""),
    };
    if output.json {
        print_json(&json!({ "address": wallet.address().to_string(), "file": file.display().to_string() }))
    } else {
        if !verb.is_empty() {
            eprintln!("{verb} {} (keep it and its passphrase safe: they are the account)", file.display());
        }
        println!("{}", wallet.address());
        Ok(())
    }
}

/// `GET /accounts/{address}` on the coordinator.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Account {
    pub address: String,
    pub nonce: u64,
    pub balances: Vec<Balance>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Balance {
    pub asset: String,
    pub amount: String,
}

/// `GET /accounts/{address}` on a confirmer (proofs left out).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct VerifiedAccount {
    pub batch: u64,
    pub state_root: String,
    pub hard_final: bool,
    pub nonce: u64,
    pub balances: Vec<Balance>,
}

async fn balance(args: BalanceArgs) -> anyhow::Result<()> {
    let address: bridge::Address = match (&args.address, args.wallet) {
        (Some(text), _) => text.parse().map_err(|e| anyhow::anyhow!("--address {text}: {e}"))?,
        (None, Some(wallet)) => WalletArgs { wallet, passphrase: args.passphrase }.open()?.address(),
        (None, None) => anyhow::bail!("give --wallet FILE or --address 0x…"),
    };
    let endpoints = Endpoints::resolve(&args.endpoints);
    let coordinator = endpoints.coordinator_api()?;
    let account: Account = coordinator.get(&format!("/accounts/{address}")).await?;
    // The confirmer is optional here: a balance is still worth showing without it.
    let verified = match endpoints.confirmer() {
        Ok(url) => {
            match Api::confirmer(url, &endpoints.tls()?)?.get::<VerifiedAccount>(&format!("/accounts/{address}")).await
            {
                Ok(verified) => Ok(verified),
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    if args.output.json {
        let (hard_final, confirmer_error) = match &verified {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        return print_json(&json!({
            "address": address.to_string(),
            "nonce": account.nonce,
            "balances": account.balances,
            "hard_final": hard_final,
            "confirmer_error": confirmer_error,
        }));
    }
    println!("account {address}  (next nonce {})", account.nonce);
    println!("coordinator (accepted, soft-final):");
    print_balances(&account.balances);
    match verified {
        Ok(v) => {
            let finality = if v.hard_final { "hard-final" } else { "replayed, NOT hard-final" };
            println!("confirmer (batch {}, {finality}):", v.batch);
            print_balances(&v.balances);
        }
        Err(e) => println!("confirmer: not available ({e})"),
    }
    Ok(())
}

fn print_balances(balances: &[Balance]) {
    if balances.is_empty() {
        println!("  (no funds)");
    }
    for b in balances {
        println!("  {:>30}  {}", b.amount, b.asset);
    }
}

async fn tx(args: TxArgs) -> anyhow::Result<()> {
    let hash = args.hash.trim();
    let valid = hash.strip_prefix("0x").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !valid {
        anyhow::bail!("a transaction hash is 0x and 64 hex digits, got {hash:?}");
    }
    let endpoints = Endpoints::resolve(&args.endpoints);
    let coordinator = endpoints.coordinator_api()?;
    let soft: CoordinatorTx = coordinator.get(&format!("/tx/{hash}")).await.map_err(|e| {
        if e.is_not_found() {
            anyhow::anyhow!(
                "the coordinator has no transaction {hash}: it was never accepted (or this is another network)"
            )
        } else {
            e.into()
        }
    })?;
    let hard = match endpoints.confirmer() {
        Ok(url) => match Api::confirmer(url, &endpoints.tls()?)?.get::<ConfirmerTx>(&format!("/tx/{hash}")).await {
            Ok(view) => Ok(Some(view)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    if args.output.json {
        let (confirmer, confirmer_error) = match &hard {
            Ok(view) => (
                Some(
                    json!({ "replayed": view.is_some(), "hard_final": view.as_ref().is_some_and(|v| v.hard_final), "batch": view.as_ref().map(|v| v.batch) }),
                ),
                None,
            ),
            Err(e) => (None, Some(e)),
        };
        return print_json(&json!({
            "hash": soft.hash,
            "status": soft.status,
            "seq": soft.seq,
            "batch": soft.batch,
            "locator": soft.locator,
            "tx": soft.tx,
            "confirmer": confirmer,
            "confirmer_error": confirmer_error,
        }));
    }
    println!("transaction {}", soft.hash);
    let batch = soft.batch.map_or_else(|| "not yet in a batch".into(), |b| format!("batch {b}"));
    println!("coordinator: {} ({batch})", soft.status);
    match hard {
        Ok(Some(view)) if view.hard_final => println!("confirmer:   hard-final (batch {})", view.batch),
        Ok(Some(view)) => println!("confirmer:   replayed in batch {}, NOT hard-final (see its /alarms)", view.batch),
        Ok(None) => println!("confirmer:   not replayed yet"),
        Err(e) => println!("confirmer:   not available ({e})"),
    }
    println!("{}", serde_json::to_string_pretty(&soft.tx).unwrap_or_default());
    Ok(())
}

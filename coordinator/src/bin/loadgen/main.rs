//! `loadgen`: load for the coordinator, from pre-signed transfers of many accounts.
//!
//! - `loadgen deposits --accounts N`: the dev deposits file that funds its accounts.
//! - `loadgen send --url URL`: sends to a running coordinator and reports acknowledged TPS and
//!   latency.
//! - `loadgen bench`: the README's benchmark table: the machine's signature ceiling, the
//!   in-process sequencer path and the HTTP path (the `coordinator` binary next to this one),
//!   on SQLite and, when `DATABASE_URL` is set, PostgreSQL; every figure a ratio to the ceiling
//!   measured in the same run.
//! - `loadgen restart`: restart time and resident memory of the coordinator and a confirmer
//!   after histories of different lengths over the same accounts, from a state snapshot and by
//!   full replay (the `coordinator` and `confirmer` binaries next to this one).

mod bench;
mod restart;
mod send;

use anyhow::Context;
use bridge::tx::{L1Ref, SystemTx};
use bridge::{
    Address, Amount, AssetConfig, AssetId, BtcNetwork, Chain, Deposit, NetworkParams, SignedUserTx, Transfer, Tx,
    UserTx, Wallet,
};
use clap::{Parser, Subcommand};
use coordinator::api::request::TxRequest;
use rayon::prelude::*;

use crate::bench::bench;
use crate::send::send;

#[derive(Debug, Parser)]
#[command(name = "loadgen", about = "Load for the coordinator from pre-signed transfers of many accounts.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the dev deposits file (JSON) funding `accounts` load accounts with 1 ETH each.
    Deposits {
        #[arg(long, default_value_t = 2_000)]
        accounts: u64,
    },
    /// Send pre-signed transfers to a running coordinator whose dev deposits fund the accounts.
    Send {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long, default_value_t = 2_000)]
        accounts: u64,
        #[arg(long, default_value_t = 20_000)]
        txs: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// The first nonce each account uses (to send again to the same coordinator).
        #[arg(long, default_value_t = 0)]
        first_nonce: u64,
        /// Transfers per request: 1 posts to /tx, more to /txs.
        #[arg(long, default_value_t = 1)]
        per_request: usize,
    },
    /// The benchmark table (README): ceiling, in-process sequencer, HTTP; SQLite and Postgres.
    Bench {
        #[arg(long, default_value_t = 2_000)]
        accounts: u64,
        /// Transactions through the in-process sequencer, per database.
        #[arg(long, default_value_t = 40_000)]
        txs: usize,
        /// Transactions over HTTP, per database and mode.
        #[arg(long, default_value_t = 20_000)]
        http_txs: usize,
        /// `POST /tx` requests in flight.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
    },
    /// Restart time and memory after histories of different lengths (README).
    Restart {
        #[arg(long, default_value_t = 10_000)]
        accounts: u64,
        /// History lengths in transfers, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
        histories: Vec<usize>,
        /// Grow the ledgers in this (new or empty) directory and leave them there, to time or
        /// inspect the starts again; by default a temporary directory, removed at the end.
        #[arg(long)]
        keep: Option<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match Cli::parse().command {
        Command::Deposits { accounts } => {
            println!("{}", serde_json::to_string_pretty(&deposits_file(accounts))?);
            Ok(())
        }
        Command::Send { url, accounts, txs, concurrency, first_nonce, per_request } => runtime.block_on(async {
            let params = params_of(&url).await?;
            eprintln!("signing {txs} transfers from {accounts} accounts…");
            let requests = sign_requests(&params, accounts, txs, first_nonce);
            let report = send(&url, requests, concurrency, per_request).await?;
            println!("{report}");
            Ok(())
        }),
        Command::Bench { accounts, txs, http_txs, concurrency } => {
            runtime.block_on(bench(accounts, txs, http_txs, concurrency))
        }
        Command::Restart { accounts, histories, keep } => {
            runtime.block_on(restart::restart(accounts, histories, keep.as_deref()))
        }
    }
}

/// Load account `n`: a fixed key, so that every run (and the deposits file) agree.
fn account(n: u64) -> Wallet {
    let secret = bridge::hashing::sha256(format!("loadgen/account/{n}"));
    Wallet::from_secret(&secret).unwrap_or_else(|_| unreachable!("a hash is a valid key but with odds 2^-128"))
}

fn sink() -> Address {
    Address([0x5e; 20])
}

fn deposits_file(accounts: u64) -> serde_json::Value {
    let wallets: Vec<Wallet> = (0..accounts).into_par_iter().map(account).collect();
    serde_json::Value::Array(
        wallets
            .iter()
            .map(|w| serde_json::json!({ "account": w.address(), "asset": "eth:ETH", "amount": ONE_ETH.to_string() }))
            .collect(),
    )
}

const BENCH_SECRET: [u8; 32] = [0xc0; 32];

/// The deposits that give each of the first `accounts` load accounts 1 ETH (each with its own
/// L1 reference, so that none is a repeat), as `loadgen bench` and `loadgen restart` fund them.
fn funding(accounts: u64) -> Vec<Tx> {
    (0..accounts)
        .into_par_iter()
        .map(|n| {
            Tx::System(SystemTx::Deposit(Deposit {
                chain: Chain::Ethereum,
                l1_ref: L1Ref::Ethereum { tx_hash: bridge::hashing::sha256(n.to_be_bytes()), log_in_tx: n as u32 },
                account: account(n).address(),
                asset: AssetId::Eth,
                amount: Amount(ONE_ETH),
                l1_height: 0,
            }))
        })
        .collect()
}

const ONE_ETH: u128 = 1_000_000_000_000_000_000;

/// `txs` transfers of 1 wei to the sink, round-robin over the accounts (so each account's
/// nonces go up by one per round), signed on every core.
fn sign_transfers(params: &NetworkParams, accounts: u64, txs: usize, first_nonce: u64) -> Vec<SignedUserTx> {
    let domain = bridge::eip712::Domain::new(params);
    let wallets: Vec<Wallet> = (0..accounts).into_par_iter().map(account).collect();
    (0..txs)
        .into_par_iter()
        .map(|i| {
            let wallet = &wallets[i % accounts as usize];
            let nonce = first_nonce + (i as u64 / accounts);
            let tx = UserTx::Transfer(Transfer {
                from: wallet.address(),
                to: sink(),
                asset: AssetId::Eth,
                amount: Amount(1),
                fee: Amount(0),
                nonce,
            });
            wallet.sign(tx, &domain)
        })
        .collect()
}

/// Request bodies, grouped by sender: each group is one account's transfers in nonce order.
fn sign_requests(params: &NetworkParams, accounts: u64, txs: usize, first_nonce: u64) -> Vec<Vec<Vec<u8>>> {
    let signed = sign_transfers(params, accounts, txs, first_nonce);
    let mut by_account: Vec<Vec<Vec<u8>>> = vec![Vec::new(); accounts as usize];
    for (i, tx) in signed.iter().enumerate() {
        let body = serde_json::to_vec(&TxRequest::from_signed(tx)).unwrap_or_default();
        by_account[i % accounts as usize].push(body);
    }
    by_account
}

async fn params_of(url: &str) -> anyhow::Result<NetworkParams> {
    let info: serde_json::Value = reqwest::get(format!("{url}/info")).await?.error_for_status()?.json().await?;
    let text = |field: &str| info[field].as_str().map(str::to_owned).context(format!("/info has no {field}"));
    Ok(NetworkParams {
        name: text("network")?,
        chain_id: info["chain_id"].as_u64().context("/info has no chain_id")?,
        eth_vault: text("eth_vault")?.parse()?,
        btc_network: BtcNetwork::Regtest,
        btc_vault: None,
        coordinator_key: bridge::serde_hex::parse_fixed(&text("coordinator_key")?).map_err(anyhow::Error::msg)?,
        fee_account: text("fee_account")?.parse()?,
        assets: vec![AssetConfig { asset: AssetId::Eth, min_fee: Amount(0) }],
        forced: None,
        webauthn: None,
        rotation: None,
    })
}

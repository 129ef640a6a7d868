//! `bitcoin-regtest`: the regtest test node as a process (not a replacement for `bitcoind`).

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use regtest::{RegtestConfig, RegtestNode};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// A Bitcoin regtest node on Bitcoin Core's kernel speaking part of Core's JSON-RPC, for tests.
/// (No `Debug`: it holds the RPC password.)
#[derive(Parser)]
#[command(version)]
struct Args {
    /// RPC port on 127.0.0.1 (0 takes a free one; the address is printed).
    #[arg(long, default_value_t = 18443, env = "REGTEST_RPC_PORT")]
    rpc_port: u16,
    /// RPC basic-auth user.
    #[arg(long, default_value = "regtest", env = "REGTEST_RPC_USER")]
    rpc_user: String,
    /// RPC basic-auth password.
    #[arg(long, default_value = "regtest", env = "REGTEST_RPC_PASSWORD")]
    rpc_password: String,
    /// Directory for the kernel's block files (a temporary directory when absent). Use a new one
    /// per run: the chain starts from genesis every time (the kernel's databases are in memory).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// What estimatesmartfee answers, in satoshis per kvB.
    #[arg(long, default_value_t = 1_000)]
    fee_rate: u64,
    /// Log format.
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Logs go to stderr; stdout carries only the RPC address line, for scripts and tests.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match args.log_format {
        LogFormat::Human => tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt().json().with_writer(std::io::stderr).with_env_filter(filter).init(),
    }
    let node = RegtestNode::start(RegtestConfig {
        rpc_port: args.rpc_port,
        rpc_user: args.rpc_user,
        rpc_password: args.rpc_password,
        data_dir: args.data_dir,
        fee_rate_sat_per_kvb: args.fee_rate,
    })
    .await
    .context("starting the regtest node")?;
    println!("bitcoin-regtest RPC on {}", node.url());
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    node.shutdown().await;
    Ok(())
}

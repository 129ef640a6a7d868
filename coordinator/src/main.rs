//! `coordinator`: runs the coordinator, makes its key, or rebuilds its ledger from the DA.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use coordinator::config::{Config, LogFormat};
use coordinator::node::{self, Node};
use coordinator::store::Store;
use coordinator::takeover;

#[derive(Debug, Parser)]
#[command(
    name = "coordinator",
    version,
    about = "The settlement bridge's coordinator: takes signed transactions over HTTP, sequences them durably, seals batches and publishes them to the DA.",
    long_about = "The settlement bridge's coordinator: takes signed transactions over HTTP, sequences them durably, \
                  seals batches and publishes them to the DA.\n\nWith no config file it runs a devnet on embedded \
                  defaults, keeping its files in ./coordinator-data. The configuration file's options, with their \
                  defaults, follow.",
    after_long_help = coordinator::config::EXAMPLE
)]
struct Cli {
    /// The TOML configuration file (every option and its default: `coordinator --help`).
    #[arg(long, short, env = "COORDINATOR_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log format, overriding log.format: human or json.
    #[arg(long, global = true)]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API, sequence, seal and publish (the default).
    Run,
    /// Write a new coordinator key to the configured key file (never overwrites) and print its public key.
    Keygen,
    /// Rebuild the ledger from the DA alone into the configured (empty) database, check that its
    /// state root is the last recovered batch's, and exit; `run` then serves from it. On a
    /// network with forced inclusion it stops before the first batch that fails the forced
    /// check (a censoring batch), which `run` then replaces.
    Recover {
        /// Read every published batch from the configured DA (the only source there is).
        #[arg(long, required = true)]
        from_da: bool,
    },
    /// Preflight: connect to every configured endpoint and check it against the network's
    /// parameters (chain ids, the vault's code and key, the Bitcoin node, the Arweave wallet's
    /// funds); print a table and exit non-zero naming what to fix.
    Check {
        /// The size of a typical published batch, in bytes, to price a day of batches.
        #[arg(long, default_value_t = coordinator::preflight::DEFAULT_BATCH_BYTES)]
        batch_bytes: u64,
    },
    /// Print the network's parameters as JSON (what confirmers and watchmen need), and exit.
    Params,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("coordinator: {error}");
            return ExitCode::from(2);
        }
    };
    let format = match cli.log_format.as_deref() {
        None => config.log.format,
        Some("human") => LogFormat::Human,
        Some("json") => LogFormat::Json,
        Some(other) => {
            eprintln!("coordinator: --log-format is human or json, not {other:?}");
            return ExitCode::from(2);
        }
    };
    init_logging(format, &config.log.filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("coordinator: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Run) {
            Command::Run => run(&config).await,
            Command::Keygen => keygen(&config),
            Command::Recover { .. } => recover(&config).await,
            Command::Check { batch_bytes } => check(&config, batch_bytes).await,
            Command::Params => params(&config),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("coordinator: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(config: &Config) -> anyhow::Result<()> {
    let node = Node::start(config).await.context("the coordinator could not start")?;
    let shutdown = chains::task::ShutdownSignal::install();
    println!("coordinator listening on {}", node.url());
    // A dead background task stops the process (after the same orderly shutdown), so that it
    // never serves without, say, its deposit watcher; the exit status says it failed.
    let failure = tokio::select! {
        () = shutdown.received() => None,
        failure = node.failed() => Some(failure),
    };
    tracing::info!("shutting down: sealing and publishing what is open");
    node.shutdown().await;
    match failure {
        Some(failure) => Err(anyhow::anyhow!("{failure}; see docs/OPERATIONS.md, \"A background task is dead\"")),
        None => Ok(()),
    }
}

fn keygen(config: &Config) -> anyhow::Result<()> {
    let path = config.key_file();
    if path.exists() {
        anyhow::bail!("{} already exists; a key is never overwritten (move it away first)", path.display());
    }
    let public = node::write_new_key(&path).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    println!(
        "wrote {}\ncoordinator key (public, for network.coordinator_key): 0x{}",
        path.display(),
        hex::encode(public)
    );
    Ok(())
}

async fn recover(config: &Config) -> anyhow::Result<()> {
    let key = node::load_key(&config.key_file(), false).context("recovery needs the coordinator key")?;
    let params = config.network_params(key.public_key())?;
    let (da, info) = node::open_da(config, &params, false)?;
    let store = Store::open(&config.database_url()).await?;
    eprintln!("recovering from {} at {} into {:?}", info.kind, info.location, store.backend());
    let forced = node::forced_checker(config, &params)?;
    let recovered = takeover::recover_from_da(da.as_ref(), &store, params, forced.as_ref(), |batches, txs| {
        if batches % 10 == 0 {
            eprintln!("  {batches} batches, {txs} transactions");
        }
    })
    .await?;
    println!(
        "recovered {} batches, {} transactions; state root 0x{} (equal to the last recovered batch's)",
        recovered.batches,
        recovered.txs,
        hex::encode(recovered.state_root)
    );
    if let Some((number, finding)) = &recovered.stopped_before {
        println!(
            "stopped before batch {number}: {finding}. `coordinator run` on this ledger seals a batch {number} that \
             takes the skipped forced transactions first; confirmers and watchmen follow it in place of the censoring one"
        );
    }
    Ok(())
}

fn params(config: &Config) -> anyhow::Result<()> {
    let key = node::load_key(&config.key_file(), false).context("the network's parameters name the coordinator key")?;
    let params = config.network_params(key.public_key())?;
    println!("{}", serde_json::to_string_pretty(&params)?);
    Ok(())
}

async fn check(config: &Config, batch_bytes: u64) -> anyhow::Result<()> {
    println!("network      {} (chainId {})", config.network.name, config.network.chain_id);
    println!("key file     {}", config.key_file().display());
    println!("database     {}", config.database_url().split('@').next_back().unwrap_or_default());
    println!("da           {:?}\n", config.da.kind);
    let report = coordinator::preflight::run(config, batch_bytes).await;
    print!("{}", report.table());
    if report.passed() {
        println!("{}", report.summary());
        Ok(())
    } else {
        anyhow::bail!("{}", report.summary())
    }
}

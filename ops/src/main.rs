//! `bridgectl`: the operator's and the user's command line.

mod admin;
mod devnet;
mod keygen;
mod wallet;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bridgectl",
    version,
    about = "The bridge's command line: your wallet (deposit, transfer, withdraw, balance, tx), the watchmen's key ceremonies, and the local devnet."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, default_value = "human", value_parser = ["human", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of the largest variant (the wallet's flags) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// A watchman's mesh identity.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Run the DKG with every watchman in the watchmen file; every operator runs it at once.
    Keygen(keygen::KeygenArgs),
    /// New shares of the same group key, with every watchman at once.
    Refresh(keygen::RefreshArgs),
    #[command(flatten)]
    User(wallet::UserCommand),
    /// The whole bridge on loopback: `devnet up | down | status`.
    Devnet(devnet::DevnetArgs),
    /// Govern the vault as an operator: `admin approve | propose | status | revoke`.
    Admin(admin::AdminArgs),
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Create an encrypted identity file and print its PeerId (for the watchmen file).
    New {
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        passphrase: keygen::PassphraseArgs,
    },
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logs(&cli.log_format);
    let result = match cli.command {
        Command::Identity { command: IdentityCommand::New { out, passphrase } } => {
            keygen::new_identity(&out, &passphrase)
        }
        Command::Keygen(args) => keygen::keygen(args).await,
        Command::Refresh(args) => keygen::refresh(args).await,
        Command::User(command) => wallet::run(command).await,
        Command::Devnet(args) => devnet::run(args).await,
        Command::Admin(args) => admin::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bridgectl: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

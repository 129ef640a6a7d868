//! Deploys the vault (the committed `artifacts/Vault.json`) and checks what was deployed:
//! `cargo run -p contracts --bin deploy -- --rpc URL --chain-id ID --group-key 0x… --guardian 0x…`
//! with the deployer's key in the file `--key-file` names (never on the command line, where
//! `ps` shows it). Prints the vault's address and block (network.eth_vault and
//! ethereum.from_block of every role's configuration).

use std::path::PathBuf;
use std::process::ExitCode;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use anyhow::{Context, bail, ensure};
use clap::Parser;
use contracts::Vault;

#[derive(Debug, Parser)]
#[command(
    name = "deploy",
    about = "Deploys the bridge's Ethereum vault, prints its address and checks the deployed code against the committed artifact."
)]
struct Cli {
    /// The Ethereum JSON-RPC node (plain http).
    #[arg(long)]
    rpc: String,
    /// The chain id the node must have (11155111 for Sepolia): a deployment to any other chain
    /// is refused before anything is sent.
    #[arg(long)]
    chain_id: u64,
    /// The vault's key as `bridgectl keygen` printed it (`ethereum vault px`: x(Q), the group
    /// key's Taproot output key, 0x hex), not the internal key.
    #[arg(long)]
    group_key: String,
    /// The guardian: the address that may pause the vault (a watchman's guardian key).
    #[arg(long)]
    guardian: Address,
    /// A file holding the deployer's private key (hex); it pays the gas and has no power over
    /// the vault afterwards.
    #[arg(long)]
    key_file: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("deploy: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let group_key = parse_group_key(&cli.group_key)?;
    let key = std::fs::read_to_string(&cli.key_file)
        .with_context(|| format!("cannot read the deployer key file {}", cli.key_file.display()))?;
    let provider = contracts::harness::signing_provider(&cli.rpc, key.trim())
        .map_err(|_| anyhow::anyhow!("{} does not hold a secp256k1 private key in hex", cli.key_file.display()))?;
    let chain_id = provider.get_chain_id().await.with_context(|| format!("asking {} for its chain id", cli.rpc))?;
    if chain_id != cli.chain_id {
        bail!("the node at {} is on chain {chain_id}, not --chain-id {}: nothing was sent", cli.rpc, cli.chain_id);
    }
    eprintln!("deploying the vault on chain {chain_id}…");
    let vault = Vault::deploy(provider.clone(), group_key, cli.guardian).await.context("deploying the vault")?;
    let address = *vault.address();
    let block = provider.get_block_number().await.context("eth_blockNumber")?;

    // What is on chain now is what the preflight will compare: the code, the key, the guardian.
    let code = provider.get_code_at(address).await.context("eth_getCode")?;
    contracts::code::verify_vault(&code, cli.guardian).context("the deployed code is not the committed artifact")?;
    let on_chain_key = vault.groupKey().call().await.context("groupKey()")?;
    let epoch = vault.keyEpoch().call().await.context("keyEpoch()")?;
    let guardian = vault.guardian().call().await.context("guardian()")?;
    ensure!(on_chain_key == group_key, "the vault holds group key {on_chain_key:#x}, not the one given");
    ensure!(
        epoch == 0 && guardian == cli.guardian,
        "the vault's epoch {epoch} or guardian {guardian} is not as deployed"
    );

    println!("vault     {address}");
    println!("chain_id  {chain_id}");
    println!("block     {block}");
    println!("code      matches contracts/artifacts/Vault.json (guardian {guardian})");
    println!("groupKey  {}, keyEpoch 0", alloy::primitives::B256::from(group_key));
    Ok(())
}

/// The group key as the vault takes it, refusing what is not an x-only key (the constructor
/// would revert, after the deployer had paid for it).
fn parse_group_key(text: &str) -> anyhow::Result<U256> {
    let bytes = hex_bytes(text.trim().trim_start_matches("0x"))
        .with_context(|| format!("--group-key {text:?} is not 64 hex digits"))?;
    secp256k1::XOnlyPublicKey::from_slice(&bytes)
        .map_err(|_| anyhow::anyhow!("--group-key {text:?} is not a BIP-340 x-only public key"))?;
    Ok(U256::from_be_slice(&bytes))
}

fn hex_bytes(digits: &str) -> Option<[u8; 32]> {
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(digits.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

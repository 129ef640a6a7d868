//! `bridgectl identity` and `bridgectl keygen`: the key ceremony.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use tss::dkg::DkgProgress;
use tss::keystore::{self, KdfParams, Passphrase};
use tss::{GroupKey, MeshConfig, RefuseAll, TssNode, TssNodeConfig};

use tss::roster::WatchmenFile;

#[derive(Debug, clap::Args)]
pub struct PassphraseArgs {
    /// A file holding the passphrase that encrypts the key files.
    #[arg(long, conflicts_with = "passphrase_env")]
    pub passphrase_file: Option<PathBuf>,
    /// An environment variable holding the passphrase.
    #[arg(long, default_value = "BRIDGE_PASSPHRASE")]
    pub passphrase_env: String,
}

impl PassphraseArgs {
    pub fn passphrase(&self) -> anyhow::Result<Passphrase> {
        Ok(match &self.passphrase_file {
            Some(file) => Passphrase::from_file(file)?,
            None => Passphrase::from_env(&self.passphrase_env)
                .with_context(|| "give --passphrase-file, or set the variable --passphrase-env names")?,
        })
    }
}

/// Creates a watchman's mesh identity and prints its PeerId for the watchmen file.
pub fn new_identity(out: &Path, passphrase: &PassphraseArgs) -> anyhow::Result<()> {
    if out.exists() {
        bail!("{} exists; a watchman's identity is not replaced by accident (move it away first)", out.display());
    }
    let keypair = libp2p::identity::Keypair::generate_ed25519();
    keystore::save_identity(out, &keypair, &passphrase.passphrase()?, KdfParams::default())?;
    println!("{}", keypair.public().to_peer_id());
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// The watchmen file (threshold and every watchman's peer_id and address).
    #[arg(long)]
    pub watchmen: PathBuf,
    /// This watchman's identity file (from `bridgectl identity new`).
    #[arg(long)]
    pub identity: PathBuf,
    /// Where to write this watchman's encrypted key share.
    #[arg(long)]
    pub share: PathBuf,
    /// How long to wait for the other watchmen.
    #[arg(long, default_value = "300")]
    pub timeout_secs: u64,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct KeygenReport {
    group_key: GroupKey,
    taproot_address: String,
    ethereum: EthereumKey,
    share_file: String,
}

#[derive(Serialize)]
struct EthereumKey {
    /// `x(Q)`, the vault's `px`.
    px: String,
    /// Q's y parity (the vault's check lifts x to the even y; this is for reference).
    y_odd: bool,
}

/// Starts this watchman's node for a ceremony and waits for every other watchman.
async fn ceremony_node(
    watchmen: &WatchmenFile,
    identity_file: &Path,
    passphrase: &Passphrase,
    share: Option<tss::KeyShare>,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<TssNode> {
    let entries = watchmen.entries()?;
    let identity = keystore::load_identity(identity_file, passphrase)?;
    let me = identity.public().to_peer_id();
    let Some(mine) = entries.iter().find(|e| e.peer_id == me) else {
        bail!("this identity ({me}) is not in the watchmen file");
    };
    let config = TssNodeConfig {
        identity,
        mesh: MeshConfig {
            listen: mine.address.clone(),
            peers: entries.clone(),
            request_timeout: Duration::from_secs(10),
        },
        threshold: watchmen.threshold,
        share,
        // A key ceremony signs nothing.
        policy: Arc::new(RefuseAll("this node is running a key ceremony, not signing".into())),
        session_timeout: Duration::from_secs(60),
        retry: Duration::from_secs(1),
    };
    let node = TssNode::start(config).await?;
    let others = entries.iter().map(|e| e.peer_id).filter(|p| *p != me).collect();
    eprintln!("{what}: {}-of-{} as {me}", watchmen.threshold, entries.len());
    node.mesh()
        .wait_for(&others, timeout, |connected, of| {
            eprint!("\r{what}: waiting for watchmen: {connected}/{of} connected   ");
            let _ = std::io::stderr().flush();
        })
        .await
        .map_err(|missing| {
            anyhow::anyhow!("timed out waiting for {missing:?}: are they running {what} with this same watchmen file?")
        })?;
    eprintln!();
    Ok(node)
}

fn show_progress(what: &'static str) -> impl FnMut(DkgProgress) {
    move |step| match step {
        DkgProgress::Round1 { received, of } => eprintln!("{what}: round 1: {received}/{of} packages"),
        DkgProgress::Echo => eprintln!("{what}: echo round: every watchman holds the same packages"),
        DkgProgress::Round2 => eprintln!("{what}: round 2: shares received"),
        DkgProgress::Done => eprintln!("{what}: done"),
    }
}

fn report(share: &tss::KeyShare, watchmen: &WatchmenFile, share_file: &Path, json: bool) -> anyhow::Result<()> {
    let group_key = GroupKey::of(&share.public)?;
    let report = KeygenReport {
        taproot_address: group_key.taproot_address(watchmen.bitcoin_network()?)?.to_string(),
        ethereum: EthereumKey {
            px: format!("0x{}", hex::encode(group_key.output_key)),
            y_odd: group_key.output_key_odd_y,
        },
        share_file: share_file.display().to_string(),
        group_key,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("group key (x-only, tweaked): {}", hex::encode(report.group_key.output_key));
        println!("internal key:                {}", hex::encode(report.group_key.internal_key));
        println!("taproot address:             {}", report.taproot_address);
        println!("ethereum vault px:           {} (y odd: {})", report.ethereum.px, report.ethereum.y_odd);
        println!("key share:                   {} (encrypted)", report.share_file);
    }
    Ok(())
}

pub async fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    if args.share.exists() {
        bail!("{} exists; a key share is never overwritten (move it away first)", args.share.display());
    }
    let watchmen = WatchmenFile::load(&args.watchmen)?;
    let passphrase = args.passphrase.passphrase()?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let node = ceremony_node(&watchmen, &args.identity, &passphrase, None, timeout, "keygen").await?;
    let share = node.dkg(watchmen.session("keygen")?, timeout, show_progress("keygen")).await?;
    share.save(&args.share, &passphrase, KdfParams::default())?;
    report(&share, &watchmen, &args.share, args.json)
}

#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    /// The watchmen file the key was made with (every watchman must take part).
    #[arg(long)]
    pub watchmen: PathBuf,
    #[arg(long)]
    pub identity: PathBuf,
    /// The current encrypted key share (kept: remove it once every watchman has its new share).
    #[arg(long)]
    pub share: PathBuf,
    /// Where to write the new share.
    #[arg(long)]
    pub new_share: PathBuf,
    #[arg(long, default_value = "300")]
    pub timeout_secs: u64,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    #[arg(long)]
    pub json: bool,
}

/// New shares of the same group key with every watchman (proactive security: shares stolen
/// before a refresh are useless with shares made after it).
pub async fn refresh(args: RefreshArgs) -> anyhow::Result<()> {
    if args.new_share.exists() {
        bail!("{} exists; a key share is never overwritten (move it away first)", args.new_share.display());
    }
    let watchmen = WatchmenFile::load(&args.watchmen)?;
    let passphrase = args.passphrase.passphrase()?;
    let old = tss::KeyShare::load(&args.share, &passphrase)?;
    let timeout = Duration::from_secs(args.timeout_secs);
    // The session names the shares being refreshed, so each refresh has its own.
    let session = watchmen.session(&format!("refresh/{}", hex::encode(old.public.serialize()?)))?;
    let node = ceremony_node(&watchmen, &args.identity, &passphrase, Some(old), timeout, "refresh").await?;
    let share = node.refresh(session, timeout, show_progress("refresh")).await?;
    share.save(&args.new_share, &passphrase, KdfParams::default())?;
    report(&share, &watchmen, &args.new_share, args.json)
}

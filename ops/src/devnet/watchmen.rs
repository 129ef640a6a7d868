//! The devnet's watchmen: the key ceremony run exactly as operators run it (`bridgectl identity
//! new` for each, one watchmen file, then `bridgectl keygen` by every watchman at once, each a
//! process of its own), and each watchman's configuration file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, ensure};
use tss::GroupKey;

use super::ports::Ports;
use super::state::DevnetState;
use super::up::UpArgs;

/// Anvil's third and fourth default accounts: the two watchmen that submit roots and payouts
/// pay gas from them (anvil funds them with 10,000 ether).
const SENDER_KEYS: [&str; 2] = [
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];

/// What the ceremony leaves: the group key and each watchman's home directory (identity,
/// encrypted share).
pub struct Ceremony {
    pub group: GroupKey,
    pub homes: Vec<PathBuf>,
}

#[derive(serde::Deserialize)]
struct KeygenReport {
    group_key: GroupKey,
}

pub async fn ceremony(bridgectl: &Path, dir: &Path, args: &UpArgs, ports: &Ports) -> anyhow::Result<Ceremony> {
    // One passphrase for the devnet's shares, in a file only this user can read.
    let passphrase = dir.join("passphrase");
    write_private(&passphrase, &hex::encode(super::up::random_bytes::<16>()))?;
    let mut homes = Vec::new();
    let mut roster = format!("threshold = {}\nbitcoin_network = \"regtest\"\n", args.threshold);
    for i in 0..usize::from(args.watchmen) {
        let home = dir.join(format!("watchman-{i}"));
        std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
        let output = Command::new(bridgectl)
            .args(["identity", "new", "--out"])
            .arg(home.join("identity.key"))
            .arg("--passphrase-file")
            .arg(&passphrase)
            .output()
            .context("cannot run bridgectl identity new")?;
        ensure!(output.status.success(), "bridgectl identity new failed: {}", String::from_utf8_lossy(&output.stderr));
        let peer_id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        roster.push_str(&format!(
            "\n[[watchman]]\npeer_id = \"{peer_id}\"\naddress = \"/ip4/127.0.0.1/tcp/{}\"\n",
            ports.mesh[i]
        ));
        homes.push(home);
    }
    let roster_file = dir.join("watchmen.toml");
    std::fs::write(&roster_file, roster).with_context(|| format!("cannot write {}", roster_file.display()))?;

    let mut ceremonies = Vec::new();
    for home in &homes {
        let log = std::fs::File::create(home.join("keygen.log")).context("cannot create keygen.log")?;
        let child = tokio::process::Command::new(bridgectl)
            .arg("keygen")
            .arg("--watchmen")
            .arg(&roster_file)
            .arg("--identity")
            .arg(home.join("identity.key"))
            .arg("--share")
            .arg(home.join("share.key"))
            .arg("--passphrase-file")
            .arg(&passphrase)
            .args(["--timeout-secs", "120", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot run bridgectl keygen")?;
        ceremonies.push(child.wait_with_output());
    }
    let mut group = None;
    for (home, output) in homes.iter().zip(futures::future::join_all(ceremonies).await) {
        let output = output.context("bridgectl keygen")?;
        let log = home.join("keygen.log");
        ensure!(output.status.success(), "the key ceremony failed; see {}", log.display());
        let report: KeygenReport =
            serde_json::from_slice(&output.stdout).context("bridgectl keygen printed no key report")?;
        // Every watchman must come out with the same group key, or the ceremony failed.
        match &group {
            None => group = Some(report.group_key),
            Some(first) => ensure!(*first == report.group_key, "watchmen disagree on the group key"),
        }
    }
    let group = group.context("a ceremony without watchmen")?;
    Ok(Ceremony { group, homes })
}

/// Writes watchman `i`'s configuration in its home and returns the file's path. The first two
/// submit to Ethereum (taking turns by range number) and broadcast Bitcoin payouts; all of
/// them can pause the vault.
pub fn config(
    home: &Path,
    i: usize,
    state: &DevnetState,
    arweave_owner: &str,
    eth_depth: u64,
    btc_depth: u64,
    listen: u16,
) -> anyhow::Result<PathBuf> {
    let e = &state.endpoints;
    // The guardian key, encrypted under the devnet's share passphrase as an operator keeps it.
    let guardian = home.join("guardian.key");
    let passphrase_file = home.join("../passphrase");
    let passphrase = tss::keystore::Passphrase::from_file(&passphrase_file)?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(contracts::ANVIL_KEY_1.trim_start_matches("0x"), &mut key)
        .context("the guardian's devnet key")?;
    tss::keystore::seal_account_key(&guardian, &key, &passphrase, tss::keystore::KdfParams::default())?;
    let sender = match SENDER_KEYS.get(i) {
        Some(key) => {
            let file = home.join("sender.key");
            write_private(&file, key)?;
            format!("sender_key_file = \"{}\"\n", file.display())
        }
        None => String::new(),
    };
    // One range root per window; the two submitters take turns by range number, the other
    // taking over after 10 blocks (10 s on the devnet's anvil).
    let settlement = format!(
        "[ethereum.settlement]\nwindow_s = {}\nsubmitters = {}\nsubmitter_index = {}\nturn_timeout_blocks = 10\n",
        state.settlement_window_s,
        SENDER_KEYS.len(),
        i.min(SENDER_KEYS.len() - 1)
    );
    let text = format!(
        r#"# Written by `bridgectl devnet up`.
params = "{params}"
database_url = "sqlite://{home}/watchman.db"
interval_ms = 300
listen = "127.0.0.1:{listen}"

[mesh]
watchmen = "../watchmen.toml"
identity = "identity.key"
share = "share.key"
passphrase_file = "../passphrase"

[da]
arweave = "{arweave}"
owner = "{arweave_owner}"
confirmations = 1

[ethereum]
rpc = "{eth}"
depth = {eth_depth}
{sender}guardian_key_file = "{guardian}"

# What an operator sets: payouts and roots wait above it (docs/OPERATIONS.md, "Fees").
[ethereum.fees]
max_fee_per_gas_gwei = 100.0

{settlement}
[bitcoin]
rpc = "{btc}"
rpc_user = "{btc_user}"
depth = {btc_depth}
pay = {pay}
"#,
        params = state.dir.join("params.json").display(),
        home = home.display(),
        arweave = e.arweave,
        eth = e.eth_rpc,
        guardian = guardian.display(),
        btc = e.btc_rpc,
        btc_user = e.btc_rpc_user,
        pay = i < SENDER_KEYS.len(),
    );
    let file = home.join("watchman.toml");
    std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(file)
}

/// A secret file, readable by its owner only.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

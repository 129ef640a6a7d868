//! The devnet's watchmen: the key ceremony run exactly as operators run it (`bridgectl identity
//! new` for each, one watchmen file, then `bridgectl keygen` by every watchman at once, each a
//! process of its own), and each watchman's configuration file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, ensure};
use tss::GroupKey;

use super::state::{DevnetState, GroupMember};
use super::up::{BTC_DEPTH, ETH_DEPTH};

/// The accounts the two submitting watchmen of a group pay gas from: anvil's default accounts
/// 2–9 (anvil funds each with 10,000 ether), a pair per group by its epoch, so a new group never
/// shares a sender (and its nonces) with the group still running beside it.
const SENDER_KEYS: [[&str; 2]; 4] = [
    [
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
        "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    ],
    [
        "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
        "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    ],
    [
        "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
        "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    ],
    [
        "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
        "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
    ],
];

/// Watchmen of a group that submit to Ethereum and broadcast Bitcoin payouts.
pub const SENDERS: usize = 2;

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

/// A key ceremony in `dir` among the operators `operators`, watchman `i` listening on
/// `mesh[i]`: homes `dir/watchman-<operator>`, the watchmen file `dir/watchmen.toml`.
pub async fn ceremony(
    bridgectl: &Path,
    dir: &Path,
    threshold: u16,
    operators: &[u16],
    mesh: &[u16],
) -> anyhow::Result<Ceremony> {
    ensure!(operators.len() == mesh.len(), "a mesh port for each watchman");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // One passphrase for the group's shares, in a file only this user can read.
    let passphrase = dir.join("passphrase");
    write_private(&passphrase, &hex::encode(super::up::random_bytes::<16>()))?;
    let mut homes = Vec::new();
    let mut roster = format!("threshold = {threshold}\nbitcoin_network = \"regtest\"\n");
    for (i, operator) in operators.iter().enumerate() {
        let home = dir.join(format!("watchman-{operator}"));
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
            mesh[i]
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

/// Where one watchman of a group sits: its place in the group and its listeners.
pub struct Seat {
    /// Its index in the group's watchmen file.
    pub index: usize,
    /// The vault's key epoch its group signs for.
    pub epoch: u64,
    /// `/metrics`, `/health`, `/approvals`.
    pub listen: u16,
    /// The operator's admin endpoint.
    pub admin: u16,
}

/// Writes the configuration of the watchman at `seat` in its home and returns the file's
/// path. The group's first two submit to Ethereum (taking turns by range number) and broadcast
/// Bitcoin payouts; all of them can pause the vault and take their operator's approvals.
pub fn config(
    home: &Path,
    seat: &Seat,
    state: &DevnetState,
    arweave_owner: &str,
    eth_depth: u64,
    btc_depth: u64,
) -> anyhow::Result<PathBuf> {
    let (i, listen) = (seat.index, seat.listen);
    let senders = SENDER_KEYS[(seat.epoch % SENDER_KEYS.len() as u64) as usize];
    let e = &state.endpoints;
    // The guardian key, encrypted under the devnet's share passphrase as an operator keeps it.
    let guardian = home.join("guardian.key");
    let passphrase_file = home.join("../passphrase");
    let passphrase = tss::keystore::Passphrase::from_file(&passphrase_file)?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(contracts::ANVIL_KEY_1.trim_start_matches("0x"), &mut key)
        .context("the guardian's devnet key")?;
    tss::keystore::seal_account_key(&guardian, &key, &passphrase, tss::keystore::KdfParams::default())?;
    let sender = match senders.get(i) {
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
        SENDERS,
        i.min(SENDERS - 1)
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
# The vault's key epoch this group signs for (one more per rotation).
epoch = {epoch}
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

# This operator's approvals of admin messages (docs/OPERATIONS.md, "Governing the vault").
[admin]
listen = "127.0.0.1:{admin}"
token_file = "admin.token"
approvals_file = "approvals.json"
"#,
        params = state.dir.join("params.json").display(),
        home = home.display(),
        arweave = e.arweave,
        eth = e.eth_rpc,
        guardian = guardian.display(),
        btc = e.btc_rpc,
        btc_user = e.btc_rpc_user,
        pay = i < SENDERS,
        epoch = seat.epoch,
        admin = seat.admin,
    );
    let file = home.join("watchman.toml");
    std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(file)
}

/// Writes the configuration of the watchman at `seat` (operator `operator`, home `home`) and
/// starts it as the part `name`, recorded in the state file at once. Waiting until it answers
/// is the caller's.
pub fn start(
    state: &mut DevnetState,
    home: &Path,
    seat: &Seat,
    operator: u16,
    name: &str,
    arweave_owner: &str,
) -> anyhow::Result<GroupMember> {
    let config = config(home, seat, state, arweave_owner, ETH_DEPTH, BTC_DEPTH)?;
    let bin = super::process::binaries(&["watchman"])?;
    let mut watchman = Command::new(bin.join("watchman"));
    watchman
        .arg("--config")
        .arg(&config)
        .env("WATCHMAN_BTC_RPC_PASSWORD", &state.endpoints.btc_rpc_password)
        .env_remove("WATCHMAN_PASSPHRASE")
        .env_remove("DATABASE_URL");
    let url = format!("http://127.0.0.1:{}", seat.listen);
    let log = state.dir.join(format!("logs/{name}.log"));
    let part = super::process::spawn(name, watchman, &log, Some(format!("{url}/health")))?;
    super::up::record(state, part)?;
    Ok(GroupMember {
        operator,
        part: name.to_owned(),
        home: home.to_path_buf(),
        url,
        admin: format!("http://127.0.0.1:{}", seat.admin),
        sends: seat.index < SENDERS,
    })
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

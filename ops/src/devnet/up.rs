//! `bridgectl devnet up`: the whole bridge on loopback, from the project's own files. Each step
//! prints what it does; every process is recorded in the state file as soon as it runs, so a
//! failed start is cleaned up here and `down` finds whatever a crash left.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use alloy::primitives::{Address as EthAddress, U256};
use alloy::providers::Provider;
use anyhow::{Context, bail, ensure};
use chains::bitcoin::CoreRpc;
use contracts::{TestToken, Vault};

use super::blocks::Faucet;
use super::ports::Ports;
use super::process::{self, binaries, http_ok, spawn, wait_ready};
use super::state::{DemoWallet, DevnetState, Endpoints, Part, STATE_FILE, WatchmanGroup};
use super::watchmen::{self, Ceremony, Seat};

/// How long any one part may take to answer after it starts.
const READY: Duration = Duration::from_secs(60);
/// The devnet's demo wallets' passphrase (printed: a devnet holds no real money).
pub const DEMO_PASSPHRASE: &str = "devnet";
/// Anvil's first default account: deploys the vault and the test token.
const DEPLOYER_KEY: &str = contracts::ANVIL_KEY_0;
/// Anvil's second default account: the vault's guardian, which watchmen use to pause it.
const GUARDIAN_KEY: &str = contracts::ANVIL_KEY_1;
/// Ethereum blocks a deposit needs on the devnet (anvil makes one a second).
pub(super) const ETH_DEPTH: u64 = 2;
/// Bitcoin confirmations a deposit or payout needs on the devnet.
pub(super) const BTC_DEPTH: u64 = 1;
/// The BTC withdrawal minimum fee: one P2TR output (43 vB) at the devnet's highest fee rate.
const BTC_MIN_FEE_SAT: u64 = 43 * BTC_MAX_FEE_RATE;
const BTC_MAX_FEE_RATE: u64 = 50;

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Watchmen in the mesh.
    #[arg(long, default_value_t = 5)]
    pub watchmen: u16,
    /// Watchmen needed for a signature.
    #[arg(long, default_value_t = 3)]
    pub threshold: u16,
    /// Take free ports instead of the well-known ones (8080 coordinator, 8081 confirmer, 1984
    /// arlocal, 8545 anvil, 18443 Bitcoin, 9101… watchmen): for running beside other things.
    #[arg(long)]
    pub free_ports: bool,
    /// Seconds between Bitcoin blocks.
    #[arg(long, default_value_t = 2)]
    pub btc_block_secs: u64,
    /// Milliseconds after its first transaction a batch is sealed.
    #[arg(long, default_value_t = 1_000)]
    pub batch_ms: u64,
    /// Seconds a withdrawal waits at most for its Ethereum range root (the watchmen's
    /// `[ethereum.settlement] window_s`): one root per window, its gas shared by its leaves.
    #[arg(long, default_value_t = 30)]
    pub settlement_window_s: u64,
    /// Batches after a key rotation during which deposits to the old key's addresses are still
    /// credited (and swept): `[network.rotation] old_key_grace_batches`, fixed at genesis.
    /// Small on the devnet, so `devnet rotate --retire` can stop the old watchmen soon.
    #[arg(long, default_value_t = 60)]
    pub old_key_grace_batches: u64,
}

/// Prints one step and how long it took.
pub(super) struct Steps {
    pub total: usize,
    pub done: usize,
    pub started: Instant,
    /// The step under way, for an error that names it.
    pub current: String,
}

impl Steps {
    pub fn begin(&mut self, what: &str) -> Instant {
        self.done += 1;
        self.current = what.to_owned();
        eprint!("[{}/{}] {what}… ", self.done, self.total);
        Instant::now()
    }

    pub fn end(&self, since: Instant, detail: &str) {
        eprintln!("{detail} ({:.1} s)", since.elapsed().as_secs_f64());
    }
}

/// Starts the devnet in `dir`.
pub async fn up(dir: &Path, args: &UpArgs) -> anyhow::Result<DevnetState> {
    ensure!(
        args.threshold >= 2 && args.threshold <= args.watchmen,
        "a threshold of {} with {} watchmen: it must be at least 2 and at most the number of watchmen",
        args.threshold,
        args.watchmen
    );
    let dir = prepare_dir(dir)?;
    let mut steps = Steps { total: 11, done: 0, started: Instant::now(), current: String::new() };
    let mut state = DevnetState {
        dir: dir.clone(),
        endpoints: Endpoints::default(),
        parts: Vec::new(),
        demo_wallets: Vec::new(),
        wallet_passphrase: DEMO_PASSPHRASE.into(),
        batch_ms: args.batch_ms,
        btc_block_secs: args.btc_block_secs,
        settlement_window_s: args.settlement_window_s,
        groups: Vec::new(),
        rotating: None,
    };
    match start(&mut state, args, &mut steps).await {
        Ok(()) => {
            eprintln!("devnet up in {:.1} s", steps.started.elapsed().as_secs_f64());
            Ok(state)
        }
        Err(error) => {
            eprintln!("failed");
            eprintln!("stopping what was started…");
            super::stop_all(&state);
            let _ = std::fs::remove_file(dir.join(STATE_FILE));
            Err(error)
        }
    }
}

/// The devnet directory: created, or emptied if it held a stopped devnet. Anything else in it
/// is refused rather than deleted.
fn prepare_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        match DevnetState::load(dir) {
            Ok(previous) => {
                if let Some(running) = previous.parts.iter().find(|p| process::alive(p)) {
                    bail!(
                        "a devnet is already running in {} ({} is pid {}); `bridgectl devnet down` first",
                        dir.display(),
                        running.name,
                        running.pid
                    );
                }
                std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
            }
            Err(super::state::StateError::Missing(_)) => {
                let empty =
                    std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?.next().is_none();
                ensure!(
                    empty,
                    "{} exists and is not a devnet directory; choose another with --dir or move it away",
                    dir.display()
                );
            }
            Err(other) => return Err(other.into()),
        }
    }
    for sub in ["arweave", "ethereum", "bitcoin", "coordinator", "confirmer", "watchmen", "wallets", "logs"] {
        std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))
}

async fn start(state: &mut DevnetState, args: &UpArgs, steps: &mut Steps) -> anyhow::Result<()> {
    let dir = state.dir.clone();
    let logs = dir.join("logs");
    let http = super::http_client()?;

    let t = steps.begin("tools and binaries");
    let tools = tools()?;
    let bin = binaries(&["coordinator", "confirmer", "watchman", "bitcoin-regtest", "bridgectl"])?;
    // Held until every part listens (below), so no other devnet starting now picks them.
    let (ports, held) = Ports::choose(args.free_ports, args.watchmen)?;
    steps.end(t, "ok");

    // Arweave.
    let t = steps.begin("arlocal (Arweave)");
    let mut arlocal = Command::new(tools.join("arlocal"));
    arlocal.arg(ports.arweave.to_string()).arg("--persist").arg("--dbpath").arg(dir.join("arweave/db"));
    arlocal.current_dir(dir.join("arweave"));
    let arweave = format!("http://127.0.0.1:{}", ports.arweave);
    let info = format!("{arweave}/info");
    let part = record(state, spawn("arlocal", arlocal, &logs.join("arlocal.log"), Some(info.clone()))?)?;
    wait_ready(&part, READY, || http_ok(&http, &info)).await?;
    state.endpoints.arweave = arweave.clone();
    steps.end(t, &arweave);

    // Ethereum.
    let t = steps.begin("anvil (Ethereum)");
    let mut anvil = Command::new(tools.join("anvil"));
    // One slot per epoch: anvil's `finalized` block is then the head minus two (two epochs),
    // so the roles' default rule (the finalized tag) credits in two seconds, as ETH_DEPTH does.
    anvil.args(["--port", &ports.anvil.to_string(), "--block-time", "1", "--slots-in-an-epoch", "1"]);
    let eth_rpc = format!("http://127.0.0.1:{}", ports.anvil);
    let part = record(state, spawn("anvil", anvil, &logs.join("anvil.log"), None)?)?;
    wait_ready(&part, READY, || async { contracts_chain_id(&eth_rpc).await.is_ok() }).await?;
    state.endpoints.eth_chain_id = contracts_chain_id(&eth_rpc).await?;
    state.endpoints.eth_rpc = eth_rpc.clone();
    steps.end(t, &eth_rpc);

    // Bitcoin.
    let t = steps.begin("Bitcoin regtest node (Bitcoin Core's kernel)");
    let btc_password = hex::encode(random_bytes::<16>());
    let mut node = Command::new(bin.join("bitcoin-regtest"));
    node.args(["--rpc-port", &ports.bitcoin.to_string(), "--rpc-user", "devnet"])
        .arg("--data-dir")
        .arg(dir.join("bitcoin/blocks"))
        .env("REGTEST_RPC_PASSWORD", &btc_password);
    let btc_rpc = format!("http://127.0.0.1:{}", ports.bitcoin);
    let rpc = CoreRpc::new(&btc_rpc, "devnet", &btc_password);
    let part = record(state, spawn("bitcoin-regtest", node, &logs.join("bitcoin-regtest.log"), None)?)?;
    wait_ready(&part, READY, || async { rpc.block_count().await.is_ok() }).await?;
    let faucet = Faucet::open(&dir.join("bitcoin/faucet.key"))?;
    // Enough blocks that the faucet's first coinbases are mature.
    rpc.generate_to_address(110, &faucet.address).await.context("mining the first Bitcoin blocks")?;
    state.endpoints.btc_rpc = btc_rpc.clone();
    state.endpoints.btc_rpc_user = "devnet".into();
    state.endpoints.btc_rpc_password = btc_password.clone();
    steps.end(t, &btc_rpc);

    // The watchmen's key ceremony, as operators run it.
    let t = steps.begin(&format!("watchmen key ceremony ({}-of-{} FROST DKG)", args.threshold, args.watchmen));
    let operators: Vec<u16> = (0..args.watchmen).collect();
    let ceremony = watchmen::ceremony(
        &bin.join("bridgectl"),
        &dir.join("watchmen"),
        args.threshold,
        &operators,
        &ports.watchmen.mesh,
    )
    .await?;
    // Named as in `tss::GroupKey`: the internal key `P` is what the network's params call the
    // group key; the output key `Q` is what Bitcoin pays to and the Ethereum vault checks.
    steps.end(
        t,
        &format!(
            "group (internal) key P {}, Taproot output key Q {}",
            hex::encode(ceremony.group.internal_key),
            hex::encode(ceremony.group.output_key)
        ),
    );

    // The vault and a test token.
    let t = steps.begin("Ethereum vault and test token");
    let (deployer, _) = chains::ethereum::signing_provider(&eth_rpc, &chains::http::Tls::default(), DEPLOYER_KEY)
        .map_err(anyhow::Error::msg)?;
    let (_, guardian) = chains::ethereum::signing_provider(&eth_rpc, &chains::http::Tls::default(), GUARDIAN_KEY)
        .map_err(anyhow::Error::msg)?;
    let vault = Vault::deploy(deployer.clone(), U256::from_be_bytes(ceremony.group.output_key), guardian)
        .await
        .context("deploying the vault")?;
    let token = TestToken::deploy(deployer.clone()).await.context("deploying the test token")?;
    state.endpoints.eth_vault = format!("{:#x}", vault.address());
    state.endpoints.erc20 = format!("{:#x}", token.address());
    steps.end(t, &format!("vault {}, token {}", state.endpoints.eth_vault, state.endpoints.erc20));

    // The coordinator.
    let t = steps.begin("coordinator");
    let coordinator_dir = dir.join("coordinator");
    let jwk = arweave_wallet(&coordinator_dir.join("arweave.jwk"))?;
    let owner = chains::arweave::ArweaveWallet::load(&jwk)?.address().to_owned();
    let minted = http.get(format!("{arweave}/mint/{owner}/1000000000000000")).send().await;
    ensure!(minted.is_ok_and(|r| r.status().is_success()), "arlocal did not mint AR for the coordinator's wallet");
    let config = coordinator_config(state, args, &ports, &ceremony, &jwk);
    let config_file = coordinator_dir.join("coordinator.toml");
    write(&config_file, &config)?;
    let coordinator_bin = bin.join("coordinator");
    run_once(Command::new(&coordinator_bin).arg("--config").arg(&config_file).arg("keygen"), "coordinator keygen")?;
    let params = run_once(Command::new(&coordinator_bin).arg("--config").arg(&config_file).arg("params"), "params")?;
    let params_file = dir.join("params.json");
    write(&params_file, &params)?;
    let mut coordinator = Command::new(&coordinator_bin);
    coordinator
        .arg("--config")
        .arg(&config_file)
        .arg("run")
        .env("COORDINATOR__BITCOIN__RPC_PASSWORD", &btc_password)
        .env_remove("DATABASE_URL");
    let url = format!("http://127.0.0.1:{}", ports.coordinator);
    let health = format!("{url}/health");
    let part = record(state, spawn("coordinator", coordinator, &logs.join("coordinator.log"), Some(health.clone()))?)?;
    wait_ready(&part, READY, || http_ok(&http, &health)).await?;
    state.endpoints.coordinator = url.clone();
    steps.end(t, &url);

    // The confirmer.
    let t = steps.begin("confirmer");
    let url = format!("http://127.0.0.1:{}", ports.confirmer);
    let mut confirmer = Command::new(bin.join("confirmer"));
    confirmer
        .arg("follow")
        .arg("--params")
        .arg(&params_file)
        .args([format!("--arweave={arweave}"), format!("--owner={owner}"), "--interval-ms=300".into()])
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.join("confirmer/confirmer.db").display()))
        .args(["--listen", &format!("127.0.0.1:{}", ports.confirmer)])
        .args(["--coordinator", &state.endpoints.coordinator])
        .args(["--eth-rpc", &eth_rpc, "--eth-depth", &ETH_DEPTH.to_string()])
        .args(["--btc-rpc", &btc_rpc, "--btc-rpc-user", "devnet", "--btc-depth", &BTC_DEPTH.to_string()])
        .args(["--btc-group-key", &hex::encode(ceremony.group.internal_key)])
        .env("BTC_RPC_PASSWORD", &btc_password)
        .env_remove("DATABASE_URL");
    let health = format!("{url}/status");
    let part = record(state, spawn("confirmer", confirmer, &logs.join("confirmer.log"), Some(health.clone()))?)?;
    wait_ready(&part, READY, || http_ok(&http, &health)).await?;
    state.endpoints.confirmer = url.clone();
    steps.end(t, &url);

    // The watchmen.
    let t = steps.begin(&format!("{} watchmen", args.watchmen));
    let mut group = WatchmanGroup {
        epoch: 0,
        threshold: args.threshold,
        dir: dir.join("watchmen"),
        internal_key: hex::encode(ceremony.group.internal_key),
        output_key: hex::encode(ceremony.group.output_key),
        from_batch: 0,
        members: Vec::new(),
        retired: false,
    };
    for (i, home) in ceremony.homes.iter().enumerate() {
        let seat = Seat { index: i, epoch: 0, listen: ports.watchmen.metrics[i], admin: ports.watchmen.admin[i] };
        let member = watchmen::start(state, home, &seat, operators[i], &format!("watchman-{i}"), &owner)?;
        state.endpoints.watchmen.push(member.url.clone());
        group.members.push(member);
    }
    state.groups.push(group);
    for part in state.parts.clone().iter().filter(|p| p.name.starts_with("watchman-")) {
        let health = part.health.clone().unwrap_or_default();
        wait_ready(part, READY, || http_ok(&http, &health)).await?;
    }
    drop(held);
    steps.end(t, &format!("metrics on {}", state.endpoints.watchmen.join(", ")));

    // The clock: Arweave and Bitcoin blocks.
    let t = steps.begin("block producer");
    let mut blocks = Command::new(bin.join("bridgectl"));
    blocks.args(["devnet", "blocks", "--btc-block-secs", &args.btc_block_secs.to_string()]).arg("--dir").arg(&dir);
    record(state, spawn("blocks", blocks, &logs.join("blocks.log"), None)?)?;
    steps.end(t, &format!("an Arweave block a second, a Bitcoin block every {} s", args.btc_block_secs));

    // Demo accounts with money on both chains and in the bridge.
    let t = steps.begin("demo accounts (deposits on Ethereum and Bitcoin, credited)");
    fund_demo_accounts(state, &deployer, &token, &rpc, &faucet).await?;
    steps
        .end(t, &state.demo_wallets.iter().map(|w| format!("{} {}", w.name, w.address)).collect::<Vec<_>>().join(", "));
    state.save()?;
    Ok(())
}

/// Records a started part in the state file at once (so a crash leaves it findable).
pub(super) fn record(state: &mut DevnetState, part: Part) -> anyhow::Result<Part> {
    state.parts.push(part.clone());
    state.save()?;
    Ok(part)
}

/// The pinned npm tools, installed from the lock file if missing.
fn tools() -> anyhow::Result<PathBuf> {
    let bin = chains::arweave::arlocal::tools_bin();
    if !bin.join("arlocal").exists() || !bin.join("anvil").exists() {
        eprint!("installing the pinned npm tools (npm ci, once)… ");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/install.sh");
        let status = Command::new("bash").arg(&script).status().context("cannot run ops/tools/install.sh")?;
        ensure!(status.success(), "ops/tools/install.sh failed ({status}); it needs node and npm");
    }
    Ok(bin)
}

async fn contracts_chain_id(url: &str) -> anyhow::Result<u64> {
    let provider = alloy::providers::ProviderBuilder::new().connect_http(url.parse()?);
    Ok(provider.get_chain_id().await?)
}

/// A new Arweave wallet (RSA, by arweave-js) for the coordinator.
fn arweave_wallet(path: &Path) -> anyhow::Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/arweave-check.js");
    let jwk = run_once(Command::new("node").arg(script).arg("generate"), "generating an Arweave wallet")?;
    write(path, &jwk)?;
    Ok(path.to_path_buf())
}

fn coordinator_config(state: &DevnetState, args: &UpArgs, ports: &Ports, ceremony: &Ceremony, jwk: &Path) -> String {
    let e = &state.endpoints;
    let dir = state.dir.join("coordinator");
    format!(
        r#"# Written by `bridgectl devnet up`.
data_dir = "{dir}"

[network]
name = "devnet"
# The vault's chain (anvil's), also the EIP-712 chainId a wallet on that chain signs for.
chain_id = {eth_chain_id}
eth_vault = "{vault}"
btc_network = "regtest"
fee_account = "0x000000000000000000000000000000000000fee5"
assets = [
    {{ asset = "eth:ETH", min_fee = "0" }},
    {{ asset = "eth:{token}", min_fee = "0" }},
    {{ asset = "btc:BTC", min_fee = "{btc_fee}" }},
]

[network.btc_vault]
group_key = "0x{internal}"
min_fee_rate = 1
max_fee_rate = {max_rate}

# Passkey accounts: browsers refuse an IP address as RP ID, so the web app is opened at
# http://localhost:PORT (a secure context) and the allowed origin follows the confirmer's port.
[network.webauthn]
rp_id = "localhost"
allowed_origins = ["http://localhost:{confirmer}"]
require_user_verification = false

# After a key rotation (`bridgectl devnet rotate`): batches during which deposits to the old
# key's addresses are still credited and swept.
[network.rotation]
old_key_grace_batches = {grace}

[coordinator]
create_key = false
database_url = "sqlite://{dir}/ledger.db"

[api]
listen = "127.0.0.1:{api}"

[batch]
max_age_ms = {batch_ms}

[da]
kind = "arweave"
gateway = "{arweave}"
wallet = "{jwk}"
confirmations = 1
publish_retry_ms = 1000
# The wallet's balance every 10 s, its spend rate over the last hour (docs/OPERATIONS.md, "Fees").
balance_poll_s = 10
spend_window_h = 1

[ethereum]
rpc = "{eth}"
depth = {eth_depth}
poll_ms = 500

[bitcoin]
rpc = "{btc}"
rpc_user = "{btc_user}"
depth = {btc_depth}
poll_ms = 500
# One payout per settlement window (`devnet up --settlement-window-s`).
payout_window_ms = {payout_window_ms}
"#,
        dir = dir.display(),
        eth_chain_id = e.eth_chain_id,
        vault = e.eth_vault,
        token = e.erc20,
        btc_fee = BTC_MIN_FEE_SAT,
        internal = hex::encode(ceremony.group.internal_key),
        max_rate = BTC_MAX_FEE_RATE,
        grace = args.old_key_grace_batches,
        confirmer = ports.confirmer,
        api = ports.coordinator,
        batch_ms = args.batch_ms,
        payout_window_ms = args.settlement_window_s * 1000,
        arweave = e.arweave,
        jwk = jwk.display(),
        eth = e.eth_rpc,
        eth_depth = ETH_DEPTH,
        btc = e.btc_rpc,
        btc_user = e.btc_rpc_user,
        btc_depth = BTC_DEPTH,
    )
}

/// Alice and Bob: Ethereum money on L1, and deposits of ETH, the test token and BTC that the
/// coordinator credits (waited for, so the devnet is usable when `up` returns).
async fn fund_demo_accounts(
    state: &mut DevnetState,
    deployer: &alloy::providers::DynProvider,
    token: &TestToken::TestTokenInstance<alloy::providers::DynProvider>,
    rpc: &CoreRpc,
    faucet: &Faucet,
) -> anyhow::Result<()> {
    let e = state.endpoints.clone();
    let passphrase = tss::keystore::Passphrase::new(DEMO_PASSPHRASE)?;
    let http = super::http_client()?;
    let vault_address: EthAddress = e.eth_vault.parse()?;
    for name in ["alice", "bob"] {
        // The same wallet file `bridgectl wallet new` writes.
        let secret = crate::wallet::file::random_secret();
        let file = state.dir.join(format!("wallets/{name}.wallet"));
        let wallet = crate::wallet::file::create(&file, &secret, &passphrase)?;
        let address = wallet.address();
        let account = contracts::to_alloy(address);
        state.demo_wallets.push(DemoWallet { name: name.into(), address: address.to_string(), file });

        // Gas money on L1, and test tokens.
        let hundred_eth = U256::from(100u64) * U256::from(10u64).pow(U256::from(18u64));
        deployer
            .raw_request::<_, ()>("anvil_setBalance".into(), (account, hundred_eth))
            .await
            .context("anvil_setBalance")?;
        let thousand_tokens = U256::from(1_000u64) * U256::from(10u64).pow(U256::from(18u64));
        token.mint(account, thousand_tokens).send().await?.get_receipt().await?;
        if name == "bob" {
            continue;
        }
        // Alice deposits 10 ETH, 100 tokens and 1 BTC.
        let key = format!("0x{}", hex::encode(secret));
        let (own, _) = chains::ethereum::signing_provider(&e.eth_rpc, &chains::http::Tls::default(), &key)
            .map_err(anyhow::Error::msg)?;
        let vault = Vault::new(vault_address, own.clone());
        let ten_eth = U256::from(10u64) * U256::from(10u64).pow(U256::from(18u64));
        vault.depositETH(account).value(ten_eth).send().await?.get_receipt().await?;
        let hundred_tokens = thousand_tokens / U256::from(10u64);
        let own_token = TestToken::new(*token.address(), own.clone());
        own_token.approve(vault_address, hundred_tokens).send().await?.get_receipt().await?;
        vault.depositERC20(*token.address(), hundred_tokens, account).send().await?.get_receipt().await?;
        let answer: serde_json::Value =
            http.get(format!("{}/accounts/{address}/btc-deposit-address", e.coordinator)).send().await?.json().await?;
        let btc_address = answer["address"]
            .as_str()
            .context("the coordinator gave no Bitcoin deposit address")?
            .parse::<bitcoin::Address<_>>()?
            .require_network(bitcoin::Network::Regtest)?;
        faucet.pay(rpc, &btc_address, bitcoin::Amount::ONE_BTC).await?;
        let wanted = [
            ("eth:ETH", ten_eth.to_string()),
            (&*format!("eth:{}", e.erc20), hundred_tokens.to_string()),
            ("btc:BTC", "100000000".into()),
        ];
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let account: serde_json::Value =
                http.get(format!("{}/accounts/{address}", e.coordinator)).send().await?.json().await?;
            let credited = wanted.iter().all(|(asset, amount)| {
                account["balances"].as_array().is_some_and(|b| {
                    b.iter().any(|x| {
                        x["asset"].as_str().is_some_and(|a| a.eq_ignore_ascii_case(asset))
                            && x["amount"].as_str() == Some(amount)
                    })
                })
            });
            if credited {
                break;
            }
            ensure!(Instant::now() < deadline, "alice's deposits were not credited within 2 minutes: {account}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    Ok(())
}

fn run_once(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let output = command.output().with_context(|| format!("cannot run {what}"))?;
    ensure!(output.status.success(), "{what} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).with_context(|| format!("{what} printed something that is not UTF-8"))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

pub(super) fn random_bytes<const N: usize>() -> [u8; N] {
    use bitcoin::secp256k1::rand::RngCore;
    let mut bytes = [0u8; N];
    bitcoin::secp256k1::rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

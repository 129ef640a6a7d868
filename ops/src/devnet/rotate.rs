//! `bridgectl devnet rotate`: a change of the signer set on a running devnet, run the way
//! operators run it (docs/OPERATIONS.md, "Rotating the signer set"). Every step is the commands
//! the operators it names would type (`bridgectl keygen` by each new member, `bridgectl admin
//! approve` by each of `t` operators, one `bridgectl admin propose`), each a process of its own,
//! and its result is checked before the next step. `devnet retire` is the last step alone: the
//! old group's watchmen stopped once the deposit grace is over and nothing is left under its key.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use anyhow::{Context, bail, ensure};
use bitcoin::hashes::Hash;
use chains::vault_admin::VaultAdminState;

use super::operator::{Operator, admin_args};
use super::ports::WatchmanPorts;
use super::process::{self, http_ok, wait_ready};
use super::state::{DevnetState, GroupMember, WatchmanGroup};
use super::up::Steps;
use super::watchmen::{self, Seat};

/// How long a started watchman may take to answer.
const READY: Duration = Duration::from_secs(120);
/// How often a wait asks the coordinator again.
const POLL: Duration = Duration::from_millis(500);
/// How often a long wait says how far it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, clap::Args)]
pub struct RotateArgs {
    /// Watchmen in the new group.
    #[arg(long)]
    pub watchmen: u16,
    /// Watchmen the new group needs for a signature.
    #[arg(long)]
    pub threshold: u16,
    /// An operator of the current group who leaves, by the number in its watchman's name
    /// (`watchman-3`: 3); repeat for each. The others stay (with a fresh identity and share);
    /// new operators fill the group up to --watchmen.
    #[arg(long = "leave")]
    pub leave: Vec<u16>,
    /// Afterwards, wait for the deposit grace to end and the old key's outputs to be swept,
    /// then stop the old group's watchmen (what `devnet retire` does).
    #[arg(long)]
    pub retire: bool,
    /// How long --retire waits without a new batch (or a new hard-final one) before giving up
    /// (batches are made only while transactions arrive, so a quiet devnet's grace does not end
    /// by itself).
    #[arg(long, default_value_t = 600)]
    pub grace_timeout_secs: u64,
    /// How long the wait for the Bitcoin sweep of the old key's outputs may go without a new
    /// batch before giving up.
    #[arg(long, default_value_t = 600)]
    pub sweep_timeout_secs: u64,
}

/// Who rotates to what: the plan checked against the devnet before anything is done.
struct Plan {
    /// The current group (the one that signs now).
    old: WatchmanGroup,
    /// The new epoch: the vault's `keyEpoch` + 1.
    epoch: u64,
    /// The new group's operators: those staying, then those joining.
    operators: Vec<u16>,
    /// `t` living watchmen of the old group, a sender first (it proposes).
    old_approvers: Vec<GroupMember>,
}

/// Runs the rotation on the devnet in `dir`.
pub async fn rotate(dir: &Path, args: &RotateArgs) -> anyhow::Result<()> {
    let mut state = DevnetState::load(dir)?;
    let chain = Chain::connect(&state)?;
    let plan = plan(&state, args, &chain).await?;
    let epoch = plan.epoch;
    state.rotating = Some(format!(
        "to epoch {epoch}: {}-of-{} → {}-of-{}",
        plan.old.threshold,
        plan.old.members.len(),
        args.threshold,
        args.watchmen
    ));
    state.save()?;
    let mut steps =
        Steps { total: if args.retire { 7 } else { 6 }, done: 0, started: Instant::now(), current: String::new() };
    eprintln!("rotating the watchmen {}", state.rotating.as_deref().unwrap_or_default());
    if let Err(error) = run(&mut state, &plan, args, &chain, &mut steps).await {
        eprintln!("failed");
        let hint = hint(steps.done, epoch);
        return Err(error.context(format!(
            "step {}/{} of the rotation ({}) failed; {hint}",
            steps.done, steps.total, steps.current
        )));
    }
    state.rotating = None;
    state.endpoints.watchmen =
        state.groups.last().map(|g| g.members.iter().map(|m| m.url.clone()).collect()).unwrap_or_default();
    state.save()?;
    if args.retire {
        let t = steps.begin("retire the old watchmen after the deposit grace");
        match retire(&mut state, Duration::from_secs(args.grace_timeout_secs)).await {
            Ok(detail) => steps.end(t, &detail),
            Err(error) => {
                eprintln!("failed");
                return Err(error.context(format!(
                    "step {}/{} (retire) failed; the rotation itself is complete (the vault and the ledger are at \
                     epoch {epoch}) and the old watchmen keep running: run `bridgectl devnet retire` once batches \
                     have passed the grace",
                    steps.done, steps.total
                )));
            }
        }
    }
    eprintln!("rotation to epoch {epoch} done in {:.1} s", steps.started.elapsed().as_secs_f64());
    Ok(())
}

/// What to do after step `step` failed.
fn hint(step: usize, epoch: u64) -> String {
    let what = match step {
        1 => "nothing changed on the ledger or the vault".to_owned(),
        2 => "the ledger may not have the rotation yet; the vault is unchanged".to_owned(),
        3 => format!("the ledger has rotated to epoch {epoch}; the vault may not have the proposed key"),
        4 => "the vault has the proposed key; the new watchmen did not all start (see their logs)".to_owned(),
        5 => "the sweep did not finish: if the coordinator's log says `sweep_funding`, neither the vault's surplus \
              nor the fee account's bitcoin covers its fee (BTC withdrawals and transfers with fees fill them)"
            .to_owned(),
        _ => "the vault still holds the old key (its pendingKey is the new one)".to_owned(),
    };
    format!(
        "{what}. The devnet is half-rotated and `devnet rotate` will refuse to run on it again; each command's \
         output is in logs/rotation-e{epoch}.log. Start afresh with `bridgectl devnet down` and `bridgectl devnet up`"
    )
}

/// Checks the request against the devnet and the vault, and picks who does what.
async fn plan(state: &DevnetState, args: &RotateArgs, chain: &Chain) -> anyhow::Result<Plan> {
    if let Some(rotating) = &state.rotating {
        bail!(
            "a rotation ({rotating}) did not finish on the devnet in {}: it is half-rotated; start afresh with \
             `bridgectl devnet down` and `bridgectl devnet up`",
            state.dir.display()
        );
    }
    let Some(old) = state.groups.last().cloned() else {
        bail!(
            "this devnet records no watchman groups (it was started by an older bridgectl): start a new one with `bridgectl devnet up`"
        );
    };
    ensure!(
        args.threshold >= 2 && args.threshold <= args.watchmen,
        "a threshold of {} with {} watchmen: it must be at least 2 and at most the number of watchmen",
        args.threshold,
        args.watchmen
    );
    let current: Vec<u16> = old.members.iter().map(|m| m.operator).collect();
    for leaving in &args.leave {
        ensure!(
            current.contains(leaving),
            "--leave {leaving}: operator {leaving} is not in the current group (its operators: {current:?})"
        );
    }
    let mut operators: Vec<u16> = current.iter().copied().filter(|o| !args.leave.contains(o)).collect();
    ensure!(
        operators.len() <= usize::from(args.watchmen),
        "{} operators stay but the new group has {} watchmen: name more with --leave",
        operators.len(),
        args.watchmen
    );
    let mut next = state.groups.iter().flat_map(|g| g.members.iter().map(|m| m.operator + 1)).max().unwrap_or(0);
    while operators.len() < usize::from(args.watchmen) {
        operators.push(next);
        next += 1;
    }

    let vault = chain.admin_state().await?;
    ensure!(
        vault.key_epoch == old.epoch && vault.pending_key == [0; 32],
        "the vault is at key epoch {} with pending key {} but the current group signs for epoch {}: the vault is \
         mid-rotation; finish or abandon that first",
        vault.key_epoch,
        hex::encode(vault.pending_key),
        old.epoch
    );
    let held = chain.group_key().await?;
    ensure!(
        hex::encode(held) == old.output_key,
        "the vault's groupKey is {} but the current group's key is {}",
        hex::encode(held),
        old.output_key
    );
    let old_approvers = approvers(state, &old)?;
    Ok(Plan { epoch: vault.key_epoch + 1, operators, old_approvers, old })
}

/// `t` living members of `group`, one that sends transactions first (it proposes).
fn approvers(state: &DevnetState, group: &WatchmanGroup) -> anyhow::Result<Vec<GroupMember>> {
    let mut living: Vec<GroupMember> = group
        .members
        .iter()
        .filter(|m| state.parts.iter().any(|p| p.name == m.part && process::alive(p)))
        .cloned()
        .collect();
    living.sort_by_key(|m| !m.sends);
    let t = usize::from(group.threshold);
    ensure!(
        living.len() >= t,
        "only {} watchmen of the epoch-{} group run ({}); its {t} operators must approve: `bridgectl devnet restart` \
         the others",
        living.len(),
        group.epoch,
        living.iter().map(|m| m.part.as_str()).collect::<Vec<_>>().join(", ")
    );
    ensure!(
        living[0].sends,
        "no running watchman of the epoch-{} group sends transactions (watchmen 0 and 1 of a group do): restart one",
        group.epoch
    );
    living.truncate(t);
    Ok(living)
}

async fn run(
    state: &mut DevnetState,
    plan: &Plan,
    args: &RotateArgs,
    chain: &Chain,
    steps: &mut Steps,
) -> anyhow::Result<()> {
    let epoch = plan.epoch;
    let bin = process::binaries(&["bridgectl", "watchman"])?;
    let operator =
        Operator { bridgectl: bin.join("bridgectl"), log: state.dir.join(format!("logs/rotation-e{epoch}.log")) };

    // 1. The new group's key ceremony.
    let n = plan.operators.len();
    let t = steps.begin(&format!(
        "new identities and key ceremony among operators {:?} ({}-of-{n} FROST DKG)",
        plan.operators, args.threshold
    ));
    // Held until the new watchmen listen (step 4), so no other devnet picks them meanwhile.
    let (ports, held) = WatchmanPorts::free(n)?;
    let group_dir = state.dir.join(format!("watchmen/e{epoch}"));
    ensure!(
        !group_dir.exists(),
        "{} exists already: a rotation to epoch {epoch} was tried before",
        group_dir.display()
    );
    let ceremony =
        watchmen::ceremony(&operator.bridgectl, &group_dir, args.threshold, &plan.operators, &ports.mesh).await?;
    let internal_key = hex::encode(ceremony.group.internal_key);
    let output_key = hex::encode(ceremony.group.output_key);
    let roster = std::fs::read(group_dir.join("watchmen.toml")).context("reading the new watchmen file")?;
    let roster_hash = hex::encode(bitcoin::hashes::sha256::Hash::hash(&roster).to_byte_array());
    steps.end(t, &format!("x(P) {internal_key}, x(Q) {output_key}, roster hash {roster_hash}"));

    // 2. The ledger's rotation: t old operators approve it, one proposes it to the coordinator.
    let t =
        steps.begin(&format!("ledger KeyRotation to epoch {epoch}, approved by {} old operators", plan.old.threshold));
    let info: serde_json::Value =
        chain.http.get(format!("{}/info", state.endpoints.coordinator)).send().await?.json().await?;
    let network = info["genesis_hash"].as_str().context("the coordinator's /info names no genesis_hash")?.to_owned();
    let params = chain.params()?;
    ensure!(
        network.trim_start_matches("0x") == hex::encode(params.genesis_hash()),
        "the coordinator's genesis hash {network} is not the devnet's params.json's"
    );
    let rotation = [
        "key-rotation",
        "--network",
        &network,
        "--old-key",
        &plan.old.output_key,
        "--new-key",
        &internal_key,
        "--roster-hash",
        &roster_hash,
    ];
    let digest = operator.approve_all(&plan.old_approvers, &rotation).await?;
    // Sweeps start as soon as the ledger has the new key: count them from here.
    let coordinator = state.endpoints.coordinator.clone();
    let sweeps_before = chain.coordinator_metric(&coordinator, "bridge_btc_sweeps_total").await.unwrap_or(0.0);
    let proposer = &plan.old_approvers[0];
    let said = operator.run(admin_args(proposer, "propose", &["--coordinator", &coordinator]), &rotation).await?;
    let answer = said
        .lines()
        .find_map(|l| l.strip_prefix("the ledger took the key rotation: "))
        .with_context(|| format!("`admin propose key-rotation` did not say the ledger took it:\n{said}"))?;
    let answer: serde_json::Value = serde_json::from_str(answer).context("the coordinator's answer")?;
    let from_batch = answer["from_batch"].as_u64().with_context(|| format!("no from_batch in {answer}"))?;
    ensure!(answer["epoch"].as_u64() == Some(epoch), "the ledger took epoch {} instead of {epoch}", answer["epoch"]);
    steps.end(t, &format!("digest {digest}; the ledger's key from batch {from_batch}"));

    // 3. Ethereum: proposeKey by the old group.
    let t = steps.begin("Ethereum proposeKey, approved by the old operators");
    let propose_key = ["propose-key", "--new-key", &output_key];
    let digest = operator.approve_all(&plan.old_approvers, &propose_key).await?;
    let proposed = operator.propose_to_vault(proposer, &propose_key).await;
    let vault = chain.admin_state().await?;
    // The vault's state is the judge: a proposal whose last attempt failed may have landed.
    if hex::encode(vault.pending_key) != output_key {
        proposed?;
    }
    ensure!(
        hex::encode(vault.pending_key) == output_key && vault.key_epoch == plan.old.epoch,
        "after proposeKey the vault's pendingKey is {} at epoch {} (expected {output_key} at {})",
        hex::encode(vault.pending_key),
        vault.key_epoch,
        plan.old.epoch
    );
    steps.end(t, &format!("digest {digest}; pendingKey {output_key}"));

    // 4. The new watchmen, beside the old ones.
    let t = steps.begin(&format!("start the {n} new watchmen (epoch {epoch})"));
    let owner = arweave_owner(&state.dir)?;
    let mut group = WatchmanGroup {
        epoch,
        threshold: args.threshold,
        dir: group_dir.clone(),
        internal_key: internal_key.clone(),
        output_key: output_key.clone(),
        from_batch,
        members: Vec::new(),
        retired: false,
    };
    for (i, home) in ceremony.homes.iter().enumerate() {
        let seat = Seat { index: i, epoch, listen: ports.metrics[i], admin: ports.admin[i] };
        let name = format!("watchman-{}-e{epoch}", plan.operators[i]);
        group.members.push(watchmen::start(state, home, &seat, plan.operators[i], &name, &owner)?);
    }
    state.groups.push(group.clone());
    state.save()?;
    for member in &group.members {
        let part = state.parts.iter().find(|p| p.name == member.part).context("a started watchman's part")?.clone();
        let health = format!("{}/health", member.url);
        wait_ready(&part, READY, || http_ok(&chain.http, &health)).await?;
    }
    drop(held);
    steps.end(t, &group.members.iter().map(|m| m.part.as_str()).collect::<Vec<_>>().join(", "));

    // 5. Bitcoin: the old group sweeps what its key holds to the new key's vault address.
    let t = steps.begin("Bitcoin sweep of the old key's outputs");
    let at = old_key_swept(chain, &coordinator, from_batch, Duration::from_secs(args.sweep_timeout_secs)).await?;
    let sweeps = chain.coordinator_metric(&coordinator, "bridge_btc_sweeps_total").await.unwrap_or(0.0);
    steps.end(
        t,
        &format!(
            "nothing left under the old key at batch {at} ({} sweep plan(s) since the rotation)",
            sweeps - sweeps_before
        ),
    );

    // 6. Ethereum: acceptKey by the new group.
    let t = steps.begin(&format!("Ethereum acceptKey, approved by {} new operators", args.threshold));
    let new_approvers = approvers(state, &group)?;
    let accept_key = ["accept-key", "--new-key", &output_key];
    let digest = operator.approve_all(&new_approvers, &accept_key).await?;
    let proposed = operator.propose_to_vault(&new_approvers[0], &accept_key).await;
    let vault = chain.admin_state().await?;
    if vault.key_epoch != epoch {
        proposed?;
    }
    let held = hex::encode(chain.group_key().await?);
    ensure!(
        vault.key_epoch == epoch && vault.pending_key == [0; 32] && held == output_key,
        "after acceptKey the vault is at epoch {} with groupKey {held} (expected {epoch} and {output_key})",
        vault.key_epoch
    );
    steps.end(t, &format!("digest {digest}; keyEpoch {epoch}, groupKey {output_key}"));
    Ok(())
}

/// Waits until the coordinator, counting at or after `from_batch`, finds no vault output (planned
/// or not) under an old key, saying how far it is every few seconds.
async fn old_key_swept(chain: &Chain, coordinator: &str, from_batch: u64, stall: Duration) -> anyhow::Result<u64> {
    let mut said = Instant::now();
    let mut progress = Progress::new(stall);
    loop {
        let at = chain.coordinator_metric(coordinator, "bridge_btc_old_key_outputs_batch").await;
        let left = chain.coordinator_metric(coordinator, "bridge_btc_old_key_outputs").await;
        if let Some(at) = at {
            progress.saw(at as u64);
        }
        if let (Some(at), Some(left)) = (at, left)
            && at >= from_batch as f64
        {
            if left == 0.0 {
                return Ok(at as u64);
            }
            if said.elapsed() >= PROGRESS_EVERY {
                eprint!("{left} output(s) under the old key at batch {at}… ");
                said = Instant::now();
            }
        }
        if progress.stalled() {
            bail!(
                "vault outputs are still under the old key ({} at batch {}; counted from batch {from_batch} on)",
                left.map_or("unknown".into(), |l| l.to_string()),
                at.map_or("unknown".into(), |a| a.to_string())
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Stops the watchmen of every group older than the newest, once the newest key's deposit
/// grace is over and no output is left under an old key (swept and recorded hard-final): the
/// moment docs/OPERATIONS.md says the old shares may go. Each wait gives up after `timeout`
/// without progress (no new batch, no new hard-final batch), not after `timeout` in all: on a
/// loaded machine the steps are slow but move, and only a stuck devnet should fail.
pub async fn retire(state: &mut DevnetState, timeout: Duration) -> anyhow::Result<String> {
    ensure!(state.rotating.is_none(), "a rotation has not finished on this devnet; there is nothing safe to retire");
    let Some(newest) = state.groups.last().cloned() else { bail!("this devnet records no watchman groups") };
    let retiring: Vec<usize> = (0..state.groups.len() - 1).filter(|i| !state.groups[*i].retired).collect();
    ensure!(!retiring.is_empty(), "no old group to retire: only the epoch-{} group runs", newest.epoch);
    let chain = Chain::connect(state)?;
    let grace = chain.params()?.rotation_rules().old_key_grace_batches;
    let ends = newest.from_batch.saturating_add(grace);
    let coordinator = state.endpoints.coordinator.clone();
    let mut progress = Progress::new(timeout);
    let mut said = Instant::now();
    // A coordinator slow to answer (a loaded machine) is asked again until it stalls.
    loop {
        let latest = match chain.latest_batch(&coordinator).await {
            Ok(batch) if batch >= ends => break,
            answer => answer,
        };
        if let Ok(batch) = &latest {
            progress.saw(*batch);
        }
        if progress.stalled() {
            let at = match &latest {
                Ok(batch) => format!("the coordinator is at batch {batch}"),
                Err(error) => format!("the coordinator did not answer ({error:#})"),
            };
            bail!(
                "the deposit grace has not ended: no new batch for {timeout:?}: {at}; deposits to old addresses are credited \
                 until batch {ends} (from batch {} + {grace}); batches are made only while transactions arrive",
                newest.from_batch
            );
        }
        if said.elapsed() >= PROGRESS_EVERY
            && let Ok(batch) = &latest
        {
            eprint!("batch {batch} of {ends}… ");
            said = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    }
    let swept_at = old_key_swept(&chain, &coordinator, ends, timeout).await?;
    // The sweeps' confirmations are in the ledger at `swept_at`: wait until the confirmer has
    // replayed that far, so every old output's end is hard-final.
    let mut progress = Progress::new(timeout);
    loop {
        let status = chain.json(&format!("{}/status", state.endpoints.confirmer)).await;
        let hard_final = status.and_then(|s| s["hard_final"].as_u64());
        if hard_final.is_some_and(|h| h + 1 >= swept_at) {
            break;
        }
        if let Some(h) = hard_final {
            progress.saw(h);
        }
        ensure!(
            !progress.stalled(),
            "the confirmer has not made batch {swept_at} hard-final: no new hard-final batch for {timeout:?} (at {})",
            hard_final.map_or("none yet".into(), |h| h.to_string())
        );
        tokio::time::sleep(POLL).await;
    }
    let mut stopped = Vec::new();
    for i in retiring {
        for member in state.groups[i].members.clone() {
            if let Some(part) = state.parts.iter().find(|p| p.name == member.part) {
                process::stop(part, Duration::from_secs(10))?;
            }
            state.parts.retain(|p| p.name != member.part);
            stopped.push(member.part);
        }
        state.groups[i].retired = true;
        state.save()?;
    }
    Ok(format!("grace over at batch {ends}, the old key empty; stopped {}", stopped.join(", ")))
}

/// A wait's bound: how long a counter that should climb (a batch number, a hard-final batch)
/// may stay where it is before the wait gives up.
struct Progress {
    best: Option<u64>,
    since: Instant,
    stall: Duration,
}

impl Progress {
    fn new(stall: Duration) -> Self {
        Progress { best: None, since: Instant::now(), stall }
    }

    fn saw(&mut self, value: u64) {
        if self.best.is_none_or(|best| value > best) {
            self.best = Some(value);
            self.since = Instant::now();
        }
    }

    fn stalled(&self) -> bool {
        self.since.elapsed() > self.stall
    }
}

/// The coordinator's Arweave wallet address (the owner every follower reads batches of).
fn arweave_owner(dir: &Path) -> anyhow::Result<String> {
    let jwk = dir.join("coordinator/arweave.jwk");
    Ok(chains::arweave::ArweaveWallet::load(&jwk)?.address().to_owned())
}

/// The devnet's vault, coordinator and parameters, as the rotation reads them.
struct Chain {
    http: reqwest::Client,
    reader: chains::ethereum::Submitter,
    vault: contracts::Vault::VaultInstance<alloy::providers::DynProvider>,
    params_file: PathBuf,
}

impl Chain {
    fn connect(state: &DevnetState) -> anyhow::Result<Chain> {
        let e = &state.endpoints;
        let address: bridge::Address =
            e.eth_vault.parse().map_err(|error| anyhow::anyhow!("the devnet's vault {}: {error}", e.eth_vault))?;
        let tls = chains::http::Tls::default();
        let reader = chains::vault_admin::reader(&e.eth_rpc, &tls, address).map_err(anyhow::Error::msg)?;
        let provider = chains::http::eth_provider(&e.eth_rpc, &tls).map_err(|error| anyhow::anyhow!("{error}"))?;
        let vault = contracts::Vault::new(contracts::to_alloy(address), provider);
        // Generous: a loaded machine answers slowly, and every wait asks again anyway.
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Chain { http, reader, vault, params_file: state.dir.join("params.json") })
    }

    async fn admin_state(&self) -> anyhow::Result<VaultAdminState> {
        self.reader.admin_state().await.context("reading the vault's keyEpoch, pendingKey and adminNonce")
    }

    async fn group_key(&self) -> anyhow::Result<[u8; 32]> {
        let key: U256 = self.vault.groupKey().call().await.context("reading the vault's groupKey")?;
        Ok(key.to_be_bytes())
    }

    fn params(&self) -> anyhow::Result<bridge::NetworkParams> {
        let text = std::fs::read_to_string(&self.params_file)
            .with_context(|| format!("cannot read {}", self.params_file.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not the network's parameters", self.params_file.display()))
    }

    async fn latest_batch(&self, coordinator: &str) -> anyhow::Result<u64> {
        let info: serde_json::Value = self.http.get(format!("{coordinator}/info")).send().await?.json().await?;
        info["latest_batch"]["number"].as_u64().with_context(|| format!("no latest batch in {coordinator}/info"))
    }

    /// GET `url` as JSON; None while it does not answer (the caller's wait asks again).
    async fn json(&self, url: &str) -> Option<serde_json::Value> {
        self.http.get(url).send().await.ok()?.json().await.ok()
    }

    /// One of the coordinator's metrics (a gauge or counter without labels); None while it is
    /// not exported yet or the coordinator does not answer.
    async fn coordinator_metric(&self, coordinator: &str, name: &str) -> Option<f64> {
        let text = self.http.get(format!("{coordinator}/metrics")).send().await.ok()?.text().await.ok()?;
        text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }
}

//! `devnet kill` and `devnet restart`: crash a part and bring it back, the way an operator's
//! drill (or a test) does. `restart coordinator --from-da` replaces the coordinator as a stand-in
//! would after losing its machine: its ledger moved aside, a new one rebuilt from the published
//! batches alone (`coordinator recover --from-da`), then served from.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail, ensure};

use super::process::{self, http_ok, wait_ready};
use super::state::DevnetState;

fn find(state: &DevnetState, name: &str) -> anyhow::Result<usize> {
    state.parts.iter().position(|p| p.name == name).with_context(|| {
        let names: Vec<&str> = state.parts.iter().map(|p| p.name.as_str()).collect();
        format!("the devnet has no part {name:?}; its parts: {}", names.join(", "))
    })
}

/// SIGKILL, no grace: what a crash looks like.
pub fn kill(state: &DevnetState, name: &str) -> anyhow::Result<()> {
    let part = &state.parts[find(state, name)?];
    ensure!(process::alive(part), "{name} is not running");
    process::kill(part)
}

/// Starts `name` again as `up` started it (stopping it first if it runs), and waits until it
/// answers. With `from_da` (the coordinator only) its ledger is rebuilt from the DA first.
pub async fn restart(state: &mut DevnetState, name: &str, from_da: bool) -> anyhow::Result<()> {
    let index = find(state, name)?;
    let part = state.parts[index].clone();
    process::stop(&part, Duration::from_secs(10))?;
    if from_da {
        ensure!(name == "coordinator", "only the coordinator is rebuilt from the DA");
        recover_coordinator(state, &part.launch)?;
    }
    let started = process::spawn(name, part.launch.command(), &part.log, part.health.clone())?;
    state.parts[index] = started.clone();
    state.save()?;
    if let Some(url) = &started.health {
        let http = super::http_client()?;
        wait_ready(&started, Duration::from_secs(120), || http_ok(&http, url)).await?;
    }
    Ok(())
}

/// Moves the coordinator's ledger aside and rebuilds it from the published batches.
fn recover_coordinator(state: &DevnetState, launch: &super::state::Launch) -> anyhow::Result<()> {
    let ledger = state.dir.join("coordinator/ledger.db");
    let aside = state.dir.join(format!("coordinator/ledger.lost-{}", std::process::id()));
    std::fs::create_dir_all(&aside).with_context(|| format!("cannot create {}", aside.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", ledger.display()));
        if file.exists() {
            let to = aside.join(file.file_name().unwrap_or_default());
            std::fs::rename(&file, &to).with_context(|| format!("cannot move {} aside", file.display()))?;
        }
    }
    // The same program and configuration, `recover --from-da` instead of `run`.
    let mut recover = launch.clone();
    let Some(run) = recover.args.iter().position(|a| a == "run") else {
        bail!("the coordinator's command line has no `run` to replace: {:?}", launch.args);
    };
    recover.args.truncate(run);
    recover.args.extend(["recover".into(), "--from-da".into()]);
    let output = recover.command().output().context("cannot run coordinator recover --from-da")?;
    ensure!(
        output.status.success(),
        "coordinator recover --from-da failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let log = state.dir.join("logs/coordinator-recover.log");
    std::fs::write(&log, [output.stdout, output.stderr].concat())
        .with_context(|| format!("cannot write {}", log.display()))?;
    Ok(())
}

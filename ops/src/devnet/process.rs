//! The devnet's processes: each started detached in a process group of its own (so it outlives
//! `bridgectl devnet up` and a Ctrl-C in the terminal, and `down` can stop it with everything it
//! spawned), its output in a log file, and recognised later by pid *and* start time, so a pid the
//! kernel has reused for something else is never signalled.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::state::{Launch, Part};

/// Starts `command` detached, its stdout and stderr appended to `log`.
pub fn spawn(name: &str, mut command: Command, log: &Path, health: Option<String>) -> anyhow::Result<Part> {
    let launch = Launch::of(&command);
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open the log file {}", log.display()))?;
    let err = out.try_clone().with_context(|| format!("cannot open the log file {}", log.display()))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {name} ({:?})", command.get_program()))?;
    let pid = child.id();
    // The child is deliberately not waited for: it belongs to the devnet, not to this process.
    drop(child);
    let started_ticks = start_ticks(pid).with_context(|| format!("{name} exited at once; see {}", log.display()))?;
    Ok(Part { name: name.into(), pid, started_ticks, log: log.to_path_buf(), health, launch })
}

/// The process's start time in clock ticks since boot, or None if there is no such process.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2 (the command name) is in parentheses and may hold spaces; count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state); field 22 is the 20th from here.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None; // a zombie has exited
    }
    fields.get(19)?.parse().ok()
}

/// Whether the process `part` describes is still the one the devnet started and still running.
pub fn alive(part: &Part) -> bool {
    start_ticks(part.pid) == Some(part.started_ticks)
}

/// Kills `part`'s process group at once (SIGKILL): a crash, for tests and drills.
pub fn kill(part: &Part) -> anyhow::Result<()> {
    if alive(part) {
        signal("KILL", part.pid)?;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(part) {
        if Instant::now() > deadline {
            bail!("{} (pid {}) did not die after SIGKILL", part.name, part.pid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Stops `part` and its process group: SIGTERM, then SIGKILL after `grace`. Does nothing if the
/// process is gone or its pid now belongs to another process.
pub fn stop(part: &Part, grace: Duration) -> anyhow::Result<()> {
    if !alive(part) {
        return Ok(());
    }
    signal("TERM", part.pid)?;
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !alive(part) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal("KILL", part.pid)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !alive(part) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{} (pid {}) did not stop after SIGKILL", part.name, part.pid)
}

/// Signals the whole process group `pid` leads (each part is the leader of its own group).
fn signal(name: &str, pid: u32) -> anyhow::Result<()> {
    // `kill` from procps/util-linux: no unsafe FFI here for one system call. Its exit status is
    // not looked at: a group that vanished between the check and the signal is not an error.
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg("--")
        .arg(format!("-{pid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run `kill`")?;
    Ok(())
}

/// The workspace's binaries next to this `bridgectl` (the same cargo profile), built with cargo
/// if any is missing.
pub fn binaries(names: &[&str]) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find bridgectl's own path")?;
    let dir = exe.parent().context("bridgectl's path has no directory")?.to_path_buf();
    if names.iter().all(|n| dir.join(n).exists()) {
        return Ok(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    eprintln!("  building the coordinator, confirmer, watchman and regtest node (first run only)…");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.arg("build").arg("--manifest-path").arg(&manifest).arg("--bins");
    for package in ["coordinator", "confirmer", "regtest"] {
        cargo.arg("-p").arg(package);
    }
    if dir.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    let status = cargo.status().context("cannot run cargo to build the devnet's binaries")?;
    if !status.success() {
        bail!("building the devnet's binaries failed ({status})");
    }
    for name in names {
        if !dir.join(name).exists() {
            bail!("{} is still missing after the build", dir.join(name).display());
        }
    }
    Ok(dir)
}

/// Waits until `ready` says yes, the part dies (its log's tail is in the error), or `timeout`.
pub async fn wait_ready<F, Fut>(part: &Part, timeout: Duration, mut ready: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if ready().await {
            return Ok(());
        }
        if !alive(part) {
            bail!("{} exited while starting:\n{}", part.name, log_tail(&part.log, 20));
        }
        if Instant::now() > deadline {
            bail!("{} did not become ready within {timeout:?}:\n{}", part.name, log_tail(&part.log, 20));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last `lines` lines of a log, for error messages.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    format!("  (from {})\n{}", log.display(), all[from..].join("\n"))
}

/// GET `url` answers 2xx.
pub async fn http_ok(http: &reqwest::Client, url: &str) -> bool {
    matches!(http.get(url).timeout(Duration::from_secs(2)).send().await, Ok(r) if r.status().is_success())
}

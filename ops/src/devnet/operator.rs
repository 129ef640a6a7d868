//! An operator at their terminal during `devnet rotate`: `bridgectl admin approve | propose`
//! against their own watchman, each a process of its own, its output kept in the rotation's log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};

use super::state::GroupMember;

/// How long one operator command may run: a proposal waits for a signing session (60 s at
/// most) and a transaction; a key ceremony has its own 120 s timeout.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(240);
/// How often an operator proposes a vault call when it loses a race with its watchman's
/// settlement (bounded: a race lost three times in a row is a fault to look at).
const PROPOSE_ATTEMPTS: u32 = 3;

/// An operator at their terminal: `bridgectl admin` commands against their own watchman, each
/// a process, its output appended to the rotation's log.
pub(super) struct Operator {
    pub bridgectl: PathBuf,
    pub log: PathBuf,
}

/// `admin <verb> --admin … --token-file … <extra>`: a command of `member`'s operator against
/// their own watchman.
pub(super) fn admin_args(member: &GroupMember, verb: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["admin".to_owned(), verb.to_owned(), "--admin".to_owned(), member.admin.clone()];
    args.push("--token-file".to_owned());
    args.push(member.token_file().display().to_string());
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

impl Operator {
    /// Each of `members` approves `action`; every printed digest must be the same (what
    /// operators compare over a channel they trust). Returns it.
    pub async fn approve_all(&self, members: &[GroupMember], action: &[&str]) -> anyhow::Result<String> {
        let mut digest: Option<String> = None;
        for member in members {
            let said = self.run(admin_args(member, "approve", &[]), action).await?;
            let printed = said
                .lines()
                .find_map(|l| l.trim().strip_prefix("digest "))
                .with_context(|| format!("`admin approve` printed no digest:\n{said}"))?
                .to_owned();
            match &digest {
                None => digest = Some(printed),
                Some(first) => ensure!(
                    *first == printed,
                    "{} approved digest {printed}, the others {first}: not the same message",
                    member.part
                ),
            }
        }
        digest.context("nobody approved")
    }

    /// `admin propose` of a vault call through `member`'s watchman. The watchman sends it from
    /// the account its settlement also sends from, and the two do not share a nonce: when the
    /// node says the nonce was taken, or the transaction reverted on chain after its simulation
    /// passed, the operator proposes again, at most [`PROPOSE_ATTEMPTS`] times. The approvals
    /// still hold; a call that did land makes a retry fail on the vault's own nonce, never
    /// twice (the caller then reads the vault).
    pub async fn propose_to_vault(&self, member: &GroupMember, action: &[&str]) -> anyhow::Result<String> {
        let mut attempt = 1;
        loop {
            match self.run(admin_args(member, "propose", &[]), action).await {
                Ok(said) => return Ok(said),
                Err(error) if attempt < PROPOSE_ATTEMPTS && lost_a_race(&error) => {
                    eprint!("(the vault call did not land: {}; proposing again) ", last_line(&error));
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Runs bridgectl with `args` and `action`; its stdout, or an error with everything it said.
    pub async fn run(&self, args: Vec<String>, action: &[&str]) -> anyhow::Result<String> {
        let mut command = tokio::process::Command::new(&self.bridgectl);
        command.args(&args).args(action).env_remove("DATABASE_URL").kill_on_drop(true);
        let shown = format!("bridgectl {} {}", args.join(" "), action.join(" "));
        let output = tokio::time::timeout(COMMAND_TIMEOUT, command.output())
            .await
            .with_context(|| format!("`{shown}` did not finish within {COMMAND_TIMEOUT:?}"))?
            .with_context(|| format!("cannot run `{shown}`"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        // The log is a convenience: a rotation does not fail because it cannot be written.
        let _ = append(&self.log, &format!("$ {shown}\n{stdout}{stderr}\n"));
        ensure!(output.status.success(), "`{shown}` failed ({}):\n{stdout}{stderr}", output.status);
        Ok(stdout)
    }
}

/// Whether a failed proposal lost a race with its watchman's own settlement: the node refused
/// it for a nonce another transaction of the account took, or it was mined and reverted after
/// its simulation passed.
fn lost_a_race(error: &anyhow::Error) -> bool {
    let said = format!("{error:#}");
    said.contains("was used by another transaction")
        || said.contains("nonce too low")
        || said.contains("reverted on chain")
}

/// The last non-empty line of an error: what the command said last.
fn last_line(error: &anyhow::Error) -> String {
    format!("{error:#}").lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_owned()
}

fn append(log: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new().create(true).append(true).open(log)?.write_all(text.as_bytes())
}

//! The crash drill on the devnet, every part a real process: `bridgectl devnet up` (3-of-5, two
//! submitting watchmen, a 3 s settlement window), then `bridgectl devnet drill --minutes 2`,
//! which SIGKILLs and restarts the coordinator, the confirmer and the watchmen at seeded moments
//! while alice keeps withdrawing. Afterwards every accepted withdrawal is paid, and not one
//! settlement transaction reverted on chain (counted from anvil's receipts by the drill).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn devnet(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bridgectl"));
    command.env_remove("DATABASE_URL").arg("devnet").arg("--dir").arg(dir);
    command
}

/// The last lines of each log, for a failure's message.
fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir.join("logs")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(12).collect();
        out.push_str(&format!("--- {}\n", path.display()));
        for line in tail.into_iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A devnet of this test's own (free ports, a temporary directory), stopped however it ends.
struct Devnet {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Devnet {
    fn up() -> Devnet {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("devnet");
        let up = devnet(&dir).args(["up", "--free-ports", "--settlement-window-s", "3"]).output().unwrap();
        if !up.status.success() {
            let _ = devnet(&dir).arg("down").output();
            panic!("devnet up failed:\n{}\n{}", String::from_utf8_lossy(&up.stderr), logs(&dir));
        }
        Devnet { _tmp: tmp, dir }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = devnet(&self.dir).arg("down").output();
    }
}

#[test]
fn a_crash_drill_pays_every_accepted_withdrawal_and_reverts_no_root_submission() {
    let net = Devnet::up();
    let drill = devnet(&net.dir)
        .args(["drill", "--minutes", "2", "--seed", "7", "--pay-timeout-secs", "300", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&drill.stdout);
    assert!(
        drill.status.success(),
        "the drill failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&drill.stderr),
        logs(&net.dir)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let accepted = report["withdrawals_accepted"].as_u64().unwrap();
    assert!(accepted >= 10, "too few withdrawals for a drill: {report:#}");
    assert_eq!(report["withdrawals_paid"].as_u64(), Some(accepted), "{report:#}");
    let kills = &report["kills"];
    let killed = ["coordinator", "confirmer", "watchmen"].iter().map(|r| kills[r].as_u64().unwrap()).sum::<u64>();
    assert!(killed >= 3, "the drill killed too little to prove anything: {report:#}");
    // Roots go with their payouts (`submitAndWithdraw`); `submitWithdrawals` and `withdrawMany`
    // only when leaves are left over (another submitter's root, a cap, a full transaction).
    let calls = &report["vault"]["calls"];
    assert!(calls["submitAndWithdraw"]["mined"].as_u64().unwrap() >= 1, "{report:#}");
    for call in ["submitAndWithdraw", "submitWithdrawals", "withdrawMany"] {
        assert_eq!(calls[call]["reverted"].as_u64(), Some(0), "{call} reverted on chain: {report:#}");
    }
}

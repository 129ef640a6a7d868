#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `bridgectl keygen` as three processes on 127.0.0.1: one group key, three encrypted shares.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

fn bridgectl() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bridgectl"));
    command.env("BRIDGE_PASSPHRASE", "ceremony passphrase");
    command
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "bridgectl failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn three_watchmen_make_one_group_key_with_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let mut watchmen = String::from("threshold = 2\nbitcoin_network = \"regtest\"\n");
    // Held while the ceremony runs, so no other bind on the machine takes a watchman's port.
    let ports = tss::ports::reserve(3).unwrap();
    for (i, port) in ports.iter().enumerate() {
        let identity = dir.path().join(format!("identity-{i}.key"));
        let out = ok(bridgectl().args(["identity", "new", "--out"]).arg(&identity).output().unwrap());
        let peer_id = out.trim();
        watchmen.push_str(&format!("\n[[watchman]]\npeer_id = \"{peer_id}\"\naddress = \"{}\"\n", port.multiaddr()));
    }
    let file = dir.path().join("watchmen.toml");
    std::fs::write(&file, &watchmen).unwrap();

    let children: Vec<_> = (0..3)
        .map(|i| {
            bridgectl()
                .args(["keygen", "--json", "--timeout-secs", "60", "--watchmen"])
                .arg(&file)
                .arg("--identity")
                .arg(dir.path().join(format!("identity-{i}.key")))
                .arg("--share")
                .arg(dir.path().join(format!("share-{i}.key")))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let reports: Vec<serde_json::Value> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr).to_string();
            assert!(stderr.contains("waiting for watchmen"), "progress is shown: {stderr}");
            serde_json::from_str(&ok(output)).unwrap()
        })
        .collect();
    for report in &reports[1..] {
        assert_eq!(report["group_key"], reports[0]["group_key"]);
        assert_eq!(report["taproot_address"], reports[0]["taproot_address"]);
    }
    assert!(reports[0]["taproot_address"].as_str().unwrap().starts_with("bcrt1p"));
    assert_eq!(reports[0]["group_key"]["threshold"], 2);
    let px = reports[0]["ethereum"]["px"].as_str().unwrap();
    assert_eq!(px.len(), 66);
    assert_eq!(&px[2..], reports[0]["group_key"]["output_key"].as_str().unwrap());
    for i in 0..3 {
        let share = dir.path().join(format!("share-{i}.key"));
        assert_eq!(std::fs::metadata(&share).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // A refresh with every watchman: new shares, the same key.
    let children: Vec<_> = (0..3)
        .map(|i| {
            bridgectl()
                .args(["refresh", "--json", "--timeout-secs", "60", "--watchmen"])
                .arg(&file)
                .arg("--identity")
                .arg(dir.path().join(format!("identity-{i}.key")))
                .arg("--share")
                .arg(dir.path().join(format!("share-{i}.key")))
                .arg("--new-share")
                .arg(dir.path().join(format!("share-{i}.new.key")))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let refreshed: serde_json::Value = serde_json::from_str(&ok(child.wait_with_output().unwrap())).unwrap();
        assert_eq!(refreshed["group_key"], reports[0]["group_key"], "a refresh keeps the group key");
    }
    assert_ne!(
        std::fs::read(dir.path().join("share-0.key")).unwrap(),
        std::fs::read(dir.path().join("share-0.new.key")).unwrap()
    );

    // The ceremony never overwrites a share.
    let again = bridgectl()
        .args(["keygen", "--watchmen"])
        .arg(&file)
        .arg("--identity")
        .arg(dir.path().join("identity-0.key"))
        .arg("--share")
        .arg(dir.path().join("share-0.key"))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));
}

#[test]
fn bad_watchmen_files_and_passphrases_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let identity = dir.path().join("identity.key");
    let peer_id = ok(bridgectl().args(["identity", "new", "--out"]).arg(&identity).output().unwrap());
    let file = dir.path().join("watchmen.toml");
    std::fs::write(
        &file,
        format!("threshold = 1\n[[watchman]]\npeer_id = \"{}\"\naddress = \"/ip4/127.0.0.1/tcp/1\"\n", peer_id.trim()),
    )
    .unwrap();
    let run = |passphrase: &str| {
        bridgectl()
            .env("BRIDGE_PASSPHRASE", passphrase)
            .args(["keygen", "--watchmen"])
            .arg(&file)
            .arg("--identity")
            .arg(&identity)
            .arg("--share")
            .arg(dir.path().join("share.key"))
            .output()
            .unwrap()
    };
    let output = run("ceremony passphrase");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("threshold of 1"), "{output:?}");

    std::fs::write(
        &file,
        format!("threshold = 2\n[[watchman]]\npeer_id = \"{}\"\naddress = \"/ip4/127.0.0.1/tcp/1\"\n[[watchman]]\npeer_id = \"not a peer id\"\naddress = \"/ip4/127.0.0.1/tcp/2\"\n", peer_id.trim()),
    )
    .unwrap();
    let output = run("ceremony passphrase");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("watchman 2: peer_id"), "{output:?}");

    let other = ok(bridgectl().args(["identity", "new", "--out"]).arg(dir.path().join("other.key")).output().unwrap());
    std::fs::write(
        &file,
        format!(
            "threshold = 2\n[[watchman]]\npeer_id = \"{}\"\naddress = \"/ip4/127.0.0.1/tcp/1\"\n[[watchman]]\npeer_id = \"{}\"\naddress = \"/ip4/127.0.0.1/tcp/2\"\n",
            peer_id.trim(),
            other.trim()
        ),
    )
    .unwrap();
    let output = run("wrong passphrase");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("passphrase is wrong"), "{output:?}");
}

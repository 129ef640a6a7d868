//! The deployment checked on the devnet, every part a real process (`bridgectl devnet up`):
//! - each role's preflight (`coordinator check`, `confirmer check`, `watchman check`), run with
//!   the very command line and environment the devnet started that role with, passes;
//! - every metric an alert rule (ops/deploy/prometheus/alerts.yml) or a Grafana panel
//!   (ops/deploy/grafana/dashboards/bridge.json) names is exported by some role's `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn devnet(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bridgectl"));
    command.env_remove("DATABASE_URL").arg("devnet").arg("--dir").arg(dir);
    command
}

/// A devnet of this test's own, stopped however the test ends.
struct Devnet {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    state: Value,
}

impl Devnet {
    fn up() -> Devnet {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("devnet");
        let up = devnet(&dir).arg("up").arg("--free-ports").output().unwrap();
        if !up.status.success() {
            let _ = devnet(&dir).arg("down").output();
            panic!("devnet up failed:\n{}", String::from_utf8_lossy(&up.stderr));
        }
        let state = serde_json::from_slice(&std::fs::read(dir.join("devnet.json")).unwrap()).unwrap();
        Devnet { _tmp: tmp, dir, state }
    }

    fn part(&self, name: &str) -> &Value {
        self.state["parts"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = devnet(&self.dir).arg("down").output();
    }
}

/// The part's own launch (program, environment, working directory) with its run subcommand
/// swapped for `check`: the preflight reads exactly what the role runs with.
fn preflight(part: &Value) -> Output {
    let launch = &part["launch"];
    let mut args: Vec<String> =
        launch["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect();
    match args.iter().position(|a| a == "run" || a == "follow") {
        Some(i) => args[i] = "check".into(),
        None => args.push("check".into()),
    }
    let mut command = Command::new(launch["program"].as_str().unwrap());
    command.args(&args);
    for change in launch["env"].as_array().unwrap() {
        match (change[0].as_str().unwrap(), change[1].as_str()) {
            (name, Some(value)) => command.env(name, value),
            (name, None) => command.env_remove(name),
        };
    }
    if let Some(cwd) = launch["cwd"].as_str() {
        command.current_dir(cwd);
    }
    command.output().unwrap()
}

/// The metric names in a Prometheus text exposition.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned))
        .collect()
}

/// Every `bridge_…` name in `text` (a prefix ending in `_`, as in a `__name__=~` pattern, is
/// not a name).
fn named(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("bridge_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        if !name.ends_with('_') {
            names.insert(name.to_owned());
        }
        rest = &tail[end..];
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_roles_preflight_passes_and_every_alerted_metric_is_exported() {
    let net = Devnet::up();
    for name in ["coordinator", "confirmer", "watchman-0"] {
        let out = preflight(net.part(name));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name} check failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("checks passed") && !stdout.contains("FAIL"), "{name}:\n{stdout}");
    }

    // One user transfer through the API, so that what only a served user exports (the
    // coordinator's acknowledgement latency) has been served once, as on any live network.
    let alice = net.state["demo_wallets"][0]["file"].as_str().unwrap().to_owned();
    let bob = net.state["demo_wallets"][1]["address"].as_str().unwrap().to_owned();
    let transfer = Command::new(env!("CARGO_BIN_EXE_bridgectl"))
        .env("BRIDGE_PASSPHRASE", "devnet")
        .env_remove("DATABASE_URL")
        .args(["transfer", "--wallet", &alice, "--asset", "eth", "--amount", "1", "--to", &bob, "--json"])
        .arg("--devnet")
        .arg(&net.dir)
        .output()
        .unwrap();
    assert!(transfer.status.success(), "transfer failed:\n{}", String::from_utf8_lossy(&transfer.stderr));

    let http = reqwest::Client::new();
    let e = &net.state["endpoints"];
    let mut urls = vec![e["coordinator"].as_str().unwrap().to_owned(), e["confirmer"].as_str().unwrap().to_owned()];
    urls.extend(e["watchmen"].as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_owned()));
    let mut metrics = BTreeSet::new();
    for url in &urls {
        let text = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
        metrics.extend(exported(&text));
    }
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    for file in ["prometheus/alerts.yml", "grafana/dashboards/bridge.json"] {
        let names = named(&std::fs::read_to_string(deploy.join(file)).unwrap());
        assert!(!names.is_empty(), "{file} names no metric");
        let missing: Vec<_> = names.difference(&metrics).collect();
        assert!(missing.is_empty(), "{file} names metrics no role exports: {missing:?}\nexported: {metrics:?}");
    }
}

#[test]
fn metric_names_are_read_from_rules_and_expositions() {
    let rule = r#"expr: sum(rate(bridge_a_total{x="1"}[5m])) / bridge_b_seconds_count and {__name__=~"bridge_c_.*"}"#;
    assert_eq!(named(rule), ["bridge_a_total", "bridge_b_seconds_count"].map(String::from).into());
    let text = "# TYPE bridge_a_total counter\nbridge_a_total{x=\"1\"} 3\nbridge_b 1\n";
    assert_eq!(exported(text), ["bridge_a_total", "bridge_b"].map(String::from).into());
}

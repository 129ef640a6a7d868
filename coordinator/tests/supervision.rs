//! A coordinator's background tasks under supervision, on real parts: the Ethereum deposit
//! watcher talks to anvil through a TCP proxy that the test cuts (new connections refused, open
//! ones closed) and restores. While cut, `/health` shows the watcher restarting with its error;
//! once restored, a deposit made meanwhile is credited. A deep reorg (a fatal error) kills the
//! watcher: `/health` answers 503 and the node reports the death, and the binary stops. A DA
//! that files a batch under another number stops the publisher with an error the supervisor sees.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use alloy::providers::Provider;
use chains::da::{DaError, DataAvailability, DirDa, FetchedBatch, Published};
use chains::task::{Schedule, Supervisor, TaskState};
use common::*;
use contracts::from_alloy;
use contracts::harness::Setup;
use coordinator::node::{ETH_DEPOSITS, Node};
use coordinator::publisher::Publisher;
use coordinator::sequencer::Sequencer;
use coordinator::store::Store;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP proxy in front of a node that can be cut and restored: a node that goes away and comes
/// back on the same address, as a restarted or unreachable RPC endpoint does.
/// Forwarding tasks of the open connections, aborted to close them.
type Connections = Arc<Mutex<Vec<JoinHandle<()>>>>;

struct CuttableProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    running: Option<(JoinHandle<()>, Connections)>,
}

impl CuttableProxy {
    async fn start(upstream: SocketAddr) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut proxy = CuttableProxy { addr, upstream, running: None };
        proxy.serve(listener);
        proxy
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&mut self, listener: TcpListener) {
        let connections: Connections = Arc::default();
        let tracked = connections.clone();
        let upstream = self.upstream;
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let connection = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().unwrap().push(connection);
            }
        });
        self.running = Some((accept, connections));
    }

    /// Closes the listening socket (new connections are refused) and every open connection.
    async fn cut(&mut self) {
        let (accept, connections) = self.running.take().expect("the proxy is running");
        accept.abort();
        let _ = accept.await;
        let open: Vec<_> = connections.lock().unwrap().drain(..).collect();
        for connection in open {
            connection.abort();
            let _ = connection.await;
        }
        assert!(TcpStream::connect(self.addr).await.is_err(), "the cut proxy still accepts connections");
    }

    /// Listens again on the same address.
    async fn restore(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

async fn eth_balance(node: &Node, account: bridge::Address) -> u128 {
    let body: Value = reqwest::get(format!("{}/accounts/{account}", node.url())).await.unwrap().json().await.unwrap();
    body["balances"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["asset"] == "eth:ETH")
        .map_or(0, |b| b["amount"].as_str().unwrap().parse().unwrap())
}

/// `/health`'s status code and body.
async fn health(node: &Node) -> (u16, Value) {
    let response = reqwest::get(format!("{}/health", node.url())).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn task<'a>(health: &'a Value, name: &str) -> &'a Value {
    health["tasks"].as_array().unwrap().iter().find(|t| t["task"] == name).unwrap_or(&Value::Null)
}

async fn deposit(setup: &Setup, account: bridge::Address, wei: u64) {
    deposit_eth(setup, account, wei).await;
    let _: Value = setup.provider.raw_request("anvil_mine".into(), (2,)).await.unwrap();
}

async fn node_behind_proxy(setup: &Setup, proxy: &CuttableProxy, dir: &std::path::Path, url: &str) -> Node {
    let mut config = node_config(dir, url, 0);
    config.network.eth_vault = from_alloy(setup.vault_address());
    config.ethereum.rpc = Some(proxy.url());
    config.ethereum.depth = 2;
    config.ethereum.finality = chains::eth_finality::FinalityRule::Depth;
    config.ethereum.poll_ms = 100;
    Node::start(&config).await.unwrap()
}

#[tokio::test]
async fn a_watcher_cut_from_its_node_shows_restarting_and_credits_deposits_when_it_returns() {
    let setup = Setup::new().await.unwrap();
    let mut proxy = CuttableProxy::start(format!("127.0.0.1:{}", setup.anvil.port).parse().unwrap()).await;
    let ledger = ledgers().await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let node = node_behind_proxy(&setup, &proxy, dir.path(), &ledger.url).await;

    // Through the proxy, the watcher credits a deposit and every task runs.
    let first = bridge::Address([0xa1; 20]);
    deposit(&setup, first, 5_000).await;
    eventually(60, "the first deposit", || async { (eth_balance(&node, first).await == 5_000).then_some(()) }).await;
    let (code, body) = health(&node).await;
    assert_eq!(code, 200, "{body}");
    for name in ["sequencer", "publisher", "deposit-intake", ETH_DEPOSITS] {
        assert_eq!(task(&body, name)["state"], "running", "{name}: {body}");
    }

    // The node goes away: /health says the watcher is restarting, why, and how many times.
    proxy.cut().await;
    let cut_at = Instant::now();
    let seen = eventually(60, "the watcher restarting in /health", || async {
        let (code, body) = health(&node).await;
        let watcher = task(&body, ETH_DEPOSITS).clone();
        // Four failed turns: retried after 0.1, 0.2, 0.4 and 0.8 s, the backoff growing.
        (watcher["state"] == "restarting" && watcher["attempt"].as_u64() >= Some(4)).then_some((code, body))
    })
    .await;
    let (code, body) = seen;
    assert_eq!(code, 200, "the API still serves: {body}");
    assert_eq!(body["status"], "degraded", "{body}");
    let watcher = task(&body, ETH_DEPOSITS);
    let error = watcher["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("Ethereum node"), "the error names the node: {watcher}");
    assert_eq!(task(&body, "publisher")["state"], "running", "only the watcher is affected: {body}");

    // A deposit made while the watcher cannot see the node: once the watcher has failed again
    // after it was mined, it is still not credited.
    let second = bridge::Address([0xa2; 20]);
    deposit(&setup, second, 7_000).await;
    let failed_before = watcher["restarts"].as_u64().unwrap();
    eventually(60, "another failed turn", || async {
        let (_, body) = health(&node).await;
        (task(&body, ETH_DEPOSITS)["restarts"].as_u64().unwrap() > failed_before).then_some(())
    })
    .await;
    assert_eq!(eth_balance(&node, second).await, 0, "nothing credited while the node is unreachable");

    // The node returns: the deposit is credited and the watcher is running again.
    let cut_for = cut_at.elapsed();
    proxy.restore().await;
    let restored_at = Instant::now();
    eventually(90, "the deposit made while cut", || async {
        (eth_balance(&node, second).await == 7_000).then_some(())
    })
    .await;
    let recovered_in = restored_at.elapsed();
    let (code, body) = eventually(30, "the watcher running in /health", || async {
        let (code, body) = health(&node).await;
        (task(&body, ETH_DEPOSITS)["state"] == "running").then_some((code, body))
    })
    .await;
    assert_eq!(code, 200, "{body}");
    let watcher = task(&body, ETH_DEPOSITS);
    assert_eq!(watcher["attempt"], 0, "{watcher}");
    assert!(watcher["restarts"].as_u64().unwrap() >= 5, "{watcher}");
    let metrics = reqwest::get(format!("{}/metrics", node.url())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("bridge_task_restarts_total{{task=\"{ETH_DEPOSITS}\"}}")), "{metrics}");
    eprintln!(
        "cut for {:.1} s ({} failed turns); the deposit made meanwhile was credited {:.1} s after the node returned",
        cut_for.as_secs_f64(),
        watcher["restarts"],
        recovered_in.as_secs_f64()
    );
    assert_eq!(eth_balance(&node, first).await, 5_000, "nothing credited twice");
    node.shutdown().await;
}

#[tokio::test]
async fn a_deep_reorg_kills_the_watcher_and_health_answers_503() {
    let setup = Setup::new().await.unwrap();
    let proxy = CuttableProxy::start(format!("127.0.0.1:{}", setup.anvil.port).parse().unwrap()).await;
    let ledger = ledgers().await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let node = node_behind_proxy(&setup, &proxy, dir.path(), &ledger.url).await;

    let account = bridge::Address([0xb1; 20]);
    deposit(&setup, account, 3_000).await;
    eventually(60, "the deposit", || async { (eth_balance(&node, account).await == 3_000).then_some(()) }).await;

    // Three blocks replaced: deeper than the watcher's depth of two, so a block it has scanned
    // is gone. Another poll cannot fix that: the watcher is dead, not restarting.
    let _: Value = setup.provider.raw_request("anvil_reorg".into(), (3u64, Vec::<Value>::new())).await.unwrap();
    let failure = tokio::time::timeout(std::time::Duration::from_secs(60), node.failed())
        .await
        .expect("the node reports the dead watcher");
    assert_eq!(failure.task, ETH_DEPOSITS);
    assert!(failure.error.contains("no longer canonical"), "{}", failure.error);
    let (code, body) = health(&node).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["status"], "dead", "{body}");
    let watcher = task(&body, ETH_DEPOSITS);
    assert_eq!(watcher["state"], "dead", "{watcher}");
    assert!(watcher["last_error"].as_str().unwrap().contains("deeper than the confirmation depth"), "{watcher}");
    node.shutdown().await;
}

#[tokio::test]
async fn a_dead_watcher_stops_the_coordinator_process() {
    let setup = Setup::new().await.unwrap();
    let ledger = ledgers().await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("[ethereum]\nrpc = {:?}\nfinality = \"depth\"\ndepth = 2\npoll_ms = 100\n", setup.anvil.url());
    let path = config_file(dir.path(), &ledger.url, 0, &extra);
    // The vault deployed on anvil, not the test network's placeholder.
    let text = std::fs::read_to_string(&path).unwrap().replace(
        &format!("eth_vault = \"{}\"", params().eth_vault),
        &format!("eth_vault = \"{}\"", from_alloy(setup.vault_address())),
    );
    std::fs::write(&path, text).unwrap();
    let mut process = Process::start(&path).await;
    let account = bridge::Address([0xc1; 20]);
    deposit(&setup, account, 2_000).await;
    eventually(60, "the deposit", || async {
        let body: Value = reqwest::get(format!("{}/accounts/{account}", process.url)).await.ok()?.json().await.ok()?;
        (body["balances"][0]["amount"] == "2000").then_some(())
    })
    .await;

    let _: Value = setup.provider.raw_request("anvil_reorg".into(), (3u64, Vec::<Value>::new())).await.unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), process.child.wait())
        .await
        .expect("the coordinator stops by itself once its watcher is dead")
        .unwrap();
    assert!(!status.success(), "a dead task is a failure: {status}");
}

/// A DA that files every batch one number above the one it was given: a DA (or a journal) that
/// contradicts the ledger.
struct MisfilingDa(DirDa);

#[async_trait::async_trait]
impl DataAvailability for MisfilingDa {
    async fn publish(&self, batch: &bridge::SignedBatch) -> Result<Published, DaError> {
        let published = self.0.publish(batch).await?;
        Ok(Published { number: published.number + 1, locator: published.locator })
    }

    async fn fetch(&self, number: u64) -> Result<Option<FetchedBatch>, DaError> {
        self.0.fetch(number).await
    }

    async fn confirmations(&self, number: u64) -> Result<Option<u64>, DaError> {
        self.0.confirmations(number).await
    }

    async fn latest(&self) -> Result<u64, DaError> {
        self.0.latest().await
    }
}

#[tokio::test]
async fn a_da_that_misfiles_a_batch_stops_the_publisher_with_an_error() {
    let ledger = ledgers().await.remove(0);
    let store = Store::open(&ledger.url).await.unwrap();
    let mut sequencer = Sequencer::recover(store.clone(), params(), key()).await.unwrap();
    sequencer.submit(vec![common::deposit(wallet(1).address(), 1_000, 1)]).await.unwrap();
    sequencer.seal(7).await.unwrap().expect("a batch is sealed");

    let da_dir = tempfile::tempdir().unwrap();
    let da = Arc::new(MisfilingDa(DirDa::open(da_dir.path(), key().public_key()).unwrap()));
    let supervisor = Supervisor::new();
    let sealed = Arc::new(tokio::sync::Notify::new());
    let run = Publisher::new(store.clone(), da).task(sealed);
    let _publishing = supervisor.spawn("publisher", run, Schedule::every(std::time::Duration::from_millis(100)));

    let failure = tokio::time::timeout(std::time::Duration::from_secs(60), supervisor.failed())
        .await
        .expect("the supervisor sees the publisher die");
    assert_eq!(failure.task, "publisher");
    assert!(failure.error.contains("filed batch 1 as batch 2"), "{}", failure.error);
    let health = supervisor.health();
    assert_eq!(health[0].state, TaskState::Dead, "{health:?}");
    // The batch stays unpublished in the ledger: nothing was recorded from the wrong answer.
    assert_eq!(store.publication().await.unwrap().published, 0);
}

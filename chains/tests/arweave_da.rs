//! `ArweaveDa` against a real arlocal: publish and follow, chunked batches, forgeries, the
//! arweave-js cross-check both ways, and a restart without a double publish.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bridge::codec::{CODEC_NAME, encode_batch};
use bridge::{BatchBuilder, SignedBatch, State};
use chains::arweave::arlocal::Arlocal;
use chains::arweave::{ArweaveWallet, Gateway, GatewayError, INLINE_LIMIT, RetryPolicy, Tag, Transaction, WalletError};
use chains::da::{ArweaveDa, ArweaveDaConfig, DaError, DataAvailability, Rejection};
use common::{batches, batches_of, key, params};

const CHECK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/tools/arweave-check.js");

fn node(args: &[&str], tags: &[(&str, String)]) -> String {
    let mut command = Command::new("node");
    command.arg(CHECK_SCRIPT).args(args);
    for (name, value) in tags {
        command.env(format!("TAG_{name}"), value);
    }
    let output = command.output().expect("node runs");
    assert!(output.status.success(), "arweave-check.js {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// What each wallet of a [`Net`] is given, in winston.
const MINTED: u128 = 1_000_000_000_000_000;

/// An arlocal with a funded coordinator wallet and a funded stranger.
struct Net {
    arlocal: Arlocal,
    dir: tempfile::TempDir,
    coordinator_jwk: PathBuf,
    stranger_jwk: PathBuf,
}

impl Net {
    async fn start() -> Net {
        let arlocal = Arlocal::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for name in ["coordinator.json", "stranger.json"] {
            let path = dir.path().join(name);
            std::fs::write(&path, node(&["generate"], &[])).unwrap();
            let wallet = ArweaveWallet::load(&path).unwrap();
            arlocal.mint(wallet.address(), MINTED).await.unwrap();
            paths.push(path);
        }
        let stranger_jwk = paths.pop().unwrap();
        let coordinator_jwk = paths.pop().unwrap();
        Net { arlocal, dir, coordinator_jwk, stranger_jwk }
    }

    /// Mines until what is pending has one confirmation (arlocal counts the block that
    /// includes a transaction as zero).
    async fn confirm(&self) {
        self.arlocal.mine(2).await.unwrap();
    }

    fn coordinator(&self) -> ArweaveWallet {
        ArweaveWallet::load(&self.coordinator_jwk).unwrap()
    }

    fn stranger(&self) -> ArweaveWallet {
        ArweaveWallet::load(&self.stranger_jwk).unwrap()
    }

    fn config(&self) -> ArweaveDaConfig {
        ArweaveDaConfig::new(&params(&key()).name, key().public_key(), self.coordinator().address())
    }

    fn gateway(&self) -> Gateway {
        self.arlocal.gateway().unwrap()
    }

    fn publisher(&self) -> ArweaveDa {
        ArweaveDa::publisher(self.gateway(), self.config(), self.coordinator(), &self.dir.path().join("journal"))
            .unwrap()
    }

    fn follower(&self) -> ArweaveDa {
        ArweaveDa::follower(self.gateway(), self.config())
    }

    /// Posts `data` with `tags` from `wallet`, bypassing every check the publisher makes.
    async fn post_raw(&self, wallet: &ArweaveWallet, tags: Vec<Tag>, data: Vec<u8>) -> String {
        let gateway = self.gateway();
        let anchor = gateway.tx_anchor().await.unwrap();
        let reward = gateway.price_winston(data.len() as u64).await.unwrap();
        let mut tx = Transaction::with_data(data, tags, anchor, reward, wallet.owner().to_vec());
        tx.sign(wallet).unwrap();
        gateway.upload(&tx).await.unwrap();
        tx.id_b64()
    }
}

/// The tags a batch carries (docs/PROTOCOL.md), filed under `number`.
fn tags_for(batch: &SignedBatch, number: u64, prev_tx: Option<&str>) -> Vec<Tag> {
    let mut tags = vec![
        Tag::new("App-Name", "settlement-bridge"),
        Tag::new("App-Version", "1"),
        Tag::new("Network", &params(&key()).name),
        Tag::new("Batch-Number", number.to_string()),
        Tag::new("Prev-Hash", hex::encode(batch.header.prev_hash)),
        Tag::new("State-Root", hex::encode(batch.header.post_state_root)),
        Tag::new("Codec", CODEC_NAME),
        Tag::new("Content-Type", "application/octet-stream"),
    ];
    if let Some(prev) = prev_tx {
        tags.push(Tag::new("Prev-Tx", prev));
    }
    tags
}

fn replay_all(fetched: &[chains::da::FetchedBatch], state: &mut State) {
    for f in fetched {
        bridge::batch::replay(state, &f.batch).unwrap();
    }
}

#[tokio::test]
async fn publish_and_follow_twenty_batches() {
    let net = Net::start().await;
    let key = key();
    let (all, final_state) = batches_of(20, 3, &key);
    let publisher = net.publisher();
    let follower = net.follower();

    // Unconfirmed, the first batch is invisible to a follower needing one confirmation.
    let first = publisher.publish(&all[0]).await.unwrap();
    assert_eq!(follower.fetch(1).await.unwrap(), None);
    assert_eq!(publisher.confirmations(1).await.unwrap(), Some(0));
    net.confirm().await;
    assert_eq!(follower.fetch(1).await.unwrap().unwrap().locator, first.locator);
    assert_eq!(publisher.confirmations(1).await.unwrap(), Some(1));

    for batch in &all[1..] {
        let published = publisher.publish(batch).await.unwrap();
        assert_eq!(published.number, batch.header.number);
    }
    assert_eq!(follower.latest().await.unwrap(), 1, "the rest is not confirmed yet");
    net.confirm().await;
    assert_eq!(follower.latest().await.unwrap(), 20);

    // From an empty start, a fresh follower replays to the coordinator's state.
    let fresh = net.follower();
    let fetched = fresh.batches_after(0, 100).await.unwrap();
    assert_eq!(fetched.len(), 20);
    let mut state = State::genesis(params(&key));
    replay_all(&fetched, &mut state);
    assert_eq!(state.state_root(), final_state.state_root());

    // From the middle: only what comes after, in order.
    let middle = net.follower().batches_after(10, 100).await.unwrap();
    assert_eq!(middle.iter().map(|f| f.batch.header.number).collect::<Vec<_>>(), (11..=20).collect::<Vec<_>>());
    assert_eq!(middle, fetched[10..]);
    assert!(fresh.rejections().is_empty(), "{:?}", fresh.rejections());
}

#[tokio::test]
async fn a_batch_above_the_inline_limit_travels_in_chunks() {
    let net = Net::start().await;
    let (all, _) = batches_of(1, 10_000, &key());
    let size = encode_batch(&all[0]).len() as u64;
    assert!(size > 2 * INLINE_LIMIT, "the batch must span several chunks: {size} bytes");
    let published = net.publisher().publish(&all[0]).await.unwrap();
    net.confirm().await;
    let fetched = net.follower().fetch(1).await.unwrap().unwrap();
    assert_eq!(fetched.batch, all[0]);
    assert_eq!(fetched.size as u64, size);
    // The reference client agrees with the chunked transaction we signed.
    assert_eq!(node(&["verify", net.arlocal.url(), &published.locator], &[]), "ok");
}

#[tokio::test]
async fn forgeries_are_refused_and_counted() {
    let net = Net::start().await;
    let key = key();
    let all = batches(5, &key);
    let publisher = net.publisher();
    let one = publisher.publish(&all[0]).await.unwrap();
    let two = publisher.publish(&all[1]).await.unwrap();
    let coordinator = net.coordinator();

    // Batch 3, genuine inside, but posted by another wallet.
    net.post_raw(&net.stranger(), tags_for(&all[2], 3, Some(&two.locator)), encode_batch(&all[2])).await;
    // Batch 3 from the coordinator's wallet, with a broken coordinator signature.
    let mut forged = all[2].clone();
    forged.signature[0] ^= 1;
    net.post_raw(&coordinator, tags_for(&forged, 3, Some(&two.locator)), encode_batch(&forged)).await;
    // Batch 2 filed again as number 3.
    net.post_raw(&coordinator, tags_for(&all[1], 3, Some(&two.locator)), encode_batch(&all[1])).await;
    // Batch 5, genuine, but batch 4 is missing: a gap.
    net.post_raw(&coordinator, tags_for(&all[4], 5, Some(&two.locator)), encode_batch(&all[4])).await;
    net.confirm().await;

    let follower = net.follower();
    assert_eq!(follower.latest().await.unwrap(), 2);
    assert_eq!(follower.fetch(3).await.unwrap(), None);
    assert_eq!(follower.fetch(5).await.unwrap(), None);
    let rejections = follower.rejections();
    for kind in [Rejection::BadBatch, Rejection::Misfiled, Rejection::BrokenLink] {
        assert_eq!(rejections.get(&kind), Some(&1), "{kind:?} in {rejections:?}");
    }
    // The other wallet's copy is not even fetched: the query asks for the coordinator's wallet.
    assert_eq!(rejections.get(&Rejection::WrongOwner), None, "{rejections:?}");

    // The forgeries do not stop the real batch 3.
    publisher.publish(&all[2]).await.unwrap();
    net.confirm().await;
    assert_eq!(follower.latest().await.unwrap(), 3);
    assert_eq!(follower.ids_of(1), vec![one.locator]);

    // A second, validly signed batch 4: the publisher refuses to post over it, and a follower
    // surfaces the equivocation with evidence anyone can check.
    let mut state = State::genesis(params(&key));
    for batch in &all[..3] {
        bridge::batch::replay(&mut state, batch).unwrap();
    }
    let mut builder = BatchBuilder::new(&state);
    builder.apply(&mut state, common::deposit(10_000)).unwrap();
    let rival = builder.seal(&mut state, 4, &key).unwrap().batch;
    assert_ne!(rival.hash(), all[3].hash());
    let three = follower.ids_of(3)[0].clone();
    net.post_raw(&coordinator, tags_for(&rival, 4, Some(&three)), encode_batch(&rival)).await;
    assert!(matches!(publisher.publish(&all[3]).await, Err(DaError::Conflict { number: 4, .. })));
    net.post_raw(&coordinator, tags_for(&all[3], 4, Some(&three)), encode_batch(&all[3])).await;
    net.confirm().await;
    match follower.fetch(4).await {
        Err(DaError::Equivocation(evidence)) => evidence.verify(&key.public_key()).unwrap(),
        other => panic!("expected an equivocation, got {other:?}"),
    }
    assert_eq!(follower.rejections().get(&Rejection::Equivocation), Some(&2));
}

#[tokio::test]
async fn cross_check_with_arweave_js_both_ways() {
    let net = Net::start().await;
    let all = batches(2, &key());
    // arweave-js verifies what we signed and posted.
    let one = net.publisher().publish(&all[0]).await.unwrap();
    assert_eq!(node(&["verify", net.arlocal.url(), &one.locator], &[]), "ok");

    // We verify what arweave-js signed (its salt is the longest the key allows, not ours) and a
    // follower accepts batch 2 posted by it with the coordinator's wallet.
    let tags: Vec<(&str, String)> = tags_for(&all[1], 2, Some(&one.locator))
        .into_iter()
        .map(|t| {
            let name: &'static str = String::from_utf8(t.name).unwrap().leak();
            (name, String::from_utf8(t.value).unwrap())
        })
        .collect();
    let coordinator_jwk = net.coordinator_jwk.display().to_string();
    let id = node(&["create", net.arlocal.url(), &coordinator_jwk, &hex::encode(encode_batch(&all[1]))], &tags);
    let tx = net.gateway().tx(&id).await.unwrap().unwrap();
    tx.verify().unwrap();
    let mut tampered = tx.clone();
    tampered.tags[0].value.push(b'!');
    assert!(tampered.verify().is_err(), "a changed tag breaks the signature");
    net.confirm().await;
    assert_eq!(net.follower().fetch(2).await.unwrap().unwrap().batch, all[1]);
}

#[tokio::test]
async fn a_restarted_publisher_does_not_publish_twice() {
    let net = Net::start().await;
    let all = batches(5, &key());
    let first_run: Vec<String> = {
        let publisher = net.publisher();
        let mut ids = Vec::new();
        for batch in &all[..3] {
            ids.push(publisher.publish(batch).await.unwrap().locator);
        }
        ids
    };
    // A new process with the same journal publishes everything again, from the start.
    let publisher = net.publisher();
    for (i, batch) in all.iter().enumerate() {
        let published = publisher.publish(batch).await.unwrap();
        if i < 3 {
            assert_eq!(published.locator, first_run[i]);
        }
    }
    let gateway = net.gateway();
    for n in 1..=5u64 {
        let found = gateway
            .find_owned(
                net.coordinator().address(),
                &[("App-Name", "settlement-bridge".into()), ("Batch-Number", n.to_string())],
                10,
            )
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "batch {n} is on Arweave exactly once");
    }
    // The journal keeps every batch until it is confirmed, then lets go.
    assert_eq!(publisher.settle_journal().await.unwrap(), 5);
    net.confirm().await;
    assert_eq!(publisher.settle_journal().await.unwrap(), 0);
    assert_eq!(net.follower().latest().await.unwrap(), 5);
}

/// The two numbers a coordinator's operator watches: what a posting costs and what is left.
#[tokio::test]
async fn price_and_balance_come_from_the_gateway() {
    let net = Net::start().await;
    let gateway = net.gateway();
    let coordinator = net.coordinator();
    assert_eq!(gateway.wallet_balance_winston(coordinator.address()).await.unwrap(), MINTED);
    // A wallet the network has never seen holds nothing (not an error: a new operator's wallet).
    let unseen = chains::arweave::address_of(b"a wallet nobody funded");
    assert_eq!(gateway.wallet_balance_winston(&unseen).await.unwrap(), 0);

    // The price grows with the bytes posted.
    let small = gateway.price_winston(1_000).await.unwrap();
    let large = gateway.price_winston(300_000).await.unwrap();
    assert!(0 < small && small < large, "price of 1 kB {small}, of 300 kB {large}");

    // A posting pays that price, and the balance shows it.
    let data = vec![7u8; 300_000];
    net.post_raw(&coordinator, vec![Tag::new("App-Name", "price-test")], data).await;
    net.confirm().await;
    assert_eq!(gateway.wallet_balance_winston(coordinator.address()).await.unwrap(), MINTED - large);

    // A gateway asking more than the bound for a batch is refused, and nothing is paid.
    let before = gateway.wallet_balance_winston(coordinator.address()).await.unwrap();
    let mut config = net.config();
    config.max_price_winston_per_mib = 1;
    let stingy =
        ArweaveDa::publisher(gateway.clone(), config, net.coordinator(), &net.dir.path().join("stingy")).unwrap();
    match stingy.publish(&batches(1, &key())[0]).await {
        Err(DaError::Gateway(GatewayError::PriceAboveBound { price, bound, .. })) => {
            assert!(price > bound && bound == 1, "{price} {bound}")
        }
        other => panic!("expected a price above the bound, got {other:?}"),
    }
    assert_eq!(gateway.wallet_balance_winston(coordinator.address()).await.unwrap(), before);
    assert_eq!(chains::arweave::price_bound(0, 7), 7);
    assert_eq!(chains::arweave::price_bound((1 << 20) + 1, 7), 14);

    // An address goes into the URL path: anything but an address is refused before a request.
    for bad in ["../mint/x/1", "", &"a".repeat(44), &format!("{}?", "a".repeat(42))] {
        match gateway.wallet_balance_winston(bad).await {
            Err(GatewayError::BadAddress(_)) => {}
            other => panic!("{bad:?}: expected BadAddress, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn bad_input_is_a_clear_error() {
    // Nothing listens on the port, held so nothing can while the test runs: the gateway is
    // unreachable, after the retries.
    let mut hold = loopback::PortHold::new();
    let port = hold.any().unwrap();
    let retry = RetryPolicy {
        attempts: 2,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        request_timeout: Duration::from_secs(2),
    };
    let gateway = Gateway::new(&format!("http://127.0.0.1:{port}"), retry).unwrap();
    let follower = ArweaveDa::follower(gateway, ArweaveDaConfig::new("x", key().public_key(), "nobody"));
    match follower.fetch(1).await {
        Err(DaError::Gateway(GatewayError::Unreachable { attempts: 2, .. })) => {}
        other => panic!("expected an unreachable gateway, got {other:?}"),
    }
    assert!(matches!(Gateway::new("ftp://x", RetryPolicy::default()), Err(GatewayError::BadUrl(_))));

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    assert!(matches!(ArweaveWallet::load(&missing), Err(WalletError::Unreadable { .. })));
    let write = |name: &str, text: &str| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let garbage = write("garbage.json", "not json");
    assert!(matches!(ArweaveWallet::load(&garbage), Err(WalletError::NotJwk(_))));
    let ec = write("ec.json", r#"{"kty":"EC","n":"","e":""}"#);
    assert!(matches!(ArweaveWallet::load(&ec), Err(WalletError::NotRsa(_))));
    let public_only = node(&["generate"], &[]);
    let mut jwk: serde_json::Value = serde_json::from_str(&public_only).unwrap();
    jwk.as_object_mut().unwrap().remove("d");
    let public_only = write("public.json", &jwk.to_string());
    let err = ArweaveWallet::load(&public_only).unwrap_err();
    assert!(matches!(err, WalletError::NotRsa(_)), "{err}");
    assert!(err.to_string().contains("\"d\""), "the error names the missing part: {err}");
}

#[test]
fn data_roots_agree_with_arweave_js() {
    use chains::arweave::merkle::{MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, data_root};
    let dir = tempfile::tempdir().unwrap();
    let sizes = [
        1,
        MIN_CHUNK_SIZE,
        MAX_CHUNK_SIZE,
        MAX_CHUNK_SIZE + 1,
        MAX_CHUNK_SIZE + MIN_CHUNK_SIZE - 1,
        2 * MAX_CHUNK_SIZE,
        3 * MAX_CHUNK_SIZE + 5,
        4 * MAX_CHUNK_SIZE + 40_000,
    ];
    for size in sizes {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 253) as u8).collect();
        let path = dir.path().join(format!("{size}.bin"));
        std::fs::write(&path, &data).unwrap();
        let theirs = node(&["data-root", &path.display().to_string()], &[]);
        assert_eq!(chains::arweave::to_b64(&data_root(&data)), theirs, "data_root of {size} bytes");
    }
}

/// A gateway that lies or stalls, on a raw loopback socket: `answer` maps a request line to the
/// response body (status 200), `None` to a stall longer than the client's timeout.
async fn lying_gateway(answer: impl Fn(&str) -> Option<Vec<u8>> + Send + Sync + 'static) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let line = request.lines().next().unwrap_or("").to_owned();
                match answer(&line) {
                    Some(body) => {
                        let head =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.write_all(&body).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(5)).await,
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn a_lying_or_stalled_gateway_is_a_clear_error() {
    let quick = RetryPolicy {
        attempts: 2,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        request_timeout: Duration::from_millis(500),
    };

    // A GraphQL answer of the wrong shape.
    let url = lying_gateway(|_| Some(br#"{"data":{"transactions":"nonsense"}}"#.to_vec())).await;
    let gateway = Gateway::new(&url, quick.clone()).unwrap();
    let follower = ArweaveDa::follower(gateway, ArweaveDaConfig::new("x", key().public_key(), "nobody"));
    match follower.fetch(1).await {
        Err(DaError::Gateway(GatewayError::Malformed { url, .. })) => assert!(url.ends_with("/graphql")),
        other => panic!("expected a malformed GraphQL answer, got {other:?}"),
    }

    // Data cut short: it no longer matches the data_root the transaction signs.
    let dir = tempfile::tempdir().unwrap();
    let jwk = dir.path().join("w.json");
    std::fs::write(&jwk, node(&["generate"], &[])).unwrap();
    let wallet = ArweaveWallet::load(&jwk).unwrap();
    let mut tx = Transaction::with_data(vec![7u8; 5000], Vec::new(), vec![1; 32], 1, wallet.owner().to_vec());
    tx.sign(&wallet).unwrap();
    let truncated = chains::arweave::to_b64(&tx.data[..4000]).into_bytes();
    let url = lying_gateway(move |_| Some(truncated.clone())).await;
    let gateway = Gateway::new(&url, quick.clone()).unwrap();
    match gateway.data(&tx).await {
        Err(GatewayError::Malformed { reason, .. }) => assert!(reason.contains("data_root"), "{reason}"),
        other => panic!("expected a data_root mismatch, got {other:?}"),
    }

    // A gateway that accepts connections and never answers: a timeout, retried, then given up.
    let url = lying_gateway(|_| None).await;
    let gateway = Gateway::new(&url, quick).unwrap();
    match gateway.height().await {
        Err(GatewayError::Unreachable { attempts: 2, .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// Case 1 of issue 18, against a gateway that ignores the GraphQL `owners` filter: another
/// wallet's rows are skipped where they are read (no download, no error, not counted towards
/// `max_candidates`), so they cost a skipped row each and nothing more.
#[tokio::test]
async fn rows_from_another_wallet_cost_a_skipped_row_only() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let quick = RetryPolicy {
        attempts: 2,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        request_timeout: Duration::from_secs(2),
    };
    // 100 rows tagged as batch 1, all from another wallet, in one page.
    let edges: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            serde_json::json!({ "cursor": format!("c{i}"), "node": {
                "id": format!("{i:0>43}"),
                "owner": { "address": "someone-else" },
                "tags": [{ "name": "Batch-Number", "value": "1" }],
            }})
        })
        .collect();
    let page = serde_json::json!({ "data": { "transactions": {
        "pageInfo": { "hasNextPage": false }, "edges": edges } } })
    .to_string()
    .into_bytes();
    let other_requests = Arc::new(AtomicUsize::new(0));
    let counted = other_requests.clone();
    let url = lying_gateway(move |line| {
        if line.starts_with("POST /graphql") {
            Some(page.clone())
        } else {
            counted.fetch_add(1, Ordering::SeqCst);
            Some(Vec::new())
        }
    })
    .await;
    let mut config = ArweaveDaConfig::new("x", key().public_key(), "the-coordinator");
    config.max_candidates = 10;
    let follower = ArweaveDa::follower(Gateway::new(&url, quick).unwrap(), config);
    assert_eq!(follower.fetch(1).await.unwrap(), None);
    assert_eq!(other_requests.load(Ordering::SeqCst), 0, "a foreign row was fetched");
    assert!(follower.rejections().is_empty(), "{:?}", follower.rejections());
}

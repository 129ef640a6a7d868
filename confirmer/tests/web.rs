//! The web app's routes over real HTTP on loopback (the browser's view of them is
//! ops/tests/web_app.rs): the embedded page and files with their Content-Security-Policy, the
//! explorer's reads from the replay (batches with their alarms, a batch's transaction ids, a
//! transaction's stages), clear JSON errors for bad input and a missing coordinator, and the
//! relay naming each of its clients to the coordinator's rate limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::sync::Arc;

use chains::da::{DataAvailability, DirDa};
use common::*;
use confirmer::web::{WebConfig, WebContext, router};
use serde_json::Value;
use tokio::sync::RwLock;

async fn get(base: &str, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn serve(follower: Arc<RwLock<confirmer::follower::Follower>>, config: WebConfig) -> String {
    let app = router(WebContext {
        follower,
        coordinator: None,
        http: reqwest::Client::new(),
        config,
        vault: None,
        btc_rpc: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn the_web_app_serves_its_page_the_replays_batches_and_stages_and_clear_errors() {
    let batches = history(5, 20);
    let dir = tempfile::tempdir().unwrap();
    let da = DirDa::open(dir.path().join("da"), params().coordinator_key).unwrap();
    for batch in &batches[..4] {
        da.publish(batch).await.unwrap();
    }
    // Batch 5 is doctored (a wrong state root, re-signed): an alarm the page must show.
    let mut bad = batches[4].clone();
    bad.header.post_state_root[0] ^= 1;
    da.publish(&resign(bad)).await.unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let mut confirmer = follower(&da, &url).await;
    catch_up(&mut confirmer).await;
    let follower = Arc::new(RwLock::new(confirmer));
    let base = serve(follower.clone(), WebConfig::new("/", Some("https://gw.example".into()), None).unwrap()).await;

    // The page and its files, embedded, under a policy that allows this origin only.
    let page = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.starts_with("default-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="assets/app.js">"#), "{html}");
    let script = reqwest::get(format!("{base}/assets/wallet.js")).await.unwrap();
    assert!(script.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(script.text().await.unwrap().contains("eth_signTypedData_v4"));
    assert_eq!(get(&base, "/assets/secret.txt").await.0, 404);
    assert_eq!(get(&base, "/assets/secret.txt").await.1["code"], "no_such_file");

    // The latest batches, newest first, with the alarm and the gateway's links.
    let (status, listing) = get(&base, "/web/v1/batches?limit=2").await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["replayed"], 4);
    assert_eq!(listing["hard_final"], 0, "batch 1's deposit is unchecked here");
    assert_eq!(listing["alarms"][0]["number"], 5);
    let numbers: Vec<u64> =
        listing["batches"].as_array().unwrap().iter().map(|b| b["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [4, 3]);
    let newest = &listing["batches"][0];
    assert_eq!(newest["hash"], format!("0x{}", hex::encode(batches[3].hash())));
    assert_eq!(newest["tx_count"], batches[3].header.tx_count);
    assert_eq!(newest["arweave_url"], format!("https://gw.example/tx/{}", newest["locator"].as_str().unwrap()));
    assert_eq!(get(&base, "/web/v1/batches?limit=lots").await.1["code"], "bad_query");
    let (_, all) = get(&base, "/web/v1/batches?limit=100000").await;
    assert_eq!(all["batches"].as_array().unwrap().len(), 4, "bounded, and only what was replayed");

    // A batch with its transactions' ids: a user transaction's is its EIP-712 digest.
    let (status, batch) = get(&base, "/web/v1/batches/2").await;
    assert_eq!(status, 200, "{batch}");
    let domain = bridge::eip712::Domain::new(&params());
    let bridge::BatchTx::User(user) = &batches[1].body[0] else { panic!("batch 2 starts with a user tx") };
    let hash = format!("0x{}", hex::encode(user.tx.signing_hash(&domain)));
    assert_eq!(batch["txs"][0]["id"], hash.as_str());
    assert_eq!(batch["txs"].as_array().unwrap().len(), batches[1].body.len());
    assert_eq!(get(&base, "/web/v1/batches/99").await.1["code"], "unknown_batch");
    assert_eq!(get(&base, "/web/v1/batches/two").await.1["code"], "bad_batch_number");

    // Its stages: replayed here in batch 2 (so accepted, batched and published), not hard-final;
    // the coordinator is not configured, and the page is told so.
    let (status, tx) = get(&base, &format!("/web/v1/tx/{hash}")).await;
    assert_eq!(status, 200, "{tx}");
    assert_eq!(tx["batch"], 2);
    let reached: Vec<&str> = tx["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["reached"] == true)
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(reached, ["accepted", "batched", "published"], "{tx}");
    assert_eq!(tx["stages"][3]["detail"], "batch 2 replayed, not yet verified");
    assert_eq!(tx["coordinator_error"], "this confirmer has no --coordinator to ask");
    assert_eq!(get(&base, "/web/v1/tx/0x12").await.1["code"], "bad_hex");
    let (status, unknown) = get(&base, &format!("/web/v1/tx/0x{}", "ab".repeat(32))).await;
    assert_eq!((status, unknown["code"].as_str()), (404, Some("unknown_tx")));

    // Sending needs a coordinator: a clear refusal, not a hang.
    let client = reqwest::Client::new();
    let sent = client.post(format!("{base}/web/v1/relay/tx")).body("{}").send().await.unwrap();
    assert_eq!(sent.status(), 503);
    let body: Value = sent.json().await.unwrap();
    assert_eq!(body["code"], "no_coordinator");
    assert!(body["message"].as_str().unwrap().contains("--coordinator"));
    assert_eq!(get(&base, "/web/v1/relay/accounts/0x12").await.1["code"], "bad_address");

    // Under a path of its own: the page there, the bare path redirected to it.
    let base = serve(follower, WebConfig::new("/app", None, None).unwrap()).await;
    assert_eq!(reqwest::get(format!("{base}/app/")).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(format!("{base}/app/assets/app.js")).await.unwrap().status(), 200);
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let bare = no_redirects.get(format!("{base}/app")).send().await.unwrap();
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], "/app/");
}

/// Who could stop every user of a confirmer's page: one of them, using up the rate limit the
/// coordinator gives the confirmer (every relayed call came from the confirmer's address). The
/// relay names its client in `X-Forwarded-For`, and a coordinator that trusts the confirmer
/// counts each client alone: one client over its limit is refused, another is still served.
#[tokio::test]
async fn the_relay_names_its_client_so_one_page_user_cannot_use_up_the_limit_for_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = coordinator_config(dir.path(), &params());
    // Two requests at once per client, then one every hundred seconds.
    config.api.rate_limit_per_second = 0.01;
    config.api.rate_limit_burst = 2.0;
    config.api.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let node = coordinator::node::Node::start(&config).await.unwrap();

    let da = DirDa::open(dir.path().join("da"), params().coordinator_key).unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let follower = Arc::new(RwLock::new(follower(&da, &url).await));
    let app = router(WebContext {
        follower,
        coordinator: Some(node.url()),
        http: reqwest::Client::new(),
        config: WebConfig::new("/", None, None).unwrap(),
        vault: None,
        btc_rpc: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap()
    });
    // Two users of the page, on two loopback addresses.
    let user =
        |last: u8| reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, last])).build().unwrap();
    let (first, second) = (user(2), user(3));
    let account = format!("{base}/web/v1/relay/accounts/{}", wallet(1).address());

    for _ in 0..2 {
        assert_eq!(first.get(&account).send().await.unwrap().status(), 200);
    }
    let refused = first.get(&account).send().await.unwrap();
    assert_eq!(refused.status(), 429, "the first user is over its own limit");
    let error: Value = refused.json().await.unwrap();
    assert!(error["message"].as_str().unwrap().contains("127.0.0.2"), "{error}");
    assert_eq!(second.get(&account).send().await.unwrap().status(), 200, "the second user was stopped by the first");

    // A client's own X-Forwarded-For is not passed on: it cannot borrow another's bucket.
    let claimed = first.get(&account).header("x-forwarded-for", "192.0.2.9").send().await.unwrap();
    assert_eq!(claimed.status(), 429);
    node.shutdown().await;
}

//! Passkey accounts through the HTTP API, over real HTTP on loopback, on SQLite and (when
//! `DATABASE_URL` is set) PostgreSQL: an honest assertion is accepted and batched; each bad
//! assertion is refused with its status and code, and changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bridge::eip712::Domain;
use bridge::passkey::software::{Ceremony, SoftwarePasskey};
use bridge::passkey::{WebAuthnParams, base64url, p256_negate_s};
use bridge::signature::Authorization;
use bridge::tx::{SignedUserTx, Transfer, UserTx, Withdraw};
use bridge::{Address, Amount, AssetId, NetworkParams};
use common::*;
use coordinator::api::request::TxRequest;
use coordinator::node::Node;
use reqwest::StatusCode;
use serde_json::{Value, json};

const ORIGIN: &str = "http://localhost:8081";

fn passkey_params() -> NetworkParams {
    let mut p = params();
    p.webauthn = Some(WebAuthnParams {
        rp_id: "localhost".into(),
        allowed_origins: vec![ORIGIN.into()],
        require_user_verification: false,
    });
    p
}

fn honest() -> Ceremony {
    Ceremony::new("localhost", ORIGIN)
}

fn transfer(from: Address, to: Address, nonce: u64) -> UserTx {
    UserTx::Transfer(Transfer { from, to, asset: AssetId::Eth, amount: Amount(1_000), fee: Amount(0), nonce })
}

fn request(signed: &SignedUserTx) -> Value {
    serde_json::to_value(TxRequest::from_signed(signed)).unwrap()
}

async fn start(ledger: &Ledger, dir: &std::path::Path, funded: Address) -> Node {
    let mut config = node_config(dir, &ledger.url, 0);
    config.network = coordinator::config::NetworkConfig::from(&passkey_params());
    let deposits = json!([{ "account": funded, "asset": "eth:ETH", "amount": ONE_ETH.to_string() }]);
    let path = dir.join("deposits.json");
    std::fs::write(&path, serde_json::to_vec(&deposits).unwrap()).unwrap();
    config.dev.deposits = Some(path);
    Node::start(&config).await.unwrap()
}

async fn get(http: &reqwest::Client, url: String) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

async fn post(http: &reqwest::Client, url: String, body: &Value) -> (StatusCode, Value) {
    let response = http.post(url).json(body).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn eth_balance(account: &Value) -> u128 {
    account["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["asset"] == "eth:ETH")
        .map_or(0, |b| b["amount"].as_str().unwrap().parse().unwrap())
}

#[tokio::test]
async fn passkey_transactions_are_accepted_and_bad_assertions_refused_with_their_codes() {
    let key = SoftwarePasskey::from_seed(5).unwrap();
    let thief = SoftwarePasskey::from_seed(6).unwrap();
    let bob = wallet(2).address();
    let domain = Domain::new(&passkey_params());
    for ledger in ledgers().await {
        let dir = tempfile::tempdir().unwrap();
        let node = start(&ledger, dir.path(), key.address()).await;
        let http = reqwest::Client::new();
        let base = node.url();
        let account_url = format!("{base}/accounts/{}", key.address());
        eventually(60, "the dev deposit to the passkey account", || async {
            (eth_balance(&get(&http, account_url.clone()).await) == ONE_ETH).then_some(())
        })
        .await;
        let info = get(&http, format!("{base}/info")).await;
        assert_eq!(info["params"]["webauthn"]["rp_id"], "localhost", "{info}");

        // The first transfer carries the key, as every passkey transaction does.
        let first = key.sign(transfer(key.address(), bob, 0), &domain, &honest());
        let (status, body) = post(&http, format!("{base}/tx"), &request(&first)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["hash"], format!("0x{}", hex::encode(first.tx.signing_hash(&domain))));
        let before = get(&http, account_url.clone()).await;
        assert_eq!(eth_balance(&before), ONE_ETH - 1_000);

        // Every bad assertion over the next transaction (nonce 1).
        let next = transfer(key.address(), bob, 1);
        let sign = |ceremony: Ceremony| key.sign(next.clone(), &domain, &ceremony);
        let mut high_s = sign(honest());
        let mut by_thief_with_victim_key = thief.sign(next.clone(), &domain, &honest());
        if let (Authorization::WebAuthnP256 { assertion: a }, Authorization::WebAuthnP256 { assertion: b }) =
            (&mut high_s.auth, &mut by_thief_with_victim_key.auth)
        {
            let s: [u8; 32] = a.signature[32..].try_into().unwrap();
            a.signature[32..].copy_from_slice(&p256_negate_s(&s));
            b.public_key = key.public_key();
        }
        let old_digest = first.tx.signing_hash(&domain);
        let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
            (
                "wrong challenge (an earlier transaction's digest)",
                request(&sign(Ceremony { challenge: Some(base64url(&old_digest)), ..honest() })),
                StatusCode::UNAUTHORIZED,
                "passkey_wrong_challenge",
            ),
            (
                "wrong origin",
                request(&sign(Ceremony { origin: "https://phish.example".into(), ..honest() })),
                StatusCode::UNAUTHORIZED,
                "passkey_wrong_origin",
            ),
            (
                "wrong RP ID",
                request(&sign(Ceremony { rp_id: "phish.example".into(), ..honest() })),
                StatusCode::UNAUTHORIZED,
                "passkey_wrong_rp_id",
            ),
            (
                "user presence clear",
                request(&sign(Ceremony { flags: 0x00, ..honest() })),
                StatusCode::UNAUTHORIZED,
                "passkey_user_not_present",
            ),
            ("high s", request(&high_s), StatusCode::UNAUTHORIZED, "passkey_high_s"),
            (
                "another passkey, its own key",
                request(&thief.sign(next.clone(), &domain, &honest())),
                StatusCode::UNAUTHORIZED,
                "passkey_signer_mismatch",
            ),
            (
                "another passkey's signature under the account's key",
                request(&by_thief_with_victim_key),
                StatusCode::UNAUTHORIZED,
                "passkey_bad_signature",
            ),
            (
                "a create ceremony's type",
                request(&sign(Ceremony { kind: "webauthn.create".into(), ..honest() })),
                StatusCode::UNAUTHORIZED,
                "passkey_wrong_type",
            ),
            (
                "a passkey object with a field missing",
                {
                    let mut r = request(&sign(honest()));
                    r["passkey"].as_object_mut().unwrap().remove("client_data_json");
                    r
                },
                StatusCode::BAD_REQUEST,
                "bad_passkey",
            ),
            (
                "both a signature and a passkey",
                {
                    let mut r = request(&sign(honest()));
                    r["signature"] = json!(format!("0x{}", "11".repeat(65)));
                    r
                },
                StatusCode::BAD_REQUEST,
                "two_authorizations",
            ),
        ];
        for (case, body, status, code) in &cases {
            let (got_status, got) = post(&http, format!("{base}/tx"), body).await;
            assert_eq!((got_status, got["code"].as_str()), (*status, Some(*code)), "{case}: {got}");
            assert!(!got["message"].as_str().unwrap_or_default().is_empty(), "{case}: a message says why");
            // The batch endpoint refuses it the same way, as one result among others.
            let (batch_status, results) = post(&http, format!("{base}/txs"), &json!([body])).await;
            assert_eq!(batch_status, StatusCode::OK);
            assert_eq!(results["results"][0]["error"]["code"], *code, "{case} in POST /txs");
        }
        assert_eq!(get(&http, account_url.clone()).await, before, "refusals change nothing");

        // The honest nonce-1 transaction and a withdrawal to an L1 address then go through.
        let (status, body) = post(&http, format!("{base}/tx"), &request(&sign(honest()))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let withdraw = UserTx::Withdraw(Withdraw {
            from: key.address(),
            asset: AssetId::Eth,
            amount: Amount(5_000),
            fee: Amount(0),
            recipient: "0x5151515151515151515151515151515151515151".into(),
            nonce: 2,
        });
        let signed = key.sign(withdraw, &domain, &honest());
        let (status, body) = post(&http, format!("{base}/tx"), &request(&signed)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let hash = body["hash"].as_str().unwrap().to_owned();
        eventually(60, "the withdrawal published in a batch", || async {
            let tx = get(&http, format!("{base}/tx/{hash}")).await;
            (tx["status"] == "published").then_some(())
        })
        .await;
        assert_eq!(eth_balance(&get(&http, account_url.clone()).await), ONE_ETH - 7_000);
        node.shutdown().await;
    }
}

//! The operators govern the vault, every watchman a process: a real 2-of-3 DKG, the vault on
//! anvil, a coordinator publishing a withdrawal to the DA, three `watchman` processes each with
//! its own admin endpoint and token. One guardian pauses the vault; one approval (t − 1) does not
//! unpause it and the session's refusals say why; approvals for another nonce or that expired do
//! not count; two approvals unpause it and the withdrawal is paid; a cap needs two approvals of
//! exactly its parameters, then the vault holds it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alloy::primitives::{Address as EthAddress, U256};
use alloy::providers::Provider;
use bridge::{AssetId, UserTx, Withdraw};
use common::coordinator_api::{balance, submit};
use common::*;
use confirmer::watchman::admin::{AdminAction, Approval, ApprovalsView, ApproveRequest, ErrorBody, ProposeRequest};
use contracts::harness::Setup;
use contracts::{Vault, from_alloy, to_alloy};
use coordinator::node::Node;
use serde_json::Value;
use tss::GroupKey;
use tss::keystore::{self, KdfParams, Passphrase};

const PASSPHRASE: &str = "a test passphrase";
const TEST_KDF: KdfParams = KdfParams { memory_kib: 1024, passes: 1, lanes: 1 };
/// Anvil's accounts 2 and 3: the gas payers of watchmen 0 and 1 (0 deploys, 1 is the guardian).
const SENDER_KEYS: [&str; 2] = [
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];

struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One watchman as its operator reaches it: the admin endpoint with the token, and the public
/// listener.
struct Operator {
    admin: String,
    public: String,
    token_file: PathBuf,
}

impl Operator {
    fn token(&self) -> String {
        std::fs::read_to_string(&self.token_file).unwrap().trim().to_owned()
    }

    async fn approve(&self, http: &reqwest::Client, request: &ApproveRequest) -> Approval {
        let response = http
            .post(format!("{}/admin/approvals", self.admin))
            .bearer_auth(self.token())
            .json(request)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        response.json().await.unwrap()
    }

    /// The proposal's outcome: the vault's transaction, or the refusals by code.
    async fn propose(&self, http: &reqwest::Client, action: AdminAction) -> Result<Value, ErrorBody> {
        let request = ProposeRequest { action, nonce: None, epoch: None };
        let response = http
            .post(format!("{}/admin/propose", self.admin))
            .bearer_auth(self.token())
            .json(&request)
            .send()
            .await
            .unwrap();
        if response.status().is_success() {
            Ok(response.json().await.unwrap())
        } else {
            assert_eq!(response.status(), 409);
            Err(response.json().await.unwrap())
        }
    }

    async fn approvals(&self, http: &reqwest::Client) -> ApprovalsView {
        http.get(format!("{}/approvals", self.public)).send().await.unwrap().json().await.unwrap()
    }
}

/// Polls `step` until it finds something; the machine is shared, so the deadline is generous.
async fn until<T>(what: &str, mut step: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..1_200 {
        if let Some(found) = step().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The pairs sorted, as [`codes`] gives them (peer ids are random, so their order is too).
fn sorted(mut pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    pairs.sort();
    pairs
}

fn codes(refused: &ErrorBody) -> Vec<(String, String)> {
    let mut codes: Vec<_> = refused.refusals.iter().map(|r| (r.peer.clone(), r.code.clone())).collect();
    codes.sort();
    codes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_unpauses_and_sets_caps_only_with_t_operators_approvals() {
    let identities: Vec<_> = (0..3).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
    let peers: Vec<String> = identities.iter().map(|k| k.public().to_peer_id().to_string()).collect();
    let shares = dkg(&identities).await;
    let group = GroupKey::of(&shares[0].public).unwrap();

    // The vault, with anvil's account 1 as its guardian.
    let setup = Setup::new().await.unwrap();
    let guardian = contracts::ANVIL_KEY_1.parse::<alloy::signers::local::PrivateKeySigner>().unwrap().address();
    let vault = Vault::deploy(setup.provider.clone(), U256::from_be_bytes(group.output_key), guardian).await.unwrap();
    let vault_address = *vault.address();

    // A deposit, credited; then the guardian pauses the vault; then a withdrawal is requested and
    // published to the DA.
    let dir = tempfile::tempdir().unwrap();
    let mut p = params();
    p.eth_vault = from_alloy(vault_address);
    p.chain_id = setup.chain_id;
    let coordinator = Node::start(&coordinator_watching(dir.path(), &p, setup.anvil.url())).await.unwrap();
    let user = wallet(1);
    let recipient = bridge::Address([0x5e; 20]);
    vault
        .depositETH(to_alloy(user.address()))
        .value(U256::from(1_000_000u64))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let _: Value = setup.provider.raw_request("anvil_mine".into(), (2,)).await.unwrap();
    until("the deposit credited", async || {
        (balance(&coordinator, user.address(), AssetId::Eth).await == 1_000_000).then_some(())
    })
    .await;
    let (guardian_provider, _) =
        chains::ethereum::signing_provider(&setup.anvil.url(), &Default::default(), contracts::ANVIL_KEY_1).unwrap();
    assert!(
        chains::ethereum::pause_vault(&guardian_provider, p.eth_vault, &Default::default()).await.unwrap().is_some()
    );
    assert!(vault.paused().call().await.unwrap(), "one guardian paused the vault");
    let withdraw = UserTx::Withdraw(Withdraw {
        from: user.address(),
        asset: AssetId::Eth,
        amount: bridge::Amount(400_000),
        fee: bridge::Amount(0),
        recipient: recipient.to_string(),
        nonce: 0,
    });
    submit(&coordinator, &user.sign(withdraw, &bridge::eip712::Domain::new(&p))).await;
    coordinator.shutdown().await;

    // Three watchman processes; 0 and 1 pay gas for the vault's calls.
    let entries = entries_on(&identities, &mesh_ports(3));
    let ports = free_ports(6);
    let mut roster = String::from("threshold = 2\n");
    for entry in &entries {
        roster.push_str(&format!("\n[[watchman]]\npeer_id = \"{}\"\naddress = \"{}\"\n", entry.peer_id, entry.address));
    }
    std::fs::write(dir.path().join("watchmen.toml"), roster).unwrap();
    std::fs::write(dir.path().join("params.json"), serde_json::to_vec_pretty(&p).unwrap()).unwrap();
    let passphrase = Passphrase::new(PASSPHRASE).unwrap();
    let mut processes = Processes(Vec::new());
    let mut operators = Vec::new();
    for (i, identity) in identities.iter().enumerate() {
        let home = dir.path().join(format!("watchman-{i}"));
        std::fs::create_dir_all(&home).unwrap();
        keystore::save_identity(&home.join("identity.key"), identity, &passphrase, TEST_KDF).unwrap();
        shares[i].save(&home.join("share.key"), &passphrase, TEST_KDF).unwrap();
        let sender = match SENDER_KEYS.get(i) {
            Some(key) => {
                std::fs::write(home.join("sender.key"), key).unwrap();
                "sender_key_file = \"sender.key\"\n"
            }
            None => "",
        };
        let (public, admin) = (format!("127.0.0.1:{}", ports[i]), format!("127.0.0.1:{}", ports[3 + i]));
        let config = format!(
            r#"params = "../params.json"
database_url = "sqlite://{db}"
interval_ms = 200
listen = "{public}"

[mesh]
watchmen = "../watchmen.toml"
identity = "identity.key"
share = "share.key"
session_timeout_s = 20

[da]
dir = "../da"

[ethereum]
rpc = "{rpc}"
finality = "depth"
depth = 1
{sender}
[admin]
listen = "{admin}"
"#,
            db = home.join("watchman.db").display(),
            rpc = setup.anvil.url(),
        );
        std::fs::write(home.join("watchman.toml"), config).unwrap();
        let log = std::fs::File::create(home.join("watchman.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_watchman"))
            .arg("--config")
            .arg(home.join("watchman.toml"))
            .env("WATCHMAN_PASSPHRASE", PASSPHRASE)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        processes.0.push(child);
        operators.push(Operator {
            admin: format!("http://{admin}"),
            public: format!("http://{public}"),
            token_file: home.join("admin.token"),
        });
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();

    // Every watchman is up, has replayed the withdrawal, and made its owner-only token.
    for (i, operator) in operators.iter().enumerate() {
        until("a watchman's health with the batch hard-final", async || {
            for child in &mut processes.0 {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("a watchman exited with {status}: {}", logs(dir.path()));
                }
            }
            let health: Value = http.get(format!("{}/health", operator.public)).send().await.ok()?.json().await.ok()?;
            (health["hard_final"].as_u64()? >= 1).then_some(())
        })
        .await;
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&operator.token_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "watchman {i}'s token");
    }
    let unpaid = setup.balance(EthAddress::from(recipient.0)).await.unwrap();
    assert_eq!(unpaid, U256::ZERO, "nothing leaves a paused vault");

    // Without the token, or with another operator's, nothing is recorded.
    let request = ApproveRequest { action: AdminAction::Unpause, nonce: None, epoch: None, expires_in_s: None };
    let stranger = http.post(format!("{}/admin/approvals", operators[0].admin)).json(&request).send().await.unwrap();
    assert_eq!(stranger.status(), 401);
    let other = http
        .post(format!("{}/admin/approvals", operators[0].admin))
        .bearer_auth(operators[1].token())
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 401);

    // t − 1 = one approval: the session fails, and each refusal says why.
    let approved = operators[0].approve(&http, &request).await;
    assert_eq!((approved.message.nonce, approved.message.epoch), (0, 0), "the vault's own nonce and epoch");
    let refused = operators[0].propose(&http, AdminAction::Unpause).await.unwrap_err();
    assert_eq!(
        codes(&refused),
        sorted(vec![(peers[1].clone(), "not-approved".into()), (peers[2].clone(), "not-approved".into())]),
        "{refused:?}"
    );
    assert!(refused.refusals.iter().all(|r| r.reason.starts_with("not approved by this operator")), "{refused:?}");
    assert!(vault.paused().call().await.unwrap(), "one approval does not unpause");

    // An approval of another nonce, and one that has expired, do not count either.
    operators[1].approve(&http, &ApproveRequest { nonce: Some(7), ..request.clone() }).await;
    let short = operators[2].approve(&http, &ApproveRequest { expires_in_s: Some(1), ..request.clone() }).await;
    until("watchman 2's approval to expire", async || {
        (operators[2].approvals(&http).await.now_s >= short.expires_at_s).then_some(())
    })
    .await;
    let refused = operators[0].propose(&http, AdminAction::Unpause).await.unwrap_err();
    assert_eq!(
        codes(&refused),
        sorted(vec![(peers[1].clone(), "wrong-nonce".into()), (peers[2].clone(), "expired".into())]),
        "{refused:?}"
    );
    assert!(vault.paused().call().await.unwrap());

    // The second operator approves exactly the message: two of three agree, the vault resumes,
    // and the withdrawal waiting behind the pause is paid.
    operators[1].approve(&http, &request).await;
    let done = operators[0].propose(&http, AdminAction::Unpause).await.unwrap();
    let mut signers: Vec<String> =
        done["signers"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
    signers.sort();
    let mut expected = vec![peers[0].clone(), peers[1].clone()];
    expected.sort();
    assert_eq!(signers, expected, "the two operators who approved signed: {done}");
    assert!(!vault.paused().call().await.unwrap(), "t approvals unpause");
    assert_eq!(vault.adminNonce().call().await.unwrap(), 1);
    let paid = until("the withdrawal paid after the unpause", async || {
        let now = setup.balance(EthAddress::from(recipient.0)).await.unwrap();
        (now > U256::ZERO).then_some(now)
    })
    .await;
    assert_eq!(paid, U256::from(400_000u64), "the recipient is paid the withdrawal exactly");

    // A cap: watchman 2's operator approved other parameters, so it does not count.
    let cap = AdminAction::SetCap { token: bridge::Address::ZERO, limit: 1_000_000_000, window_secs: 3_600 };
    let other_cap = AdminAction::SetCap { token: bridge::Address::ZERO, limit: 5, window_secs: 3_600 };
    let approve_cap = |action: AdminAction| ApproveRequest { action, nonce: None, epoch: None, expires_in_s: None };
    operators[1].approve(&http, &approve_cap(cap.clone())).await;
    operators[2].approve(&http, &approve_cap(other_cap)).await;
    let refused = operators[1].propose(&http, cap.clone()).await.unwrap_err();
    assert_eq!(
        codes(&refused),
        sorted(vec![(peers[0].clone(), "not-approved".into()), (peers[2].clone(), "not-approved".into())]),
        "{refused:?}"
    );
    let differs = refused.refusals.iter().find(|r| r.peer == peers[2]).unwrap();
    assert!(differs.reason.contains("it approved set-cap") && differs.reason.contains("limit 5 "), "{differs:?}");
    assert_eq!(vault.caps(EthAddress::ZERO).call().await.unwrap().limit, 0, "no cap yet");
    operators[2].approve(&http, &approve_cap(cap.clone())).await;
    operators[1].propose(&http, cap).await.unwrap();
    let held = vault.caps(EthAddress::ZERO).call().await.unwrap();
    assert_eq!((held.limit, held.window), (1_000_000_000, 3_600), "the vault holds the cap two operators approved");
    assert_eq!(vault.adminNonce().call().await.unwrap(), 2);

    // Every watchman shows what its operator approved, for `bridgectl admin status`.
    let view = operators[1].approvals(&http).await;
    assert_eq!((view.peer_id.as_str(), view.threshold), (peers[1].as_str(), 2));
    assert!(view.approvals.iter().any(|a| a.message.action.kind() == "set-cap"), "{:?}", view.approvals);
}

fn logs(dir: &Path) -> String {
    (0..3)
        .map(|i| std::fs::read_to_string(dir.join(format!("watchman-{i}/watchman.log"))).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

//! The web app in a real headless Chromium (Debian's `chromium`, driven over the DevTools
//! protocol by crate `chromiumoxide`) against a real devnet (`bridgectl devnet up`: arlocal,
//! anvil, the regtest node, the coordinator, a confirmer serving the app, five watchmen):
//! - the explorer shows the latest batches, a batch's transactions and a transaction's stages;
//! - a wallet flow through an EIP-1193 provider injected into the page by this test (a stand-in
//!   for MetaMask, marked as the test's on the page, signing with a real key here and sending
//!   real transactions to anvil, and refusing typed data whose domain `chainId` is not the
//!   connected chain's, as MetaMask does): connect, deposit ether to the vault, transfer, and
//!   withdraw, paid on anvil;
//! - the account's proofs checked in the browser against the hard-final root, the Bitcoin deposit
//!   address with its QR code, and the page at phone width without horizontal scrolling;
//! - a passkey account through DevTools' virtual authenticator (`web_app/passkey.rs`): created,
//!   credited a deposit, transferring and withdrawing, paid on anvil.
//!
//! A screenshot of each page is saved under `$CARGO_TARGET_TMPDIR/web-app/` for a reviewer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address as EthAddress, Bytes, U256};
use alloy::providers::{Provider, ProviderBuilder, ext::AnvilApi};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::page::AddScriptToEvaluateOnNewDocumentParams;
use chromiumoxide::cdp::js_protocol::runtime::{AddBindingParams, EventBindingCalled};
use chromiumoxide::listeners::EventStream;
use chromiumoxide::page::{Page, ScreenshotParams};
use futures::StreamExt;
use serde_json::{Value, json};

/// How long any one thing the page should show may take: a withdrawal's payout on the devnet
/// takes seconds (batches every 500 ms, anvil a block a second); a minute and a half is room
/// for a loaded machine, and the wait ends as soon as the page shows it.
const PAGE_DEADLINE: Duration = Duration::from_secs(90);

#[path = "web_app/passkey.rs"]
mod passkey;

fn devnet(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bridgectl"));
    command.env_remove("DATABASE_URL").arg("devnet").arg("--dir").arg(dir);
    command
}

/// This test's devnet (free ports, a temporary directory), stopped however the test ends.
struct Devnet {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    state: Value,
    /// What `devnet up` printed.
    printed: String,
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
        Devnet { _tmp: tmp, dir, state, printed: String::from_utf8_lossy(&up.stdout).into_owned() }
    }

    fn endpoint(&self, name: &str) -> String {
        self.state["endpoints"][name].as_str().unwrap().to_owned()
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = devnet(&self.dir).arg("down").output();
    }
}

/// The EIP-1193 provider this test injects: every request goes to the test through a DevTools
/// binding, and the answer comes back through `__testWalletSettle`.
const TEST_PROVIDER: &str = r#"
(() => {
  let next = 0;
  const waiting = new Map();
  window.__testWalletSettle = (id, ok, value) => {
    const entry = waiting.get(id);
    if (!entry) return;
    waiting.delete(id);
    if (ok) entry.resolve(value);
    else entry.reject(Object.assign(new Error(value.message), { code: value.code }));
  };
  window.ethereum = {
    isTestWallet: true,
    request({ method, params }) {
      const id = ++next;
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        window.__testWalletRequest(JSON.stringify({ id, method, params: params || [] }));
      });
    },
  };
})();
"#;

/// The test's wallet: a real key, a real node, MetaMask's chain rule.
#[derive(Clone)]
struct TestWallet {
    signer: PrivateKeySigner,
    eth_rpc: String,
    chain_id: u64,
}

impl TestWallet {
    async fn answer(&self, method: &str, params: &Value) -> Result<Value, (i64, String)> {
        let address = self.signer.address();
        match method {
            "eth_requestAccounts" | "eth_accounts" => Ok(json!([address.to_checksum(None)])),
            "eth_chainId" => Ok(json!(format!("0x{:x}", self.chain_id))),
            "wallet_switchEthereumChain" => {
                let asked = params[0]["chainId"].as_str().unwrap_or_default();
                if asked == format!("0x{:x}", self.chain_id) {
                    Ok(Value::Null)
                } else {
                    Err((4902, format!("Unrecognized chain ID {asked:?}")))
                }
            }
            "eth_signTypedData_v4" => {
                let from = params[0].as_str().unwrap_or_default();
                if !from.eq_ignore_ascii_case(&address.to_string()) {
                    return Err((4100, format!("the requested account {from} is not this wallet's")));
                }
                let typed: alloy_dyn_abi::eip712::TypedData =
                    serde_json::from_str(params[1].as_str().unwrap_or_default())
                        .map_err(|e| (-32602, e.to_string()))?;
                // MetaMask's rule: the domain's chainId must be the chain the wallet is on.
                let domain_chain = typed.domain.chain_id.map(|c| c.to::<u64>());
                if domain_chain != Some(self.chain_id) {
                    return Err((
                        -32602,
                        format!(
                            "Provided chainId \"{}\" must match the active chainId \"{}\"",
                            domain_chain.map(|c| c.to_string()).unwrap_or_default(),
                            self.chain_id
                        ),
                    ));
                }
                let hash = typed.eip712_signing_hash().map_err(|e| (-32602, e.to_string()))?;
                let signature = self.signer.sign_hash_sync(&hash).map_err(|e| (-32603, e.to_string()))?;
                Ok(json!(format!("0x{}", hex::encode(signature.as_bytes()))))
            }
            "eth_sendTransaction" => {
                let tx = &params[0];
                let to: EthAddress =
                    tx["to"].as_str().unwrap_or_default().parse().map_err(|_| (-32602, "bad to".into()))?;
                let value = tx["value"]
                    .as_str()
                    .map(|v| U256::from_str_radix(v.trim_start_matches("0x"), 16).unwrap_or_default())
                    .unwrap_or_default();
                let data: Bytes =
                    tx["data"].as_str().unwrap_or("0x").parse().map_err(|_| (-32602, "bad data".into()))?;
                let provider = ProviderBuilder::new()
                    .wallet(EthereumWallet::from(self.signer.clone()))
                    .connect_http(self.eth_rpc.parse().unwrap());
                let request = TransactionRequest::default().with_to(to).with_value(value).with_input(data);
                let pending = provider.send_transaction(request).await.map_err(|e| (-32603, e.to_string()))?;
                let receipt = pending.get_receipt().await.map_err(|e| (-32603, e.to_string()))?;
                if !receipt.status() {
                    return Err((-32603, format!("transaction {} reverted", receipt.transaction_hash)));
                }
                Ok(json!(receipt.transaction_hash.to_string()))
            }
            other => Err((4200, format!("the test wallet does not support {other}"))),
        }
    }

    /// Answers the page's requests until the page goes away.
    async fn serve(self, page: Page, mut calls: EventStream<EventBindingCalled>) {
        while let Some(call) = calls.next().await {
            if call.name != "__testWalletRequest" {
                continue;
            }
            let request: Value = serde_json::from_str(&call.payload).unwrap();
            let id = request["id"].as_u64().unwrap();
            let method = request["method"].as_str().unwrap_or_default().to_owned();
            let wallet = self.clone();
            let page = page.clone();
            tokio::spawn(async move {
                let (ok, value) = match wallet.answer(&method, &request["params"]).await {
                    Ok(value) => (true, value),
                    Err((code, message)) => (false, json!({ "code": code, "message": message })),
                };
                let _ = page.evaluate_expression(format!("window.__testWalletSettle({id}, {ok}, {value})")).await;
            });
        }
    }
}

/// Evaluates `expression` in the page (awaiting a promise); its value as JSON.
async fn eval(page: &Page, expression: &str) -> Value {
    match page.evaluate_expression(expression).await {
        Ok(result) => result.into_value::<Value>().unwrap_or(Value::Null),
        Err(error) => panic!("{expression} failed in the page: {error}"),
    }
}

/// Polls `expression` in the page until it is truthy; the page's text on failure.
async fn until(page: &Page, what: &str, expression: &str) -> Value {
    let start = Instant::now();
    loop {
        // An exception (the element not there yet) is "not yet".
        let value = match page.evaluate_expression(expression).await {
            Ok(result) => result.into_value::<Value>().unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if !(value.is_null() || value == json!(false) || value == json!("")) {
            return value;
        }
        if start.elapsed() > PAGE_DEADLINE {
            let text = eval(page, "document.body.innerText").await;
            panic!("the page never showed {what}; it shows:\n{}", text.as_str().unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn screenshot(page: &Page, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-app");
    std::fs::create_dir_all(&dir).unwrap();
    page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), dir.join(name)).await.unwrap();
}

/// Loads `url` afresh (by way of a blank page, so a change of the fragment alone is a new load).
async fn go(page: &Page, url: &str) {
    page.goto("about:blank").await.unwrap();
    page.goto(url).await.unwrap();
}

/// Sets a form's fields by id and submits it with its button.
async fn submit(page: &Page, form: &str, fields: &[(&str, &str)]) {
    let mut script = String::new();
    for (id, value) in fields {
        script.push_str(&format!("document.getElementById({id:?}).value = {value:?};"));
    }
    script.push_str(&format!("document.querySelector('#{form} button').click(); true"));
    eval(page, &script).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_explorer_and_a_wallet_work_in_chromium_against_the_devnet() {
    let devnet = Devnet::up();
    let confirmer = devnet.endpoint("confirmer");
    // The printed URL names `localhost`: the origin the devnet's passkey rules allow.
    let web = confirmer.replace("://127.0.0.1:", "://localhost:");
    assert!(devnet.printed.contains(&format!("{web}/")), "devnet up prints the web app's URL:\n{}", devnet.printed);
    let eth_rpc = devnet.endpoint("eth_rpc");
    let chain_id = devnet.state["endpoints"]["eth_chain_id"].as_u64().unwrap();
    let signer = PrivateKeySigner::random();
    let me = signer.address();
    let anvil = ProviderBuilder::new().connect_http(eth_rpc.parse().unwrap());
    anvil.anvil_set_balance(me, U256::from(10u128.pow(20))).await.unwrap();

    let profile = tempfile::tempdir().unwrap();
    let config = BrowserConfig::builder()
        .chrome_executable("/usr/bin/chromium")
        // As root in a container: no sandbox, and no reliance on a large /dev/shm or a GPU.
        .no_sandbox()
        .args(["--disable-dev-shm-usage", "--disable-gpu"])
        .user_data_dir(profile.path())
        .window_size(1200, 900)
        .viewport(None)
        .build()
        .unwrap();
    let (mut browser, mut handler) =
        Browser::launch(config).await.expect("chromium starts (ops/system-deps.sh installs it)");
    let driver = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let page = browser.new_page("about:blank").await.unwrap();
    page.execute(AddBindingParams::new("__testWalletRequest")).await.unwrap();
    page.execute(AddScriptToEvaluateOnNewDocumentParams::new(TEST_PROVIDER)).await.unwrap();
    let wallet = TestWallet { signer, eth_rpc: eth_rpc.clone(), chain_id };
    let calls = page.event_listener::<EventBindingCalled>().await.unwrap();
    tokio::spawn(wallet.serve(page.clone(), calls));

    // The explorer: the devnet's demo deposits are in the first batches.
    go(&page, &format!("{confirmer}/")).await;
    until(&page, "the latest batches", "document.querySelectorAll('[data-testid=batches] tbody tr').length > 0").await;
    let hard_final_shown =
        eval(&page, "document.querySelector('[data-testid=batches]').innerText.includes('hard-final')").await;
    assert_eq!(hard_final_shown, json!(true), "a hard-final batch is marked so");
    screenshot(&page, "explorer-batches.png").await;
    // The page's proof checker against the protocol's state-tree vectors: every proof holds
    // against its root, none against a root one bit off.
    let vectors =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/vectors/state-tree.json")).unwrap();
    let checked = eval(
        &page,
        &format!(
            "import('/assets/proof.js').then(async (m) => {{ const v = {vectors}; let n = 0;
               for (const c of v.cases) for (const p of c.proofs) {{
                 const r = await m.verifyProof(p, c.root);
                 if (!r.ok) return `refused in ${{c.name}}: ${{r.reason}}`;
                 const off = c.root.slice(0, -1) + (c.root.endsWith('0') ? '1' : '0');
                 if ((await m.verifyProof(p, off)).ok) return `accepted a wrong root in ${{c.name}}`;
                 n++; }}
               return n; }})"
        ),
    )
    .await;
    assert_eq!(checked, json!(24), "the browser's proof checker, on every proof of the 5 cases");
    // And its reading of an account entry (nonce and balances in one leaf) against the same
    // vectors' values; a value one byte short reads as nothing, not as a smaller balance.
    let read = eval(
        &page,
        &format!(
            "import('/assets/proof.js').then((m) => {{ const v = {vectors}; let n = 0;
               for (const e of v.cases.find((c) => c.entries.length === 24).entries) {{
                 if (!e.key.startsWith('Account')) continue;
                 const i = BigInt(parseInt(e.key_borsh.slice(4, 6), 16));
                 const d = m.decodeEntry({{ key: e.key_borsh, value: e.value }});
                 if (!d || d.nonce !== i || d.balances.length !== 1 || d.balances[0].asset !== 'eth:ETH'
                     || d.balances[0].value !== 1000n * i) return `misread ${{e.key}}`;
                 if (m.decodeEntry({{ key: e.key_borsh, value: e.value.slice(0, -2) }}) !== null) return `read a cut ${{e.key}}`;
                 n++; }}
               return n; }})"
        ),
    )
    .await;
    assert_eq!(read, json!(12), "the browser's reading of the 12 account entries");
    // Keyboard: the search box takes a batch number and Enter opens it.
    let first = eval(&page, "document.querySelector('[data-testid=batches] tbody tr:last-child a').textContent").await;
    let number = first.as_str().unwrap().trim_start_matches('#').to_owned();
    page.find_element("#search-input")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str(&number)
        .await
        .unwrap()
        .press_key("Enter")
        .await
        .unwrap();
    until(
        &page,
        "the batch's transactions",
        "document.querySelectorAll('[data-testid=batch-txs] tbody tr').length > 0",
    )
    .await;
    assert_eq!(
        eval(&page, &format!("document.querySelector('h2').textContent.startsWith('Batch {number}')")).await,
        json!(true)
    );
    screenshot(&page, "explorer-batch.png").await;
    eval(&page, "document.querySelector('[data-testid=batch-txs] tbody a').click(); true").await;
    until(
        &page,
        "a deposit's stages up to hard-final",
        "document.querySelector('[data-stage=\"hard-final\"].reached') !== null",
    )
    .await;
    screenshot(&page, "explorer-tx.png").await;

    // The wallet: connect the test's provider.
    go(&page, &format!("{confirmer}/#/wallet")).await;
    until(&page, "the connect button", "document.getElementById('connect')").await;
    assert_eq!(eval(&page, "document.body.innerText.includes('A TEST wallet')").await, json!(true));
    eval(&page, "document.getElementById('connect').click(); true").await;
    let shown =
        until(&page, "the connected account", "document.querySelector('[data-testid=account]')?.textContent").await;
    assert_eq!(shown.as_str().unwrap().to_lowercase(), me.to_string().to_lowercase());
    until(
        &page,
        "the Bitcoin deposit address with its QR code",
        "document.querySelector('[data-testid=btc-address]') && document.querySelector('.qr img')",
    )
    .await;
    let btc_address = eval(&page, "document.querySelector('[data-testid=btc-address]').textContent").await;
    assert!(btc_address.as_str().unwrap().starts_with("bcrt1p"), "{btc_address}");

    // Deposit 2 ether through eth_sendTransaction to the vault; credited once final on anvil.
    let vault: EthAddress = devnet.endpoint("eth_vault").parse().unwrap();
    let vault_before = anvil.get_balance(vault).await.unwrap();
    submit(&page, "deposit-form", &[("deposit-asset", "eth:ETH"), ("deposit-amount", "2000000000000000000")]).await;
    until(&page, "the deposit's L1 transaction", "document.querySelector('[data-testid=deposit-l1-tx]')").await;
    assert_eq!(anvil.get_balance(vault).await.unwrap() - vault_before, U256::from(2_000_000_000_000_000_000u128));
    let credited = "fetch('/accounts/".to_owned()
        + &me.to_string()
        + "').then(r => r.json()).then(a => a.balances.some(b => b.asset === 'eth:ETH' && b.amount === '2000000000000000000'))";
    until(&page, "the deposit credited", &credited).await;
    screenshot(&page, "wallet-connected.png").await;

    // Transfer 1000 wei to bob, followed live to hard-final.
    let bob = devnet.state["demo_wallets"][1]["address"].as_str().unwrap().to_owned();
    submit(
        &page,
        "transfer-form",
        &[("transfer-to", &bob), ("transfer-asset", "eth:ETH"), ("transfer-amount", "1000"), ("transfer-fee", "0")],
    )
    .await;
    until(
        &page,
        "the transfer hard-final",
        "document.querySelector('[data-testid=transfer-result] [data-stage=\"hard-final\"].reached')",
    )
    .await;
    screenshot(&page, "wallet-transfer.png").await;

    // Withdraw 1 ether to a fresh address: every stage up to paid on anvil.
    let recipient = PrivateKeySigner::random().address();
    submit(
        &page,
        "withdraw-form",
        &[
            ("withdraw-asset", "eth:ETH"),
            ("withdraw-recipient", &recipient.to_checksum(None)),
            ("withdraw-amount", "1000000000000000000"),
            ("withdraw-fee", "0"),
        ],
    )
    .await;
    until(
        &page,
        "the withdrawal paid",
        "document.querySelector('[data-testid=withdraw-result] [data-stage=\"paid\"].reached')",
    )
    .await;
    let stages = eval(
        &page,
        "[...document.querySelectorAll('[data-testid=withdraw-result] li.reached')].map(l => l.dataset.stage)",
    )
    .await;
    assert_eq!(stages, json!(["accepted", "batched", "published", "hard-final", "signed", "paid"]));
    assert_eq!(anvil.get_balance(recipient).await.unwrap(), U256::from(1_000_000_000_000_000_000u128), "paid on anvil");
    screenshot(&page, "wallet-withdrawal-paid.png").await;

    // MetaMask's rule, enforced by the test's provider: a domain on another chain is refused.
    let refused = eval(
        &page,
        &format!(
            "window.ethereum.request({{method: 'eth_signTypedData_v4', params: ['{me}', JSON.stringify({{types: {{EIP712Domain: [{{name: 'chainId', type: 'uint256'}}], T: [{{name: 'a', type: 'uint256'}}]}}, primaryType: 'T', domain: {{chainId: 424242}}, message: {{a: 1}}}})]}}).then(() => 'signed', e => e.message)"
        ),
    )
    .await;
    assert_eq!(refused, json!(format!("Provided chainId \"424242\" must match the active chainId \"{chain_id}\"")));

    // The account page: balances from proofs checked in the browser against the root.
    go(&page, &format!("{confirmer}/#/account/{me}")).await;
    let verdict =
        until(&page, "the proofs' verdict", "document.querySelector('[data-testid=proof-verdict]')?.textContent").await;
    assert!(verdict.as_str().unwrap().starts_with("✓"), "{verdict}");
    screenshot(&page, "account-proofs.png").await;

    // A passkey account, on the origin the network allows.
    let params: bridge::NetworkParams =
        serde_json::from_slice(&std::fs::read(devnet.dir.join("params.json")).unwrap()).unwrap();
    passkey::create_deposit_transfer_withdraw(&page, &web, &eth_rpc, vault, &bob, &params).await;

    // Phone width: nothing wider than the screen.
    page.execute(SetDeviceMetricsOverrideParams::new(390, 844, 2.0, true)).await.unwrap();
    go(&page, &format!("{confirmer}/#/wallet")).await;
    until(&page, "the connect button at phone width", "document.getElementById('connect')").await;
    eval(&page, "document.getElementById('connect').click(); true").await;
    until(&page, "the wallet at phone width", "document.querySelector('[data-testid=btc-address]')").await;
    assert_eq!(
        eval(&page, "document.documentElement.scrollWidth <= 390").await,
        json!(true),
        "no horizontal scrolling at 390 px"
    );
    screenshot(&page, "wallet-phone.png").await;
    go(&page, &format!("{confirmer}/")).await;
    page.execute(SetDeviceMetricsOverrideParams::new(390, 844, 2.0, true)).await.unwrap();
    until(&page, "the batches at phone width", "document.querySelector('[data-testid=batches]')").await;
    let wide = eval(
        &page,
        "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 391).map(e => e.tagName + '.' + e.className + '#' + e.id + ':' + Math.round(e.getBoundingClientRect().right)).slice(0, 12)",
    )
    .await;
    assert_eq!(
        eval(&page, "document.documentElement.scrollWidth <= 390").await,
        json!(true),
        "explorer at 390 px: {wide}"
    );
    screenshot(&page, "explorer-phone.png").await;

    browser.close().await.unwrap();
    let _ = browser.wait().await;
    driver.abort();
}

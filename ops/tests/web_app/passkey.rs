//! The passkey flow of the web app (docs/PROTOCOL.md, "Passkey accounts") in the same Chromium
//! and devnet: DevTools' virtual authenticator (CTAP2, internal, resident keys, user
//! verification) stands for the platform's; the page is opened at `http://localhost:PORT`, the
//! origin the devnet allows (browsers refuse an IP address as RP ID). It creates an account,
//! receives an ether deposit to the vault naming it, transfers and withdraws to an L1 address,
//! and the withdrawal is paid on anvil. Every assertion the coordinator accepts here was made by
//! Chromium's authenticator and normalised to low S by the page.
//!
//! One more assertion, over a transaction this test builds, is checked with the protocol core
//! and, with `BRIDGE_WRITE_VECTORS=1`, recorded to docs/vectors/passkeys-chromium.json (checked
//! by bridge/tests/vectors_passkeys_chromium.rs).

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address as EthAddress, Bytes, U256};
use alloy::providers::{Provider, ProviderBuilder, ext::AnvilApi};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use bridge::eip712::Domain;
use bridge::passkey::{PasskeyAssertion, base64url};
use bridge::signature::Authorization;
use bridge::tx::{SignedUserTx, Transfer, UserTx};
use bridge::{Address, Amount, AssetId, NetworkParams};
use chromiumoxide::cdp::browser_protocol::web_authn::{
    AddVirtualAuthenticatorParams, AuthenticatorProtocol, AuthenticatorTransport, EnableParams,
    VirtualAuthenticatorOptions,
};
use chromiumoxide::page::Page;

use serde_json::{Value, json};

use super::{eval, go, screenshot, submit, until};

/// The vault's `depositETH(address)` selector (wallet.js's `DEPOSIT_ETH`, checked against the ABI).
const DEPOSIT_ETH: [u8; 4] = [0x2d, 0x2d, 0xa8, 0x06];

pub async fn create_deposit_transfer_withdraw(
    page: &Page,
    web: &str,
    eth_rpc: &str,
    vault: EthAddress,
    bob: &str,
    params: &NetworkParams,
) {
    page.execute(EnableParams::default()).await.unwrap();
    let options = VirtualAuthenticatorOptions::builder()
        .protocol(AuthenticatorProtocol::Ctap2)
        .transport(AuthenticatorTransport::Internal)
        .has_resident_key(true)
        .has_user_verification(true)
        .is_user_verified(true)
        .automatic_presence_simulation(true)
        .build()
        .unwrap();
    page.execute(AddVirtualAuthenticatorParams::new(options)).await.unwrap();

    // Create the account: the page derives its address from the credential's public key.
    go(page, &format!("{web}/#/passkey")).await;
    until(page, "the create-passkey button", "document.getElementById('create-passkey')").await;
    eval(page, "document.getElementById('create-passkey').click(); true").await;
    let shown =
        until(page, "the passkey account", "document.querySelector('[data-testid=passkey-account]')?.textContent")
            .await;
    let account: bridge::Address = shown.as_str().unwrap().parse().unwrap();
    let key = eval(page, "document.querySelector('[data-testid=passkey-public-key]').textContent").await;
    let key: [u8; 64] = hex::decode(key.as_str().unwrap().trim_start_matches("0x")).unwrap().try_into().unwrap();
    assert_eq!(bridge::passkey::passkey_address(&key), account, "the page derives the protocol's address");
    until(page, "the account's Bitcoin deposit address", "document.querySelector('[data-testid=btc-address]')").await;
    screenshot(page, "passkey-created.png").await;
    record_assertion(page, params, account, key).await;

    // Receive: someone deposits 1 ether to the vault naming the passkey account.
    let payer = PrivateKeySigner::random();
    let anvil = ProviderBuilder::new().connect_http(eth_rpc.parse().unwrap());
    anvil.anvil_set_balance(payer.address(), U256::from(10u128.pow(19))).await.unwrap();
    let provider = ProviderBuilder::new().wallet(EthereumWallet::from(payer)).connect_http(eth_rpc.parse().unwrap());
    let mut data = DEPOSIT_ETH.to_vec();
    data.extend_from_slice(&[0u8; 12]);
    data.extend_from_slice(account.as_bytes());
    let deposit = TransactionRequest::default()
        .with_to(vault)
        .with_value(U256::from(10u128.pow(18)))
        .with_input(Bytes::from(data));
    let receipt = provider.send_transaction(deposit).await.unwrap().get_receipt().await.unwrap();
    assert!(receipt.status(), "the deposit to the vault went through");
    let credited = format!(
        "fetch('/accounts/{account}').then(r => r.json()).then(a => a.balances.some(b => b.asset === 'eth:ETH' && b.amount === '1000000000000000000'))"
    );
    until(page, "the deposit credited to the passkey account", &credited).await;
    go(page, &format!("{web}/#/passkey")).await;
    until(
        page,
        "the balance on the passkey page",
        "document.querySelector('[data-testid=wallet-balances]')?.innerText.includes('1000000000000000000')",
    )
    .await;
    screenshot(page, "passkey-deposit.png").await;

    // Transfer with the passkey: navigator.credentials.get signs the digest.
    submit(
        page,
        "transfer-form",
        &[("transfer-to", bob), ("transfer-asset", "eth:ETH"), ("transfer-amount", "1000"), ("transfer-fee", "0")],
    )
    .await;
    until(
        page,
        "the passkey transfer hard-final",
        "document.querySelector('[data-testid=transfer-result] [data-stage=\"hard-final\"].reached')",
    )
    .await;
    screenshot(page, "passkey-transfer.png").await;

    // Withdraw half an ether to a fresh L1 address: paid on anvil.
    let recipient = PrivateKeySigner::random().address();
    submit(
        page,
        "withdraw-form",
        &[
            ("withdraw-asset", "eth:ETH"),
            ("withdraw-recipient", &recipient.to_checksum(None)),
            ("withdraw-amount", "500000000000000000"),
            ("withdraw-fee", "0"),
        ],
    )
    .await;
    until(
        page,
        "the passkey withdrawal paid",
        "document.querySelector('[data-testid=withdraw-result] [data-stage=\"paid\"].reached')",
    )
    .await;
    assert_eq!(anvil.get_balance(recipient).await.unwrap(), U256::from(500_000_000_000_000_000u128), "paid on anvil");
    screenshot(page, "passkey-withdrawal-paid.png").await;

    // A page refusal is a message, not a crash: a transfer beyond the balance.
    submit(
        page,
        "transfer-form",
        &[
            ("transfer-to", bob),
            ("transfer-asset", "eth:ETH"),
            ("transfer-amount", "5000000000000000000"),
            ("transfer-fee", "0"),
        ],
    )
    .await;
    let refused = until(
        page,
        "the overdraft refused on the page",
        "document.querySelector('[data-testid=transfer-result] [role=alert]')?.textContent",
    )
    .await;
    assert!(refused.as_str().unwrap().contains("overdraft"), "{refused}");
}

/// What `navigator.credentials.get` returns for `digest` (hex, no `0x`) from the page's stored
/// credential, as JSON: the raw bytes as the authenticator made them, and the signature as the
/// page's own `rawSignature` (DER decoded, low S) makes it for the coordinator.
fn get_assertion_script(digest_hex: &str, rp_id: &str) -> String {
    format!(
        r#"(async () => {{
  const {{ rawSignature }} = await import(new URL("assets/passkey.js", document.baseURI).href);
  const stored = JSON.parse(localStorage.getItem("bridge.passkey.v1"));
  const b64 = stored.credentialId.replace(/-/g, "+").replace(/_/g, "/");
  const id = Uint8Array.from(atob(b64 + "===".slice((b64.length + 3) % 4)), (c) => c.charCodeAt(0));
  const hex = (bytes) => "0x" + [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const challenge = Uint8Array.from("{digest_hex}".match(/../g), (pair) => parseInt(pair, 16));
  const got = await navigator.credentials.get({{ publicKey: {{
    challenge, rpId: "{rp_id}", userVerification: "preferred", timeout: 60000,
    allowCredentials: [{{ type: "public-key", id }}],
  }} }});
  const der = new Uint8Array(got.response.signature);
  return {{
    authenticator_data: hex(got.response.authenticatorData),
    client_data_json: new TextDecoder().decode(got.response.clientDataJSON),
    signature_der: hex(der),
    signature: hex(rawSignature(der)),
  }};
}})()"#
    )
}

fn unhex(value: &Value) -> Vec<u8> {
    hex::decode(value.as_str().unwrap().trim_start_matches("0x")).unwrap()
}

/// One real assertion of Chromium's authenticator over a transfer from the passkey `account`,
/// verified with the protocol core under the devnet's `params`; recorded as a vector when
/// `BRIDGE_WRITE_VECTORS` is set.
async fn record_assertion(page: &Page, params: &NetworkParams, account: Address, public_key: [u8; 64]) {
    let domain = Domain::new(params);
    let rp_id = &params.webauthn.as_ref().expect("the devnet allows passkeys").rp_id;
    let tx = UserTx::Transfer(Transfer {
        from: account,
        to: Address([0x51; 20]),
        asset: AssetId::Eth,
        amount: Amount(1_000),
        fee: Amount(0),
        nonce: 0,
    });
    let digest = tx.signing_hash(&domain);
    let got = eval(page, &get_assertion_script(&hex::encode(digest), rp_id)).await;
    assert!(got["signature_der"].is_string(), "navigator.credentials.get answered {got}");
    let assertion = PasskeyAssertion {
        public_key,
        authenticator_data: unhex(&got["authenticator_data"]),
        client_data_json: got["client_data_json"].as_str().unwrap().as_bytes().to_vec(),
        signature: unhex(&got["signature"]).try_into().unwrap(),
    };
    let signed = SignedUserTx { tx: tx.clone(), auth: Authorization::WebAuthnP256 { assertion: Box::new(assertion) } };
    let verified = signed.verify(&domain).unwrap_or_else(|e| panic!("Chromium's assertion is refused: {e}: {got}"));
    assert_eq!(verified.hash(), digest);
    if std::env::var_os("BRIDGE_WRITE_VECTORS").is_none() {
        return;
    }
    let version = std::process::Command::new("chromium").arg("--version").output().unwrap();
    let vector = json!({
        "about": "One real WebAuthn assertion made by Chromium's DevTools virtual authenticator (CTAP2, internal transport, resident key, user verification) in ops/tests/web_app.rs, over the transfer below as the challenge, and the network parameters it was checked under (docs/PROTOCOL.md, Passkey accounts). signature_der is what the authenticator returned; signature is r || s after the page's DER decoding and low-S normalisation, as sent to the coordinator.",
        "chromium": String::from_utf8_lossy(&version.stdout).trim(),
        "params": params,
        "message": tx,
        "digest": format!("0x{}", hex::encode(digest)),
        "challenge": base64url(&digest),
        "public_key": format!("0x{}", hex::encode(public_key)),
        "address": account,
        "authenticator_data": got["authenticator_data"],
        "client_data_json": got["client_data_json"],
        "signature_der": got["signature_der"],
        "signature": got["signature"],
        "signed_borsh": format!("0x{}", hex::encode(bridge::codec::to_bytes(&signed))),
    });
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/vectors/passkeys-chromium.json");
    std::fs::write(path, serde_json::to_string_pretty(&vector).unwrap() + "\n").unwrap();
}

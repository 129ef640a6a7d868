//! The regtest node through its JSON-RPC: blocks, a Taproot key-path spend, refusals with Core's
//! codes, replace-by-fee, a reorg by a competing branch with more work, and the envelope rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::{Amount, BlockHash, OutPoint, Transaction, TxOut};
use common::{Rpc, Wallet, coinbase_output, hex, start};
use serde_json::{Value, json};

const REGTEST_GENESIS: &str = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206";

#[tokio::test]
async fn mining_and_block_queries() {
    let (node, rpc) = start().await;
    let wallet = Wallet::new();
    assert_eq!(rpc.ok("getblockcount", json!([])).await, json!(0));
    assert_eq!(rpc.ok("getblockhash", json!([0])).await, json!(REGTEST_GENESIS));

    let hashes = rpc.mine(3, &wallet.address).await;
    assert_eq!(hashes.len(), 3);
    assert_eq!(rpc.ok("getblockcount", json!([])).await, json!(3));
    assert_eq!(rpc.ok("getblockhash", json!({ "height": 3 })).await, json!(hashes[2]));

    let info = rpc.ok("getblockchaininfo", json!([])).await;
    assert_eq!(info["chain"], "regtest");
    assert_eq!(info["blocks"], 3);
    assert_eq!(info["bestblockhash"], json!(hashes[2]));

    let header = rpc.ok("getblockheader", json!([hashes[1]])).await;
    assert_eq!(header["height"], 2);
    assert_eq!(header["confirmations"], 2);
    assert_eq!(header["previousblockhash"], json!(hashes[0]));
    assert_eq!(header["nextblockhash"], json!(hashes[2]));
    assert_eq!(header["bits"], "207fffff");
    let raw_header = rpc.ok("getblockheader", json!([hashes[1], false])).await;
    assert_eq!(raw_header.as_str().unwrap().len(), 160);

    let raw = rpc.ok("getblock", json!([hashes[2], 0])).await;
    let block: bitcoin::Block =
        bitcoin::consensus::encode::deserialize(&hex::decode(raw.as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(block.block_hash().to_string(), hashes[2]);
    // BIP-34: the coinbase's script starts with the height (OP_3 here, as Core's miner writes it).
    assert_eq!(block.txdata[0].input[0].script_sig.as_bytes()[0], bitcoin::opcodes::all::OP_PUSHNUM_3.to_u8());
    let summary = rpc.ok("getblock", json!([hashes[2]])).await;
    assert_eq!(summary["tx"].as_array().unwrap().len(), 1);
    let full = rpc.ok("getblock", json!([hashes[2], 2])).await;
    let coinbase = &full["tx"][0];
    assert_eq!(coinbase["vout"][0]["value"], json!(50.0));
    assert_eq!(coinbase["vout"][0]["scriptPubKey"]["address"], json!(wallet.address.to_string()));
    assert_eq!(coinbase["vout"][0]["scriptPubKey"]["type"], "witness_v1_taproot");

    let txid = coinbase["txid"].as_str().unwrap();
    let tx = rpc.ok("getrawtransaction", json!([txid, true])).await;
    assert_eq!(tx["blockhash"], json!(hashes[2]));
    assert_eq!(tx["confirmations"], 1);
    let in_block = rpc.ok("getrawtransaction", json!([txid, 1, hashes[2]])).await;
    assert_eq!(in_block["in_active_chain"], true);
    let out = rpc.ok("gettxout", json!([txid, 0])).await;
    assert_eq!(out["coinbase"], true);
    assert_eq!(out["confirmations"], 1);

    assert_eq!(rpc.call("getblockhash", json!([4])).await.unwrap_err().0, -8);
    let unknown = "00".repeat(32);
    assert_eq!(rpc.call("getblockheader", json!([unknown])).await.unwrap_err().0, -5);
    assert_eq!(rpc.call("getrawtransaction", json!([unknown])).await.unwrap_err().0, -5);
    assert_eq!(rpc.call("generatetoaddress", json!([1, "not-an-address"])).await.unwrap_err().0, -5);
    let fee = rpc.ok("estimatesmartfee", json!([6])).await;
    assert_eq!(fee["feerate"], json!(0.00001));
    assert_eq!(rpc.ok("submitblock", json!([raw])).await, json!("duplicate"));
    node.shutdown().await;
}

/// 101 blocks to `wallet`, so the first coinbase is spendable.
async fn funded(rpc: &Rpc, wallet: &Wallet) -> (OutPoint, TxOut) {
    rpc.mine(101, &wallet.address).await;
    coinbase_output(rpc, 1).await
}

fn pay(wallet: &Wallet, input: &(OutPoint, TxOut), to: &Wallet, fee: u64) -> Transaction {
    let value = input.1.value - Amount::from_sat(fee);
    wallet.spend(std::slice::from_ref(input), vec![TxOut { value, script_pubkey: to.script() }])
}

#[tokio::test]
async fn taproot_key_path_spend_is_admitted_and_mined() {
    let (_node, rpc) = start().await;
    let (alice, bob) = (Wallet::new(), Wallet::new());
    let coin = funded(&rpc, &alice).await;

    let premature = pay(&alice, &coinbase_output(&rpc, 3).await, &bob, 1_000);
    let (code, message) = rpc.call("sendrawtransaction", json!([hex(&premature)])).await.unwrap_err();
    assert_eq!((code, message.as_str()), (-26, "bad-txns-premature-spend-of-coinbase"));

    let tx = pay(&alice, &coin, &bob, 1_000);
    let txid = tx.compute_txid().to_string();
    let test = rpc.ok("testmempoolaccept", json!([[hex(&tx)]])).await;
    assert_eq!(test[0]["allowed"], true, "{test}");
    assert_eq!(test[0]["vsize"], json!(tx.vsize()));
    assert_eq!(rpc.ok("sendrawtransaction", json!([hex(&tx)])).await, json!(txid));
    assert_eq!(rpc.ok("sendrawtransaction", json!([hex(&tx)])).await, json!(txid), "resending is accepted");
    assert_eq!(rpc.ok("getrawmempool", json!([])).await, json!([txid]));
    let verbose = rpc.ok("getrawmempool", json!([true])).await;
    assert_eq!(verbose[&txid]["fees"]["base"], json!(0.00001));
    assert_eq!(rpc.ok("gettxout", json!([coin.0.txid.to_string(), 0])).await, Value::Null, "spent in the mempool");
    assert_eq!(rpc.ok("gettxout", json!([txid, 0])).await["confirmations"], 0);

    let hashes = rpc.mine(1, &alice.address).await;
    let block = rpc.ok("getblock", json!([hashes[0], 2])).await;
    assert_eq!(block["tx"][1]["txid"], json!(txid));
    assert_eq!(block["tx"][1]["fee"], json!(0.00001));
    assert_eq!(block["tx"][0]["vout"][0]["value"], json!(50.00001), "the fee goes to the coinbase");
    assert_eq!(rpc.ok("getrawmempool", json!([])).await, json!([]));
    let mined = rpc.ok("getrawtransaction", json!([txid, true])).await;
    assert_eq!(mined["confirmations"], 1);
    assert_eq!(mined["blockhash"], json!(hashes[0]));

    let (code, message) = rpc.call("sendrawtransaction", json!([hex(&tx)])).await.unwrap_err();
    assert_eq!((code, message.as_str()), (-27, "Transaction outputs already in utxo set"));
}

#[tokio::test]
async fn bad_signatures_and_double_spends_are_refused_with_cores_codes() {
    let (_node, rpc) = start().await;
    let (alice, bob, carol) = (Wallet::new(), Wallet::new(), Wallet::new());
    let coin = funded(&rpc, &alice).await;

    let mut forged = pay(&alice, &coin, &bob, 1_000);
    let mut signature = forged.input[0].witness.to_vec().remove(0);
    signature[10] ^= 1;
    forged.input[0].witness = bitcoin::Witness::from_slice(&[signature]);
    let (code, message) = rpc.call("sendrawtransaction", json!([hex(&forged)])).await.unwrap_err();
    assert_eq!(code, -26);
    assert!(message.starts_with("mandatory-script-verify-flag-failed"), "{message}");
    let test = rpc.ok("testmempoolaccept", json!([[hex(&forged)]])).await;
    assert_eq!(test[0]["allowed"], false);
    let signed_by_bob = bob.spend(
        std::slice::from_ref(&coin),
        vec![TxOut { value: Amount::from_sat(1_000_000), script_pubkey: bob.script() }],
    );
    assert_eq!(rpc.call("sendrawtransaction", json!([hex(&signed_by_bob)])).await.unwrap_err().0, -26);

    let first = pay(&alice, &coin, &bob, 1_000);
    rpc.ok("sendrawtransaction", json!([hex(&first)])).await;
    let same_fee = pay(&alice, &coin, &carol, 1_000);
    let (code, message) = rpc.call("sendrawtransaction", json!([hex(&same_fee)])).await.unwrap_err();
    assert_eq!(code, -26);
    assert!(message.starts_with("insufficient fee"), "{message}");

    // Replace-by-fee: more in total and per vbyte replaces the first.
    let bumped = pay(&alice, &coin, &carol, 5_000);
    let bumped_txid = rpc.ok("sendrawtransaction", json!([hex(&bumped)])).await;
    assert_eq!(rpc.ok("getrawmempool", json!([])).await, json!([bumped_txid]));
    rpc.mine(1, &alice.address).await;

    let late = pay(&alice, &coin, &bob, 10_000);
    let (code, message) = rpc.call("sendrawtransaction", json!([hex(&late)])).await.unwrap_err();
    assert_eq!((code, message.as_str()), (-25, "bad-txns-inputs-missingorspent"));
    let test = rpc.ok("testmempoolaccept", json!([[hex(&late)]])).await;
    assert_eq!(test[0]["reject-reason"], "missing-inputs");
    assert_eq!(rpc.call("sendrawtransaction", json!(["00ff"])).await.unwrap_err().0, -22);

    let greedy = pay(&alice, &coinbase_output(&rpc, 2).await, &bob, 20_000_000);
    let (code, _) = rpc.call("sendrawtransaction", json!([hex(&greedy)])).await.unwrap_err();
    assert_eq!(code, -25, "above the default maxfeerate");
    rpc.ok("sendrawtransaction", json!([hex(&greedy), 0])).await;
}

#[tokio::test]
async fn a_competing_branch_with_more_work_reorgs_and_returns_the_dropped_tx_to_the_mempool() {
    let (node, rpc) = start().await;
    let (alice, bob) = (Wallet::new(), Wallet::new());
    let coin = funded(&rpc, &alice).await;
    let tx = pay(&alice, &coin, &bob, 1_000);
    let txid = rpc.ok("sendrawtransaction", json!([hex(&tx)])).await;
    let mined = rpc.mine(1, &alice.address).await;
    assert_eq!(rpc.ok("getrawtransaction", json!([txid, true])).await["confirmations"], 1);

    let fork: BlockHash = rpc.ok("getblockhash", json!([101])).await.as_str().unwrap().parse().unwrap();
    let chain = node.node().clone();
    let script = bob.script();
    let branch = tokio::task::spawn_blocking(move || chain.mine_branch(fork, 2, &script)).await.unwrap().unwrap();

    assert_eq!(rpc.ok("getblockcount", json!([])).await, json!(103));
    assert_eq!(rpc.ok("getblockhash", json!([102])).await, json!(branch[0].to_string()));
    assert_ne!(branch[0].to_string(), mined[0]);
    let stale = rpc.ok("getblockheader", json!([mined[0]])).await;
    assert_eq!(stale["confirmations"], -1, "the dropped block is off the active chain");
    assert_eq!(rpc.ok("getrawmempool", json!([])).await, json!([txid]), "the dropped tx is back in the mempool");
    let unconfirmed = rpc.ok("getrawtransaction", json!([txid, true])).await;
    assert!(unconfirmed.get("blockhash").is_none());
    let in_stale = rpc.ok("getrawtransaction", json!([txid, true, mined[0]])).await;
    assert_eq!(in_stale["in_active_chain"], false);

    let again = rpc.mine(1, &alice.address).await;
    let confirmed = rpc.ok("getrawtransaction", json!([txid, true])).await;
    assert_eq!(confirmed["blockhash"], json!(again[0]));

    // The old branch is known: resubmitting its block is a duplicate, and it stays off the chain.
    let stale_hex = rpc.ok("getblock", json!([mined[0], 0])).await;
    assert_eq!(rpc.ok("submitblock", json!([stale_hex])).await, json!("duplicate"));
}

#[tokio::test]
async fn submitted_blocks_are_validated_by_the_kernel() {
    let (node, rpc) = start().await;
    let (alice, bob) = (Wallet::new(), Wallet::new());
    let coin = funded(&rpc, &alice).await;
    let tip: BlockHash = rpc.ok("getblockhash", json!([101])).await.as_str().unwrap().parse().unwrap();
    let chain = node.node().clone();
    let view_height = chain.height().unwrap();
    let median = rpc.ok("getblockheader", json!([tip.to_string()])).await["mediantime"].as_u64().unwrap();

    // A block whose coinbase claims a fee no transaction pays.
    let spend = pay(&alice, &coin, &bob, 1_000);
    let template = |fee: u64| regtest::mining::Template {
        parent: tip,
        height: view_height + 1,
        time: u32::try_from(median + 1).unwrap(),
        script: bob.script(),
        transactions: vec![(spend.clone(), Amount::from_sat(fee))],
        extra_nonce: 7,
    };
    let greedy = regtest::mining::assemble(template(5_000));
    let answer = rpc.ok("submitblock", json!([serialize_hex(&greedy)])).await;
    assert_eq!(answer, json!("consensus"), "the kernel's verdict on a coinbase claiming too much");
    assert_eq!(rpc.ok("getblockcount", json!([])).await, json!(101));

    let honest = regtest::mining::assemble(template(1_000));
    assert_eq!(rpc.ok("submitblock", json!([serialize_hex(&honest)])).await, Value::Null);
    assert_eq!(rpc.ok("getblockhash", json!([102])).await, json!(honest.block_hash().to_string()));
    assert_eq!(rpc.call("submitblock", json!(["00"])).await.unwrap_err().0, -22);

    // A sibling with no more work is stored but not connected: Core's "inconclusive".
    let sibling =
        regtest::mining::assemble(regtest::mining::Template { transactions: vec![], extra_nonce: 8, ..template(0) });
    assert_eq!(rpc.ok("submitblock", json!([serialize_hex(&sibling)])).await, json!("inconclusive"));
    assert_eq!(rpc.ok("getblockheader", json!([sibling.block_hash().to_string()])).await["confirmations"], -1);
    assert_eq!(rpc.ok("getblockhash", json!([102])).await, json!(honest.block_hash().to_string()));
}

#[tokio::test]
async fn envelopes_unknown_methods_and_auth_as_core() {
    let (node, rpc) = start().await;
    let client = reqwest::Client::new();
    let post = |body: Value| client.post(node.url()).basic_auth(node.user(), Some(node.password())).json(&body).send();

    let legacy = post(json!({ "jsonrpc": "1.0", "id": 1, "method": "nosuchmethod", "params": [] })).await.unwrap();
    assert_eq!(legacy.status(), 404);
    let answer: Value = legacy.json().await.unwrap();
    assert_eq!(answer["error"], json!({ "code": -32601, "message": "Method not found" }));
    assert_eq!(answer["id"], 1);

    let v2 = post(json!({ "jsonrpc": "2.0", "id": "x", "method": "nosuchmethod" })).await.unwrap();
    assert_eq!(v2.status(), 200);
    let answer: Value = v2.json().await.unwrap();
    assert_eq!(answer["error"]["code"], -32601);
    assert!(answer.get("result").is_none());

    let ok: Value =
        post(json!({ "jsonrpc": "2.0", "id": 2, "method": "getblockcount" })).await.unwrap().json().await.unwrap();
    assert_eq!(ok, json!({ "jsonrpc": "2.0", "result": 0, "id": 2 }));
    let batch: Value = post(json!([
        { "jsonrpc": "2.0", "id": 1, "method": "getblockcount" },
        { "jsonrpc": "2.0", "id": 2, "method": "getblockhash", "params": [0] },
    ]))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(batch[1]["result"], REGTEST_GENESIS);
    let notification = post(json!({ "jsonrpc": "2.0", "method": "getblockcount" })).await.unwrap();
    assert_eq!(notification.status(), 204);

    let garbage =
        client.post(node.url()).basic_auth(node.user(), Some(node.password())).body("{not json").send().await.unwrap();
    assert_eq!(garbage.status(), 500);
    let answer: Value = garbage.json().await.unwrap();
    assert_eq!(answer["error"]["code"], -32700);

    let wrong = client.post(node.url()).basic_auth(node.user(), Some("wrong")).json(&json!({})).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().contains_key("www-authenticate"));
    let none = client.post(node.url()).json(&json!({ "method": "getblockcount" })).send().await.unwrap();
    assert_eq!(none.status(), 401);

    assert_eq!(rpc.call("getblockhash", json!(["zero"])).await.unwrap_err().0, -3);
    assert_eq!(rpc.call("getblockhash", json!({ "heigth": 0 })).await.unwrap_err().0, -8);
}

#[tokio::test]
async fn relative_lock_times_are_kept_out_until_the_kernel_would_accept_them() {
    let (_node, rpc) = start().await;
    let alice = Wallet::new();
    let coin = funded(&rpc, &alice).await;
    let parent = pay(&alice, &coin, &alice, 1_000);
    rpc.ok("sendrawtransaction", json!([hex(&parent)])).await;
    let output = (OutPoint { txid: parent.compute_txid(), vout: 0 }, parent.output[0].clone());
    let value = output.1.value - Amount::from_sat(1_000);
    let child = alice.spend_with(
        std::slice::from_ref(&output),
        vec![TxOut { value, script_pubkey: alice.script() }],
        bitcoin::Sequence::from_height(1),
    );
    let (code, message) = rpc.call("sendrawtransaction", json!([hex(&child)])).await.unwrap_err();
    assert_eq!((code, message.as_str()), (-26, "non-BIP68-final"), "its parent is not one block deep yet");
    rpc.mine(1, &alice.address).await;
    rpc.ok("sendrawtransaction", json!([hex(&child)])).await;
    let mined = rpc.mine(1, &alice.address).await;
    let block = rpc.ok("getblock", json!([mined[0]])).await;
    assert_eq!(block["tx"][1], json!(child.compute_txid().to_string()), "and the kernel accepts the block");
}

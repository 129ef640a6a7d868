//! A small Core RPC caller and Taproot key-path signing for the node's tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, Secp256k1, TapTweak};
use bitcoin::secp256k1::{Message, SecretKey, rand};
use bitcoin::sighash::{Prevouts, SighashCache};
use bitcoin::{
    Address, Amount, Network, OutPoint, ScriptBuf, Sequence, TapSighashType, Transaction, TxIn, TxOut, Txid, Witness,
    absolute, transaction,
};
use regtest::{RegtestConfig, RegtestNode};
use serde_json::{Value, json};

pub struct Rpc {
    pub url: String,
    pub user: String,
    pub password: String,
    client: reqwest::Client,
}

impl Rpc {
    pub fn new(node: &RegtestNode) -> Self {
        Self {
            url: node.url(),
            user: node.user().into(),
            password: node.password().into(),
            client: reqwest::Client::new(),
        }
    }

    /// A JSON-RPC 1.0 call; the error is (code, message).
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, (i64, String)> {
        let body = json!({ "jsonrpc": "1.0", "id": "test", "method": method, "params": params });
        let answer: Value = self
            .client
            .post(&self.url)
            .basic_auth(&self.user, Some(&self.password))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if answer["error"].is_null() {
            Ok(answer["result"].clone())
        } else {
            Err((answer["error"]["code"].as_i64().unwrap(), answer["error"]["message"].as_str().unwrap().to_string()))
        }
    }

    pub async fn ok(&self, method: &str, params: Value) -> Value {
        self.call(method, params).await.unwrap_or_else(|e| panic!("{method}: {e:?}"))
    }

    pub async fn mine(&self, count: u32, address: &Address) -> Vec<String> {
        let hashes = self.ok("generatetoaddress", json!([count, address.to_string()])).await;
        hashes.as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_string()).collect()
    }
}

pub async fn start() -> (RegtestNode, Rpc) {
    let node = RegtestNode::start(RegtestConfig::default()).await.unwrap();
    let rpc = Rpc::new(&node);
    (node, rpc)
}

/// A key and its key-path Taproot address (no script tree).
pub struct Wallet {
    pub keypair: Keypair,
    pub address: Address,
}

impl Wallet {
    pub fn new() -> Self {
        let secp = Secp256k1::new();
        let keypair = Keypair::from_secret_key(&secp, &SecretKey::new(&mut rand::thread_rng()));
        let (xonly, _) = keypair.x_only_public_key();
        let address = Address::p2tr(&secp, xonly, None, Network::Regtest);
        Self { keypair, address }
    }

    pub fn script(&self) -> ScriptBuf {
        self.address.script_pubkey()
    }

    /// Spend `prevouts` (all this wallet's) to `outputs`, signing each input on the key path.
    pub fn spend(&self, inputs: &[(OutPoint, TxOut)], outputs: Vec<TxOut>) -> Transaction {
        self.spend_with(inputs, outputs, Sequence::ENABLE_RBF_NO_LOCKTIME)
    }

    /// As `spend`, every input with `sequence`.
    pub fn spend_with(&self, inputs: &[(OutPoint, TxOut)], outputs: Vec<TxOut>, sequence: Sequence) -> Transaction {
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: inputs
                .iter()
                .map(|(outpoint, _)| TxIn {
                    previous_output: *outpoint,
                    script_sig: ScriptBuf::new(),
                    sequence,
                    witness: Witness::new(),
                })
                .collect(),
            output: outputs,
        };
        let secp = Secp256k1::new();
        let tweaked = self.keypair.tap_tweak(&secp, None).to_keypair();
        let prevouts: Vec<TxOut> = inputs.iter().map(|(_, o)| o.clone()).collect();
        let mut signatures = Vec::new();
        {
            let mut cache = SighashCache::new(&tx);
            for i in 0..inputs.len() {
                let sighash = cache
                    .taproot_key_spend_signature_hash(i, &Prevouts::All(&prevouts), TapSighashType::Default)
                    .unwrap();
                let message = Message::from_digest(sighash.to_byte_array());
                signatures.push(secp.sign_schnorr(&message, &tweaked));
            }
        }
        for (input, signature) in tx.input.iter_mut().zip(signatures) {
            input.witness = Witness::from_slice(&[signature.as_ref().to_vec()]);
        }
        tx
    }
}

/// The first output of the coinbase of the block at `height`.
pub async fn coinbase_output(rpc: &Rpc, height: u32) -> (OutPoint, TxOut) {
    let hash = rpc.ok("getblockhash", json!([height])).await;
    let block = rpc.ok("getblock", json!([hash, 2])).await;
    let coinbase = &block["tx"][0];
    let txid: Txid = coinbase["txid"].as_str().unwrap().parse().unwrap();
    let out = &coinbase["vout"][0];
    let value = Amount::from_btc(out["value"].as_f64().unwrap()).unwrap();
    let script = ScriptBuf::from_hex(out["scriptPubKey"]["hex"].as_str().unwrap()).unwrap();
    (OutPoint { txid, vout: 0 }, TxOut { value, script_pubkey: script })
}

pub fn hex(tx: &Transaction) -> String {
    serialize_hex(tx)
}

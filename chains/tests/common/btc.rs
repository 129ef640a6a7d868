//! Bitcoin fixtures on the regtest node: a miner with coinbase money, branch mining for reorgs,
//! and a small mesh of real FROST watchmen on loopback to sign payouts.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, Secp256k1, TapTweak};
use bitcoin::secp256k1::{Message, SecretKey, rand};
use bitcoin::sighash::{Prevouts, SighashCache};
use bitcoin::{
    Address, Amount, BlockHash, Network, OutPoint, ScriptBuf, Sequence, TapSighashType, Transaction, TxIn, TxOut,
    Witness, absolute, transaction,
};
use chains::bitcoin::CoreRpc;
use regtest::RegtestNode;
use tss::{
    ApproveAll, KeyPath, MeshConfig, PeerEntry, SessionId, SigningContext, SigningRequest, TssNode, TssNodeConfig,
};

pub struct Miner {
    pub keypair: Keypair,
    pub address: Address,
}

impl Miner {
    pub fn new() -> Self {
        let secp = Secp256k1::new();
        let keypair = Keypair::from_secret_key(&secp, &SecretKey::new(&mut rand::thread_rng()));
        let address = Address::p2tr(&secp, keypair.x_only_public_key().0, None, Network::Regtest);
        Self { keypair, address }
    }

    /// Pay `value` from the coinbase of block `height` (mature 100 blocks later) to `to`, change back.
    pub async fn pay(&self, rpc: &CoreRpc, height: u64, to: &Address, value: Amount) -> Transaction {
        let coinbase = rpc.block(&rpc.block_hash(height).await.unwrap()).await.unwrap().txdata[0].clone();
        let prevout = coinbase.output[0].clone();
        let change = prevout.value - value - Amount::from_sat(1_000);
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint { txid: coinbase.compute_txid(), vout: 0 },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            }],
            output: vec![
                TxOut { value, script_pubkey: to.script_pubkey() },
                TxOut { value: change, script_pubkey: self.address.script_pubkey() },
            ],
        };
        let secp = Secp256k1::new();
        let sighash = SighashCache::new(&tx)
            .taproot_key_spend_signature_hash(0, &Prevouts::All(&[prevout]), TapSighashType::Default)
            .unwrap();
        let tweaked = self.keypair.tap_tweak(&secp, None).to_keypair();
        let signature = secp.sign_schnorr(&Message::from_digest(sighash.to_byte_array()), &tweaked);
        tx.input[0].witness = Witness::from_slice(&[signature.as_ref().to_vec()]);
        rpc.send_raw_transaction(&tx).await.unwrap();
        tx
    }
}

pub fn group_key() -> bitcoin::key::XOnlyPublicKey {
    let secp = Secp256k1::new();
    Keypair::from_secret_key(&secp, &SecretKey::new(&mut rand::thread_rng())).x_only_public_key().0
}

/// A fresh key-path Taproot address nobody here will spend from: a withdrawal's recipient.
pub fn recipient() -> Address {
    Address::p2tr(&Secp256k1::new(), group_key(), None, Network::Regtest)
}

pub async fn mine_branch(node: &RegtestNode, from: BlockHash, count: u32, to: &Address) -> Vec<BlockHash> {
    let chain = node.node().clone();
    let script = to.script_pubkey();
    tokio::task::spawn_blocking(move || chain.mine_branch(from, count, &script)).await.unwrap().unwrap()
}

/// `n` watchmen on 127.0.0.1 that ran a `t`-of-`n` DKG and sign whatever they are asked (the
/// replay policy is the watchman's, tested in `confirmer`).
pub struct Watchmen {
    pub nodes: Vec<TssNode>,
    pub internal_key: [u8; 32],
}

impl Watchmen {
    pub async fn start(n: usize, t: u16) -> Self {
        let identities: Vec<_> = (0..n).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
        // Held until the test process exits (one test per process under nextest): see tss::ports.
        let ports = tss::ports::reserve(n).expect("reserving loopback ports");
        let entries: Vec<PeerEntry> = identities
            .iter()
            .zip(&ports)
            .map(|(k, port)| PeerEntry { peer_id: k.public().to_peer_id(), address: port.multiaddr() })
            .collect();
        std::mem::forget(ports);
        let mut nodes = Vec::new();
        for (i, identity) in identities.into_iter().enumerate() {
            let config = TssNodeConfig {
                identity,
                mesh: MeshConfig {
                    listen: entries[i].address.clone(),
                    peers: entries.clone(),
                    request_timeout: Duration::from_secs(10),
                },
                threshold: t,
                share: None,
                policy: Arc::new(ApproveAll),
                session_timeout: Duration::from_secs(120),
                retry: Duration::from_millis(500),
            };
            nodes.push(TssNode::start(config).await.unwrap());
        }
        let session = SessionId::random();
        let runs = nodes.iter().map(|node| node.dkg(session, Duration::from_secs(60), |_| {}));
        let shares: Vec<_> = futures::future::join_all(runs).await.into_iter().map(|r| r.unwrap()).collect();
        let internal_key = tss::GroupKey::of(&shares[0].public).unwrap().internal_key;
        Watchmen { nodes, internal_key }
    }

    /// One signing session for every input of a payout attempt; the signatures in input order.
    pub async fn sign_payout(&self, unsigned: &bridge::btc_payout::UnsignedPayout) -> Vec<[u8; 64]> {
        let requests: Vec<SigningRequest> = unsigned
            .sighashes
            .iter()
            .zip(&unsigned.merkle_roots)
            .map(|(sighash, root)| SigningRequest {
                message: sighash.to_vec(),
                key_path: KeyPath::of_merkle_root(*root),
                context: SigningContext {
                    chain: "bitcoin".into(),
                    batch: None,
                    purpose: format!("payout attempt {}", unsigned.attempt),
                    detail: vec![],
                },
            })
            .collect();
        let outcome = self.nodes[0].sign(requests).await.unwrap();
        unsigned
            .sighashes
            .iter()
            .map(|sighash| outcome.signatures.iter().find(|s| s.request.message == sighash.to_vec()).unwrap().signature)
            .collect()
    }
}

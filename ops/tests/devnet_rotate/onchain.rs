//! What the chains and the DA say, read independently of the bridge's own processes: the
//! regtest chain scanned block by block, and the ledger replayed from Arweave.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub fn key_of(hex_key: &str) -> bitcoin::key::XOnlyPublicKey {
    bitcoin::key::XOnlyPublicKey::from_slice(&hex::decode(hex_key).unwrap()).unwrap()
}

/// Every output on the chain paying one of `scripts` and still unspent: outpoint → (value,
/// script). A scan of the whole regtest chain, which is small.
pub async fn unspent_at(
    rpc: &chains::bitcoin::CoreRpc,
    scripts: &BTreeSet<bitcoin::ScriptBuf>,
) -> BTreeMap<bitcoin::OutPoint, (u64, bitcoin::ScriptBuf)> {
    let mut unspent = BTreeMap::new();
    let tip = rpc.block_count().await.unwrap();
    for height in 0..=tip {
        let block = rpc.block(&rpc.block_hash(height).await.unwrap()).await.unwrap();
        for tx in &block.txdata {
            for input in &tx.input {
                unspent.remove(&input.previous_output);
            }
            let txid = tx.compute_txid();
            for (vout, output) in tx.output.iter().enumerate() {
                if scripts.contains(&output.script_pubkey) {
                    let outpoint = bitcoin::OutPoint { txid, vout: vout as u32 };
                    unspent.insert(outpoint, (output.value.to_sat(), output.script_pubkey.clone()));
                }
            }
        }
    }
    unspent
}

/// Every output on the chain paying one of `scripts` (spent or not), by script: (txid, value).
pub async fn paid_to(
    rpc: &chains::bitcoin::CoreRpc,
    scripts: &BTreeSet<bitcoin::ScriptBuf>,
) -> BTreeMap<bitcoin::ScriptBuf, Vec<(bitcoin::Txid, u64)>> {
    let mut paid: BTreeMap<_, Vec<_>> = BTreeMap::new();
    let tip = rpc.block_count().await.unwrap();
    for height in 0..=tip {
        let block = rpc.block(&rpc.block_hash(height).await.unwrap()).await.unwrap();
        for tx in &block.txdata {
            for output in tx.output.iter().filter(|o| scripts.contains(&o.script_pubkey)) {
                paid.entry(output.script_pubkey.clone()).or_default().push((tx.compute_txid(), output.value.to_sat()));
            }
        }
    }
    paid
}

/// The ledger, replayed here from the batches on Arweave alone, batch by batch as they come.
pub struct Replay {
    da: chains::da::ArweaveDa,
    pub state: bridge::State,
    replayed: u64,
}

impl Replay {
    pub fn new(dir: &Path, params: &bridge::NetworkParams, arweave: &str) -> Replay {
        use chains::da::{ArweaveDa, ArweaveDaConfig};
        let jwk = dir.join("coordinator/arweave.jwk");
        let owner = chains::arweave::ArweaveWallet::load(&jwk).unwrap().address().to_owned();
        let gateway = chains::arweave::Gateway::new(arweave, chains::arweave::RetryPolicy::default()).unwrap();
        let da = ArweaveDa::follower(gateway, ArweaveDaConfig::new(&params.name, params.coordinator_key, &owner));
        Replay { da, state: bridge::State::genesis(params.clone()), replayed: 0 }
    }

    /// Replays every batch published since the last call.
    pub async fn more(&mut self) {
        use chains::da::DataAvailability;
        loop {
            let fetched = self.da.batches_after(self.replayed, 500).await.unwrap();
            if fetched.is_empty() {
                return;
            }
            for batch in fetched {
                bridge::batch::replay(&mut self.state, &batch.batch).unwrap();
                self.replayed = batch.batch.header.number;
            }
        }
    }
}

pub trait RegtestAddress {
    fn from_str_regtest(text: &str) -> bitcoin::Address;
}

impl RegtestAddress for bitcoin::Address {
    fn from_str_regtest(text: &str) -> bitcoin::Address {
        text.parse::<bitcoin::Address<_>>().unwrap().require_network(bitcoin::Network::Regtest).unwrap()
    }
}

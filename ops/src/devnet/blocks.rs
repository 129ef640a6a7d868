//! The devnet's block producer and Bitcoin faucet. A real network makes blocks by itself; on the
//! devnet this loop does it: an Arweave block on arlocal every second (so batches confirm) and a
//! Bitcoin block every few seconds to the faucet's address (so deposits and payouts confirm and
//! the faucet has coinbase money to give). Anvil makes its own blocks (`--block-time`).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, Secp256k1, TapTweak};
use bitcoin::secp256k1::{Message, SecretKey};
use bitcoin::sighash::{Prevouts, SighashCache};
use bitcoin::{
    Address, Amount, Network, OutPoint, ScriptBuf, Sequence, TapSighashType, Transaction, TxIn, TxOut, Txid, Witness,
    absolute, transaction,
};
use chains::bitcoin::CoreRpc;

use super::state::DevnetState;

/// Coinbase outputs mature after this many blocks.
const COINBASE_MATURITY: u64 = 100;
/// How long one Arweave `/mine` may take. Unbounded, one request arlocal never answers stops
/// the devnet's clock for good: no Arweave block and no Bitcoin block again, so every follower
/// waits at the next batch for depth while the coordinator seals on (a CI run saw the confirmer
/// and every watchman stop at one batch for ten minutes, with nothing in this log).
const MINE_TIMEOUT: Duration = Duration::from_secs(10);
/// The faucet's fee per payment (about 10 sat/vB for its one-input, two-output transaction).
const FAUCET_FEE: Amount = Amount::from_sat(2_000);

/// The faucet's key: the devnet's own, in `<dir>/bitcoin/faucet.key` (hex).
pub struct Faucet {
    keypair: Keypair,
    pub address: Address,
}

impl Faucet {
    /// Creates the key if the file is missing.
    pub fn open(file: &Path) -> anyhow::Result<Faucet> {
        let secp = Secp256k1::new();
        let secret = if file.exists() {
            let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            let bytes = hex::decode(text.trim()).with_context(|| format!("{} is not hex", file.display()))?;
            SecretKey::from_slice(&bytes).with_context(|| format!("{} is not a secret key", file.display()))?
        } else {
            let secret = SecretKey::new(&mut bitcoin::secp256k1::rand::thread_rng());
            std::fs::write(file, hex::encode(secret.secret_bytes()))
                .with_context(|| format!("cannot write {}", file.display()))?;
            secret
        };
        let keypair = Keypair::from_secret_key(&secp, &secret);
        let address = Address::p2tr(&secp, keypair.x_only_public_key().0, None, Network::Regtest);
        Ok(Faucet { keypair, address })
    }

    /// Pays `value` to `to` from a mature coinbase of the faucet's that is still unspent (the
    /// mempool counted), change back to the faucet. Returns the transaction's id.
    pub async fn pay(&self, rpc: &CoreRpc, to: &Address, value: Amount) -> anyhow::Result<Txid> {
        let tip = rpc.block_count().await?;
        let script = self.address.script_pubkey();
        for height in 1..=tip.saturating_sub(COINBASE_MATURITY) {
            let block = rpc.block(&rpc.block_hash(height).await?).await?;
            let Some(coinbase) = block.txdata.first() else { continue };
            let outpoint = OutPoint { txid: coinbase.compute_txid(), vout: 0 };
            let Some(unspent) = rpc.tx_out(&outpoint, true).await? else { continue };
            if unspent.script_pubkey != script || unspent.value < value + FAUCET_FEE {
                continue;
            }
            let prevout = TxOut { value: unspent.value, script_pubkey: script.clone() };
            let tx = self.sign(outpoint, prevout, to, value)?;
            return Ok(rpc.send_raw_transaction(&tx).await?);
        }
        bail!("the faucet has no mature coinbase worth {value} left (wait for more blocks)")
    }

    fn sign(&self, outpoint: OutPoint, prevout: TxOut, to: &Address, value: Amount) -> anyhow::Result<Transaction> {
        let change = prevout.value - value - FAUCET_FEE;
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: outpoint,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            }],
            output: vec![TxOut { value, script_pubkey: to.script_pubkey() }],
        };
        if change > Amount::from_sat(330) {
            tx.output.push(TxOut { value: change, script_pubkey: self.address.script_pubkey() });
        }
        let secp = Secp256k1::new();
        let sighash = SighashCache::new(&tx)
            .taproot_key_spend_signature_hash(0, &Prevouts::All(&[prevout]), TapSighashType::Default)
            .context("the faucet's sighash")?;
        let tweaked = self.keypair.tap_tweak(&secp, None).to_keypair();
        let signature = secp.sign_schnorr(&Message::from_digest(sighash.to_byte_array()), &tweaked);
        tx.input[0].witness = Witness::from_slice(&[signature.as_ref().to_vec()]);
        Ok(tx)
    }
}

/// Makes blocks until killed (`bridgectl devnet down`). A failed round is logged and retried:
/// a node restarting is no reason for the devnet's clock to stop.
pub async fn produce(state: &DevnetState, btc_block_every: Duration) -> anyhow::Result<()> {
    let faucet = Faucet::open(&state.dir.join("bitcoin/faucet.key"))?;
    let e = &state.endpoints;
    let rpc = CoreRpc::new(&e.btc_rpc, &e.btc_rpc_user, &e.btc_rpc_password);
    let http = super::http_client()?;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since_btc = Duration::ZERO;
    loop {
        ticker.tick().await;
        if let Err(error) = mine_arweave(&http, &e.arweave, MINE_TIMEOUT).await {
            tracing::warn!(%error, "could not mine an Arweave block; next second");
        }
        since_btc += Duration::from_secs(1);
        if since_btc >= btc_block_every {
            since_btc = Duration::ZERO;
            if let Err(error) = rpc.generate_to_address(1, &faucet.address).await {
                tracing::warn!(%error, "could not mine a Bitcoin block");
            }
        }
    }
}

/// Asks the Arweave gateway (arlocal) for one block, giving up after `timeout`.
async fn mine_arweave(http: &reqwest::Client, arweave: &str, timeout: Duration) -> Result<(), reqwest::Error> {
    http.get(format!("{arweave}/mine")).timeout(timeout).send().await?.error_for_status()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_gateway_that_never_answers_a_mine_costs_one_timeout_not_the_clock() {
        // Accepts connections and never answers (a hung arlocal).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        let http = reqwest::Client::new();
        for _ in 0..2 {
            let mined =
                tokio::time::timeout(Duration::from_secs(30), mine_arweave(&http, &url, Duration::from_millis(200)))
                    .await
                    .expect("the mine request is bounded by its own timeout");
            assert!(mined.unwrap_err().is_timeout());
        }
        held.abort();
    }
}

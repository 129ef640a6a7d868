//! A withdrawal's last two stages, read from the chain that pays it.
//!
//! Ethereum: `signed` once the vault holds a withdrawals root for a range covering the
//! transaction's batch (the watchmen's group signature made it through `submitWithdrawals`),
//! `paid` once the vault has
//! emitted a `Withdrawn` log for that batch paying the recipient the amount. The logs are read
//! forward from the head at the withdrawal, a bounded window a poll (one request from there to
//! the head would outgrow a hosted node's range cap during a long wait and fail every poll).
//!
//! Bitcoin: `signed` once a transaction paying the recipient's script exactly the amount is in
//! the node's mempool or a block (only a fully signed transaction gets there), `paid` once it
//! has a confirmation. Transactions already in the mempool, and blocks already mined, when the
//! withdrawal was sent are not looked at: they cannot be its payout.

use std::collections::{BTreeMap, HashMap, HashSet};

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use anyhow::anyhow;
use bitcoin::{BlockHash, ScriptBuf, Transaction, Txid};
use chains::bitcoin::rpc::CoreRpc;
use contracts::Vault;

use super::endpoints::BtcRpc;

/// What the chain shows of the payout so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Nothing,
    Signed(String),
    Paid(String),
}

/// Watches the Ethereum vault for one withdrawal.
#[derive(Debug)]
pub struct EthPayout {
    provider: DynProvider,
    vault: Address,
    token: Address,
    recipient: Address,
    amount: U256,
    /// The head when the withdrawal was sent: its root and payment come later.
    from_block: u64,
    /// The first block whose logs no poll has read yet.
    next_block: u64,
    /// Blocks per `eth_getLogs`: [`chains::ethereum_view::LOG_RANGE`], halved at each refusal.
    window: u64,
    root_seen: Option<String>,
}

/// Blocks read again at each poll: a reorg may move the payment into a block already read.
const REREAD_BLOCKS: u64 = 64;

impl EthPayout {
    /// Connects to the node and notes its head; call before sending the withdrawal.
    pub async fn start(
        url: &str,
        tls: &chains::http::Tls,
        vault: bridge::Address,
        token: bridge::Address,
        recipient: bridge::Address,
        amount: u128,
    ) -> anyhow::Result<Self> {
        let provider =
            chains::http::eth_provider(url, tls).map_err(|e| anyhow!("{e} (pass --eth-rpc http://HOST:PORT)"))?;
        let from_block = provider
            .get_block_number()
            .await
            .map_err(|e| anyhow!("cannot reach the Ethereum node at {url}: {e} (is it running? pass --eth-rpc URL)"))?;
        Ok(EthPayout {
            provider,
            vault: contracts::to_alloy(vault),
            token: contracts::to_alloy(token),
            recipient: contracts::to_alloy(recipient),
            amount: U256::from(amount),
            from_block,
            next_block: from_block,
            window: chains::ethereum_view::LOG_RANGE,
            root_seen: None,
        })
    }

    pub async fn poll(&mut self, batch: u64) -> anyhow::Result<Seen> {
        let vault = Vault::new(self.vault, self.provider.clone());
        if self.root_seen.is_none() {
            let held = vault
                .rangeOf(batch)
                .call()
                .await
                .map_err(|e| anyhow!("reading which of the vault's ranges covers batch {batch}: {e}"))?;
            if !held.found {
                return Ok(Seen::Nothing);
            }
            let range = vault
                .ranges(held.range)
                .call()
                .await
                .map_err(|e| anyhow!("reading the vault's range {}: {e}", held.range))?;
            self.root_seen = Some(format!(
                "root {} of range {} (batches {}..={}) for batch {batch}",
                range.root, held.range, range.first, range.last
            ));
        }
        let head =
            self.provider.get_block_number().await.map_err(|e| anyhow!("reading the Ethereum node's head: {e}"))?;
        // Never more than half a window again, so a narrowed window still moves on.
        let reread = REREAD_BLOCKS.min(self.window / 2);
        let from = self.next_block.saturating_sub(reread).max(self.from_block);
        let to = head.min(from.saturating_add(self.window - 1));
        if from > to {
            return Ok(self.root_seen.clone().map_or(Seen::Nothing, Seen::Signed));
        }
        let filter = Filter::new()
            .address(self.vault)
            .event_signature(Vault::Withdrawn::SIGNATURE_HASH)
            .topic1(B256::from(U256::from(batch)))
            .from_block(from)
            .to_block(to);
        let logs = match self.provider.get_logs(&filter).await {
            Ok(logs) => logs,
            Err(e) => {
                if chains::ethereum_view::refuses_range(&e) && self.window > 1 {
                    // Most likely wider than the node allows: fewer blocks from now on.
                    self.window /= 2;
                }
                return Err(anyhow!("reading the vault's Withdrawn logs of blocks {from} to {to}: {e}"));
            }
        };
        self.next_block = to + 1;
        for log in logs.iter().filter(|log| !log.removed) {
            let Ok(decoded) = log.log_decode::<Vault::Withdrawn>() else { continue };
            let event = &decoded.inner.data;
            if event.token == self.token && event.recipient == self.recipient && event.amount == self.amount {
                let tx = log.transaction_hash.map(|h| h.to_string()).unwrap_or_else(|| "(pending)".into());
                return Ok(Seen::Paid(format!("Ethereum tx {tx}, leaf {} of batch {batch}", event.index)));
            }
        }
        Ok(self.root_seen.clone().map_or(Seen::Nothing, Seen::Signed))
    }
}

/// Watches a Bitcoin node for one withdrawal's payout.
#[derive(Debug)]
pub struct BtcPayout {
    rpc: CoreRpc,
    script: ScriptBuf,
    amount_sat: u64,
    /// The tip when the withdrawal was sent; only later blocks are scanned.
    start_height: u64,
    /// Mempool transactions looked at (or there before the withdrawal), and whether they pay;
    /// only those still in the node's mempool at the last poll.
    mempool: HashMap<Txid, bool>,
    /// Blocks scanned: height to hash and the paying transaction in it, if any.
    blocks: BTreeMap<u64, (BlockHash, Option<Txid>)>,
}

impl BtcPayout {
    /// Connects to the node and notes its tip and mempool; call before sending the withdrawal.
    pub async fn start(node: &BtcRpc, script: ScriptBuf, amount_sat: u64) -> anyhow::Result<Self> {
        let rpc = CoreRpc::with_tls(node.url.clone(), node.user.clone(), node.password.clone(), &node.tls)?;
        let unreachable = |e: chains::bitcoin::rpc::RpcError| {
            anyhow!(
                "cannot ask the Bitcoin node at {}: {e} (is it running? pass --btc-rpc URL, --btc-rpc-user and BTC_RPC_PASSWORD)",
                node.url
            )
        };
        let start_height = rpc.block_count().await.map_err(unreachable)?;
        let before: HashSet<Txid> = rpc.raw_mempool().await.map_err(unreachable)?.into_iter().collect();
        Ok(BtcPayout {
            rpc,
            script,
            amount_sat,
            start_height,
            mempool: before.into_iter().map(|txid| (txid, false)).collect(),
            blocks: BTreeMap::new(),
        })
    }

    fn pays(&self, tx: &Transaction) -> bool {
        tx.output.iter().any(|out| out.script_pubkey == self.script && out.value.to_sat() == self.amount_sat)
    }

    pub async fn poll(&mut self) -> anyhow::Result<Seen> {
        let rpc_error = |e: chains::bitcoin::rpc::RpcError| anyhow!("asking the Bitcoin node: {e}");
        let tip = self.rpc.block_count().await.map_err(rpc_error)?;
        self.blocks.retain(|height, _| *height <= tip);
        // A poll reads what changed, not every block since the withdrawal: the newest block
        // read is asked again (a reorg that replaced it without growing the chain), and each
        // new block must build on the one read below it, or that one is read again. So a poll
        // costs one call plus the new blocks plus the reorg's depth, however long the wait.
        while let Some((&height, (known, _))) = self.blocks.last_key_value() {
            if self.rpc.block_hash(height).await.map_err(rpc_error)? == *known {
                break;
            }
            self.blocks.pop_last();
        }
        // Bounded: a node whose chain keeps changing under the poll is asked again next poll.
        let mut reads = tip.saturating_sub(self.start_height).saturating_mul(2).saturating_add(2);
        loop {
            let next = self.blocks.last_key_value().map_or(self.start_height.saturating_add(1), |(h, _)| h + 1);
            if next > tip || reads == 0 {
                break;
            }
            reads -= 1;
            let hash = self.rpc.block_hash(next).await.map_err(rpc_error)?;
            let block = self.rpc.block(&hash).await.map_err(rpc_error)?;
            if let Some((_, (below, _))) = self.blocks.last_key_value()
                && block.header.prev_blockhash != *below
            {
                // The chain moved under the poll: the block below was replaced too.
                self.blocks.pop_last();
                continue;
            }
            let paying = block.txdata.iter().find(|tx| self.pays(tx)).map(Transaction::compute_txid);
            self.blocks.insert(next, (hash, paying));
        }
        if let Some((height, txid)) = self.blocks.iter().find_map(|(h, (_, paying))| paying.map(|t| (*h, t))) {
            let confirmations = tip.saturating_sub(height).saturating_add(1);
            return Ok(Seen::Paid(format!("Bitcoin tx {txid}, {confirmations} confirmation(s) at height {height}")));
        }
        let listed = self.rpc.raw_mempool().await.map_err(rpc_error)?;
        // Only what the mempool holds now is remembered: everything that passed through it during
        // a long wait (anyone's flood included) would otherwise stay in the wallet's memory.
        let now: HashSet<Txid> = listed.iter().copied().collect();
        self.mempool.retain(|txid, _| now.contains(txid));
        let mut found = None;
        for txid in listed {
            let pays = match self.mempool.get(&txid) {
                Some(pays) => *pays,
                None => {
                    // A transaction may leave the mempool between the two calls; skip it then.
                    let Ok(tx) = self.rpc.raw_transaction(&txid, None).await else { continue };
                    let pays = self.pays(&tx);
                    self.mempool.insert(txid, pays);
                    pays
                }
            };
            if pays {
                found = Some(txid);
            }
        }
        Ok(found.map_or(Seen::Nothing, |txid| Seen::Signed(format!("Bitcoin tx {txid} in the mempool"))))
    }
}

/// The test's range-capping node, shared with the chains crate's tests.
#[cfg(test)]
#[path = "../../../chains/tests/common/lagging_eth.rs"]
mod lagging_eth;

/// The test's Bitcoin miner, shared with the chains crate's tests.
#[cfg(test)]
#[path = "../../../chains/tests/common/btc.rs"]
mod btc;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use bridge::withdrawals::{EthWithdrawal, EthWithdrawalTree};
    use contracts::harness::Setup;

    use super::*;

    /// Who could stop `withdraw --wait` from seeing its payment: a hosted node capping log
    /// ranges, once the wait outgrows the cap (one request from the start to the head was
    /// refused at every poll). A bounded window a poll, narrowed at a refusal, finds it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_payment_long_after_the_withdrawal_is_seen_through_a_range_capped_node() {
        let setup = Setup::new().await.unwrap();
        setup.deposit_eth(Address::ZERO, 1_000_000).await.unwrap();
        let node = lagging_eth::LaggingNode::start(&setup.anvil.url(), 0).await;
        node.set_log_cap(Some(1_000));
        let recipient = bridge::Address([0x5e; 20]);
        let vault = contracts::from_alloy(setup.vault_address());
        let mut payout = EthPayout::start(&node.url, &Default::default(), vault, bridge::Address::ZERO, recipient, 100)
            .await
            .unwrap();
        assert_eq!(payout.poll(3).await.unwrap(), Seen::Nothing);

        // 3,000 blocks of waiting, then the payment.
        let _: serde_json::Value = setup.provider.raw_request("anvil_mine".into(), (3_000u64,)).await.unwrap();
        let withdrawal =
            EthWithdrawal { batch: 3, index: 0, token: bridge::Address::ZERO, recipient, amount: bridge::Amount(100) };
        let receipt = setup.pay(3, &EthWithdrawalTree::new(vec![withdrawal]), [0]).await.unwrap();
        let paid = receipt.transaction_hash.to_string();

        // 10,000 blocks are refused, then 5,000, 2,500 and 1,250; windows of 625 reach it.
        let mut polls = 0;
        let seen = loop {
            polls += 1;
            assert!(polls <= 15, "not seen after {polls} polls");
            match payout.poll(3).await {
                Ok(Seen::Paid(detail)) => break detail,
                Ok(_) => {}
                Err(e) => assert!(e.to_string().contains("Withdrawn logs"), "{e:#}"),
            }
        };
        assert!(seen.contains(&paid), "{seen}");
        let (answered, refused) = node.log_requests();
        assert_eq!(refused, 4, "only refusals narrow the window");
        assert!(answered <= 7, "{answered} windows for 3,000 blocks");
    }

    /// A regtest node past its first mature coinbases, and a watch for a payment of 5,000 sat
    /// to a fresh address, started at its tip.
    struct BtcWatch {
        node: regtest::RegtestNode,
        rpc: CoreRpc,
        miner: super::btc::Miner,
        recipient: bitcoin::Address,
        payout: BtcPayout,
    }

    impl BtcWatch {
        async fn start() -> Self {
            let node = regtest::RegtestNode::start(regtest::RegtestConfig::default()).await.unwrap();
            let rpc = CoreRpc::new(node.url(), node.user(), node.password());
            let miner = super::btc::Miner::new();
            rpc.generate_to_address(110, &miner.address).await.unwrap();
            let recipient = super::btc::recipient();
            let endpoint = BtcRpc {
                url: node.url(),
                user: node.user().to_owned(),
                password: node.password().to_owned(),
                tls: Default::default(),
            };
            let payout = BtcPayout::start(&endpoint, recipient.script_pubkey(), 5_000).await.unwrap();
            BtcWatch { node, rpc, miner, recipient, payout }
        }
    }

    /// Who could grow a waiting wallet's memory: anyone sending transactions through the
    /// mempool while `withdraw --wait` watches it for a Bitcoin payout. What left it is forgotten.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_bitcoin_payout_watch_remembers_only_what_the_mempool_holds_now() {
        use bitcoin::Amount;
        let BtcWatch { node, rpc, miner, recipient, mut payout } = BtcWatch::start().await;

        // A flood passes through the mempool while the wallet waits.
        for height in 1..=5 {
            miner.pay(&rpc, height, &super::btc::recipient(), Amount::from_sat(5_000)).await;
        }
        assert_eq!(payout.poll().await.unwrap(), Seen::Nothing);
        assert_eq!(payout.mempool.len(), 5);
        rpc.generate_to_address(1, &miner.address).await.unwrap();
        assert_eq!(payout.poll().await.unwrap(), Seen::Nothing);
        assert!(payout.mempool.is_empty(), "mined transactions are still remembered: {:?}", payout.mempool);

        // The payment itself is still seen: in the mempool, then in a block.
        let paid = miner.pay(&rpc, 6, &recipient, Amount::from_sat(5_000)).await.compute_txid();
        assert_eq!(payout.poll().await.unwrap(), Seen::Signed(format!("Bitcoin tx {paid} in the mempool")));
        rpc.generate_to_address(1, &miner.address).await.unwrap();
        assert!(matches!(payout.poll().await.unwrap(), Seen::Paid(detail) if detail.contains(&paid.to_string())));
        node.shutdown().await;
    }

    /// Who could make `withdraw --wait` say "paid" for a payment that is not: a reorg taking its
    /// block away. A poll reads only what changed since the last (not every block since the
    /// withdrawal), so it must still notice a block it read being replaced.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_bitcoin_payout_watch_reads_only_new_blocks_and_follows_a_reorg() {
        use bitcoin::Amount;
        let BtcWatch { node, rpc, miner, recipient, mut payout } = BtcWatch::start().await;
        rpc.generate_to_address(3, &miner.address).await.unwrap();
        assert_eq!(payout.poll().await.unwrap(), Seen::Nothing);
        let read: Vec<u64> = payout.blocks.keys().copied().collect();
        assert_eq!(read, vec![111, 112, 113], "the blocks since the withdrawal");

        // The payment in block 114.
        let fork = rpc.block_hash(113).await.unwrap();
        let paid = miner.pay(&rpc, 1, &recipient, Amount::from_sat(5_000)).await.compute_txid();
        rpc.generate_to_address(1, &miner.address).await.unwrap();
        let seen = payout.poll().await.unwrap();
        assert!(matches!(&seen, Seen::Paid(detail) if detail.contains("at height 114")), "{seen:?}");

        // A longer branch from 113 without it: the payment is back in the mempool, not paid.
        super::btc::mine_branch(&node, fork, 3, &miner.address).await;
        assert_eq!(payout.poll().await.unwrap(), Seen::Signed(format!("Bitcoin tx {paid} in the mempool")));
        for height in 114..=116 {
            let (hash, paying) = payout.blocks[&height];
            assert_eq!(hash, rpc.block_hash(height).await.unwrap(), "block {height} of the new branch");
            assert_eq!(paying, None);
        }

        // Mined again, higher up: paid there.
        rpc.generate_to_address(1, &miner.address).await.unwrap();
        let seen = payout.poll().await.unwrap();
        assert!(matches!(&seen, Seen::Paid(detail) if detail.contains("at height 117")), "{seen:?}");
        node.shutdown().await;
    }
}

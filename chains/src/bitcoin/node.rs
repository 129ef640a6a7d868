//! The Bitcoin node as the bridge's deposit watcher, deposit check and payouts see it: seven
//! calls, so the same code runs against Core's JSON-RPC in production and against an in-process chain in the
//! simulator.

use bitcoin::{Block, BlockHash, OutPoint, Transaction, Txid};

use super::rpc::{BlockchainInfo, CoreRpc, RpcError, TransactionInfo, UnspentOutput};

/// What the bridge asks of a Bitcoin node: Core's JSON-RPC ([`CoreRpc`]) in production, an
/// in-process chain in the simulator.
#[async_trait::async_trait]
pub trait BitcoinNode: Send + Sync + std::fmt::Debug {
    /// `getblockchaininfo`: the tip and whether the node is still syncing.
    async fn blockchain_info(&self) -> Result<BlockchainInfo, RpcError>;
    /// `getblockcount`: the active chain's tip height.
    async fn block_count(&self) -> Result<u64, RpcError>;
    /// `getrawtransaction` verbose; an unknown transaction is
    /// `RpcError::Rpc { code: NOT_FOUND, .. }`, as Core answers.
    async fn transaction_info(&self, txid: &Txid) -> Result<TransactionInfo, RpcError>;
    /// `sendrawtransaction`; refusals are `RpcError::Rpc` with Core's codes and messages, which
    /// the payout broadcaster reads (already in the chain, already in the mempool).
    async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, RpcError>;
    /// `gettxout`: the output if unspent (mempool spends count when `include_mempool`).
    async fn tx_out(&self, outpoint: &OutPoint, include_mempool: bool) -> Result<Option<UnspentOutput>, RpcError>;
    /// `getblockhash`: the active chain's block at `height` (at most [`BitcoinNode::block_count`]).
    async fn block_hash(&self, height: u64) -> Result<BlockHash, RpcError>;
    /// `getblock` raw: the block `hash`, checked to be that block.
    async fn block(&self, hash: &BlockHash) -> Result<Block, RpcError>;
}

/// Production: every call is the client's own.
#[async_trait::async_trait]
impl BitcoinNode for CoreRpc {
    async fn blockchain_info(&self) -> Result<BlockchainInfo, RpcError> {
        CoreRpc::blockchain_info(self).await
    }

    async fn block_count(&self) -> Result<u64, RpcError> {
        CoreRpc::block_count(self).await
    }

    async fn transaction_info(&self, txid: &Txid) -> Result<TransactionInfo, RpcError> {
        CoreRpc::transaction_info(self, txid).await
    }

    async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, RpcError> {
        CoreRpc::send_raw_transaction(self, tx).await
    }

    async fn tx_out(&self, outpoint: &OutPoint, include_mempool: bool) -> Result<Option<UnspentOutput>, RpcError> {
        CoreRpc::tx_out(self, outpoint, include_mempool).await
    }

    async fn block_hash(&self, height: u64) -> Result<BlockHash, RpcError> {
        CoreRpc::block_hash(self, height).await
    }

    async fn block(&self, hash: &BlockHash) -> Result<Block, RpcError> {
        CoreRpc::block(self, hash).await
    }
}

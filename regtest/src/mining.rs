//! Block assembly as Core's miner does it on regtest: a coinbase with the BIP-34 height, the
//! subsidy plus fees, and the BIP-141 witness commitment; the merkle root; regtest's minimum
//! difficulty with the nonce ground until the header meets it.

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::script::Builder;
use bitcoin::transaction::Version as TxVersion;
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxMerkleNode, TxOut,
    Witness, absolute,
};

/// Regtest's proof-of-work limit (`powLimit`), which its blocks use since it never retargets.
pub const REGTEST_BITS: u32 = 0x207f_ffff;
/// Regtest halves the subsidy every 150 blocks.
const HALVING_INTERVAL: u32 = 150;
/// Room left for the coinbase and header in a block's 4M weight units.
const MAX_TX_WEIGHT: u64 = 3_990_000;

/// What to build a block from.
#[derive(Debug, Clone)]
pub struct Template {
    /// The block it builds on.
    pub parent: BlockHash,
    /// Its height.
    pub height: u32,
    /// Its timestamp (above the parent's median time past).
    pub time: u32,
    /// Where the coinbase pays.
    pub script: ScriptBuf,
    /// Transactions in a valid order, with their fees.
    pub transactions: Vec<(Transaction, Amount)>,
    /// Makes coinbases unique when two branches reach the same height.
    pub extra_nonce: u64,
}

/// The block subsidy at `height` on regtest.
pub fn subsidy(height: u32) -> Amount {
    let halvings = height / HALVING_INTERVAL;
    if halvings >= 64 { Amount::ZERO } else { Amount::from_sat((50 * 100_000_000) >> halvings) }
}

/// Assemble and solve a block.
pub fn assemble(template: Template) -> Block {
    let mut weight = 0;
    let mut fees = Amount::ZERO;
    let mut txdata = vec![placeholder_coinbase()];
    for (tx, fee) in template.transactions {
        weight += tx.weight().to_wu();
        if weight > MAX_TX_WEIGHT {
            // Later entries may depend on this one: stop here to keep the order valid.
            break;
        }
        fees += fee;
        txdata.push(tx);
    }
    let script_sig = Builder::new()
        .push_int(i64::from(template.height))
        .push_slice(template.extra_nonce.to_le_bytes())
        .into_script();
    let mut coinbase = Transaction {
        version: TxVersion::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig,
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[[0u8; 32]]),
        }],
        output: vec![TxOut { value: subsidy(template.height) + fees, script_pubkey: template.script }],
    };
    let mut block = Block {
        header: Header {
            version: Version::from_consensus(0x2000_0000),
            prev_blockhash: template.parent,
            merkle_root: TxMerkleNode::all_zeros(),
            time: template.time,
            bits: CompactTarget::from_consensus(REGTEST_BITS),
            nonce: 0,
        },
        txdata,
    };
    // The witness root counts the coinbase as all zeros, so it can be computed before the coinbase is final.
    if let Some(witness_root) = block.witness_root() {
        let commitment = Block::compute_witness_commitment(&witness_root, &[0u8; 32]);
        let mut script = vec![0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
        script.extend_from_slice(commitment.as_byte_array());
        coinbase.output.push(TxOut { value: Amount::ZERO, script_pubkey: ScriptBuf::from_bytes(script) });
    }
    block.txdata[0] = coinbase;
    if let Some(root) = block.compute_merkle_root() {
        block.header.merkle_root = root;
    }
    let target = block.header.target();
    while !target.is_met_by(block.header.block_hash()) {
        block.header.nonce = block.header.nonce.wrapping_add(1);
    }
    block
}

fn placeholder_coinbase() -> Transaction {
    Transaction {
        version: TxVersion::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn::default()],
        output: vec![],
    }
}

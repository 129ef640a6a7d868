//! An Ethereum withdrawal's payout as the vault shows it, read from this confirmer's own node:
//! the range covering the batch through the vault's bindings (`VaultReader::range_of`: the root
//! the watchmen's group signature put there), whether the vault paid the leaf (its bitmap,
//! `isPaid`), and, if it did, the vault's `Withdrawn(batch, index, token)` log, looked for
//! backwards from the head in windows of [`LOOKUP_WINDOW`] blocks filtered by its three indexed
//! topics (`VaultReader::withdrawn_log`), for the paying transaction and its confirmations. Only
//! a node's refusal narrows the window; a node that does not answer ends the lookup with an
//! error at once, instead of being asked for ever smaller windows.
//!
//! One request from the first block to the head was refused by every hosted provider once the
//! chain outgrew its range cap (10,000 blocks is common): the page showed an error for every
//! withdrawal. Windows from the head find a recent payment in one request, and a bounded number
//! of them keeps a page view from costing the node more than a few requests.

use bridge::Address;
use chains::ethereum::VaultReader;
use chains::ethereum_view::LogsError;

use super::stages::L1Tx;

/// Blocks per `eth_getLogs` request of the lookup (narrower after a refusal).
const LOOKUP_WINDOW: u64 = chains::ethereum_view::LOG_RANGE;

/// The most `eth_getLogs` requests one lookup makes, refused ones included: at full width a
/// payment within the last 200,000 blocks (four weeks of Ethereum) is found. An older one is
/// reported paid, without its transaction.
const MAX_LOOKUP_REQUESTS: u32 = 20;

/// What the vault holds for leaf `index` of `batch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafOnChain {
    /// The withdrawals root of the range covering the batch, once the vault holds one.
    pub root: Option<String>,
    /// The transaction whose `Withdrawn` log paid the leaf, with its confirmations.
    pub paid: Option<L1Tx>,
}

/// Asks the vault (through `reader`) about leaf `index` of `batch` (paying `token`, zero for
/// ether).
pub async fn leaf(reader: &VaultReader, batch: u64, index: u32, token: Address) -> Result<LeafOnChain, String> {
    let range = reader.range_of(batch).await.map_err(|e| format!("the vault's rangeOf({batch}): {e}"))?;
    let Some(range) = range else { return Ok(LeafOnChain { root: None, paid: None }) };
    let root = Some(format!("0x{}", hex::encode(range.root)));
    let paid = reader.is_paid(batch, index).await.map_err(|e| format!("the vault's isPaid({batch}, {index}): {e}"))?;
    if !paid {
        return Ok(LeafOnChain { root, paid: None });
    }
    let head = reader.head().await.map_err(|e| format!("the Ethereum node's head: {e}"))?;
    let (mut to, mut window, mut lowest) = (head, LOOKUP_WINDOW, head.saturating_add(1));
    for _ in 0..MAX_LOOKUP_REQUESTS {
        let from = to.saturating_sub(window - 1);
        match reader.withdrawn_log(batch, index, token, from, to).await {
            Ok(Some((hash, block))) => {
                let confirmations = head.saturating_add(1).saturating_sub(block);
                let hash = hash.to_string();
                return Ok(LeafOnChain {
                    root,
                    paid: Some(L1Tx { chain: bridge::Chain::Ethereum, hash, confirmations }),
                });
            }
            Ok(None) => {}
            // Most likely wider than the node allows: ask for fewer blocks.
            Err(LogsError::Refused(_)) if window > 1 => {
                window /= 2;
                continue;
            }
            // A node that does not answer is not asked for narrower windows: the page says so.
            Err(error) => return Err(format!("looking up the payment of leaf {index} of batch {batch}: {error}")),
        }
        lowest = from;
        if from == 0 {
            break;
        }
        to = from - 1;
    }
    Err(format!(
        "the vault has paid leaf {index} of batch {batch} (its bitmap says so), but its Withdrawn log is not in the \
         blocks looked through (blocks {lowest} to {head}); look it up on an explorer"
    ))
}

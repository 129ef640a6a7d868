//! The node's injected clock: with the same fixed clock, the same script mines the same blocks
//! (what the simulator's replays rely on), and a block's time is the clock's unless the clock is
//! behind the chain, when it is the median time past plus one, as consensus requires.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bitcoin::ScriptBuf;
use bitcoin::opcodes::OP_TRUE;
use regtest::{Clock, Node};

const NOW: u64 = 1_700_000_000;

fn anyone_can_spend() -> ScriptBuf {
    ScriptBuf::builder().push_opcode(OP_TRUE).into_script()
}

fn block_time(node: &Node, height: u32) -> u32 {
    node.view().unwrap().index().at(height).unwrap().block.header.time
}

#[test]
fn the_same_fixed_clock_mines_the_same_blocks() {
    let clock: Clock = Arc::new(|| NOW);
    let first = Node::with_clock(None, clock.clone()).unwrap();
    let second = Node::with_clock(None, clock).unwrap();
    let script = anyone_can_spend();
    let mined = first.mine(5, &script).unwrap();
    assert_eq!(mined, second.mine(5, &script).unwrap());
    assert_eq!(first.height().unwrap(), 5);
    // Each block at the clock's time, unless the chain's median time past has caught up with a
    // clock that stands still (on so short a chain, from the second block on).
    for height in 1..=5 {
        let parent = first.block_hash(height - 1).unwrap().unwrap();
        let median = first.view().unwrap().median_time(&parent).unwrap();
        assert_eq!(u64::from(block_time(&first, height)), NOW.max(u64::from(median) + 1));
    }
    assert_eq!(u64::from(block_time(&first, 1)), NOW);
}

#[test]
fn a_block_takes_the_clock_s_time_or_median_time_past_plus_one() {
    let now = Arc::new(AtomicU64::new(NOW));
    let reading = now.clone();
    let node = Node::with_clock(None, Arc::new(move || reading.load(Ordering::SeqCst))).unwrap();
    let script = anyone_can_spend();

    let [first] = node.mine(1, &script).unwrap()[..] else { panic!("one block asked for") };
    assert_eq!(u64::from(block_time(&node, 1)), NOW);

    // The clock falls behind the chain: the next block's time is the median time past ending at
    // its parent, plus one.
    now.store(NOW - 3_600, Ordering::SeqCst);
    let median = node.view().unwrap().median_time(&first).unwrap();
    node.mine(1, &script).unwrap();
    assert_eq!(block_time(&node, 2), median + 1);
    assert!(u64::from(block_time(&node, 2)) > NOW - 3_600);

    // Ahead again: the clock's time.
    now.store(NOW + 600, Ordering::SeqCst);
    node.mine(1, &script).unwrap();
    assert_eq!(u64::from(block_time(&node, 3)), NOW + 600);
}

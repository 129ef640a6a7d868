use std::collections::BTreeMap;

use proptest::prelude::*;

use super::tree::{bit, internal_hash, leaf_hash, value_hash};
use super::*;

/// The root by docs/PROTOCOL.md's definition, straight from the set of entries: no arena, no
/// cache, no history.
fn reference_root(entries: &BTreeMap<KeyHash, Vec<u8>>) -> [u8; 32] {
    fn subtree(leaves: &[(KeyHash, [u8; 32])], depth: usize) -> [u8; 32] {
        match leaves {
            [] => PLACEHOLDER,
            [(_, leaf)] => *leaf,
            _ => {
                let split = leaves.partition_point(|(key, _)| !bit(key, depth));
                internal_hash(&subtree(&leaves[..split], depth + 1), &subtree(&leaves[split..], depth + 1))
            }
        }
    }
    let leaves: Vec<_> = entries.iter().map(|(key, value)| (*key, leaf_hash(key, &value_hash(value)))).collect();
    subtree(&leaves, 0)
}

/// Every hash an internal node caches for a child is that child's hash, recomputed from the
/// leaves up: the invariant the update relies on when it passes an untouched child.
fn cached_hashes_hold(tree: &Commitment) -> bool {
    fn hash_of(nodes: &tree::Nodes, node: tree::Ref, ok: &mut bool) -> [u8; 32] {
        if node.is_empty() {
            PLACEHOLDER
        } else if node.is_leaf() {
            let leaf = nodes.leaf(node);
            leaf_hash(&leaf.key, &value_hash(leaf.value.as_bytes()))
        } else {
            let internal = nodes.internal(node);
            let (left, right) = (hash_of(nodes, internal.left, ok), hash_of(nodes, internal.right, ok));
            *ok &= left == internal.left_hash && right == internal.right_hash;
            internal_hash(&left, &right)
        }
    }
    let mut ok = true;
    let root = hash_of(&tree.nodes, tree.root.node, &mut ok);
    ok && root == tree.root.hash
}

fn key(n: u32) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

fn writes(keys: std::ops::Range<u32>, value: u8) -> BTreeMap<KeyHash, Option<Vec<u8>>> {
    keys.map(|k| (key_hash(&key(k)), Some(vec![value]))).collect()
}

fn commit(tree: &mut Commitment, writes: BTreeMap<KeyHash, Option<Vec<u8>>>) {
    let pending = tree.prepare(writes).unwrap();
    tree.apply(pending);
}

#[test]
fn batch_and_single_insertion_agree_and_deleting_everything_empties_the_tree() {
    let mut batched = Commitment::default();
    commit(&mut batched, writes(0..200, 1));
    commit(&mut batched, writes(100..300, 2));

    let mut single = Commitment::default();
    for k in 0..300u32 {
        commit(&mut single, writes(k..k + 1, if k < 100 { 1 } else { 2 }));
    }
    commit(&mut single, BTreeMap::from([(key_hash(b"gone"), Some(vec![9]))]));
    commit(&mut single, BTreeMap::from([(key_hash(b"gone"), None)]));
    assert_eq!(batched.root(), single.root());
    assert_eq!(batched.len(), 300);

    let all: BTreeMap<_, _> = (0..300u32).map(|k| (key_hash(&key(k)), None)).collect();
    commit(&mut single, all);
    assert_eq!(single.root(), Some(empty_root()));
    assert!(single.is_empty());
    assert_eq!(single.nodes.live(), (0, 0), "every node was freed");
}

#[test]
fn freed_nodes_are_reused() {
    let mut tree = Commitment::default();
    for round in 0..5u8 {
        commit(&mut tree, writes(0..64, round));
    }
    let (internals, leaves) = tree.nodes.slots();
    // One batch's worth of replacements is in flight at most: 64 leaves and their internal
    // nodes, twice, not five versions' worth.
    assert!(leaves <= 2 * 64 && internals <= 2 * 2 * 64, "{internals} internal and {leaves} leaf slots");
    assert_eq!(tree.nodes.live().1, 64);
    tree.prove(&key(7)).unwrap().verify(tree.root_or_empty()).unwrap();
}

#[test]
fn the_bulk_build_is_the_incremental_tree_and_refuses_a_key_twice() {
    let entries: Vec<(KeyHash, Vec<u8>)> = (0..1_000u32).map(|k| (key_hash(&key(k)), vec![k as u8; 3])).collect();
    let built = Commitment::from_entries(entries.clone()).unwrap();
    let mut incremental = Commitment::default();
    for chunk in entries.chunks(77) {
        commit(&mut incremental, chunk.iter().map(|(k, v)| (*k, Some(v.clone()))).collect());
    }
    assert_eq!(built.root(), incremental.root());
    assert_eq!(built.len(), 1_000);
    let mut twice = entries;
    twice.push((key_hash(&key(5)), vec![0]));
    assert!(Commitment::from_entries(twice).is_err());
}

#[test]
fn rewriting_a_value_to_itself_keeps_the_root_and_deleting_an_absent_key_changes_nothing() {
    let mut tree = Commitment::default();
    commit(&mut tree, writes(0..50, 4));
    let root = tree.root();
    commit(&mut tree, writes(10..20, 4));
    assert_eq!(tree.root(), root);
    let pending = tree.prepare(BTreeMap::from([(key_hash(b"never written"), None)])).unwrap();
    assert_eq!(pending.root(), tree.root_or_empty());
    tree.apply(pending);
    assert_eq!((tree.root(), tree.len()), (root, 50));
}

/// A batch's update split between threads is the one-thread update node for node: the same
/// roots, the same overlay, the same arenas once applied, whatever the pool's size. The batches
/// are large enough that every split level is taken, and mix inserts, rewrites, boxed values
/// and deletes.
#[test]
fn an_update_split_between_threads_builds_the_tree_a_single_thread_builds() {
    let history: Vec<BTreeMap<KeyHash, Option<Vec<u8>>>> = (0..4u32)
        .map(|round| {
            (0..6_000u32)
                .map(|i| {
                    let n = (i * 7 + round * 3_001) % 20_000;
                    let value = match (i + round) % 9 {
                        0 if round > 0 => None,
                        1 => Some(vec![round as u8; 40]),
                        _ => Some((u128::from(i) * u128::from(round + 1)).to_le_bytes().to_vec()),
                    };
                    (key_hash(&key(n)), value)
                })
                .collect()
        })
        .collect();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut tree = Commitment::default();
            let mut model: BTreeMap<KeyHash, Vec<u8>> = BTreeMap::new();
            let mut seen = Vec::new();
            for writes in &history {
                for (k, v) in writes {
                    match v {
                        Some(v) => model.insert(*k, v.clone()),
                        None => model.remove(k),
                    };
                }
                let pending = tree.prepare(writes.clone()).unwrap();
                assert_eq!(pending.root(), reference_root(&model));
                seen.push(format!("{:?}", pending.overlay));
                tree.apply(pending);
                seen.push(format!("{:?} {:?}", tree.nodes, tree.root));
                assert!(cached_hashes_hold(&tree));
            }
            seen
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(4));
}

/// One step of a random history: keys from a small space so that updates and deletes hit.
fn batch() -> impl Strategy<Value = BTreeMap<u16, Option<Vec<u8>>>> {
    prop::collection::btree_map(
        0u16..400,
        // Up to twice the inline size: values held in the leaf and boxed ones both.
        prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..44)),
        0..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn random_histories_give_the_reference_root_and_proofs_that_check(history in prop::collection::vec(batch(), 1..12)) {
        let mut tree = Commitment::default();
        let mut model: BTreeMap<KeyHash, Vec<u8>> = BTreeMap::new();
        for batch in history {
            let writes: BTreeMap<KeyHash, Option<Vec<u8>>> =
                batch.iter().map(|(k, v)| (key_hash(&k.to_le_bytes()), v.clone())).collect();
            for (k, v) in &writes {
                match v {
                    Some(v) => model.insert(*k, v.clone()),
                    None => model.remove(k),
                };
            }
            let pending = tree.prepare(writes).unwrap();
            prop_assert_eq!(pending.root(), reference_root(&model));
            tree.apply(pending);
            prop_assert_eq!(tree.root_or_empty(), reference_root(&model));
            prop_assert_eq!(tree.len(), model.len());
            prop_assert_eq!(tree.nodes.live().1, model.len());
            prop_assert!(cached_hashes_hold(&tree));
        }
        let root = tree.root_or_empty();
        for k in (0u16..400).step_by(7) {
            let key = k.to_le_bytes();
            let proof = tree.prove(&key).unwrap();
            prop_assert_eq!(proof.value.as_deref(), model.get(&key_hash(&key)).map(Vec::as_slice));
            prop_assert!(proof.verify(root).is_ok(), "{:?}", proof);
            // A proof read back from its JSON checks the same.
            let json = serde_json::to_string(&proof).unwrap();
            prop_assert!(serde_json::from_str::<StateProof>(&json).unwrap().verify(root).is_ok());
            for lie in tampered(&proof) {
                prop_assert!(lie.verify(root).is_err(), "a tampered proof passed: {:?}", lie);
            }
        }
    }

    #[test]
    fn a_prepared_root_dropped_changes_nothing(
        first in batch(), second in batch(), probe in 0u16..400,
    ) {
        let mut tree = Commitment::default();
        commit(&mut tree, first.iter().map(|(k, v)| (key_hash(&k.to_le_bytes()), v.clone())).collect());
        let before = (tree.root(), tree.len(), tree.nodes.slots(), tree.nodes.live());
        let proof = tree.prove(&probe.to_le_bytes()).unwrap();
        let pending = tree.prepare(second.iter().map(|(k, v)| (key_hash(&k.to_le_bytes()), v.clone())).collect());
        drop(pending);
        prop_assert_eq!(before, (tree.root(), tree.len(), tree.nodes.slots(), tree.nodes.live()));
        prop_assert_eq!(tree.prove(&probe.to_le_bytes()).unwrap(), proof);
    }
}

/// Every single change a forger could make to a proof: another value, a missing or another
/// leaf, a sibling changed, dropped or added.
fn tampered(proof: &StateProof) -> Vec<StateProof> {
    let mut lies = Vec::new();
    let mut lie = proof.clone();
    lie.value = match &proof.value {
        Some(v) if v.is_empty() => Some(vec![0]),
        Some(v) => Some(v[1..].to_vec()),
        None => Some(vec![1]),
    };
    lies.push(lie);
    if let Some(smp) = &proof.proof {
        if proof.value.is_some() {
            let mut lie = proof.clone();
            lie.value = None;
            lies.push(lie);
        }
        if smp.leaf.is_some() {
            let mut lie = proof.clone();
            lie.proof.as_mut().unwrap().leaf = None;
            lies.push(lie);
        }
        for i in 0..smp.siblings.len() {
            let mut lie = proof.clone();
            let sibling = &mut lie.proof.as_mut().unwrap().siblings[i];
            *sibling = match sibling {
                ProofNode::Null => ProofNode::Leaf(ProofLeaf { key_hash: [1; 32], value_hash: [2; 32] }),
                _ => ProofNode::Null,
            };
            lies.push(lie);
        }
        let mut lie = proof.clone();
        lie.proof.as_mut().unwrap().siblings.push(ProofNode::Null);
        lies.push(lie);
        if !smp.siblings.is_empty() {
            let mut lie = proof.clone();
            lie.proof.as_mut().unwrap().siblings.remove(0);
            lies.push(lie);
        }
    }
    lies
}

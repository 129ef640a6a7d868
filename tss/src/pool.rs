//! The coordinator's side of preprocessing: commitments its peers made for it and it has not used
//! yet, kept across its signing sessions so that a session with enough of them starts its first
//! attempt at once (one round: package → shares) instead of asking for commitments first.
//!
//! Safety does not rest here. A signer keeps each nonce until one `Sign` of this coordinator
//! names it and deletes it before computing the share ([`crate::nonces`]), so a set handed out
//! twice by a bug here signs at most once; FROST refuses a package whose commitment for the
//! signer is not the one its nonces make. What this pool guards is liveness and memory: it holds
//! a bounded number of sets per signer, forgets a signer's sets when that signer answers that
//! they are stale (it restarted: a new epoch), and forgets everything when the share changes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use frost::Identifier;
use frost_secp256k1_tr as frost;

use crate::messages::CommitmentSet;

/// Sets kept per signer. One session takes one set per signer and each answered `Sign` brings a
/// fresh one, so an honest steady state holds one; a few leave room for concurrent sessions.
pub const POOL_SETS_PER_SIGNER: usize = 4;
/// Commitment pairs kept per signer (66 bytes each): 100 signers hold at most about 6.8 MB.
/// A larger set (a session of more messages) is not kept; such sessions ask afresh.
pub const POOL_PAIRS_PER_SIGNER: usize = 1024;

struct Pooled {
    /// When it was kept, in keeping order: the earliest answerers are used first.
    order: u64,
    set: CommitmentSet,
}

#[derive(Default)]
pub struct CommitmentPool {
    inner: Mutex<PoolInner>,
}

#[derive(Default)]
struct PoolInner {
    by_signer: BTreeMap<Identifier, VecDeque<Pooled>>,
    next_order: u64,
}

impl std::fmt::Debug for CommitmentPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitmentPool").field("sets", &self.len()).finish()
    }
}

impl CommitmentPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolInner> {
        // Each method leaves the pool whole, so a panic elsewhere cannot leave it torn.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Removes and returns, for each signer that has one, its oldest set of exactly `count`
    /// pairs, ordered by when they were kept (the earliest first).
    pub fn take(&self, count: usize) -> Vec<(Identifier, CommitmentSet)> {
        let mut inner = self.lock();
        let mut taken: Vec<(u64, Identifier, CommitmentSet)> = Vec::new();
        for (id, sets) in inner.by_signer.iter_mut() {
            if let Some(position) = sets.iter().position(|p| p.set.commitments.len() == count)
                && let Some(pooled) = sets.remove(position)
            {
                taken.push((pooled.order, *id, pooled.set));
            }
        }
        inner.by_signer.retain(|_, sets| !sets.is_empty());
        taken.sort_by_key(|(order, _, _)| *order);
        metrics::gauge!("tss_pooled_commitment_sets").set(inner.sets() as f64);
        taken.into_iter().map(|(_, id, set)| (id, set)).collect()
    }

    /// Keeps `set` of `signer` for a later session, dropping that signer's oldest sets beyond
    /// the bounds (the signer evicts its side by its own limits). A set of an epoch other than
    /// the signer's newest kept one replaces them all: the signer restarted.
    pub fn keep(&self, signer: Identifier, set: CommitmentSet) {
        if set.commitments.is_empty() || set.commitments.len() > POOL_PAIRS_PER_SIGNER {
            return;
        }
        let mut inner = self.lock();
        let order = inner.next_order;
        inner.next_order += 1;
        let sets = inner.by_signer.entry(signer).or_default();
        if sets.back().is_some_and(|p| p.set.epoch != set.epoch) {
            sets.clear();
        }
        sets.push_back(Pooled { order, set });
        while sets.len() > POOL_SETS_PER_SIGNER
            || sets.iter().map(|p| p.set.commitments.len()).sum::<usize>() > POOL_PAIRS_PER_SIGNER
        {
            sets.pop_front();
        }
        debug_assert!(sets.len() <= POOL_SETS_PER_SIGNER);
        metrics::gauge!("tss_pooled_commitment_sets").set(inner.sets() as f64);
    }

    /// Forgets every set of `signer` not of `epoch` (it said they are stale).
    pub fn forget_other_epochs(&self, signer: Identifier, epoch: u64) {
        let mut inner = self.lock();
        if let Some(sets) = inner.by_signer.get_mut(&signer) {
            sets.retain(|p| p.set.epoch == epoch);
            if sets.is_empty() {
                inner.by_signer.remove(&signer);
            }
        }
    }

    /// Forgets every set (a new share makes them useless).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.by_signer.clear();
        metrics::gauge!("tss_pooled_commitment_sets").set(0.0);
    }

    /// Sets kept, over all signers.
    pub fn len(&self) -> usize {
        self.lock().sets()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PoolInner {
    fn sets(&self) -> usize {
        self.by_signer.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn set(epoch: u64, nonce_id: u64, count: usize) -> CommitmentSet {
        let mut rng = rand_core::OsRng;
        let (shares, _) = frost::keys::generate_with_dealer(3, 2, frost::keys::IdentifierList::Default, rng).unwrap();
        let share = shares.values().next().unwrap();
        let commitments = (0..count).map(|_| frost::round1::commit(share.signing_share(), &mut rng).1).collect();
        CommitmentSet { epoch, generation: crate::Generation([0; 32]), nonce_id, commitments }
    }

    fn id(i: u16) -> Identifier {
        Identifier::try_from(i).unwrap()
    }

    #[test]
    fn a_set_is_taken_once_and_only_for_a_session_of_its_size() {
        let pool = CommitmentPool::default();
        pool.keep(id(2), set(7, 1, 1));
        pool.keep(id(1), set(7, 2, 3));
        pool.keep(id(1), set(7, 3, 1));
        let taken = pool.take(1);
        let ids: Vec<_> = taken.iter().map(|(i, s)| (*i, s.nonce_id)).collect();
        assert_eq!(ids, vec![(id(2), 1), (id(1), 3)], "one per signer, earliest kept first");
        assert!(pool.take(1).is_empty(), "taken sets are gone");
        assert_eq!(pool.take(3).len(), 1);
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn a_signer_holds_a_bounded_number_of_sets_and_pairs() {
        let pool = CommitmentPool::default();
        for n in 0..10 {
            pool.keep(id(1), set(7, n, 1));
        }
        assert_eq!(pool.len(), POOL_SETS_PER_SIGNER);
        assert_eq!(pool.take(1)[0].1.nonce_id, 6, "the oldest went");
        pool.keep(id(2), set(7, 1, POOL_PAIRS_PER_SIGNER + 1));
        assert!(pool.take(POOL_PAIRS_PER_SIGNER + 1).is_empty(), "a set over the pair bound is not kept");
    }

    #[test]
    fn a_new_epoch_replaces_a_restarted_signers_old_sets() {
        let pool = CommitmentPool::default();
        pool.keep(id(1), set(7, 1, 1));
        pool.keep(id(1), set(7, 2, 1));
        pool.keep(id(1), set(8, 1, 1));
        let taken = pool.take(1);
        assert_eq!(taken.len(), 1);
        assert_eq!((taken[0].1.epoch, taken[0].1.nonce_id), (8, 1));
        assert_eq!(pool.len(), 0);
        pool.keep(id(3), set(7, 1, 1));
        pool.forget_other_epochs(id(3), 9);
        assert_eq!(pool.len(), 0);
    }
}

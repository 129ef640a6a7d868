//! The signer's nonces waiting for their `Sign`, bounded per peer and per session.
//!
//! Every allow-listed peer may ask for commitments, so every peer could otherwise fill this
//! store (and the signer's memory and cores) for all. Each peer has its own account: a hard cap
//! on the nonce pairs and sets it holds here, and a token bucket on how many it may have made
//! per second. A peer over its hold loses its *own* oldest sets (an honest coordinator's
//! leftovers from finished sessions, which nobody else can touch); a peer over its rate is
//! refused ([`Overload::NonceRate`]) before any nonce is made. So one peer can never crowd out
//! another, and the store holds at most `per_peer` pairs for each allow-listed peer.

use std::collections::BTreeMap;
use std::time::Instant;

use frost_secp256k1_tr as frost;
use libp2p::PeerId;

use crate::SessionId;
use crate::messages::Overload;
use crate::signer::MAX_MESSAGES_PER_SESSION;

/// What one peer may cost this signer. The defaults fit the largest honest session (10,000
/// messages: one `Commit` and one fresh set per answered `Sign`) with room for a retry and a few
/// concurrent sessions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NonceLimits {
    /// Most nonce pairs one request may ask for (a session's message count).
    pub per_request: u32,
    /// Most pairs one (peer, session) holds; a new set beyond evicts the session's oldest, which
    /// an honest coordinator has given up on (its answer was lost).
    pub per_session: usize,
    /// Most pairs one peer holds over all its sessions; beyond, its own oldest sets go.
    pub per_peer: usize,
    /// Most sets one peer holds (many tiny sets cost bookkeeping too).
    pub sets_per_peer: usize,
    /// Pairs a peer may have made per second, sustained: generation costs two scalar
    /// multiplications each, so this bounds the cores one peer can take.
    pub rate_per_second: f64,
    /// Pairs a peer may have made at once from a rested bucket.
    pub burst: f64,
}

impl Default for NonceLimits {
    fn default() -> Self {
        let per_request = MAX_MESSAGES_PER_SESSION;
        let max = per_request as usize;
        NonceLimits {
            per_request,
            per_session: 2 * max,
            per_peer: 4 * max,
            sets_per_peer: 256,
            rate_per_second: 2_000.0,
            burst: (4 * max) as f64,
        }
    }
}

struct NonceSet {
    peer: PeerId,
    nonces: Vec<frost::round1::SigningNonces>,
}

struct PeerAccount {
    held: usize,
    /// The peer's sets by id (ids grow, so the first is the oldest), with their session and size.
    sets: BTreeMap<u64, (SessionId, usize)>,
    tokens: f64,
    at: Instant,
}

pub(crate) struct NonceStore {
    limits: NonceLimits,
    sets: BTreeMap<u64, NonceSet>,
    /// One entry per peer that ever asked: the allow-list (and this watchman) bound it.
    peers: BTreeMap<PeerId, PeerAccount>,
    next_id: u64,
    held: usize,
}

impl NonceStore {
    pub(crate) fn new(limits: NonceLimits) -> Self {
        NonceStore { limits, sets: BTreeMap::new(), peers: BTreeMap::new(), next_id: 1, held: 0 }
    }

    pub(crate) fn limits(&self) -> NonceLimits {
        self.limits
    }

    /// Charges `count` fresh pairs to `peer`, or says why it may not have them now.
    pub(crate) fn admit(&mut self, peer: PeerId, count: u32, now: Instant) -> Result<(), Overload> {
        let limits = self.limits;
        if count == 0 || count > limits.per_request {
            return Err(Overload::TooManyMessages { asked: count, max: limits.per_request });
        }
        let account = self.peers.entry(peer).or_insert(PeerAccount {
            held: 0,
            sets: BTreeMap::new(),
            tokens: limits.burst,
            at: now,
        });
        let rested = now.saturating_duration_since(account.at).as_secs_f64() * limits.rate_per_second;
        account.tokens = (account.tokens + rested).min(limits.burst);
        account.at = now;
        if account.tokens < f64::from(count) {
            return Err(Overload::NonceRate {
                asked: count,
                available: account.tokens as u32,
                per_second: limits.rate_per_second as u32,
            });
        }
        account.tokens -= f64::from(count);
        Ok(())
    }

    /// Keeps `nonces` for `peer`'s `session` and returns their id; evicts that peer's oldest
    /// sets (of this session first) to stay within its limits.
    pub(crate) fn insert(
        &mut self,
        peer: PeerId,
        session: SessionId,
        nonces: Vec<frost::round1::SigningNonces>,
        now: Instant,
    ) -> u64 {
        let limits = self.limits;
        let count = nonces.len();
        let account = self.peers.entry(peer).or_insert(PeerAccount {
            held: 0,
            sets: BTreeMap::new(),
            tokens: limits.burst,
            at: now,
        });
        let mut evict = Vec::new();
        let mut session_held: usize = account.sets.values().filter(|(s, _)| *s == session).map(|(_, n)| n).sum();
        for (id, (s, n)) in &account.sets {
            if session_held + count <= limits.per_session {
                break;
            }
            if *s == session {
                evict.push((*id, "session"));
                session_held -= n;
            }
        }
        let mut peer_held = account.held - evict.iter().map(|(id, _)| account.sets[id].1).sum::<usize>();
        let mut peer_sets = account.sets.len() - evict.len();
        for (id, (_, n)) in &account.sets {
            if peer_held + count <= limits.per_peer && peer_sets < limits.sets_per_peer {
                break;
            }
            if !evict.iter().any(|(e, _)| e == id) {
                evict.push((*id, "peer"));
                peer_held -= n;
                peer_sets -= 1;
            }
        }
        for (id, scope) in evict {
            metrics::counter!("tss_nonce_sets_evicted_total", "scope" => scope).increment(1);
            self.remove(id);
        }
        let id = self.next_id;
        self.next_id += 1;
        if let Some(account) = self.peers.get_mut(&peer) {
            account.held += count;
            account.sets.insert(id, (session, count));
        }
        self.held += count;
        self.sets.insert(id, NonceSet { peer, nonces });
        metrics::gauge!("tss_nonces_held").set(self.held as f64);
        id
    }

    /// Removes and returns the set `id` if it was made for `peer` (in whichever of its sessions:
    /// a coordinator uses commitments across its sessions). Ids are never reused within a
    /// process, so a set is taken at most once.
    pub(crate) fn take(&mut self, peer: PeerId, id: u64) -> Option<Vec<frost::round1::SigningNonces>> {
        match self.sets.get(&id) {
            Some(set) if set.peer == peer => self.remove(id),
            _ => None,
        }
    }

    /// The planted bug `NonceKeptAfterSigning`: the nonces, left in place.
    #[cfg(feature = "planted-bugs")]
    pub(crate) fn copy(&self, peer: PeerId, id: u64) -> Option<Vec<frost::round1::SigningNonces>> {
        self.sets.get(&id).filter(|set| set.peer == peer).map(|set| set.nonces.clone())
    }

    fn remove(&mut self, id: u64) -> Option<Vec<frost::round1::SigningNonces>> {
        let set = self.sets.remove(&id)?;
        if let Some(account) = self.peers.get_mut(&set.peer) {
            account.held -= set.nonces.len();
            account.sets.remove(&id);
        }
        self.held -= set.nonces.len();
        metrics::gauge!("tss_nonces_held").set(self.held as f64);
        Some(set.nonces)
    }

    /// Forgets every nonce (a new share makes them useless); rate accounts stay.
    pub(crate) fn clear(&mut self) {
        self.sets.clear();
        for account in self.peers.values_mut() {
            account.held = 0;
            account.sets.clear();
        }
        self.held = 0;
        metrics::gauge!("tss_nonces_held").set(0.0);
    }

    pub(crate) fn held(&self) -> usize {
        self.held
    }

    pub(crate) fn held_by(&self, peer: &PeerId) -> usize {
        self.peers.get(peer).map_or(0, |a| a.held)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn nonces(count: usize) -> Vec<frost::round1::SigningNonces> {
        let mut rng = rand_core::OsRng;
        let (shares, _) = frost::keys::generate_with_dealer(3, 2, frost::keys::IdentifierList::Default, rng).unwrap();
        let share = shares.values().next().unwrap();
        (0..count).map(|_| frost::round1::commit(share.signing_share(), &mut rng).0).collect()
    }

    fn limits() -> NonceLimits {
        NonceLimits {
            per_request: 4,
            per_session: 8,
            per_peer: 12,
            sets_per_peer: 5,
            rate_per_second: 1.0,
            burst: 20.0,
        }
    }

    #[test]
    fn one_peer_over_its_hold_loses_its_own_oldest_sets_never_another_peers() {
        let mut store = NonceStore::new(limits());
        let now = Instant::now();
        let (honest, greedy) = (PeerId::random(), PeerId::random());
        let honest_set = store.insert(honest, SessionId([1; 16]), nonces(4), now);
        let mut greedy_sets = Vec::new();
        for i in 0..10u8 {
            greedy_sets.push(store.insert(greedy, SessionId([i + 2; 16]), nonces(4), now));
        }
        assert_eq!(store.held_by(&greedy), 12, "a peer holds at most its per-peer limit");
        assert_eq!(store.held(), 16);
        assert!(store.take(honest, honest_set).is_some(), "the honest peer's set survived");
        assert!(store.take(greedy, greedy_sets[0]).is_none(), "the greedy peer's oldest went");
        assert!(store.take(greedy, greedy_sets[9]).is_some());
    }

    #[test]
    fn a_session_over_its_hold_loses_its_oldest_set_first() {
        let mut store = NonceStore::new(limits());
        let now = Instant::now();
        let peer = PeerId::random();
        let other = store.insert(peer, SessionId([9; 16]), nonces(2), now);
        let first = store.insert(peer, SessionId([1; 16]), nonces(4), now);
        let second = store.insert(peer, SessionId([1; 16]), nonces(4), now);
        let third = store.insert(peer, SessionId([1; 16]), nonces(4), now);
        assert!(store.take(peer, first).is_none(), "the session's oldest set went");
        assert!(store.take(peer, other).is_some(), "the other session's older set stayed");
        assert!(store.take(peer, second).is_some());
        assert!(store.take(peer, third).is_some());
        assert_eq!(store.held(), 0);
    }

    #[test]
    fn a_peer_over_its_rate_or_asking_too_much_at_once_is_refused_with_the_reason() {
        let mut store = NonceStore::new(limits());
        let now = Instant::now();
        let peer = PeerId::random();
        assert_eq!(store.admit(peer, 5, now), Err(Overload::TooManyMessages { asked: 5, max: 4 }));
        assert_eq!(store.admit(peer, 0, now), Err(Overload::TooManyMessages { asked: 0, max: 4 }));
        for _ in 0..5 {
            store.admit(peer, 4, now).unwrap();
        }
        assert!(matches!(store.admit(peer, 4, now), Err(Overload::NonceRate { available: 0, .. })));
        assert!(store.admit(PeerId::random(), 4, now).is_ok(), "another peer has its own bucket");
        let later = now + std::time::Duration::from_secs(4);
        assert!(store.admit(peer, 4, later).is_ok(), "the bucket refills at the rate");
    }

    #[test]
    fn many_tiny_sets_are_bounded_too() {
        let mut store = NonceStore::new(limits());
        let now = Instant::now();
        let peer = PeerId::random();
        for i in 0..20u8 {
            store.insert(peer, SessionId([i; 16]), nonces(1), now);
        }
        assert_eq!(store.held_by(&peer), 5);
    }
}

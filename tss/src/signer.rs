//! The answering side of every protocol: a watchman asked for commitments, shares, or DKG steps.
//!
//! Nonces are made fresh for each `Commit` (and after each answered `Sign`, for the asking
//! coordinator's next attempt or session), kept in memory only (never persisted: a restart
//! forgets them, which is safe), keyed by who asked and under which id, and removed before they
//! are used, so no nonce can sign twice. A coordinator may use them in a later session
//! (preprocessing); `epoch`, random per process start and per share, tells it which of its kept
//! commitments a restarted signer no longer has. The [`SigningPolicy`] is asked
//! about every message before a share is computed; a refusal consumes the nonces too. What each
//! peer may hold and have made is bounded per peer ([`crate::nonces`]): a greedy peer is refused
//! with [`Overload`] and can never crowd out another.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use frost_secp256k1_tr as frost;
use libp2p::PeerId;
use rand_core::{CryptoRngCore, OsRng};

use crate::SessionId;
use crate::dkg::DkgInbox;
use crate::keystore::{Generation, KeyShare};
use crate::messages::{CommitmentSet, Encoded, Overload, Request, Response};
use crate::nonces::{NonceLimits, NonceStore};
use crate::policy::{Decision, SigningPolicy, SigningRequest};

/// Most messages in one session.
pub const MAX_MESSAGES_PER_SESSION: u32 = 10_000;

/// Answers a peer's request. The honest implementation is [`Signer`]; tests wrap it to lie.
pub trait InboundHandler: Send + Sync + 'static {
    fn handle(&self, from: PeerId, request: Request) -> Response;
}

pub struct Signer {
    share: RwLock<Option<Held>>,
    policy: Arc<dyn SigningPolicy>,
    nonces: Mutex<NonceStore>,
    /// Names this process's nonces (with the share they are for): random, so that a restarted
    /// signer's peers learn their commitments of it are gone.
    epoch: AtomicU64,
    dkg: Arc<DkgInbox>,
    randomness: Randomness,
    clock: Arc<dyn Clock>,
}

/// A share and its generation, worked out once when the share is installed.
#[derive(Clone)]
struct Held {
    share: KeyShare,
    generation: Generation,
}

impl Held {
    /// A share whose public package cannot be encoded holds an identity point, which no
    /// ceremony makes: it is treated as no share (the signer answers `Failed`), and logged.
    fn of(share: KeyShare) -> Option<Held> {
        match share.generation() {
            Ok(generation) => Some(Held { share, generation }),
            Err(error) => {
                tracing::error!(%error, "this key share's public package does not encode; it will not sign");
                None
            }
        }
    }
}

/// Where a signer's nonces and epochs come from.
pub enum Randomness {
    /// The operating system's generator: the binaries' (and the only one fit for real keys).
    Os,
    /// A generator the caller seeded: the simulator's, so a seed replays its nonces exactly.
    Given(Mutex<Box<dyn CryptoRngCore + Send>>),
}

impl std::fmt::Debug for Randomness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Randomness::Os => "Randomness::Os",
            Randomness::Given(_) => "Randomness::Given",
        })
    }
}

impl Randomness {
    fn draw<T>(&self, use_it: impl FnOnce(&mut dyn CryptoRngCore) -> T) -> T {
        match self {
            Randomness::Os => use_it(&mut OsRng),
            Randomness::Given(rng) => {
                // A generator is whole between draws, so a panic elsewhere cannot tear it.
                let mut rng = rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                use_it(&mut **rng)
            }
        }
    }
}

/// A machine's clock as its decisions read it: the system's for the binaries, a simulated one for
/// the simulator. A signer's per-peer limits and a watchman's settlement windows are measured in
/// it, so nothing that decides reads the system's clock itself.
pub trait Clock: Send + Sync + 'static {
    /// The monotonic clock: only differences between readings matter.
    fn now(&self) -> Instant;
    /// The wall clock, in milliseconds since the Unix epoch: for comparing with times other
    /// machines stamped (a batch's header), never for measuring a wait by itself.
    fn unix_ms(&self) -> u64;
}

#[derive(Debug)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(share: Option<KeyShare>, policy: Arc<dyn SigningPolicy>) -> Self {
        Self::with_limits(share, policy, NonceLimits::default())
    }

    pub fn with_limits(share: Option<KeyShare>, policy: Arc<dyn SigningPolicy>, limits: NonceLimits) -> Self {
        Self::with_sources(share, policy, limits, Randomness::Os, Arc::new(SystemClock))
    }

    /// A signer whose randomness and time come from the caller (the simulator).
    pub fn with_sources(
        share: Option<KeyShare>,
        policy: Arc<dyn SigningPolicy>,
        limits: NonceLimits,
        randomness: Randomness,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let epoch = randomness.draw(|rng| rng.next_u64());
        Signer {
            share: RwLock::new(share.and_then(Held::of)),
            policy,
            nonces: Mutex::new(NonceStore::new(limits)),
            epoch: AtomicU64::new(epoch),
            dkg: Arc::new(DkgInbox::default()),
            randomness,
            clock,
        }
    }

    /// Nonce pairs waiting for their `Sign`, from every peer (this watchman's memory for them).
    pub fn nonces_held(&self) -> usize {
        self.store().held()
    }

    /// Nonce pairs waiting for `peer`'s `Sign`s.
    pub fn nonces_held_by(&self, peer: &PeerId) -> usize {
        self.store().held_by(peer)
    }

    pub fn nonce_limits(&self) -> NonceLimits {
        self.store().limits()
    }

    /// The store stays consistent through a panic elsewhere (each method leaves it whole), so a
    /// poisoned lock is taken over rather than turning every later request into a failure.
    fn store(&self) -> std::sync::MutexGuard<'_, NonceStore> {
        self.nonces.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn share(&self) -> Option<KeyShare> {
        self.held().map(|held| held.share)
    }

    /// The generation of the share this signer signs with.
    pub fn generation(&self) -> Option<Generation> {
        self.share.read().ok().and_then(|s| s.as_ref().map(|held| held.generation))
    }

    fn held(&self) -> Option<Held> {
        self.share.read().ok().and_then(|s| s.clone())
    }

    /// The epoch this signer's current nonces are made in.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Installs a new share (after a DKG or a refresh). Nonces made under the old one are
    /// dropped, and a new epoch tells coordinators that their commitments of them are stale.
    pub fn set_share(&self, share: KeyShare) {
        let mut store = self.store();
        if let Ok(mut slot) = self.share.write() {
            *slot = Held::of(share);
        }
        store.clear();
        self.epoch.store(self.randomness.draw(|rng| rng.next_u64()), Ordering::SeqCst);
    }

    /// Where this signer's peers' DKG steps wait for its ceremony.
    pub fn dkg_inbox(&self) -> Arc<DkgInbox> {
        self.dkg.clone()
    }

    fn commit(&self, from: PeerId, session: SessionId, count: u32) -> Response {
        let Some(share) = self.held() else {
            return Response::Failed { reason: "this watchman holds no key share yet".into() };
        };
        let admitted = self.store().admit(from, count, self.clock.now());
        if let Err(overload) = admitted {
            return refuse(from, overload);
        }
        Response::Commitments(self.fresh_nonces(from, session, count, &share))
    }

    /// Makes `count` nonce pairs (already admitted) outside the lock: it is the costly part.
    fn fresh_nonces(&self, from: PeerId, session: SessionId, count: u32, held: &Held) -> CommitmentSet {
        let share = &held.share;
        let mut nonces = Vec::with_capacity(count as usize);
        let mut commitments = Vec::with_capacity(count as usize);
        self.randomness.draw(|mut rng| {
            for _ in 0..count {
                let (n, c) = frost::round1::commit(share.key_package.signing_share(), &mut rng);
                nonces.push(n);
                commitments.push(c);
            }
        });
        // The epoch and the generation are read under the store's lock, which `set_share` holds
        // while it installs the share, clears the store and draws a new epoch: a set is never
        // named by an epoch it was not made in, nor by a share other than the one its epoch
        // signs with (the share `held` may be older than the epoch).
        let mut store = self.store();
        let nonce_id = store.insert(from, session, nonces, self.clock.now());
        let generation = self.generation().unwrap_or(held.generation);
        CommitmentSet { epoch: self.epoch(), generation, nonce_id, commitments }
    }

    /// Removes the nonces before anything else, so that whatever happens next they are gone.
    /// Nonces of another epoch (an earlier process, an older share) are never here. The share
    /// comes with them, read under the same lock: the one their epoch signs with, which is the
    /// generation their commitment set named.
    fn take_nonces(&self, from: PeerId, epoch: u64, id: u64) -> Option<(Vec<frost::round1::SigningNonces>, Held)> {
        let mut store = self.store();
        if epoch != self.epoch() {
            return None;
        }
        let held = self.held()?;
        #[cfg(feature = "planted-bugs")]
        if bridge::planted::active(bridge::planted::PlantedBug::NonceKeptAfterSigning) {
            return store.copy(from, id).map(|nonces| (nonces, held));
        }
        store.take(from, id).map(|nonces| (nonces, held))
    }

    fn sign(
        &self,
        from: PeerId,
        session: SessionId,
        (epoch, nonce_id): (u64, u64),
        requests: &[SigningRequest],
        packages: &[Encoded],
    ) -> Response {
        let Some((nonces, held)) = self.take_nonces(from, epoch, nonce_id) else {
            metrics::counter!("tss_stale_nonce_requests_total").increment(1);
            tracing::debug!(peer = %from, %session, epoch, nonce_id, "a Sign named nonces not here (used, evicted or of another epoch)");
            return Response::StaleNonces { epoch: self.epoch() };
        };
        // Decoded here, after the nonces are taken (a malformed package uses them up too) and off
        // the network task.
        let packages: Vec<frost::SigningPackage> = match packages.iter().map(|p| crate::package::decode(&p.0)).collect()
        {
            Ok(packages) => packages,
            Err(error) => return Response::Failed { reason: format!("a malformed signing package: {error}") },
        };
        let packages = packages.as_slice();
        let share = &held.share;
        if requests.len() != packages.len() || packages.len() != nonces.len() {
            return Response::Failed {
                reason: format!(
                    "{} requests, {} packages and {} committed nonces do not match",
                    requests.len(),
                    packages.len(),
                    nonces.len()
                ),
            };
        }
        for (request, package) in requests.iter().zip(packages) {
            if package.message().as_slice() != request.message.as_slice() {
                return Response::Failed { reason: "a signing package's message differs from its request".into() };
            }
            if let Decision::Refuse { reason } = self.policy.decide(request) {
                metrics::counter!("tss_policy_refusals_total").increment(1);
                tracing::warn!(%session, chain = %request.context.chain, batch = ?request.context.batch, %reason, "policy refused to sign");
                return Response::Refused { reason };
            }
        }
        let mut shares = Vec::with_capacity(packages.len());
        for ((request, package), nonce) in requests.iter().zip(packages).zip(&nonces) {
            match frost::round2::sign_with_tweak(package, nonce, &share.key_package, request.key_path.merkle_root()) {
                Ok(share) => shares.push(share),
                Err(error) => return Response::Failed { reason: format!("cannot sign: {error}") },
            }
        }
        let count = u32::try_from(packages.len()).unwrap_or(u32::MAX);
        // Fresh nonces for the next attempt count against the peer's rate like a `Commit`; over
        // it, the shares still go back (they are owed) with no fresh set, and the coordinator asks
        // again later.
        let admitted = self.store().admit(from, count, self.clock.now());
        match admitted {
            Ok(()) => Response::Shares { shares, next: Some(self.fresh_nonces(from, session, count, &held)) },
            Err(overload) => {
                count_refusal(from, &overload);
                Response::Shares { shares, next: None }
            }
        }
    }
}

fn count_refusal(from: PeerId, overload: &Overload) {
    metrics::counter!("tss_overload_refusals_total", "reason" => overload.reason()).increment(1);
    tracing::debug!(peer = %from, %overload, "refused a peer's request over its limit");
}

fn refuse(from: PeerId, overload: Overload) -> Response {
    count_refusal(from, &overload);
    Response::Overloaded(overload)
}

impl InboundHandler for Signer {
    fn handle(&self, from: PeerId, request: Request) -> Response {
        match request {
            Request::Dkg { session, step } => self.dkg.deliver(session, from, step),
            Request::Commit { session, count } => self.commit(from, session, count),
            Request::Sign { session, epoch, nonce_id, requests, packages } => {
                self.sign(from, session, (epoch, nonce_id), &requests, &packages)
            }
        }
    }
}

//! The answering side of every protocol: a watchman asked for commitments, shares, or DKG steps.
//!
//! Nonces are made fresh for each `Commit`, kept in memory only (never persisted: a restart
//! forgets them, which is safe), keyed by who asked, for which session, under which id, and
//! removed before they are used, so no nonce can sign twice. The [`SigningPolicy`] is asked
//! about every message before a share is computed; a refusal consumes the nonces too.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use frost_secp256k1_tr as frost;
use libp2p::PeerId;
use rand_core::OsRng;

use crate::SessionId;
use crate::dkg::DkgInbox;
use crate::keystore::KeyShare;
use crate::messages::{Request, Response};
use crate::policy::{Decision, SigningPolicy, SigningRequest};

/// Most nonce sets a signer keeps waiting for their `Sign`; the oldest go first.
const MAX_PENDING_NONCES: usize = 100_000;
/// Most messages in one session.
pub const MAX_MESSAGES_PER_SESSION: u32 = 10_000;

/// Answers a peer's request. The honest implementation is [`Signer`]; tests wrap it to lie.
pub trait InboundHandler: Send + Sync + 'static {
    fn handle(&self, from: PeerId, request: Request) -> Response;
}

type NonceKey = (PeerId, SessionId, u64);

pub struct Signer {
    share: RwLock<Option<KeyShare>>,
    policy: Arc<dyn SigningPolicy>,
    nonces: Mutex<BTreeMap<u64, (NonceKey, Vec<frost::round1::SigningNonces>)>>,
    next_nonce_id: AtomicU64,
    dkg: Arc<DkgInbox>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(share: Option<KeyShare>, policy: Arc<dyn SigningPolicy>) -> Self {
        Signer {
            share: RwLock::new(share),
            policy,
            nonces: Mutex::new(BTreeMap::new()),
            next_nonce_id: AtomicU64::new(1),
            dkg: Arc::new(DkgInbox::default()),
        }
    }

    pub fn share(&self) -> Option<KeyShare> {
        self.share.read().ok().and_then(|s| s.clone())
    }

    /// Installs a new share (after a DKG or a refresh). Nonces made under the old one are dropped.
    pub fn set_share(&self, share: KeyShare) {
        if let Ok(mut slot) = self.share.write() {
            *slot = Some(share);
        }
        if let Ok(mut nonces) = self.nonces.lock() {
            nonces.clear();
        }
    }

    pub(crate) fn dkg_inbox(&self) -> Arc<DkgInbox> {
        self.dkg.clone()
    }

    fn commit(&self, from: PeerId, session: SessionId, count: u32) -> Response {
        if count == 0 || count > MAX_MESSAGES_PER_SESSION {
            return Response::Failed {
                reason: format!("{count} messages: a session signs 1 to {MAX_MESSAGES_PER_SESSION}"),
            };
        }
        let Some(share) = self.share() else {
            return Response::Failed { reason: "this watchman holds no key share yet".into() };
        };
        let (nonce_id, commitments) = self.fresh_nonces(from, session, count, &share);
        Response::Commitments { nonce_id, commitments }
    }

    fn fresh_nonces(
        &self,
        from: PeerId,
        session: SessionId,
        count: u32,
        share: &KeyShare,
    ) -> (u64, Vec<frost::round1::SigningCommitments>) {
        let mut nonces = Vec::with_capacity(count as usize);
        let mut commitments = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let (n, c) = frost::round1::commit(share.key_package.signing_share(), &mut OsRng);
            nonces.push(n);
            commitments.push(c);
        }
        let nonce_id = self.next_nonce_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut pending) = self.nonces.lock() {
            pending.insert(nonce_id, ((from, session, nonce_id), nonces));
            while pending.len() > MAX_PENDING_NONCES {
                pending.pop_first();
            }
        }
        (nonce_id, commitments)
    }

    /// Removes the nonces before anything else, so that whatever happens next they are gone.
    fn take_nonces(&self, key: NonceKey) -> Option<Vec<frost::round1::SigningNonces>> {
        let mut pending = self.nonces.lock().ok()?;
        match pending.get(&key.2) {
            Some((owner, _)) if *owner == key => pending.remove(&key.2).map(|(_, n)| n),
            _ => None,
        }
    }

    fn sign(
        &self,
        from: PeerId,
        session: SessionId,
        nonce_id: u64,
        requests: &[SigningRequest],
        packages: &[frost::SigningPackage],
    ) -> Response {
        let Some(nonces) = self.take_nonces((from, session, nonce_id)) else {
            return Response::Failed { reason: format!("no unused nonces {nonce_id} for this session and peer") };
        };
        let Some(share) = self.share() else {
            return Response::Failed { reason: "this watchman holds no key share".into() };
        };
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
        let (next_nonce_id, next) = self.fresh_nonces(from, session, count, &share);
        Response::Shares { shares, next_nonce_id, next }
    }
}

impl InboundHandler for Signer {
    fn handle(&self, from: PeerId, request: Request) -> Response {
        match request {
            Request::Dkg { session, step } => self.dkg.deliver(session, from, step),
            Request::Commit { session, count } => self.commit(from, session, count),
            Request::Sign { session, nonce_id, requests, packages } => {
                self.sign(from, session, nonce_id, &requests, &packages)
            }
        }
    }
}

//! What watchmen say to each other. Every request names its session; the mesh authenticates
//! the sender (Noise, PeerId on the allow-list), so each message is bound to both.

use std::collections::BTreeMap;

use frost_secp256k1_tr as frost;
use serde::{Deserialize, Serialize};

use crate::SessionId;
use crate::policy::SigningRequest;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// One step of a DKG or a refresh, pushed to every participant.
    Dkg { session: SessionId, step: DkgStep },
    /// "Make `count` fresh nonce pairs for this session and send me their commitments."
    Commit { session: SessionId, count: u32 },
    /// "Sign these, with the nonces you committed to under `nonce_id`."
    Sign { session: SessionId, nonce_id: u64, requests: Vec<SigningRequest>, packages: Vec<frost::SigningPackage> },
}

impl Request {
    pub fn session(&self) -> SessionId {
        match self {
            Request::Dkg { session, .. } | Request::Commit { session, .. } | Request::Sign { session, .. } => *session,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum DkgStep {
    Round1(frost::keys::dkg::round1::Package),
    /// SHA-256 of every round-1 package the sender received (and its own), by sender.
    Echo(BTreeMap<frost::Identifier, [u8; 32]>),
    Round2(frost::keys::dkg::round2::Package),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    Ack,
    Commitments {
        nonce_id: u64,
        commitments: Vec<frost::round1::SigningCommitments>,
    },
    /// Shares, one per message, and fresh commitments for the coordinator's next attempt.
    Shares {
        shares: Vec<frost::round2::SignatureShare>,
        next_nonce_id: u64,
        next: Vec<frost::round1::SigningCommitments>,
    },
    /// The policy said no: no share left this node.
    Refused {
        reason: String,
    },
    Failed {
        reason: String,
    },
    /// Not now: this peer asked for more than its share of this watchman. Nothing was made or
    /// signed; ask again later (and for less).
    Overloaded(Overload),
}

/// Why a watchman would not take a peer's request now. Each is one peer's own limit, so no peer
/// can use up what the others need (counted in `tss_overload_refusals_total{reason}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Overload {
    #[error("{asked} messages in one request; a session signs 1 to {max}")]
    TooManyMessages { asked: u32, max: u32 },
    #[error(
        "{asked} fresh nonces asked, but this peer may have {available} more now ({per_second} a second); retry later"
    )]
    NonceRate { asked: u32, available: u32, per_second: u32 },
    #[error("this peer already has {queued} requests waiting here (at most {max}); retry after an answer")]
    QueueFull { queued: u32, max: u32 },
}

impl Overload {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Overload::TooManyMessages { .. } => "too_many_messages",
            Overload::NonceRate { .. } => "nonce_rate",
            Overload::QueueFull { .. } => "queue_full",
        }
    }
}

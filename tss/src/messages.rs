//! What watchmen say to each other. Every request names its session; the mesh authenticates
//! the sender (Noise, PeerId on the allow-list), so each message is bound to both.

use frost_secp256k1_tr as frost;
use serde::{Deserialize, Serialize};

use crate::SessionId;
use crate::keystore::Generation;
use crate::policy::SigningRequest;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// One step of a DKG or a refresh, pushed to every participant.
    Dkg { session: SessionId, step: DkgStep },
    /// "Make `count` fresh nonce pairs for me and send me their commitments." The nonces are
    /// bound to the asking peer, not to `session` (which names the session that asked, for the
    /// logs and the per-session hold): a coordinator keeps unused commitments for its next
    /// sessions (preprocessing), so those need one round.
    Commit { session: SessionId, count: u32 },
    /// "Sign these, with the nonces you committed to under `(epoch, nonce_id)`." `packages` holds
    /// one FROST signing package per request in the mesh's encoding ([`crate::package`]: FROST's
    /// content with uncompressed points), made once by the coordinator for every signer of the
    /// attempt.
    Sign { session: SessionId, epoch: u64, nonce_id: u64, requests: Vec<SigningRequest>, packages: Vec<Encoded> },
}

impl Request {
    pub fn session(&self) -> SessionId {
        match self {
            Request::Dkg { session, .. } | Request::Commit { session, .. } | Request::Sign { session, .. } => *session,
        }
    }
}

/// Bytes already encoded, sent as one CBOR byte string (serde's default for `Vec<u8>` is an array
/// of numbers, up to twice the size).
#[derive(Clone, PartialEq, Eq)]
pub struct Encoded(pub Vec<u8>);

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Encoded({} bytes)", self.0.len())
    }
}

impl Serialize for Encoded {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Encoded {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = Encoded;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }

            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Encoded, E> {
                Ok(Encoded(bytes.to_vec()))
            }

            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Encoded, E> {
                Ok(Encoded(bytes))
            }

            // Formats without byte strings (JSON) send an array of numbers.
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Encoded, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(byte) = seq.next_element::<u8>()? {
                    bytes.push(byte);
                }
                Ok(Encoded(bytes))
            }
        }
        deserializer.deserialize_byte_buf(Bytes)
    }
}

/// A DKG step as byte strings: serde's encoding of FROST's packages in CBOR spent two bytes on
/// most bytes of every point (an array of small integers), so each is sent in FROST's own
/// encoding (`serialize`), and decoded by the receiving run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum DkgStep {
    /// `round1::Package::serialize`.
    Round1(Encoded),
    /// The SHA-256 of every participant's round-1 package bytes as the sender holds them (its own
    /// included), 32 bytes each, in the order of the participants' FROST identifiers.
    Echo(Encoded),
    /// `round2::Package::serialize` (sent to its one recipient only).
    Round2(Encoded),
}

/// Commitments to nonces a signer made for one peer: `count` pairs, used together by one `Sign`
/// of that peer and then gone. `epoch` names the signer's process (random at each start and at
/// each new share): nonces live in memory only, so a set from another epoch is unknown there,
/// and the coordinator drops every set it holds of that signer's older epoch. `generation` names
/// the share the signer signs with in that epoch: a coordinator uses only sets of its own
/// generation (a share of another ceremony cannot sign with its own).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentSet {
    pub epoch: u64,
    pub generation: Generation,
    pub nonce_id: u64,
    pub commitments: Vec<frost::round1::SigningCommitments>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    Ack,
    Commitments(CommitmentSet),
    /// Shares, one per message, and fresh commitments for the coordinator's next attempt or
    /// session (none when the asking peer is over its nonce rate).
    Shares {
        shares: Vec<frost::round2::SignatureShare>,
        next: Option<CommitmentSet>,
    },
    /// The nonces a `Sign` named are not here: used already, evicted, or made by an earlier
    /// process (`epoch` is the current one). Nothing was signed; ask for fresh commitments.
    StaleNonces {
        epoch: u64,
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

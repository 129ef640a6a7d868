//! The watchmen's threshold key.
//!
//! - [`dkg`]: FROST's three-part DKG among the configured watchmen, with an echo round that
//!   catches a participant who sends different round-1 packages to different peers.
//! - [`roast`]: robust signing. A session coordinator (any watchman) collects fresh commitments
//!   from whoever answers, starts an attempt with the first `t`, and starts others on timeouts or
//!   invalid shares until one completes; cheaters are named and excluded.
//! - [`signer`]: the other side: nonces made ahead for each coordinator and used once, the
//!   [`SigningPolicy`] asked before any share leaves.
//! - [`mesh`]: libp2p (TCP, Noise, Yamux) among allow-listed peers only, a bounded queue each.
//! - [`package`]: a signing package on the mesh, its points uncompressed.
//! - [`nonces`]: what each peer may hold and have made of this signer's nonces.
//! - [`pool`]: the coordinator's kept commitments of its peers (preprocessing), so a session
//!   needs one round.
//! - [`traffic`]: the bytes the mesh writes and reads, counted in its codec.
//! - [`keystore`]: key shares on disk only encrypted (Argon2id + XChaCha20-Poly1305).
//! - refresh ([`TssNode::refresh`]): new shares of the same group key, by the DKG's rounds.
//!
//! The crate knows nothing of batches or chains beyond [`SigningContext`]; the watchman wires the
//! policy to its replay.

// A PeerId is 80 bytes, so errors and commands naming one are large; they are cold paths.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

pub mod dkg;
pub mod group;
pub mod keystore;
pub mod mesh;
pub mod messages;
pub mod node;
pub mod nonces;
pub mod package;
pub mod policy;
pub mod pool;
pub mod ports;
pub mod roast;
pub mod roster;
pub mod signer;
pub mod traffic;

pub use frost_secp256k1_tr as frost;
pub use group::{GroupKey, KeyPath, bip340_bytes};
pub use keystore::{Generation, KeyShare, KeystoreError};
pub use mesh::{MeshConfig, PeerEntry};
pub use node::{ThresholdSigner, TssNode, TssNodeConfig};
pub use policy::{ApproveAll, Decision, RefuseAll, SigningContext, SigningPolicy, SigningRequest};
pub use roast::{SessionError, SignedMessage};

/// A session of the protocol (a DKG, a refresh, a signing session): every message carries one,
/// so nothing said in one session can be taken for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        SessionId(bytes)
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Errors of the threshold protocols that are not a session's own outcome.
#[derive(Debug, thiserror::Error)]
pub enum TssError {
    #[error("FROST: {0}")]
    Frost(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("mesh: {0}")]
    Mesh(String),
}

impl TssError {
    pub(crate) fn frost(error: frost::Error) -> Self {
        TssError::Frost(error.to_string())
    }
}

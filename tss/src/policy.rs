//! What a signer asks before it releases a share. The watchman answers from its own replay of
//! Arweave; the mesh never decides by itself what is worth signing.

use serde::{Deserialize, Serialize};

use crate::group::KeyPath;

/// One message to sign and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningRequest {
    /// The exact bytes signed (a BIP-341 sighash, or the vault's 32-byte message digest).
    pub message: Vec<u8>,
    pub key_path: KeyPath,
    pub context: SigningContext,
}

/// What a message claims to be, for the policy to check against its own view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningContext {
    /// `ethereum` or `bitcoin` (or `test` in tests).
    pub chain: String,
    /// The bridge batch this settles, if any.
    pub batch: Option<u64>,
    /// What it pays or changes, in words, for logs and refusals.
    pub purpose: String,
    /// Chain-specific detail the policy can rebuild and compare (e.g. the payout transaction).
    #[serde(default)]
    pub detail: Vec<u8>,
}

/// A policy's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Approve,
    Refuse { reason: String },
}

/// Called by every signer, for every message, before a share leaves the node.
pub trait SigningPolicy: Send + Sync + 'static {
    fn decide(&self, request: &SigningRequest) -> Decision;
}

/// Signs whatever it is asked: for key ceremonies and tests of the mesh only.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApproveAll;

impl SigningPolicy for ApproveAll {
    fn decide(&self, _request: &SigningRequest) -> Decision {
        Decision::Approve
    }
}

/// Refuses everything, with a reason.
#[derive(Debug, Clone)]
pub struct RefuseAll(pub String);

impl SigningPolicy for RefuseAll {
    fn decide(&self, _request: &SigningRequest) -> Decision {
        Decision::Refuse { reason: self.0.clone() }
    }
}

//! Governance by the operators: the vault's `unpause`, `setCap`, `proposeKey` and `acceptKey` need
//! a group signature, and each watchman gives its share of one only when its *own* operator
//! approved exactly that message and the approval has not expired. A threshold signature then
//! means `t` operators agreed; nothing the coordinator or a peer says can justify one.
//!
//! `message`: the admin messages and the vault's digests; `approvals`: this operator's approvals
//! and the typed refusals; `token`: the owner-only token that authenticates the operator;
//! `policy`: the check the signing policy runs; `http`: the admin endpoint (loopback by default)
//! and the public list of approvals; `propose`: a signing session for one message, and its
//! submission to the vault.

pub mod approvals;
pub mod http;
pub mod message;
pub mod policy;
pub mod propose;
pub mod token;

pub use approvals::{AdminRefusal, Approval, ApprovalBook};
pub use http::{AdminApi, ApprovalsView, ApproveRequest, ErrorBody, ProposeRequest, ProposeResponse};
pub use message::{AdminAction, AdminMessage, SIGN_ETH_ADMIN};
pub use policy::AdminPolicy;
pub use propose::{ProposeError, Refusal};
pub use token::AdminToken;

/// What goes wrong with an admin request before any signing: said to the operator as is.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin token: {0}")]
    Token(String),
    #[error("approvals file: {0}")]
    Store(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("this watchman has no Ethereum vault configured")]
    NoVault,
    #[error("this watchman has no sender key to submit the signed call with (ethereum.sender_key_file)")]
    NoSender,
    #[error("the Ethereum node: {0}")]
    Node(String),
    #[error("the vault refused the call: {0}")]
    Vault(String),
}

/// Unix seconds now: only for approvals' expiry, never in anything hashed or replayed.
pub fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

//! This operator's approvals of admin messages: the only thing that justifies this watchman's
//! share of an admin signature. An approval names one message exactly (its digest binds the
//! kind, the parameters, the chain, the vault, the key epoch and the nonce) and lapses at its
//! expiry. Nothing a peer or the coordinator says adds to this book: only this watchman's admin
//! endpoint, behind its operator's token, writes it.
//!
//! The book is kept in a JSON file (0600) so that a restart keeps what the operator approved.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::AdminError;
use super::message::AdminMessage;

/// Most approvals kept at once. An operator approves a handful of messages at a time (an unpause,
/// a cap or two, a rotation's two steps); the bound keeps a runaway script from growing the file
/// and the policy's scan without limit.
pub const MAX_APPROVALS: usize = 64;
/// Longest an approval may live, in seconds (7 days): long enough for operators in every time
/// zone to approve the same message, short enough that a forgotten approval does not wait for a
/// chance years later.
pub const MAX_APPROVAL_LIFETIME_S: u64 = 7 * 24 * 3_600;
/// How long an approval lives when the operator names no expiry (one day).
pub const DEFAULT_APPROVAL_LIFETIME_S: u64 = 24 * 3_600;

/// One approval: the message, and when the operator gave it and until when it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub message: AdminMessage,
    /// The message's digest (hex): what the group signs.
    pub digest: String,
    pub approved_at_s: u64,
    pub expires_at_s: u64,
}

impl Approval {
    pub fn is_expired(&self, now_s: u64) -> bool {
        now_s >= self.expires_at_s
    }
}

/// Why this watchman will not give its share of an admin signature. The first words of each
/// message are a stable code ([`AdminRefusal::code`]) that survives the trip across the mesh as
/// the refusal's reason, so the operator's command line can name it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "kebab-case")]
pub enum AdminRefusal {
    #[error("not approved by this operator: {asked}")]
    NotApproved { asked: String },
    #[error("not approved by this operator: it approved {approved}, not {asked}")]
    DifferentParameters { approved: String, asked: String },
    #[error("wrong nonce: this operator approved {kind} with nonce {approved}, not {asked}")]
    WrongNonce { kind: String, approved: u64, asked: u64 },
    #[error("expired: this operator's approval of {asked} expired at {expired_at_s} (unix seconds)")]
    Expired { asked: String, expired_at_s: u64 },
    #[error("wrong vault: this watchman signs for {ours}, not {asked}")]
    WrongVault { ours: String, asked: String },
    #[error("not an admin message: {why}")]
    Malformed { why: String },
}

impl AdminRefusal {
    /// The stable code an operator's tools can match on.
    pub fn code(&self) -> &'static str {
        match self {
            AdminRefusal::NotApproved { .. } | AdminRefusal::DifferentParameters { .. } => "not-approved",
            AdminRefusal::WrongNonce { .. } => "wrong-nonce",
            AdminRefusal::Expired { .. } => "expired",
            AdminRefusal::WrongVault { .. } => "wrong-vault",
            AdminRefusal::Malformed { .. } => "malformed",
        }
    }

    /// The code of a refusal reason as it came back over the mesh (its first words); `None` for a
    /// reason that is not an admin refusal (a halted signer, a stale share, a network fault).
    pub fn code_of_reason(reason: &str) -> Option<&'static str> {
        [
            ("not approved by this operator", "not-approved"),
            ("wrong nonce", "wrong-nonce"),
            ("expired", "expired"),
            ("wrong vault", "wrong-vault"),
            ("not an admin message", "malformed"),
        ]
        .into_iter()
        .find(|(prefix, _)| reason.starts_with(prefix))
        .map(|(_, code)| code)
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Where the book is kept; `None` in memory only (tests).
    file: Option<PathBuf>,
    approvals: Vec<Approval>,
}

/// This operator's approvals, shared by the admin endpoint (writer) and the signing policy
/// (reader).
#[derive(Debug, Clone, Default)]
pub struct ApprovalBook(Arc<Mutex<Inner>>);

impl ApprovalBook {
    /// The book kept in `file`, empty if the file does not exist yet.
    pub fn open(file: &Path) -> Result<Self, AdminError> {
        let approvals = match std::fs::read(file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| AdminError::Store(format!("{} is not an approvals file: {e}", file.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(AdminError::Store(format!("cannot read {}: {e}", file.display()))),
        };
        Ok(ApprovalBook(Arc::new(Mutex::new(Inner { file: Some(file.to_owned()), approvals }))))
    }

    /// A book in memory only.
    pub fn in_memory() -> Self {
        ApprovalBook::default()
    }

    /// The lock holds plain data left whole by every method, so a poisoned one is taken over.
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the operator's approval of `message` until `now_s + lifetime_s`. Approving the same
    /// message again renews it. Expired approvals are dropped first.
    pub fn approve(&self, message: AdminMessage, now_s: u64, lifetime_s: u64) -> Result<Approval, AdminError> {
        if lifetime_s == 0 || lifetime_s > MAX_APPROVAL_LIFETIME_S {
            return Err(AdminError::BadRequest(format!(
                "an approval lives 1 to {MAX_APPROVAL_LIFETIME_S} seconds, not {lifetime_s}"
            )));
        }
        let digest = hex::encode(message.digest());
        let approval = Approval {
            message,
            digest: digest.clone(),
            approved_at_s: now_s,
            expires_at_s: now_s.saturating_add(lifetime_s),
        };
        let mut inner = self.inner();
        let mut approvals = inner.approvals.clone();
        approvals.retain(|a| !a.is_expired(now_s) && a.digest != digest);
        if approvals.len() >= MAX_APPROVALS {
            return Err(AdminError::BadRequest(format!(
                "{MAX_APPROVALS} approvals are pending already: revoke one or let it expire"
            )));
        }
        approvals.push(approval.clone());
        if let Some(file) = &inner.file {
            save(file, &approvals)?;
        }
        inner.approvals = approvals;
        metrics::counter!("watchman_admin_approvals_total", "kind" => approval.message.action.kind()).increment(1);
        Ok(approval)
    }

    /// Withdraws the approval of the message with this digest (hex); whether there was one.
    pub fn revoke(&self, digest: &str) -> Result<bool, AdminError> {
        let mut inner = self.inner();
        let mut approvals = inner.approvals.clone();
        let before = approvals.len();
        approvals.retain(|a| a.digest != digest);
        if approvals.len() == before {
            return Ok(false);
        }
        if let Some(file) = &inner.file {
            save(file, &approvals)?;
        }
        inner.approvals = approvals;
        Ok(true)
    }

    /// Every approval kept, expired ones included (until the next approval drops them).
    pub fn list(&self) -> Vec<Approval> {
        self.inner().approvals.clone()
    }

    /// Whether this operator approved exactly `asked`, and not too long ago. The refusal says
    /// what is closest to it in the book, so an operator sees at once which detail differs.
    pub fn check(&self, asked: &AdminMessage, now_s: u64) -> Result<(), AdminRefusal> {
        let digest = hex::encode(asked.digest());
        let inner = self.inner();
        if let Some(exact) = inner.approvals.iter().find(|a| a.digest == digest) {
            return match exact.is_expired(now_s) {
                false => Ok(()),
                true => Err(AdminRefusal::Expired { asked: asked.to_string(), expired_at_s: exact.expires_at_s }),
            };
        }
        let live = inner.approvals.iter().filter(|a| !a.is_expired(now_s));
        let same_kind: Vec<&Approval> = live
            .filter(|a| a.message.action.kind() == asked.action.kind() && a.message.domain() == asked.domain())
            .collect();
        if let Some(other_nonce) = same_kind.iter().find(|a| a.message.action == asked.action) {
            return Err(AdminRefusal::WrongNonce {
                kind: asked.action.kind().to_owned(),
                approved: other_nonce.message.nonce,
                asked: asked.nonce,
            });
        }
        if let Some(other) = same_kind.first() {
            return Err(AdminRefusal::DifferentParameters {
                approved: other.message.to_string(),
                asked: asked.to_string(),
            });
        }
        Err(AdminRefusal::NotApproved { asked: asked.to_string() })
    }
}

/// Writes the book whole to a temporary file, then renames it over the old one, so a crash leaves
/// either the old book or the new one; owner-only, like the token beside it.
fn save(file: &Path, approvals: &[Approval]) -> Result<(), AdminError> {
    let bytes = serde_json::to_vec_pretty(approvals).map_err(|e| AdminError::Store(e.to_string()))?;
    let tmp = file.with_extension("json.tmp");
    let store = |e: std::io::Error| AdminError::Store(format!("cannot write {}: {e}", file.display()));
    super::token::write_private(&tmp, &bytes).map_err(store)?;
    std::fs::rename(&tmp, file).map_err(store)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bridge::Address;
    use bridge::eth_settlement::VaultDomain;

    use super::*;
    use crate::watchman::admin::message::AdminAction;

    const NOW: u64 = 1_800_000_000;

    fn domain() -> VaultDomain {
        VaultDomain { chain_id: 31337, vault: Address([0x11; 20]), epoch: 0 }
    }

    fn unpause(nonce: u64) -> AdminMessage {
        AdminMessage::new(AdminAction::Unpause, domain(), nonce)
    }

    fn cap(limit: u128) -> AdminMessage {
        AdminMessage::new(AdminAction::SetCap { token: Address::ZERO, limit, window_secs: 3_600 }, domain(), 0)
    }

    #[test]
    fn only_the_exact_approved_message_passes_until_it_expires() {
        let book = ApprovalBook::in_memory();
        let refused = book.check(&unpause(0), NOW).unwrap_err();
        assert_eq!(refused.code(), "not-approved");
        assert!(refused.to_string().starts_with("not approved by this operator"), "{refused}");

        book.approve(unpause(0), NOW, 60).unwrap();
        book.check(&unpause(0), NOW + 59).unwrap();
        let expired = book.check(&unpause(0), NOW + 60).unwrap_err();
        assert_eq!(expired.code(), "expired");
        assert_eq!(AdminRefusal::code_of_reason(&expired.to_string()), Some("expired"));

        let wrong = book.check(&unpause(1), NOW).unwrap_err();
        assert_eq!(wrong, AdminRefusal::WrongNonce { kind: "unpause".into(), approved: 0, asked: 1 });
        assert_eq!(AdminRefusal::code_of_reason(&wrong.to_string()), Some("wrong-nonce"));

        // Another vault, chain or epoch is another message.
        let elsewhere = AdminMessage { vault: Address([0x12; 20]), ..unpause(0) };
        assert_eq!(book.check(&elsewhere, NOW).unwrap_err().code(), "not-approved");
        let later_epoch = AdminMessage { epoch: 1, ..unpause(0) };
        assert_eq!(book.check(&later_epoch, NOW).unwrap_err().code(), "not-approved");
    }

    #[test]
    fn an_approval_for_other_parameters_does_not_count_and_says_what_was_approved() {
        let book = ApprovalBook::in_memory();
        book.approve(cap(100), NOW, 60).unwrap();
        let refused = book.check(&cap(1_000_000), NOW).unwrap_err();
        assert_eq!(refused.code(), "not-approved");
        assert!(
            refused.to_string().contains("limit 100") && refused.to_string().contains("limit 1000000"),
            "{refused}"
        );
        book.check(&cap(100), NOW).unwrap();
    }

    #[test]
    fn approvals_are_bounded_in_number_and_lifetime_and_revocable() {
        let book = ApprovalBook::in_memory();
        assert!(matches!(book.approve(unpause(0), NOW, 0), Err(AdminError::BadRequest(_))));
        assert!(matches!(book.approve(unpause(0), NOW, MAX_APPROVAL_LIFETIME_S + 1), Err(AdminError::BadRequest(_))));
        for nonce in 0..MAX_APPROVALS as u64 {
            book.approve(unpause(nonce), NOW, 60).unwrap();
        }
        assert!(matches!(book.approve(unpause(1_000), NOW, 60), Err(AdminError::BadRequest(_))));
        // Renewing one already there is no new entry; expired ones make room.
        book.approve(unpause(0), NOW, 120).unwrap();
        book.approve(unpause(1_000), NOW + 60, 60).unwrap();
        assert_eq!(book.list().len(), 2);
        assert!(book.revoke(&hex::encode(unpause(1_000).digest())).unwrap());
        assert!(!book.revoke(&hex::encode(unpause(1_000).digest())).unwrap(), "revoked already");
        // Only the renewed approval of nonce 0 is left.
        assert_eq!(book.check(&unpause(1_000), NOW + 60).unwrap_err().code(), "wrong-nonce");
    }

    #[test]
    fn the_book_survives_a_restart_in_an_owner_only_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("approvals.json");
        ApprovalBook::open(&file).unwrap().approve(unpause(4), NOW, 60).unwrap();
        let reopened = ApprovalBook::open(&file).unwrap();
        reopened.check(&unpause(4), NOW).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&file, "not json").unwrap();
        assert!(matches!(ApprovalBook::open(&file), Err(AdminError::Store(_))));
    }
}

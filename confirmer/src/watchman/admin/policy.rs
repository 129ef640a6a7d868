//! The signing policy's answer to an admin request: the request's message must be the digest of
//! the admin message it names, for this watchman's vault, signed with the vault key, and this
//! operator must have approved exactly that message, not long ago. Nothing else counts: not the
//! session's coordinator, not the other watchmen, not this watchman's replay.

use bridge::eth_settlement::VaultDomain;
use tss::{KeyPath, SigningRequest};

use super::approvals::{AdminRefusal, ApprovalBook};
use super::message::AdminMessage;

#[derive(Debug, Clone)]
pub struct AdminPolicy {
    approvals: ApprovalBook,
    /// The vault this watchman signs for (chain id and address; the epoch is the approval's).
    vault: VaultDomain,
}

impl AdminPolicy {
    pub fn new(approvals: ApprovalBook, vault: VaultDomain) -> Self {
        AdminPolicy { approvals, vault }
    }

    pub fn approvals(&self) -> &ApprovalBook {
        &self.approvals
    }

    /// Checks `request` at `now_s` (unix seconds).
    pub fn check(&self, request: &SigningRequest, now_s: u64) -> Result<AdminMessage, AdminRefusal> {
        let Some(asked) = AdminMessage::from_detail(&request.context.detail) else {
            return Err(AdminRefusal::Malformed { why: "the request's detail is not an admin message".into() });
        };
        if request.message.as_slice() != asked.digest().as_slice() {
            return Err(AdminRefusal::Malformed { why: format!("the message is not the digest of {asked}") });
        }
        if matches!(asked.action, super::message::AdminAction::KeyRotation { .. })
            && asked.key_rotation([0; 64]).is_none()
        {
            return Err(AdminRefusal::Malformed { why: "the rotation's new key is not a curve point".into() });
        }
        if request.key_path != KeyPath::Vault {
            return Err(AdminRefusal::Malformed { why: "admin messages are signed with the vault key only".into() });
        }
        if (asked.chain_id, asked.vault) != (self.vault.chain_id, self.vault.vault) {
            return Err(AdminRefusal::WrongVault {
                ours: format!("vault {} on chain {}", self.vault.vault, self.vault.chain_id),
                asked: format!("vault {} on chain {}", asked.vault, asked.chain_id),
            });
        }
        self.approvals.check(&asked, now_s)?;
        Ok(asked)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bridge::Address;

    use super::*;
    use crate::watchman::admin::message::AdminAction;

    const NOW: u64 = 1_800_000_000;

    fn ours() -> VaultDomain {
        VaultDomain { chain_id: 31337, vault: Address([0x11; 20]), epoch: 0 }
    }

    #[test]
    fn a_request_is_signed_only_for_an_approved_message_whose_digest_it_carries() {
        let book = ApprovalBook::in_memory();
        let policy = AdminPolicy::new(book.clone(), ours());
        let message = AdminMessage::new(AdminAction::Unpause, ours(), 2);
        let refused = policy.check(&message.request(), NOW).unwrap_err();
        assert_eq!(refused.code(), "not-approved");
        book.approve(message.clone(), NOW, 60).unwrap();
        assert_eq!(policy.check(&message.request(), NOW).unwrap(), message);

        // A coordinator that names an approved message but asks for another digest is refused.
        let mut swapped = message.request();
        swapped.message = AdminMessage::new(AdminAction::Unpause, ours(), 3).digest().to_vec();
        assert_eq!(policy.check(&swapped, NOW).unwrap_err().code(), "malformed");
        // So is one asking for a tweaked key.
        let mut tweaked = message.request();
        tweaked.key_path = KeyPath::of_merkle_root(Some([1; 32]));
        assert_eq!(policy.check(&tweaked, NOW).unwrap_err().code(), "malformed");
        // And a message for another vault, even one its operator approved by mistake.
        let other = VaultDomain { vault: Address([0x99; 20]), ..ours() };
        let foreign = AdminMessage::new(AdminAction::Unpause, other, 2);
        book.approve(foreign.clone(), NOW, 60).unwrap();
        assert_eq!(policy.check(&foreign.request(), NOW).unwrap_err().code(), "wrong-vault");
    }
}

//! `propose`: this watchman coordinates one signing session for one admin message (each peer's
//! policy checks its own operator's approvals), then sends the signed call to the vault. A
//! session that fails says, for each watchman that refused, why.

use std::sync::Arc;

use bridge::eth_settlement::{EvmSchnorrSignature, VaultDomain};
use chains::ethereum::{SubmitError, Submitter};
use chains::vault_admin::{VaultAdminCall, VaultAdminState};
use serde::{Deserialize, Serialize};
use tss::roast::Exclusion;
use tss::{SessionError, TssNode};

use super::approvals::AdminRefusal;
use super::message::{AdminAction, AdminMessage};

/// One watchman's refusal, as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub peer: String,
    /// The admin refusal's code (`not-approved`, `expired`, `wrong-nonce`, …), or `other` for a
    /// refusal that is not about approvals (a fault, a halted share).
    pub code: String,
    pub reason: String,
}

/// Why a proposal did not reach the vault.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("the group did not sign {message}: {summary}")]
    NotSigned { message: String, summary: String, refusals: Vec<Refusal> },
    #[error("the vault refused {message}: {why}")]
    VaultRefused { message: String, why: String },
    #[error("the Ethereum node: {0}")]
    Node(String),
    #[error("{0}")]
    Other(String),
}

/// What the vault is at now, and the message an action becomes there: the vault's current
/// admin nonce and epoch (the next epoch for `accept-key`) unless the operator named them.
pub async fn message_for(
    reader: &Submitter,
    domain: VaultDomain,
    action: AdminAction,
    nonce: Option<u64>,
    epoch: Option<u64>,
) -> Result<(AdminMessage, VaultAdminState), SubmitError> {
    let state = reader.admin_state().await?;
    let current = match action {
        // The ledger's rotation is signed by the group the vault holds now, for the next epoch.
        AdminAction::AcceptKey { .. } | AdminAction::KeyRotation { .. } => state.key_epoch + 1,
        _ => state.key_epoch,
    };
    let domain = VaultDomain { epoch: epoch.unwrap_or(current), ..domain };
    Ok((AdminMessage::new(action, domain, nonce.unwrap_or(state.admin_nonce)), state))
}

/// Signs `message` with the group (one session): the BIP-340 signature and the peers whose
/// shares made it.
pub async fn sign(tss: &Arc<TssNode>, message: &AdminMessage) -> Result<([u8; 64], Vec<String>), ProposeError> {
    tracing::info!(%message, "proposing an admin message to the group");
    let outcome = match tss.sign(vec![message.request()]).await {
        Ok(outcome) => outcome,
        Err(error) => {
            metrics::counter!("watchman_admin_proposals_total", "outcome" => "not_signed").increment(1);
            let refusals = refusals_of(&error);
            return Err(ProposeError::NotSigned { message: message.to_string(), summary: error.to_string(), refusals });
        }
    };
    let signed = outcome.signatures.first().ok_or_else(|| ProposeError::Other("the session signed nothing".into()))?;
    Ok((signed.signature, outcome.signers.iter().map(ToString::to_string).collect()))
}

/// Signs the ledger's key rotation `message` names: the signed `KeyRotation` for the
/// coordinator, and the peers whose shares made it.
pub async fn sign_key_rotation(
    tss: &Arc<TssNode>,
    message: &AdminMessage,
) -> Result<(bridge::KeyRotation, Vec<String>), ProposeError> {
    if message.key_rotation([0; 64]).is_none() {
        return Err(ProposeError::Other(format!("{message} is not a key rotation with a valid new key")));
    }
    let (signature, signers) = sign(tss, message).await?;
    let rotation = message.key_rotation(signature).ok_or_else(|| ProposeError::Other("no rotation".into()))?;
    metrics::counter!("watchman_admin_proposals_total", "outcome" => "signed").increment(1);
    tracing::warn!(%message, "the group signed the ledger's key rotation");
    Ok((rotation, signers))
}

/// Signs `message` with the group (one session) and sends it to the vault with `submitter`.
/// Returns the transaction hash and the peers whose shares made the signature.
pub async fn propose(
    tss: &Arc<TssNode>,
    submitter: &Submitter,
    message: &AdminMessage,
) -> Result<(String, Vec<String>), ProposeError> {
    if matches!(message.action, AdminAction::KeyRotation { .. }) {
        return Err(ProposeError::Other("a key rotation goes to the coordinator, not to the vault".into()));
    }
    let (signature, signers) = sign(tss, message).await?;
    let sig = EvmSchnorrSignature::from_bip340(&signature)
        .ok_or_else(|| ProposeError::Other("the group's signature has no valid R".into()))?;
    let call = match &message.action {
        AdminAction::Unpause => VaultAdminCall::Unpause { nonce: message.nonce },
        AdminAction::SetCap { token, limit, window_secs } => {
            VaultAdminCall::SetCap { token: *token, limit: *limit, window_secs: *window_secs, nonce: message.nonce }
        }
        AdminAction::ProposeKey { new_key } => VaultAdminCall::ProposeKey { new_key: *new_key, nonce: message.nonce },
        AdminAction::AcceptKey { .. } => VaultAdminCall::AcceptKey,
        AdminAction::KeyRotation { .. } => return Err(ProposeError::Other("not a vault call".into())),
    };
    let receipt = submitter.send_admin(call, &sig).await.map_err(|error| match error {
        SubmitError::Refused(why) => {
            ProposeError::VaultRefused { message: message.to_string(), why: format!("{why:?}") }
        }
        other => ProposeError::Node(other.to_string()),
    })?;
    metrics::counter!("watchman_admin_proposals_total", "outcome" => "submitted").increment(1);
    tracing::warn!(%message, tx = %receipt.transaction_hash, "the vault took the group's admin call");
    Ok((receipt.transaction_hash.to_string(), signers))
}

/// Each excluded watchman's reason, with the admin refusal's code when it is one.
fn refusals_of(error: &SessionError) -> Vec<Refusal> {
    let excluded = match error {
        SessionError::NotEnoughSigners { excluded, .. } | SessionError::Timeout { excluded, .. } => excluded,
        _ => return Vec::new(),
    };
    excluded
        .iter()
        .map(|(peer, why)| {
            let reason = match why {
                Exclusion::Refused { reason } | Exclusion::Faulty { reason } => reason.clone(),
                Exclusion::InvalidShare => "its share failed verification".into(),
                Exclusion::OtherGeneration { theirs } => {
                    format!("it holds a share of another generation ({theirs}): it has not switched to the newest refresh, or this watchman has not")
                }
            };
            let code = AdminRefusal::code_of_reason(&reason).unwrap_or("other").to_owned();
            Refusal { peer: peer.to_string(), code, reason }
        })
        .collect()
}

//! `POST /key-rotation`: carries a `KeyRotation` the old watchmen signed into the open batch
//! (docs/PROTOCOL.md, "Key rotation"). The coordinator can carry a rotation, never make one: the
//! ledger takes it only with the current group's signature over it, so the route needs no
//! authentication of its own, and a rotation without that signature is refused with the
//! ledger's code (`rotation_not_signed_by_group`, …) and changes nothing.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use bridge::rotation::KeyRotation;
use bridge::serde_hex::parse_fixed;
use bridge::stf::Effect;
use bridge::{SystemTx, Tx};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Ctx;
use super::error::{ApiError, ErrorBody};
use super::views::hex32;

/// A signed key rotation, as `bridgectl admin propose key-rotation` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRotationRequest {
    /// The new key epoch: the ledger's latest + 1.
    pub epoch: u64,
    /// `x(P)` of the new group, `0x` + 64 hex digits.
    pub internal_key: String,
    /// `x(Q)`: `P` tweaked by BIP-341 with no script tree.
    pub output_key: String,
    /// The hash of the new watchmen roster.
    pub roster_hash: String,
    /// The current group's BIP-340 signature, `0x` + 128 hex digits.
    pub signature: String,
}

impl KeyRotationRequest {
    fn parse(&self) -> Result<KeyRotation, ApiError> {
        let field = |name: &str, e: String| ApiError::bad_request("bad_key_rotation", format!("{name}: {e}"));
        Ok(KeyRotation {
            epoch: self.epoch,
            internal_key: parse_fixed(&self.internal_key).map_err(|e| field("internal_key", e))?,
            output_key: parse_fixed(&self.output_key).map_err(|e| field("output_key", e))?,
            roster_hash: parse_fixed(&self.roster_hash).map_err(|e| field("roster_hash", e))?,
            signature: parse_fixed(&self.signature).map_err(|e| field("signature", e))?,
        })
    }
}

/// The rotation in the ledger: its id and the first batch under the new key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyRotationAccepted {
    /// The system transaction's id.
    pub hash: String,
    pub epoch: u64,
    /// The first batch whose deposit addresses and payouts use the new key.
    pub from_batch: u64,
}

/// Carry a key rotation signed by the current group into the ledger.
#[utoipa::path(post, path = "/key-rotation", request_body = KeyRotationRequest, responses(
    (status = 200, description = "durably accepted", body = KeyRotationAccepted),
    (status = 400, description = "malformed", body = ErrorBody),
    (status = 422, description = "refused by the ledger: not signed by the current group, wrong epoch, …", body = ErrorBody),
    (status = 503, description = "the sequencer has stopped", body = ErrorBody),
))]
pub async fn post_key_rotation(
    axum::extract::State(context): Ctx,
    body: Result<Json<KeyRotationRequest>, JsonRejection>,
) -> Result<Json<KeyRotationAccepted>, ApiError> {
    let Json(request) =
        body.map_err(|e| ApiError::bad_request("bad_key_rotation", format!("the body is not a key rotation: {e}")))?;
    let rotation = request.parse()?;
    let outcome = context.sequencer.submit(Tx::System(SystemTx::KeyRotation(rotation))).await?;
    match outcome {
        Ok(receipt) => {
            let Effect::KeyRotated { epoch, from_batch } = receipt.effect else {
                return Err(ApiError::internal("the ledger took a key rotation with another effect"));
            };
            metrics::counter!("bridge_coordinator_key_rotations_total").increment(1);
            tracing::warn!(epoch, from_batch, "a key rotation signed by the group is in the ledger");
            Ok(Json(KeyRotationAccepted { hash: hex32(&receipt.tx_hash), epoch, from_batch }))
        }
        Err(error) => Err(ApiError::from(&error)),
    }
}

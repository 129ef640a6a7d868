//! Every API error is a status and a JSON body `{ "code": "...", "message": "..." }`: `code` is
//! stable for programs, `message` says what went wrong and what to do.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bridge::TxError;
use bridge::batch::ApplyError;
use bridge::passkey::PasskeyError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::sequencer::SequencerError;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable, e.g. `nonce_gap`.
    pub code: String,
    /// For people: what went wrong and what to do about it.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError { status, body: ErrorBody { code: code.to_owned(), message: message.into() } }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A refusal by the state-transition function: the request was well formed, the ledger
    /// says no, and nothing changed.
    pub fn refused(error: &TxError) -> Self {
        let status = match error {
            TxError::NonceReplayed { .. } | TxError::DepositAlreadyCredited(_) => StatusCode::CONFLICT,
            TxError::Signature(_) | TxError::SignerMismatch { .. } | TxError::WrongDomain(_) => {
                StatusCode::UNAUTHORIZED
            }
            // A network without passkeys refuses the kind, not this assertion.
            TxError::Passkey(PasskeyError::Disabled) => StatusCode::UNPROCESSABLE_ENTITY,
            TxError::Passkey(_) => StatusCode::UNAUTHORIZED,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, error.code(), error.to_string())
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed inside the coordinator");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the coordinator failed to answer; the request may be retried, and the operator's logs say why",
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sequencer_stopped",
            "the sequencer has stopped after a storage failure and accepts nothing until the coordinator restarts; \
             nothing from this request was applied",
        )
    }
}

impl From<&ApplyError> for ApiError {
    fn from(error: &ApplyError) -> Self {
        match error {
            ApplyError::Tx(tx) => ApiError::refused(tx),
            // The sequencer seals a full batch and retries, so this only reaches a client if the
            // retry itself failed.
            ApplyError::BatchFull => ApiError::internal("the open batch is full after sealing"),
            // Forced sections are the sequencer's own work; no request makes one.
            other @ (ApplyError::ForcedUnavailable | ApplyError::ForcedNotFirst | ApplyError::ForcedOverCap { .. }) => {
                ApiError::internal(other)
            }
        }
    }
}

impl From<SequencerError> for ApiError {
    fn from(error: SequencerError) -> Self {
        match error {
            SequencerError::Stopped => ApiError::unavailable(),
            other => ApiError::internal(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::internal(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

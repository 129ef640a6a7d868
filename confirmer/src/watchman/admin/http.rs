//! The admin endpoint: where this watchman's operator records approvals and asks the group to
//! sign. Every route needs the operator's token (`Authorization: Bearer …`, the file the
//! watchman made at its first start, 0600). It is served on its own listener, loopback unless the
//! configuration says otherwise. The public `/approvals` (on the metrics listener) shows what
//! this operator approved, for `bridgectl admin status`; it changes nothing.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bridge::eth_settlement::VaultDomain;
use chains::ethereum::Submitter;
use serde::{Deserialize, Serialize};
use tss::TssNode;

use super::approvals::{Approval, ApprovalBook, DEFAULT_APPROVAL_LIFETIME_S};
use super::message::{AdminAction, AdminMessage};
use super::propose::{ProposeError, Refusal, message_for, propose, sign_key_rotation};
use super::token::AdminToken;
use super::{AdminError, now_s};

/// Everything the admin routes need.
#[derive(Clone)]
pub struct AdminApi {
    pub approvals: ApprovalBook,
    pub token: AdminToken,
    /// This watchman's vault (chain id and address; epochs come from the vault).
    pub domain: VaultDomain,
    pub tss: Arc<TssNode>,
    /// Reads the vault's admin nonce and epoch (and sends, when it holds a sender key).
    pub reader: Submitter,
    /// Sends the signed call; `None` if this watchman has no sender key.
    pub sender: Option<Submitter>,
    /// The group's threshold, shown beside each approval's count.
    pub threshold: u16,
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi")
            .field("domain", &self.domain)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

/// `POST /admin/approvals`: approve `action` at the vault's current nonce and epoch unless named.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApproveRequest {
    #[serde(flatten)]
    pub action: AdminAction,
    #[serde(default)]
    pub nonce: Option<u64>,
    #[serde(default)]
    pub epoch: Option<u64>,
    /// Seconds the approval lives (default one day, at most seven).
    #[serde(default)]
    pub expires_in_s: Option<u64>,
}

/// `POST /admin/propose`: sign `action` (at the vault's current nonce and epoch unless named)
/// with the group and send it to the vault.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProposeRequest {
    #[serde(flatten)]
    pub action: AdminAction,
    #[serde(default)]
    pub nonce: Option<u64>,
    #[serde(default)]
    pub epoch: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProposeResponse {
    pub message: AdminMessage,
    pub digest: String,
    /// The vault's transaction; empty for a key rotation (which goes to the coordinator).
    pub tx_hash: String,
    pub signers: Vec<String>,
    /// For `key-rotation`: the signed rotation, to post to the coordinator's `/key-rotation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_rotation: Option<bridge::KeyRotation>,
}

/// An error as the operator's command line gets it: what went wrong and, for a session the
/// group would not sign, each watchman's refusal.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default)]
    pub refusals: Vec<Refusal>,
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(ErrorBody { error: message.to_string(), refusals: Vec::new() })).into_response()
}

fn unauthorised() -> Response {
    error(StatusCode::UNAUTHORIZED, "the admin token is missing or wrong (see the watchman's admin.token)")
}

fn admin_error(e: AdminError) -> Response {
    let status = match &e {
        AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
        AdminError::NoVault | AdminError::NoSender => StatusCode::CONFLICT,
        AdminError::Vault(_) => StatusCode::CONFLICT,
        AdminError::Node(_) => StatusCode::BAD_GATEWAY,
        AdminError::Token(_) | AdminError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e)
}

impl AdminApi {
    /// The token-protected routes, for the admin listener.
    pub fn router(self) -> Router {
        Router::new()
            .route("/admin/approvals", get(list).post(approve))
            .route("/admin/approvals/{digest}", delete(revoke))
            .route("/admin/propose", post(propose_route))
            .with_state(self)
    }

    fn authorised(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let ok = self.token.matches(presented);
        if !ok {
            metrics::counter!("watchman_admin_unauthorised_total").increment(1);
            tracing::warn!("an admin request without this operator's token was refused");
        }
        ok
    }

    async fn message(
        &self,
        action: AdminAction,
        nonce: Option<u64>,
        epoch: Option<u64>,
    ) -> Result<AdminMessage, AdminError> {
        message_for(&self.reader, self.domain, action, nonce, epoch)
            .await
            .map(|(message, _)| message)
            .map_err(|e| AdminError::Node(e.to_string()))
    }
}

/// This operator's approvals, shown to anyone who can reach the metrics listener.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApprovalsView {
    pub peer_id: String,
    pub threshold: u16,
    pub now_s: u64,
    pub approvals: Vec<Approval>,
}

/// `GET /approvals` on the public listener (read only).
pub fn public_router(approvals: ApprovalBook, peer_id: String, threshold: u16) -> Router {
    Router::new().route(
        "/approvals",
        get(move || {
            let view =
                ApprovalsView { peer_id: peer_id.clone(), threshold, now_s: now_s(), approvals: approvals.list() };
            std::future::ready(Json(view))
        }),
    )
}

async fn list(State(api): State<AdminApi>, headers: HeaderMap) -> Response {
    if !api.authorised(&headers) {
        return unauthorised();
    }
    let state = match api.reader.admin_state().await {
        Ok(state) => state,
        Err(e) => return error(StatusCode::BAD_GATEWAY, format!("the Ethereum node: {e}")),
    };
    Json(serde_json::json!({
        "vault": api.domain.vault,
        "chain_id": api.domain.chain_id,
        "vault_state": state,
        "threshold": api.threshold,
        "now_s": now_s(),
        "approvals": api.approvals.list(),
    }))
    .into_response()
}

async fn approve(State(api): State<AdminApi>, headers: HeaderMap, body: Option<Json<ApproveRequest>>) -> Response {
    if !api.authorised(&headers) {
        return unauthorised();
    }
    let Some(Json(request)) = body else {
        return error(StatusCode::BAD_REQUEST, "the body is not an approval request (see docs/OPERATIONS.md)");
    };
    let message = match api.message(request.action, request.nonce, request.epoch).await {
        Ok(message) => message,
        Err(e) => return admin_error(e),
    };
    let lifetime = request.expires_in_s.unwrap_or(DEFAULT_APPROVAL_LIFETIME_S);
    match api.approvals.approve(message, now_s(), lifetime) {
        Ok(approval) => {
            tracing::warn!(message = %approval.message, expires_at_s = approval.expires_at_s, "the operator approved an admin message");
            (StatusCode::CREATED, Json(approval)).into_response()
        }
        Err(e) => admin_error(e),
    }
}

async fn revoke(State(api): State<AdminApi>, headers: HeaderMap, Path(digest): Path<String>) -> Response {
    if !api.authorised(&headers) {
        return unauthorised();
    }
    match api.approvals.revoke(&digest) {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no approval with digest {digest}")),
        Err(e) => admin_error(e),
    }
}

async fn propose_route(
    State(api): State<AdminApi>,
    headers: HeaderMap,
    body: Option<Json<ProposeRequest>>,
) -> Response {
    if !api.authorised(&headers) {
        return unauthorised();
    }
    let Some(Json(request)) = body else {
        return error(StatusCode::BAD_REQUEST, "the body is not a proposal (see docs/OPERATIONS.md)");
    };
    let rotation = matches!(request.action, AdminAction::KeyRotation { .. });
    let sender = match (&api.sender, rotation) {
        (Some(sender), _) => Some(sender),
        (None, true) => None,
        (None, false) => return admin_error(AdminError::NoSender),
    };
    let message = match api.message(request.action, request.nonce, request.epoch).await {
        Ok(message) => message,
        Err(e) => return admin_error(e),
    };
    let outcome = match sender {
        Some(sender) if !rotation => propose(&api.tss, sender, &message).await.map(|(tx, signers)| (tx, signers, None)),
        _ => sign_key_rotation(&api.tss, &message).await.map(|(r, signers)| (String::new(), signers, Some(r))),
    };
    match outcome {
        Ok((tx_hash, signers, key_rotation)) => {
            let digest = hex::encode(message.digest());
            Json(ProposeResponse { message, digest, tx_hash, signers, key_rotation }).into_response()
        }
        Err(ProposeError::NotSigned { message, summary, refusals }) => (
            StatusCode::CONFLICT,
            Json(ErrorBody { error: format!("the group did not sign {message}: {summary}"), refusals }),
        )
            .into_response(),
        Err(e @ ProposeError::VaultRefused { .. }) => error(StatusCode::CONFLICT, e),
        Err(e) => error(StatusCode::BAD_GATEWAY, e),
    }
}

/// A non-loopback admin address is refused unless the operator said so.
pub fn check_listen(listen: std::net::SocketAddr, allow_remote: bool) -> Result<(), AdminError> {
    if !listen.ip().is_loopback() && !allow_remote {
        return Err(AdminError::BadRequest(format!(
            "[admin] listen = {listen} is not a loopback address: set allow_remote = true to serve approvals beyond this machine"
        )));
    }
    Ok(())
}

/// Serves the admin routes on `listen` under `supervisor`. A non-loopback address is refused
/// unless `allow_remote`: the token is all that stands between the listener and an approval.
pub async fn serve(
    api: AdminApi,
    listen: std::net::SocketAddr,
    allow_remote: bool,
    supervisor: &chains::task::Supervisor,
) -> Result<(), AdminError> {
    check_listen(listen, allow_remote)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| AdminError::BadRequest(format!("cannot listen on {listen} for the admin endpoint: {e}")))?;
    tracing::info!(%listen, "the admin endpoint is up");
    let app = api.router();
    supervisor.spawn_essential("admin", async move {
        axum::serve(listener, app)
            .await
            .map_err(|error| chains::task::TaskError::fatal(format!("the admin endpoint failed: {error}")))
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_admin_endpoint_stays_on_loopback_unless_allowed() {
        check_listen("127.0.0.1:9101".parse().unwrap(), false).unwrap();
        check_listen("[::1]:9101".parse().unwrap(), false).unwrap();
        let refused = check_listen("0.0.0.0:9101".parse().unwrap(), false).unwrap_err().to_string();
        assert!(refused.contains("not a loopback address") && refused.contains("allow_remote"), "{refused}");
        check_listen("10.0.0.5:9101".parse().unwrap(), true).unwrap();
    }
}

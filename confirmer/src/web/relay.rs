//! What the page needs from the coordinator, asked by the confirmer on the page's behalf: the
//! browser talks to one origin (the confirmer's), so the coordinator needs no CORS and the page
//! no second URL. Only these calls pass, each with a bounded body and the client's timeout:
//! `POST /tx` (a signed transaction, checked by the coordinator as from any client), `GET
//! /accounts/{a}` (the nonce to sign next: the coordinator's ledger is ahead of any replay),
//! `GET /tx/{h}` (the soft stages) and `GET /accounts/{a}/btc-deposit-address` (which also
//! makes the coordinator watch that address).
//!
//! Each relayed call names the page's client in `X-Forwarded-For` (set here, never passed on
//! from the client, which could claim anything): a coordinator that lists this confirmer in
//! `api.trusted_proxies` counts each client against its own rate limit, so one client of the
//! page cannot use up the confirmer's and stop every other.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::WebError;

/// A signed transaction is a few hundred bytes; 64 KiB leaves room for any field the
/// coordinator's parser might refuse with its own message, and keeps a flood cheap.
pub const MAX_RELAYED_BODY_BYTES: usize = 64 * 1024;

/// The page's client, as the server's connection info says (absent when served without it).
pub type Peer = Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

/// `request` naming `peer` as the client it is made for.
pub fn for_client(request: reqwest::RequestBuilder, peer: &Peer) -> reqwest::RequestBuilder {
    match peer {
        Some(axum::Extension(axum::extract::ConnectInfo(address))) => {
            request.header("x-forwarded-for", address.ip().to_string())
        }
        None => request,
    }
}

/// The coordinator's answer, passed through with its status (its errors are already
/// `{code, message}`), or a 502 saying it could not be reached.
pub async fn forward(coordinator: &str, request: reqwest::RequestBuilder) -> Response {
    match request.send().await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            match answer.bytes().await {
                Ok(body) => (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response(),
                Err(error) => unreachable_coordinator(coordinator, &error).into_response(),
            }
        }
        Err(error) => unreachable_coordinator(coordinator, &error).into_response(),
    }
}

fn unreachable_coordinator(coordinator: &str, error: &reqwest::Error) -> WebError {
    WebError::new(
        StatusCode::BAD_GATEWAY,
        "coordinator_unreachable",
        format!(
            "the coordinator at {coordinator} did not answer ({}); try again, or ask its operator",
            chains::http::describe(error)
        ),
    )
}

/// The body of `POST /web/v1/relay/tx`: refused here if too large or not JSON, so the
/// coordinator sees only what could be a transaction.
pub fn check_body(body: &Bytes) -> Result<Value, WebError> {
    if body.len() > MAX_RELAYED_BODY_BYTES {
        return Err(WebError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("a transaction is at most {MAX_RELAYED_BODY_BYTES} bytes of JSON, got {}", body.len()),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| WebError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body is not JSON: {e}")))
}

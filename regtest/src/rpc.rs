//! The JSON-RPC server: HTTP basic auth, JSON-RPC 1.0 (legacy) and 2.0 envelopes and batches as
//! Bitcoin Core accepts them, with Core's HTTP statuses.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};

use crate::error::code;
use crate::methods::{self, Policy, RpcError};
use crate::node::Node;

/// What the server needs. `Debug` hides the credentials.
pub struct App {
    /// The node.
    pub node: Arc<Node>,
    /// `user:password`, base64-encoded as in the `Authorization` header.
    pub credentials: String,
    /// Answers depending on configuration.
    pub policy: Policy,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("credentials", &"<redacted>").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl App {
    /// The server's expected `Authorization` value for `user` and `password`.
    pub fn credentials(user: &str, password: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    }
}

/// The routes: Core serves RPC on `/` and on `/wallet/<name>`.
pub fn router(app: Arc<App>) -> Router {
    Router::new().route("/", post(handle)).route("/wallet/{wallet}", post(handle)).with_state(app)
}

async fn handle(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .is_some_and(|v| v.trim() == app.credentials);
    if !authorized {
        tracing::warn!("RPC request with missing or wrong credentials");
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Basic realm="jsonrpc""#));
        return response;
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, legacy_error(Value::Null, code::PARSE_ERROR, "Parse error"));
    };
    match request {
        Value::Array(calls) => {
            let mut answers = Vec::with_capacity(calls.len());
            for call in calls {
                if let Some((_, answer)) = single(&app, call).await {
                    answers.push(answer);
                }
            }
            reply(StatusCode::OK, Value::Array(answers))
        }
        call => match single(&app, call).await {
            Some((status, answer)) => reply(status, answer),
            None => StatusCode::NO_CONTENT.into_response(),
        },
    }
}

/// One call; `None` for a JSON-RPC 2.0 notification (no `id`), which gets no answer.
async fn single(app: &Arc<App>, call: Value) -> Option<(StatusCode, Value)> {
    let Value::Object(call) = call else {
        return Some((
            StatusCode::BAD_REQUEST,
            legacy_error(Value::Null, code::INVALID_REQUEST, "Invalid Request object"),
        ));
    };
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let v2 = call.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    let Some(method) = call.get("method").and_then(Value::as_str).map(str::to_owned) else {
        let answer = if v2 {
            v2_error(id, code::INVALID_REQUEST, "Method must be a string")
        } else {
            legacy_error(id, code::INVALID_REQUEST, "Method must be a string")
        };
        return Some((StatusCode::BAD_REQUEST, answer));
    };
    let params = call.get("params").cloned().unwrap_or(Value::Null);
    let node = app.node.clone();
    let policy = app.policy;
    let name = method.clone();
    let result = tokio::task::spawn_blocking(move || methods::call(&node, policy, &name, &params))
        .await
        .unwrap_or_else(|e| Err(RpcError { code: code::MISC_ERROR, message: format!("internal error: {e}") }));
    if let Err(e) = &result {
        tracing::debug!(%method, code = e.code, message = %e.message, "RPC error");
    }
    if v2 && !call.contains_key("id") {
        return None;
    }
    Some(match (result, v2) {
        (Ok(value), false) => (StatusCode::OK, json!({ "result": value, "error": null, "id": id })),
        (Ok(value), true) => (StatusCode::OK, json!({ "jsonrpc": "2.0", "result": value, "id": id })),
        (Err(e), false) => {
            let status = match e.code {
                code::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
                code::INVALID_REQUEST => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, legacy_error(id, e.code, &e.message))
        }
        (Err(e), true) => (StatusCode::OK, v2_error(id, e.code, &e.message)),
    })
}

fn legacy_error(id: Value, code: i32, message: &str) -> Value {
    json!({ "result": null, "error": { "code": code, "message": message }, "id": id })
}

fn v2_error(id: Value, code: i32, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "error": { "code": code, "message": message }, "id": id })
}

fn reply(status: StatusCode, body: Value) -> Response {
    let mut text = body.to_string();
    text.push('\n');
    let mut response = (status, text).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

//! A gateway that indexes before it serves, for tests: an HTTP proxy in front of arlocal that
//! passes every request through, except that for the Arweave ids it is told to hold it answers
//! `/tx/{id}`, `/tx/{id}/data` and `/{id}` with 404, as a real gateway does for a transaction its
//! GraphQL index already lists but its own store has not fetched yet. GraphQL, `/info`,
//! `/tx/{id}/status`, posting and mining pass through untouched.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;

#[derive(Debug, Clone)]
pub struct WithholdingGateway {
    pub url: String,
    held: Arc<Mutex<BTreeSet<String>>>,
}

struct Upstream {
    url: String,
    client: reqwest::Client,
    held: Arc<Mutex<BTreeSet<String>>>,
}

impl WithholdingGateway {
    /// Starts the proxy in front of the gateway at `upstream`, holding nothing.
    pub async fn start(upstream: &str) -> WithholdingGateway {
        let held = Arc::new(Mutex::new(BTreeSet::new()));
        let state = Arc::new(Upstream { url: upstream.to_owned(), client: reqwest::Client::new(), held: held.clone() });
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        WithholdingGateway { url, held }
    }

    /// Answers 404 for `id`'s transaction and data until [`WithholdingGateway::release`].
    pub fn hold(&self, id: &str) {
        self.held.lock().unwrap().insert(id.to_owned());
    }

    pub fn release(&self, id: &str) {
        self.held.lock().unwrap().remove(id);
    }

    pub fn gateway(&self) -> chains::arweave::Gateway {
        chains::arweave::Gateway::new(&self.url, chains::arweave::RetryPolicy::default()).unwrap()
    }
}

/// Whether `path` asks for a held transaction or its data (its status is not held: a gateway
/// that lists a transaction in a block knows its block).
fn withheld(path: &str, held: &BTreeSet<String>) -> bool {
    let id = match path.trim_start_matches('/').split('/').collect::<Vec<_>>().as_slice() {
        ["tx", id] | ["tx", id, "data"] | [id] => (*id).to_owned(),
        _ => return false,
    };
    held.contains(&id)
}

async fn forward(State(upstream): State<Arc<Upstream>>, request: Request) -> Response {
    let path_and_query = request.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    if withheld(request.uri().path(), &upstream.held.lock().unwrap()) {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from(r#"{"status":404,"error":"Not Found"}"#))
            .unwrap();
    }
    let method = request.method().clone();
    let content_type = request.headers().get("content-type").cloned();
    let body: Bytes = axum::body::to_bytes(request.into_body(), 64 << 20).await.unwrap();
    let mut outgoing = upstream.client.request(method, format!("{}{path_and_query}", upstream.url)).body(body);
    if let Some(content_type) = content_type {
        outgoing = outgoing.header("content-type", content_type);
    }
    let answer = outgoing.send().await.unwrap();
    let status = answer.status();
    let content_type = answer.headers().get("content-type").cloned();
    let bytes = answer.bytes().await.unwrap();
    let mut response = Response::builder().status(status.as_u16());
    if let Some(content_type) = content_type {
        response = response.header("content-type", content_type);
    }
    response.body(Body::from(bytes)).unwrap()
}

//! A lagging Ethereum node, for tests: a JSON-RPC proxy in front of anvil that answers as anvil
//! did `lag` blocks ago. The head is capped at `head - lag`; blocks, receipts, transactions and
//! logs above the cap are absent; state reads at `latest` are read at the cap. Setting the lag
//! to 0 lets it catch up. It can also refuse `eth_getLogs` over more than a set number of blocks,
//! as hosted providers do, or fail them with HTTP 503, as a gateway does while its node is down.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct LaggingNode {
    pub url: String,
    lag: Arc<AtomicU64>,
    limits: Arc<LogLimits>,
}

/// The widest `eth_getLogs` range answered (`u64::MAX`: any), and the requests answered and
/// refused.
#[derive(Debug)]
struct LogLimits {
    cap: AtomicU64,
    answered: AtomicU64,
    refused: AtomicU64,
    /// `eth_getLogs` answered with HTTP 503, as a gateway does while the node behind it is down.
    down: AtomicBool,
}

struct Upstream {
    url: String,
    client: reqwest::Client,
    lag: Arc<AtomicU64>,
    limits: Arc<LogLimits>,
}

impl LaggingNode {
    /// Starts the proxy in front of the node at `upstream`, `lag` blocks behind it.
    pub async fn start(upstream: &str, lag: u64) -> LaggingNode {
        let lag = Arc::new(AtomicU64::new(lag));
        let limits = Arc::new(LogLimits {
            cap: AtomicU64::new(u64::MAX),
            answered: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            down: AtomicBool::new(false),
        });
        let state = Arc::new(Upstream {
            url: upstream.to_owned(),
            client: reqwest::Client::new(),
            lag: lag.clone(),
            limits: limits.clone(),
        });
        let app = axum::Router::new().route("/", post(handle)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        LaggingNode { url, lag, limits }
    }

    pub fn set_lag(&self, lag: u64) {
        self.lag.store(lag, Ordering::SeqCst);
    }

    /// Refuses `eth_getLogs` over more than `blocks` blocks (`None`: answers any range).
    pub fn set_log_cap(&self, blocks: Option<u64>) {
        self.limits.cap.store(blocks.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Answers `eth_getLogs` with HTTP 503 while `down`: an outage, not a refusal.
    pub fn set_logs_down(&self, down: bool) {
        self.limits.down.store(down, Ordering::SeqCst);
    }

    /// `eth_getLogs` requests (answered, refused) so far.
    pub fn log_requests(&self) -> (u64, u64) {
        (self.limits.answered.load(Ordering::SeqCst), self.limits.refused.load(Ordering::SeqCst))
    }
}

fn hex_u64(value: &Value) -> Option<u64> {
    value.as_str().and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
}

impl Upstream {
    async fn call(&self, method: &str, params: Value) -> Value {
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let answer: Value = self.client.post(&self.url).json(&request).send().await.unwrap().json().await.unwrap();
        answer
    }

    async fn cap(&self) -> u64 {
        let head = hex_u64(&self.call("eth_blockNumber", json!([])).await["result"]).unwrap();
        head.saturating_sub(self.lag.load(Ordering::SeqCst))
    }

    /// A block tag or number, as seen from the cap: `None` if above it.
    fn at(tag: &Value, cap: u64) -> Option<Value> {
        match tag.as_str() {
            Some("latest" | "pending" | "safe" | "finalized") | None => Some(json!(format!("0x{cap:x}"))),
            Some("earliest") => Some(tag.clone()),
            Some(_) => {
                let number = hex_u64(tag)?;
                (number <= cap).then(|| tag.clone())
            }
        }
    }

    async fn answer(&self, request: Value) -> Value {
        let id = request["id"].clone();
        let method = request["method"].as_str().unwrap_or_default().to_owned();
        let mut params = request["params"].clone();
        let cap = self.cap().await;
        let reply = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result});
        let above = |value: &Value| hex_u64(&value["blockNumber"]).is_some_and(|n| n > cap);
        match method.as_str() {
            "eth_blockNumber" => reply(json!(format!("0x{cap:x}"))),
            "eth_getBlockByNumber" => match Self::at(&params[0], cap) {
                None => reply(Value::Null),
                Some(tag) => {
                    params[0] = tag;
                    reply(self.call(&method, params).await["result"].clone())
                }
            },
            "eth_getBlockByHash" => {
                let result = self.call(&method, params).await["result"].clone();
                if hex_u64(&result["number"]).is_some_and(|n| n > cap) { reply(Value::Null) } else { reply(result) }
            }
            "eth_getTransactionReceipt" | "eth_getTransactionByHash" => {
                let result = self.call(&method, params).await["result"].clone();
                // A lagging node has not seen the transaction, mined or pending.
                if result.is_null() || above(&result) || result["blockNumber"].is_null() {
                    reply(Value::Null)
                } else {
                    reply(result)
                }
            }
            "eth_getLogs" => {
                let cap_blocks = self.limits.cap.load(Ordering::SeqCst);
                let range = hex_u64(&params[0]["toBlock"])
                    .zip(hex_u64(&params[0]["fromBlock"]))
                    .map(|(to, from)| to.saturating_sub(from) + 1);
                if cap_blocks < u64::MAX && range.is_none_or(|blocks| blocks > cap_blocks) {
                    self.limits.refused.fetch_add(1, Ordering::SeqCst);
                    // As one hosted provider words it; every provider words it its own way.
                    let message = format!(
                        "Log response size exceeded. You can make eth_getLogs requests with up to a {cap_blocks} block range."
                    );
                    return json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": message}});
                }
                self.limits.answered.fetch_add(1, Ordering::SeqCst);
                if params[0].get("toBlock").is_some() {
                    params[0]["toBlock"] = Self::at(&params[0]["toBlock"], cap).unwrap_or(json!(format!("0x{cap:x}")));
                }
                let result = self.call(&method, params).await["result"].clone();
                let logs: Vec<Value> =
                    result.as_array().cloned().unwrap_or_default().into_iter().filter(|l| !above(l)).collect();
                reply(json!(logs))
            }
            "eth_getBalance" | "eth_call" | "eth_getCode" | "eth_getTransactionCount" | "eth_getStorageAt" => {
                let at = if method == "eth_getStorageAt" { 2 } else { 1 };
                if let Some(list) = params.as_array_mut()
                    && list.len() <= at
                {
                    list.resize(at + 1, json!("latest"));
                }
                match Self::at(&params[at], cap) {
                    Some(tag) => {
                        params[at] = tag;
                        self.call(&method, params).await
                    }
                    None => {
                        json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": "header not found"}})
                    }
                }
            }
            _ => {
                let mut answer = self.call(&method, params).await;
                answer["id"] = id;
                answer
            }
        }
    }
}

async fn handle(State(upstream): State<Arc<Upstream>>, Json(body): Json<Value>) -> Response {
    if upstream.limits.down.load(Ordering::SeqCst) && body["method"] == "eth_getLogs" {
        return (StatusCode::SERVICE_UNAVAILABLE, "no upstream node").into_response();
    }
    match body {
        Value::Array(requests) => {
            let mut answers = Vec::new();
            for request in requests {
                answers.push(upstream.answer(request).await);
            }
            Json(Value::Array(answers)).into_response()
        }
        request => Json(upstream.answer(request).await).into_response(),
    }
}

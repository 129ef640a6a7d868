//! `bitcoin-regtest` as a process: its flags, the address it prints, RPC with its credentials.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

/// Stops the node even when an assertion fails first.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_serves_rpc_on_the_port_it_prints() {
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_bitcoin-regtest"))
            .args(["--rpc-port", "0", "--rpc-user", "alice", "--rpc-password", "secret", "--log-format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");

    let client = reqwest::Client::new();
    let call = |password: &'static str| {
        client
            .post(&url)
            .basic_auth("alice", Some(password))
            .json(&json!({ "jsonrpc": "1.0", "id": 1, "method": "getblockcount", "params": [] }))
            .send()
    };
    let answer: Value = call("secret").await.unwrap().json().await.unwrap();
    assert_eq!(answer["result"], 0);
    assert_eq!(call("wrong").await.unwrap().status(), 401);
}

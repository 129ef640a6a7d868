//! `bridgectl admin` refuses what an operator must not do by accident: a token file others can
//! read, a watchman it cannot reach, a cap without a window; each with a message and exit 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn admin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bridgectl")).arg("admin").args(args).output().unwrap()
}

fn refused(output: &std::process::Output) -> String {
    assert!(!output.status.success(), "expected a refusal: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_token_file_others_can_read_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin.token");
    std::fs::write(&token, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The admin address is a port nobody listens on: the refusal comes before any request.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unused = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let token_arg = token.to_str().unwrap();
    let said = refused(&admin(&["approve", "--admin", &unused, "--token-file", token_arg, "unpause"]));
    assert!(said.contains("readable by others") && said.contains("chmod 600"), "{said}");

    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let said = refused(&admin(&["propose", "--admin", &unused, "--token-file", token_arg, "unpause"]));
    assert!(said.contains("cannot reach the watchman's admin endpoint"), "{said}");

    let said = refused(&admin(&[
        "approve",
        "--admin",
        &unused,
        "--token-file",
        token_arg,
        "set-cap",
        "--token",
        "eth",
        "--limit",
        "5",
        "--window",
        "0",
    ]));
    assert!(said.contains("--window"), "{said}");
    let said = refused(&admin(&["approve", "--token-file", token_arg, "propose-key", "--new-key", "12"]));
    assert!(said.contains("--new-key"), "{said}");
}

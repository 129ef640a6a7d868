//! The committed ABI and bytecode are what the sources compile to.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic
use std::path::PathBuf;
use std::process::Command;

#[test]
fn artifacts_are_up_to_date() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("bash").arg(root.join("build.sh")).arg(out.path()).status().unwrap();
    assert!(status.success(), "contracts/build.sh failed");
    for contract in [
        "Vault",
        "TestToken",
        "FeeToken",
        "BlacklistToken",
        "Bip340Gas",
        "Spoofer",
        "RevertingRecipient",
        "GasBurner",
        "ReturnBomb",
    ] {
        let name = format!("{contract}.json");
        let fresh = std::fs::read_to_string(out.path().join(&name)).unwrap();
        let committed = std::fs::read_to_string(root.join("artifacts").join(&name)).unwrap();
        assert!(
            fresh == committed,
            "contracts/artifacts/{name} is stale: run contracts/build.sh and commit the result"
        );
    }
}

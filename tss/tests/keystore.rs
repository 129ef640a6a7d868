#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Key shares at rest: encrypted, authenticated, owner-only.

use std::os::unix::fs::PermissionsExt;

use tss::KeyShare;
use tss::frost;
use tss::keystore::{self, KdfParams, KeystoreError, Passphrase};

fn dealer_share() -> KeyShare {
    let (shares, public) =
        frost::keys::generate_with_dealer(3, 2, frost::keys::IdentifierList::Default, rand_core::OsRng).unwrap();
    let (_, secret) = shares.into_iter().next().unwrap();
    KeyShare { key_package: frost::keys::KeyPackage::try_from(secret).unwrap(), public }
}

#[test]
fn a_share_round_trips_and_is_not_on_disk_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("share.json");
    let share = dealer_share();
    let passphrase = Passphrase::new("correct horse battery staple").unwrap();
    share.save(&path, &passphrase, KdfParams::default()).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(keystore::permission_warning(&path).is_none());
    let on_disk = std::fs::read(&path).unwrap();
    let secret = share.key_package.signing_share().serialize();
    let secret_hex = hex::encode(&secret);
    assert!(!String::from_utf8_lossy(&on_disk).contains(&secret_hex), "the signing share is on disk in hex");
    assert!(!on_disk.windows(secret.len()).any(|w| w == secret.as_slice()), "the signing share is on disk raw");
    assert_eq!(KeyShare::load(&path, &passphrase).unwrap(), share);
}

#[test]
fn a_wrong_passphrase_and_a_tampered_file_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("share.json");
    let share = dealer_share();
    share.save(&path, &Passphrase::new("right").unwrap(), KdfParams::default()).unwrap();

    let wrong = KeyShare::load(&path, &Passphrase::new("wrong").unwrap()).unwrap_err();
    assert!(matches!(wrong, KeystoreError::Decrypt { .. }), "{wrong}");
    assert!(wrong.to_string().contains("passphrase is wrong or the file was altered"));

    // Flip one hex digit of the ciphertext.
    let mut file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let ciphertext = file["ciphertext"].as_str().unwrap().to_string();
    let (first, rest) = ciphertext.split_at(1);
    let flipped = format!("{}{rest}", if first == "0" { "1" } else { "0" });
    file["ciphertext"] = flipped.into();
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    let tampered = KeyShare::load(&path, &Passphrase::new("right").unwrap()).unwrap_err();
    assert!(matches!(tampered, KeystoreError::Decrypt { .. }), "{tampered}");

    // Weaker KDF settings written into the file are authenticated too.
    share.save(&path, &Passphrase::new("right").unwrap(), KdfParams::default()).unwrap();
    let mut file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    file["kdf"]["passes"] = 1.into();
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    assert!(KeyShare::load(&path, &Passphrase::new("right").unwrap()).is_err());

    std::fs::write(&path, b"not json").unwrap();
    let garbage = KeyShare::load(&path, &Passphrase::new("right").unwrap()).unwrap_err();
    assert!(matches!(garbage, KeystoreError::Format { .. }), "{garbage}");
    assert!(matches!(Passphrase::new(""), Err(KeystoreError::EmptyPassphrase)));
}

#[test]
fn a_file_readable_by_others_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("share.json");
    let passphrase = Passphrase::new("p").unwrap();
    dealer_share().save(&path, &passphrase, KdfParams::default()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let warning = keystore::permission_warning(&path).expect("a 0644 share file is warned about");
    assert!(warning.contains("chmod 600"), "{warning}");
    // Still loads: the warning tells the operator, it does not lock them out.
    assert!(KeyShare::load(&path, &passphrase).is_ok());
}

#[test]
fn the_passphrase_comes_from_a_file_or_a_variable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pass");
    std::fs::write(&file, "secret\n").unwrap();
    let path = dir.path().join("share.json");
    let share = dealer_share();
    share.save(&path, &Passphrase::from_file(&file).unwrap(), KdfParams::default()).unwrap();
    assert_eq!(KeyShare::load(&path, &Passphrase::new("secret").unwrap()).unwrap(), share);
    assert!(matches!(Passphrase::from_env("TSS_TEST_SURELY_UNSET_VARIABLE"), Err(KeystoreError::MissingVariable(_))));
}

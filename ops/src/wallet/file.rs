//! The wallet file: one account's 32-byte secp256k1 secret, sealed by `tss::keystore` (Argon2id
//! and XChaCha20-Poly1305, mode 0600) under the kind `bridge-wallet`, so a watchman's key share
//! or identity file is never taken for a wallet, nor a wallet for them.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use bridge::Wallet;
use tss::keystore::{self, KdfParams, KeystoreError, Passphrase};

/// The keystore kind of a wallet file.
pub const KIND: &str = keystore::ACCOUNT_KEY_KIND;

#[derive(Debug, thiserror::Error)]
pub enum WalletFileError {
    #[error("{0} exists; a wallet is never overwritten (choose another --out, or move the old file away first)")]
    Exists(PathBuf),
    #[error("no wallet file at {0}: create one with `bridgectl wallet new --out {0}` or pass --wallet FILE")]
    Missing(PathBuf),
    #[error(
        "cannot open the wallet {path}: the passphrase is wrong or the file was altered (check --passphrase-file or the passphrase variable)"
    )]
    WrongPassphrase { path: PathBuf },
    #[error("{path} holds {len} bytes, not a 32-byte account key")]
    Length { path: PathBuf, len: usize },
    #[error("{path} does not hold a valid secp256k1 key (zero or not below the curve order)")]
    BadKey { path: PathBuf },
    #[error("the private key to import must be 64 hex digits (optionally with 0x) on standard input: {0}")]
    ImportFormat(String),
    #[error("the imported key is not a valid secp256k1 key (zero or not below the curve order)")]
    ImportKey,
    #[error("cannot read the private key from standard input: {0}")]
    Stdin(std::io::Error),
    #[error(transparent)]
    Keystore(KeystoreError),
}

/// Writes `secret` to `out` as a new wallet file, refusing to replace an existing file.
pub fn create(out: &Path, secret: &[u8; 32], passphrase: &Passphrase) -> Result<Wallet, WalletFileError> {
    if out.exists() || out.is_symlink() {
        return Err(WalletFileError::Exists(out.into()));
    }
    let wallet = Wallet::from_secret(secret).map_err(|_| WalletFileError::ImportKey)?;
    keystore::seal(out, KIND, secret, passphrase, KdfParams::default()).map_err(WalletFileError::Keystore)?;
    Ok(wallet)
}

/// Opens a wallet file.
pub fn open(path: &Path, passphrase: &Passphrase) -> Result<Wallet, WalletFileError> {
    if !path.exists() {
        return Err(WalletFileError::Missing(path.into()));
    }
    let secret = keystore::open(path, KIND, passphrase).map_err(|e| match e {
        KeystoreError::Decrypt { path } => WalletFileError::WrongPassphrase { path },
        other => WalletFileError::Keystore(other),
    })?;
    let bytes: [u8; 32] =
        secret.as_slice().try_into().map_err(|_| WalletFileError::Length { path: path.into(), len: secret.len() })?;
    Wallet::from_secret(&bytes).map_err(|_| WalletFileError::BadKey { path: path.into() })
}

/// A fresh random account key from the operating system's generator.
pub fn random_secret() -> [u8; 32] {
    let mut rng = bitcoin::secp256k1::rand::thread_rng();
    bitcoin::secp256k1::SecretKey::new(&mut rng).secret_bytes()
}

/// Reads a hex private key from standard input (never from the command line, where other users
/// and the shell history would see it).
pub fn read_secret_from_stdin() -> Result<[u8; 32], WalletFileError> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Paste the account's private key (64 hex digits), then Enter and Ctrl-D:");
    }
    let mut text = String::new();
    stdin.read_to_string(&mut text).map_err(WalletFileError::Stdin)?;
    parse_secret(&text)
}

/// A private key as hex text: 64 hex digits, optionally `0x`, surrounding whitespace ignored.
pub fn parse_secret(text: &str) -> Result<[u8; 32], WalletFileError> {
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix("0x").or_else(|| trimmed.strip_prefix("0X")).unwrap_or(trimmed);
    if digits.is_empty() {
        return Err(WalletFileError::ImportFormat("standard input was empty".into()));
    }
    if digits.len() != 64 {
        return Err(WalletFileError::ImportFormat(format!("got {} characters", digits.len())));
    }
    let mut secret = [0u8; 32];
    hex::decode_to_slice(digits, &mut secret)
        .map_err(|_| WalletFileError::ImportFormat("it is not hexadecimal".into()))?;
    Wallet::from_secret(&secret).map_err(|_| WalletFileError::ImportKey)?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn secrets_parse_with_or_without_prefix() {
        let hex = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
        let a = parse_secret(hex).unwrap();
        let b = parse_secret(&format!("  0x{hex}\n")).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            Wallet::from_secret(&a).unwrap().address().to_string().to_lowercase(),
            "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
        );
        assert!(matches!(parse_secret(""), Err(WalletFileError::ImportFormat(_))));
        assert!(matches!(parse_secret("0x12"), Err(WalletFileError::ImportFormat(_))));
        assert!(matches!(parse_secret(&"zz".repeat(32)), Err(WalletFileError::ImportFormat(_))));
        assert!(matches!(parse_secret(&"00".repeat(32)), Err(WalletFileError::ImportKey)));
    }
}

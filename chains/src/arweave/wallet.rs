//! An Arweave wallet: an RSA key in a JWK file. Signing goes through `ring` (constant time);
//! the private parts never leave this type and are never printed.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::rsa::{KeyPairComponents, PublicKeyComponents};
use ring::signature::{RSA_PSS_SHA256, RsaKeyPair};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Arweave keys are 4096-bit RSA with exponent 65537.
pub const OWNER_LEN: usize = 512;
pub const EXPONENT: [u8; 3] = [0x01, 0x00, 0x01];

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("cannot read the Arweave wallet file {path}: {source}; check the path and its permissions")]
    Unreadable { path: String, source: std::io::Error },
    #[error("the Arweave wallet is not a JWK: {0}; export it as JSON from the wallet that created it")]
    NotJwk(String),
    #[error("the Arweave wallet is not an RSA private key: {0}")]
    NotRsa(String),
    #[error("signing with the Arweave wallet failed; the key may be corrupt")]
    Signing,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    n: String,
    e: String,
    d: Option<String>,
    p: Option<String>,
    q: Option<String>,
    dp: Option<String>,
    dq: Option<String>,
    qi: Option<String>,
}

pub struct ArweaveWallet {
    key: RsaKeyPair,
    owner: Vec<u8>,
    address: String,
}

impl std::fmt::Debug for ArweaveWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArweaveWallet").field("address", &self.address).finish_non_exhaustive()
    }
}

impl ArweaveWallet {
    pub fn load(path: &Path) -> Result<Self, WalletError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| WalletError::Unreadable { path: path.display().to_string(), source })?;
        Self::from_jwk(&text)
    }

    pub fn from_jwk(text: &str) -> Result<Self, WalletError> {
        let jwk: Jwk = serde_json::from_str(text).map_err(|e| WalletError::NotJwk(e.to_string()))?;
        if jwk.kty != "RSA" {
            return Err(WalletError::NotRsa(format!("key type is {:?}", jwk.kty)));
        }
        let part = |name: &str, value: Option<String>| -> Result<Vec<u8>, WalletError> {
            let value = value.ok_or_else(|| WalletError::NotRsa(format!("the private part {name:?} is missing")))?;
            b64(&value).map_err(|e| WalletError::NotJwk(format!("{name}: {e}")))
        };
        let n = part("n", Some(jwk.n))?;
        let e = part("e", Some(jwk.e))?;
        if n.len() != OWNER_LEN || e != EXPONENT {
            return Err(WalletError::NotRsa("Arweave needs a 4096-bit key with exponent 65537".into()));
        }
        let components = KeyPairComponents {
            public_key: PublicKeyComponents { n: n.clone(), e },
            d: part("d", jwk.d)?,
            p: part("p", jwk.p)?,
            q: part("q", jwk.q)?,
            dP: part("dp", jwk.dp)?,
            dQ: part("dq", jwk.dq)?,
            qInv: part("qi", jwk.qi)?,
        };
        let key = RsaKeyPair::from_components(&components).map_err(|e| WalletError::NotRsa(e.to_string()))?;
        let address = address_of(&n);
        Ok(ArweaveWallet { key, owner: n, address })
    }

    /// The public modulus, which Arweave calls the owner.
    pub fn owner(&self) -> &[u8] {
        &self.owner
    }

    /// base64url(SHA-256(owner)).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// RSA-PSS/SHA-256 with a 32-byte random salt.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, WalletError> {
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PSS_SHA256, &SystemRandom::new(), message, &mut signature)
            .map_err(|_| WalletError::Signing)?;
        Ok(signature)
    }
}

/// The address of the wallet whose owner (modulus) is `owner`.
pub fn address_of(owner: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(owner))
}

/// Decodes base64url, with or without padding (gateways and wallets differ).
pub fn b64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('='))
}

pub fn to_b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

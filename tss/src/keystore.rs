//! Key shares at rest: never on disk in plaintext.
//!
//! A file is JSON: the Argon2id parameters and salt, a 24-byte nonce, and the XChaCha20-Poly1305
//! ciphertext of the secret. The key is derived from the operator's passphrase (a file or an
//! environment variable, never an argument: arguments show in `ps`). A wrong passphrase and a
//! tampered file fail the same authenticated decryption, and say which two things to check.
//! Plaintext secrets live in `Zeroizing` buffers and are wiped when dropped.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use frost_secp256k1_tr as frost;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
pub use zeroize::Zeroizing;

const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("cannot read or write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a key share file (version {FORMAT_VERSION} JSON): {reason}")]
    Format { path: PathBuf, reason: String },
    #[error(
        "cannot decrypt {path}: the passphrase is wrong or the file was altered; check the passphrase file or variable, and restore the file from its backup if it was changed"
    )]
    Decrypt { path: PathBuf },
    #[error("the passphrase is empty: set it in the passphrase file or environment variable")]
    EmptyPassphrase,
    #[error("the passphrase variable {0} is not set")]
    MissingVariable(String),
    #[error("key derivation failed: {0}")]
    Kdf(String),
    #[error("the decrypted key share does not parse: {0}")]
    Share(String),
    #[error(
        "{path} holds a private key in plaintext; encrypt it with the same passphrase: `bridgectl wallet import --out NEW_FILE --passphrase-file PASSPHRASE_FILE < {path}` (or `--passphrase-env WATCHMAN_PASSPHRASE`), point the configuration at NEW_FILE, then shred {path}"
    )]
    PlaintextKey { path: PathBuf },
}

/// The operator's passphrase, wiped from memory when dropped.
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(…)")
    }
}

impl Passphrase {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, KeystoreError> {
        let bytes = Zeroizing::new(bytes.into());
        if bytes.is_empty() {
            return Err(KeystoreError::EmptyPassphrase);
        }
        Ok(Passphrase(bytes))
    }

    /// The whole file, less one trailing newline.
    pub fn from_file(path: &Path) -> Result<Self, KeystoreError> {
        let mut bytes =
            Zeroizing::new(std::fs::read(path).map_err(|source| KeystoreError::Io { path: path.into(), source })?);
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        Self::new(bytes.to_vec())
    }

    pub fn from_env(variable: &str) -> Result<Self, KeystoreError> {
        let value =
            Zeroizing::new(std::env::var(variable).map_err(|_| KeystoreError::MissingVariable(variable.into()))?);
        Self::new(value.as_bytes().to_vec())
    }
}

/// Argon2id cost: 64 MiB and 3 passes by default (OWASP's first recommended setting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub passes: u32,
    pub lanes: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams { memory_kib: 64 * 1024, passes: 3, lanes: 1 }
    }
}

#[derive(Serialize, Deserialize)]
struct SealedFile {
    version: u32,
    kind: String,
    kdf: KdfParams,
    salt: String,
    nonce: String,
    ciphertext: String,
}

fn derive_key(passphrase: &Passphrase, salt: &[u8], kdf: KdfParams) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let params =
        Params::new(kdf.memory_kib, kdf.passes, kdf.lanes, Some(32)).map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(&passphrase.0, salt, key.as_mut())
        .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    Ok(key)
}

/// Encrypts `secret` to `path` (created 0600, replaced atomically). `kind` names what it holds
/// and is authenticated with it, so one kind of file cannot be passed off as another.
pub fn seal(
    path: &Path,
    kind: &str,
    secret: &[u8],
    passphrase: &Passphrase,
    kdf: KdfParams,
) -> Result<(), KeystoreError> {
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut nonce);
    let key = derive_key(passphrase, &salt, kdf)?;
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    let aad = associated_data(kind, kdf);
    let ciphertext = cipher
        .encrypt(&XNonce::from(nonce), chacha20poly1305::aead::Payload { msg: secret, aad: &aad })
        .map_err(|_| KeystoreError::Kdf("encryption failed".into()))?;
    let file = SealedFile {
        version: FORMAT_VERSION,
        kind: kind.into(),
        kdf,
        salt: hex::encode(salt),
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ciphertext),
    };
    let text = serde_json::to_vec_pretty(&file)
        .map_err(|e| KeystoreError::Format { path: path.into(), reason: e.to_string() })?;
    let io = |source| KeystoreError::Io { path: path.into(), source };
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary).map_err(io)?;
    out.write_all(&text).map_err(io)?;
    out.sync_all().map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

fn associated_data(kind: &str, kdf: KdfParams) -> Vec<u8> {
    format!("tss-keystore/{FORMAT_VERSION}/{kind}/{}/{}/{}", kdf.memory_kib, kdf.passes, kdf.lanes).into_bytes()
}

/// Decrypts what [`seal`] wrote. Warns (log and return value) when the file can be read by
/// anyone but its owner.
pub fn open(path: &Path, kind: &str, passphrase: &Passphrase) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    if let Some(warning) = permission_warning(path) {
        tracing::warn!(path = %path.display(), "{warning}");
    }
    let bytes = std::fs::read(path).map_err(|source| KeystoreError::Io { path: path.into(), source })?;
    let format = |reason: String| KeystoreError::Format { path: path.into(), reason };
    let file: SealedFile = serde_json::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
    if file.version != FORMAT_VERSION {
        return Err(format(format!("version {} is not supported", file.version)));
    }
    if file.kind != kind {
        return Err(format(format!("it holds a {}, not a {kind}", file.kind)));
    }
    let salt = hex::decode(&file.salt).map_err(|e| format(format!("salt: {e}")))?;
    let nonce: [u8; 24] = hex::decode(&file.nonce)
        .map_err(|e| format(format!("nonce: {e}")))?
        .try_into()
        .map_err(|n: Vec<u8>| format(format!("the nonce has {} bytes, not 24", n.len())))?;
    let ciphertext = hex::decode(&file.ciphertext).map_err(|e| format(format!("ciphertext: {e}")))?;
    let key = derive_key(passphrase, &salt, file.kdf)?;
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    let aad = associated_data(kind, file.kdf);
    let plaintext = cipher
        .decrypt(&XNonce::from(nonce), chacha20poly1305::aead::Payload { msg: &ciphertext, aad: &aad })
        .map_err(|_| KeystoreError::Decrypt { path: path.into() })?;
    Ok(Zeroizing::new(plaintext))
}

/// A warning if `path` is readable or writable by its group or others (it should be 0600).
pub fn permission_warning(path: &Path) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} has mode {:o}; a key share file must be readable by its owner only: chmod 600 it",
            path.display(),
            mode & 0o777
        )
    })
}

/// One watchman's share of the group key, and the group's public package.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyShare {
    pub key_package: frost::keys::KeyPackage,
    pub public: frost::keys::PublicKeyPackage,
}

impl std::fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyShare").field("identifier", self.key_package.identifier()).finish_non_exhaustive()
    }
}

/// The shares one ceremony (a DKG or a refresh) made: SHA-256 of a tag and the group's public
/// package (the group key and every member's verifying share). Every member of one ceremony holds
/// the same package, and a refresh changes every verifying share while keeping the group key, so
/// the generation tells shares of one group that can sign together (`t` of one generation)
/// from those that cannot: a signer still on its old share during a refresh is of another
/// generation, not a cheater.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Generation(#[serde(with = "crate::group::hex_bytes")] pub [u8; 32]);

impl Generation {
    pub fn of(public: &frost::keys::PublicKeyPackage) -> Result<Self, KeystoreError> {
        use sha2::{Digest, Sha256};
        let bytes = public.serialize().map_err(|e| KeystoreError::Share(e.to_string()))?;
        let mut hash = Sha256::new();
        hash.update(b"bridge/tss/share-generation/v1");
        hash.update(&bytes);
        Ok(Generation(hash.finalize().into()))
    }
}

/// The first four bytes in hex: enough to tell generations apart in a log.
impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", hex::encode(&self.0[..4]))
    }
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Generation({self})")
    }
}

const SHARE_KIND: &str = "frost-secp256k1-tr key share";

#[derive(Serialize, Deserialize)]
struct ShareFile {
    key_package: String,
    public: String,
}

impl KeyShare {
    pub fn identifier(&self) -> frost::Identifier {
        *self.key_package.identifier()
    }

    /// Which ceremony's shares this one belongs to: see [`Generation`].
    pub fn generation(&self) -> Result<Generation, KeystoreError> {
        Generation::of(&self.public)
    }

    pub fn save(&self, path: &Path, passphrase: &Passphrase, kdf: KdfParams) -> Result<(), KeystoreError> {
        let share_error = |e: frost::Error| KeystoreError::Share(e.to_string());
        let key_package = Zeroizing::new(self.key_package.serialize().map_err(share_error)?);
        let file = ShareFile {
            key_package: hex::encode(key_package.as_slice()),
            public: hex::encode(self.public.serialize().map_err(share_error)?),
        };
        let text = Zeroizing::new(serde_json::to_vec(&file).map_err(|e| KeystoreError::Share(e.to_string()))?);
        let result = seal(path, SHARE_KIND, &text, passphrase, kdf);
        drop(Zeroizing::new(file.key_package));
        result
    }

    pub fn load(path: &Path, passphrase: &Passphrase) -> Result<Self, KeystoreError> {
        let plaintext = open(path, SHARE_KIND, passphrase)?;
        let file: ShareFile = serde_json::from_slice(&plaintext).map_err(|e| KeystoreError::Share(e.to_string()))?;
        let file_key = Zeroizing::new(file.key_package);
        let key_bytes =
            Zeroizing::new(hex::decode(file_key.as_str()).map_err(|e| KeystoreError::Share(e.to_string()))?);
        let public_bytes = hex::decode(&file.public).map_err(|e| KeystoreError::Share(e.to_string()))?;
        Ok(KeyShare {
            key_package: frost::keys::KeyPackage::deserialize(&key_bytes)
                .map_err(|e| KeystoreError::Share(e.to_string()))?,
            public: frost::keys::PublicKeyPackage::deserialize(&public_bytes)
                .map_err(|e| KeystoreError::Share(e.to_string()))?,
        })
    }
}

const IDENTITY_KIND: &str = "libp2p ed25519 identity";

/// The watchman's mesh identity (its PeerId), kept like a share.
pub fn save_identity(
    path: &Path,
    keypair: &libp2p::identity::Keypair,
    passphrase: &Passphrase,
    kdf: KdfParams,
) -> Result<(), KeystoreError> {
    let bytes = Zeroizing::new(keypair.to_protobuf_encoding().map_err(|e| KeystoreError::Share(e.to_string()))?);
    seal(path, IDENTITY_KIND, &bytes, passphrase, kdf)
}

pub fn load_identity(path: &Path, passphrase: &Passphrase) -> Result<libp2p::identity::Keypair, KeystoreError> {
    let bytes = open(path, IDENTITY_KIND, passphrase)?;
    libp2p::identity::Keypair::from_protobuf_encoding(&bytes).map_err(|e| KeystoreError::Share(e.to_string()))
}

/// The kind of a sealed Ethereum account key: `bridgectl wallet` files, and the watchman's
/// guardian key (so `bridgectl wallet import` encrypts one).
pub const ACCOUNT_KEY_KIND: &str = "bridge-wallet";

/// Opens a sealed 32-byte account key (a wallet file, a guardian key). A file that holds the key
/// in plaintext hex (as keys were kept before) is refused with [`KeystoreError::PlaintextKey`],
/// which says how to encrypt it.
pub fn open_account_key(path: &Path, passphrase: &Passphrase) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| KeystoreError::Io { path: path.into(), source })?);
    if let Ok(text) = std::str::from_utf8(&bytes) {
        let text = text.trim();
        let digits = text.strip_prefix("0x").unwrap_or(text);
        if digits.len() == 64 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(KeystoreError::PlaintextKey { path: path.into() });
        }
    }
    drop(bytes);
    let secret = open(path, ACCOUNT_KEY_KIND, passphrase)?;
    let key: [u8; 32] = secret.as_slice().try_into().map_err(|_| {
        KeystoreError::Share(format!("{} holds {} bytes, not a 32-byte key", path.display(), secret.len()))
    })?;
    Ok(Zeroizing::new(key))
}

/// Seals a 32-byte account key as [`open_account_key`] reads it.
pub fn seal_account_key(
    path: &Path,
    key: &[u8; 32],
    passphrase: &Passphrase,
    kdf: KdfParams,
) -> Result<(), KeystoreError> {
    seal(path, ACCOUNT_KEY_KIND, key, passphrase, kdf)
}

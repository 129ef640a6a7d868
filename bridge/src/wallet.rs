//! A user's signing key, for wallets, the CLI, load generators and tests. Signing is RFC 6979
//! deterministic (no randomness) and always low-s, as the bridge requires.

use secp256k1::{Message, PublicKey, SECP256K1, SecretKey};

use crate::address::Address;
use crate::eip712::Domain;
use crate::hashing::keccak256;
use crate::signature::{Authorization, EcdsaSignature};
use crate::tx::{SignedUserTx, UserTx};

/// An Ethereum secp256k1 key. `Debug` shows the address only.
pub struct Wallet {
    secret: SecretKey,
    address: Address,
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wallet({})", self.address)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a private key is 32 bytes, non-zero and below the secp256k1 order")]
pub struct BadPrivateKey;

impl Wallet {
    pub fn from_secret(secret: &[u8; 32]) -> Result<Self, BadPrivateKey> {
        let secret = SecretKey::from_slice(secret).map_err(|_| BadPrivateKey)?;
        let public = PublicKey::from_secret_key(SECP256K1, &secret).serialize_uncompressed();
        let mut address = [0u8; 20];
        address.copy_from_slice(&keccak256(&public[1..])[12..]);
        Ok(Wallet { secret, address: Address(address) })
    }

    pub fn address(&self) -> Address {
        self.address
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret.secret_bytes()
    }

    /// Signs a 32-byte digest, returning the recoverable low-s signature.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> EcdsaSignature {
        let signature = SECP256K1.sign_ecdsa_recoverable(&Message::from_digest(*digest), &self.secret);
        let (id, compact) = signature.serialize_compact();
        let mut r = [0; 32];
        let mut s = [0; 32];
        r.copy_from_slice(&compact[..32]);
        s.copy_from_slice(&compact[32..]);
        EcdsaSignature { r, s, y_parity: id.to_i32() == 1 }
    }

    /// Signs `tx` as EIP-712 typed data under `domain`, as `eth_signTypedData_v4` would.
    pub fn sign(&self, tx: UserTx, domain: &Domain) -> SignedUserTx {
        let signature = self.sign_digest(&tx.signing_hash(domain));
        SignedUserTx { tx, auth: Authorization::Eip712Secp256k1 { signature } }
    }
}

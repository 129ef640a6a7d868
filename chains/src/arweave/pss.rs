//! RSA-PSS/SHA-256 verification that accepts any salt length. `ring` signs (in constant time,
//! with a 32-byte salt), but it only verifies signatures whose salt is as long as the digest,
//! while arweave-js (through Node's default) signs with the longest salt the key allows. A
//! verification handles only public data, so a plain big-number power is safe here.

use num_bigint::BigUint;
use sha2::{Digest, Sha256};

const H_LEN: usize = 32;

/// True if `signature` is a valid RSASSA-PSS (MGF1-SHA-256) signature of `message` under the
/// public key (`modulus`, `exponent`), whatever its salt length (EMSA-PSS-VERIFY, RFC 8017 §9.1.2).
pub fn verify(modulus: &[u8], exponent: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let n = BigUint::from_bytes_be(modulus);
    let e = BigUint::from_bytes_be(exponent);
    let mod_bits = n.bits() as usize;
    let k = mod_bits.div_ceil(8);
    if mod_bits < 1024 || signature.len() != k || e < BigUint::from(3u8) {
        return false;
    }
    let s = BigUint::from_bytes_be(signature);
    if s >= n {
        return false;
    }
    let m = s.modpow(&e, &n).to_bytes_be();
    let em_bits = mod_bits - 1;
    let em_len = em_bits.div_ceil(8);
    if m.len() > em_len || em_len < H_LEN + 2 {
        return false;
    }
    let mut em = vec![0u8; em_len];
    em[em_len - m.len()..].copy_from_slice(&m);
    if em[em_len - 1] != 0xbc {
        return false;
    }
    let db_len = em_len - H_LEN - 1;
    let (masked_db, rest) = em.split_at(db_len);
    let h = &rest[..H_LEN];
    let unused_bits = 8 * em_len - em_bits;
    let top_mask = 0xffu8.checked_shr(unused_bits as u32).unwrap_or(0);
    if masked_db[0] & !top_mask != 0 {
        return false;
    }
    let mut db = mgf1(h, db_len);
    for (d, m) in db.iter_mut().zip(masked_db) {
        *d ^= m;
    }
    db[0] &= top_mask;
    let Some(one) = db.iter().position(|&b| b != 0) else { return false };
    if db[one] != 0x01 {
        return false;
    }
    let salt = &db[one + 1..];
    let digest = Sha256::digest(message);
    let mut prime = Sha256::new();
    prime.update([0u8; 8]);
    prime.update(digest);
    prime.update(salt);
    let computed: [u8; H_LEN] = prime.finalize().into();
    computed == h
}

fn mgf1(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + H_LEN);
    let mut counter: u32 = 0;
    while out.len() < len {
        let mut hasher = Sha256::new();
        hasher.update(seed);
        hasher.update(counter.to_be_bytes());
        out.extend_from_slice(&hasher.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

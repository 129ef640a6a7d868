//! A FROST signing package on the mesh (`/bridge-tss/5`): the same content as
//! `SigningPackage::serialize`, with every nonce commitment uncompressed.
//!
//! Why: each of the `t` signers decodes all `2t` commitments of an attempt. FROST's own encoding
//! is compressed, and decompressing a secp256k1 point is a square root in the field (about an
//! exponentiation), so at 67-of-100 an attempt's decoding cost `t · 2t ≈ 9,000` square roots
//! across the group: on the bench's 2 cores, about as long as the signing rounds themselves. An
//! uncompressed point is checked against the curve equation instead (a few multiplications).
//! This needs frost-core's `internals` feature for one call, `NonceCommitment::new`: see
//! docs/ARCHITECTURE.md.
//!
//! Layout (all integers big-endian):
//! `count: u16 ‖ count × (identifier: 32 ‖ hiding: 65 ‖ binding: 65) ‖ message: rest`.
//! Identifiers are FROST's scalar encoding, strictly ascending (so each appears once); points are
//! SEC1 uncompressed (`0x04 ‖ x ‖ y`), never the identity.

use std::collections::BTreeMap;

use frost_core::round1::{NonceCommitment, SigningCommitments};
use frost_secp256k1_tr as frost;
use k256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use k256::{AffinePoint, EncodedPoint, ProjectivePoint};

const IDENTIFIER: usize = 32;
const POINT: usize = 65;
const ENTRY: usize = IDENTIFIER + 2 * POINT;

/// Why a package from a peer was refused. The signer answers `Failed` with it; its nonces for
/// that request are already used up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    #[error("a signing package of {0} bytes is shorter than its commitment count says")]
    Truncated(usize),
    #[error("a signing package's identifier {0} is not a valid FROST identifier")]
    Identifier(usize),
    #[error("a signing package's identifiers are not strictly ascending at entry {0}")]
    Order(usize),
    #[error("a signing package's commitment {0} is not an uncompressed point on secp256k1")]
    Point(usize),
    #[error("a signing package of {0} signers does not fit the encoding's 65,535")]
    TooManySigners(usize),
}

/// Encodes `package` for the mesh. Costs one field inversion per point (the affine form), the
/// same as FROST's compressed encoding.
pub fn encode(package: &frost::SigningPackage) -> Result<Vec<u8>, PackageError> {
    let commitments = package.signing_commitments();
    let count = u16::try_from(commitments.len()).map_err(|_| PackageError::TooManySigners(commitments.len()))?;
    let mut bytes = Vec::with_capacity(2 + commitments.len() * ENTRY + package.message().len());
    bytes.extend_from_slice(&count.to_be_bytes());
    for (id, set) in commitments {
        bytes.extend_from_slice(&id.serialize());
        for point in [set.hiding().value(), set.binding().value()] {
            bytes.extend_from_slice(point.to_affine().to_encoded_point(false).as_bytes());
        }
    }
    bytes.extend_from_slice(package.message());
    Ok(bytes)
}

/// Decodes a package from a peer, checking every point is on the curve (an uncompressed SEC1
/// point cannot encode the identity).
pub fn decode(bytes: &[u8]) -> Result<frost::SigningPackage, PackageError> {
    let (count, mut rest) = bytes.split_first_chunk::<2>().ok_or(PackageError::Truncated(bytes.len()))?;
    let count = usize::from(u16::from_be_bytes(*count));
    if rest.len() < count * ENTRY {
        return Err(PackageError::Truncated(bytes.len()));
    }
    let mut commitments = BTreeMap::new();
    let mut last: Option<frost::Identifier> = None;
    for entry in 0..count {
        let (id, tail) = rest.split_at(IDENTIFIER);
        let id = frost::Identifier::deserialize(id).map_err(|_| PackageError::Identifier(entry))?;
        if last.is_some_and(|last| last >= id) {
            return Err(PackageError::Order(entry));
        }
        last = Some(id);
        let (hiding, tail) = tail.split_at(POINT);
        let (binding, tail) = tail.split_at(POINT);
        let set = SigningCommitments::new(point(hiding, entry)?, point(binding, entry)?);
        commitments.insert(id, set);
        rest = tail;
    }
    Ok(frost::SigningPackage::new(commitments, rest))
}

fn point(bytes: &[u8], entry: usize) -> Result<NonceCommitment<frost::Secp256K1Sha256TR>, PackageError> {
    if bytes.first() != Some(&0x04) {
        return Err(PackageError::Point(entry));
    }
    let encoded = EncodedPoint::from_bytes(bytes).map_err(|_| PackageError::Point(entry))?;
    let affine =
        Option::<AffinePoint>::from(AffinePoint::from_encoded_point(&encoded)).ok_or(PackageError::Point(entry))?;
    Ok(NonceCommitment::new(ProjectivePoint::from(affine)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(signers: u16, message: &[u8]) -> frost::SigningPackage {
        let mut rng = rand_core::OsRng;
        let (shares, _) = frost::keys::generate_with_dealer(
            signers.max(2),
            signers.max(2),
            frost::keys::IdentifierList::Default,
            rng,
        )
        .unwrap();
        let commitments = shares
            .iter()
            .take(usize::from(signers))
            .map(|(id, share)| {
                let key = frost::keys::KeyPackage::try_from(share.clone()).unwrap();
                (*id, frost::round1::commit(key.signing_share(), &mut rng).1)
            })
            .collect();
        frost::SigningPackage::new(commitments, message)
    }

    #[test]
    fn a_package_decodes_to_what_was_encoded() {
        for (signers, message) in [(2, &b""[..]), (7, b"withdrawals-range/v2"), (67, &[0xab; 32])] {
            let original = package(signers, message);
            let decoded = decode(&encode(&original).unwrap()).unwrap();
            assert_eq!(decoded, original);
            // The same content as FROST's own encoding.
            assert_eq!(decoded.serialize().unwrap(), original.serialize().unwrap());
        }
    }

    #[test]
    fn a_damaged_package_is_refused_with_its_reason() {
        let bytes = encode(&package(3, b"m")).unwrap();
        assert_eq!(decode(&bytes[..1]), Err(PackageError::Truncated(1)));
        assert_eq!(decode(&bytes[..2 + 2 * ENTRY]), Err(PackageError::Truncated(2 + 2 * ENTRY)));

        // A point moved off the curve.
        let mut off_curve = bytes.clone();
        off_curve[2 + IDENTIFIER + POINT - 1] ^= 1;
        assert_eq!(decode(&off_curve), Err(PackageError::Point(0)));

        // A compressed point where an uncompressed one belongs.
        let mut compressed = bytes.clone();
        compressed[2 + IDENTIFIER] = 0x02;
        assert_eq!(decode(&compressed), Err(PackageError::Point(0)));

        // The zero scalar is no identifier.
        let mut zero = bytes.clone();
        zero[2..2 + IDENTIFIER].fill(0);
        assert_eq!(decode(&zero), Err(PackageError::Identifier(0)));

        // Two entries swapped: a signer named twice or out of order is refused.
        let mut swapped = bytes.clone();
        swapped[2..2 + ENTRY].copy_from_slice(&bytes[2 + ENTRY..2 + 2 * ENTRY]);
        swapped[2 + ENTRY..2 + 2 * ENTRY].copy_from_slice(&bytes[2..2 + ENTRY]);
        assert_eq!(decode(&swapped), Err(PackageError::Order(1)));
        let mut repeated = bytes.clone();
        repeated[2 + ENTRY..2 + 2 * ENTRY].copy_from_slice(&bytes[2..2 + ENTRY]);
        assert_eq!(decode(&repeated), Err(PackageError::Order(1)));
    }
}

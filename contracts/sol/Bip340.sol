// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.27;

/// @title Exact BIP-340 Schnorr verification on the EVM.
/// @notice A signature `(r, s)` by the x-only key `px` on the 32-byte message `m` is valid iff
/// `R = s·G − e·P` has even y and x = r, where `P` is the even-y point with x = px and
/// `e = tagged_hash("BIP0340/challenge", r ‖ px ‖ m) mod n`.
///
/// The point `s·G − e·P` is computed with the ecrecover precompile: `ecrecover(h, 27, px, s')`
/// returns the address of `px⁻¹·(s'·P − h·G)` where `P` is the even-y point with x = px; with
/// `h = −s·px` and `s' = −e·px` (mod n) that is the address of `s·G − e·P`. The caller passes
/// `ry`, the y of `R`; it is checked to be even and on the curve, so that the address of
/// `(r, ry)` names exactly the point BIP-340 requires.
///
/// The only departures from BIP-340 have probability about 2⁻¹²⁸ or less and fail closed: keys
/// with `px ≥ n` and challenges `e = 0` are refused.
library Bip340 {
    /// The order of secp256k1.
    uint256 internal constant N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    /// The field prime of secp256k1.
    uint256 internal constant P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F;
    /// sha256("BIP0340/challenge").
    bytes32 internal constant CHALLENGE_TAG = 0x7bb52d7a9fef58323eb1bf7a407db382d2f3f2d81bb1224f49fe518f6d48d37c;

    /// A BIP-340 signature `(r, s)` with the y of `R` the verifier needs: `ry` is the even
    /// square root of `r³ + 7`, which anyone can compute from `r`.
    struct Signature {
        uint256 r;
        uint256 ry;
        uint256 s;
    }

    /// True iff `sig` is a valid BIP-340 signature of `m` by the x-only key `px`.
    function verify(uint256 px, bytes32 m, Signature memory sig) internal view returns (bool) {
        uint256 r = sig.r;
        uint256 ry = sig.ry;
        uint256 s = sig.s;
        if (px == 0 || px >= N || r >= P || ry >= P || s >= N || ry & 1 != 0) {
            return false;
        }
        // R = (r, ry) lies on y² = x³ + 7.
        if (mulmod(ry, ry, P) != addmod(mulmod(r, mulmod(r, r, P), P), 7, P)) {
            return false;
        }
        uint256 e = uint256(_challenge(r, px, m)) % N;
        if (e == 0) {
            return false;
        }
        bytes32 h = bytes32(mulmod(N - s, px, N));
        bytes32 sPrime = bytes32(mulmod(N - e, px, N));
        address recovered = ecrecover(h, 27, bytes32(px), sPrime);
        if (recovered == address(0)) {
            return false;
        }
        return recovered == _pointAddress(r, ry);
    }

    /// True iff `px` is the x coordinate of a curve point (`px³ + 7` is a square mod p, by
    /// Euler's criterion through the modexp precompile) and below n, as `verify` requires.
    function isValidKey(uint256 px) internal view returns (bool) {
        if (px == 0 || px >= N) {
            return false;
        }
        uint256 c = addmod(mulmod(px, mulmod(px, px, P), P), 7, P);
        (bool ok, bytes memory out) = address(0x05).staticcall(abi.encode(32, 32, 32, c, (P - 1) / 2, P));
        return ok && out.length == 32 && abi.decode(out, (uint256)) == 1;
    }

    /// sha256(CHALLENGE_TAG ‖ CHALLENGE_TAG ‖ r ‖ px ‖ m), through the SHA-256 precompile.
    function _challenge(uint256 r, uint256 px, bytes32 m) private view returns (bytes32 digest) {
        bytes32 tag = CHALLENGE_TAG;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, tag)
            mstore(add(ptr, 0x20), tag)
            mstore(add(ptr, 0x40), r)
            mstore(add(ptr, 0x60), px)
            mstore(add(ptr, 0x80), m)
            if iszero(staticcall(gas(), 0x02, ptr, 0xa0, 0x00, 0x20)) {
                revert(0, 0)
            }
            digest := mload(0x00)
        }
    }

    /// The Ethereum address of the point (x, y): the last 20 bytes of keccak256(x ‖ y).
    function _pointAddress(uint256 x, uint256 y) private pure returns (address a) {
        assembly ("memory-safe") {
            mstore(0x00, x)
            mstore(0x20, y)
            a := and(keccak256(0x00, 0x40), 0xffffffffffffffffffffffffffffffffffffffff)
        }
    }
}

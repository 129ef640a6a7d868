// State proofs checked in the browser (docs/PROTOCOL.md, "The state tree" and "Proofs"): a
// binary sparse Merkle tree over SHA-256 (what `bridge::commitment` and, before it, crate `jmt`
// 0.12 compute). Only the browser's own SHA-256 (WebCrypto) is used: what the page calls
// verified does not rest on the server.

const encoder = new TextEncoder();
const LEAF_PREFIX = encoder.encode("JMT::LeafNode");
const INTERNAL_PREFIX = encoder.encode("JMT::IntrnalNode");
export const PLACEHOLDER = encoder.encode("SPARSE_MERKLE_PLACEHOLDER_HASH__");

export function hexToBytes(hex) {
  const digits = hex.startsWith("0x") ? hex.slice(2) : hex;
  if (digits.length % 2 !== 0 || /[^0-9a-fA-F]/.test(digits)) throw new Error(`not hex: ${hex}`);
  const out = new Uint8Array(digits.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function bytesToHex(bytes) {
  return "0x" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function sha256(...parts) {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", all));
}

function bytes32(array, what) {
  if (!Array.isArray(array) || array.length !== 32) throw new Error(`${what} is not 32 bytes`);
  return Uint8Array.from(array);
}

function leafHash(leaf) {
  return sha256(LEAF_PREFIX, bytes32(leaf.key_hash, "a leaf's key hash"), bytes32(leaf.value_hash, "a leaf's value hash"));
}

async function nodeHash(node) {
  if (node === "Null") return PLACEHOLDER;
  if (node && node.Leaf) return leafHash(node.Leaf);
  if (node && node.Internal) {
    return sha256(INTERNAL_PREFIX, bytes32(node.Internal.left_child, "a left child"), bytes32(node.Internal.right_child, "a right child"));
  }
  throw new Error("a sibling is neither Null, Leaf nor Internal");
}

function bit(path, depth) {
  return (path[depth >> 3] >> (7 - (depth & 7))) & 1;
}

/**
 * Checks one `StateProof` (`{key, value, proof}` as `GET /accounts/{a}` serves it) against
 * `rootHex`. Resolves to `{ok: true}` or `{ok: false, reason}`; never trusts the server's word.
 */
export async function verifyProof(stateProof, rootHex) {
  try {
    const root = hexToBytes(rootHex);
    const path = await sha256(hexToBytes(stateProof.key));
    const value = stateProof.value === null ? null : hexToBytes(stateProof.value);
    if (stateProof.proof === null) {
      if (value !== null) return { ok: false, reason: "an inclusion proof without a tree" };
      return equal(root, PLACEHOLDER) ? { ok: true } : { ok: false, reason: "an empty-tree proof for a non-empty root" };
    }
    const { leaf, siblings } = stateProof.proof;
    if (!Array.isArray(siblings) || siblings.length > 256) return { ok: false, reason: "more than 256 siblings" };
    const n = siblings.length;
    let hash;
    if (value !== null) {
      if (!leaf) return { ok: false, reason: "an inclusion proof without its leaf" };
      if (!equal(bytes32(leaf.key_hash, "the leaf's key hash"), path)) return { ok: false, reason: "the leaf is another key's" };
      if (!equal(bytes32(leaf.value_hash, "the leaf's value hash"), await sha256(value))) {
        return { ok: false, reason: "the leaf holds another value" };
      }
      hash = await leafHash(leaf);
    } else if (leaf) {
      const other = bytes32(leaf.key_hash, "the leaf's key hash");
      if (equal(other, path)) return { ok: false, reason: "an exclusion proof naming the key's own leaf" };
      for (let d = 0; d < n; d++) {
        if (bit(other, d) !== bit(path, d)) return { ok: false, reason: "the leaf is not where the key would be" };
      }
      hash = await leafHash(leaf);
    } else {
      hash = PLACEHOLDER;
    }
    for (let i = 0; i < n; i++) {
      const depth = n - 1 - i;
      const sibling = await nodeHash(siblings[i]);
      hash = bit(path, depth) ? await sha256(INTERNAL_PREFIX, sibling, hash) : await sha256(INTERNAL_PREFIX, hash, sibling);
    }
    return equal(hash, root) ? { ok: true } : { ok: false, reason: "the path does not hash to the root" };
  } catch (error) {
    return { ok: false, reason: error.message };
  }
}

function littleEndian(bytes) {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

/** Reads borsh(AssetId) at `at`: `[asset, next]`, or null if it is no asset. */
function readAsset(bytes, at) {
  if (bytes[at] === 0) return ["eth:ETH", at + 1];
  if (bytes[at] === 1 && at + 21 <= bytes.length) return [`eth:${bytesToHex(bytes.slice(at + 1, at + 21))}`, at + 21];
  if (bytes[at] === 2) return ["btc:BTC", at + 1];
  return null;
}

/**
 * What a proved account entry says, read from its key and value bytes alone (state commitment 2:
 * key `9 ‖ address`, value borsh `{nonce: u64, balances: Vec<(AssetId, u128)>}`):
 * `{kind: "account", account, nonce, balances: [{asset, value}]}` (BigInts; an exclusion proof
 * reads as nonce 0 and no balance), or null for another kind of entry or a value that does not
 * decode. The asset's token address is lowercase hex.
 */
export function decodeEntry(stateProof) {
  const key = hexToBytes(stateProof.key);
  if (key.length !== 21 || key[0] !== 9) return null;
  const account = bytesToHex(key.slice(1, 21));
  if (stateProof.value === null) return { kind: "account", account, nonce: 0n, balances: [] };
  const value = hexToBytes(stateProof.value);
  if (value.length < 12) return null;
  const nonce = littleEndian(value.slice(0, 8));
  const count = Number(littleEndian(value.slice(8, 12)));
  const balances = [];
  let at = 12;
  for (let i = 0; i < count; i++) {
    const asset = at < value.length ? readAsset(value, at) : null;
    if (asset === null || asset[1] + 16 > value.length) return null;
    balances.push({ asset: asset[0], value: littleEndian(value.slice(asset[1], asset[1] + 16)) });
    at = asset[1] + 16;
  }
  if (at !== value.length) return null;
  return { kind: "account", account, nonce, balances };
}

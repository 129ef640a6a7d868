// Passkey accounts (docs/PROTOCOL.md, "Passkey accounts"): a P-256 key kept by the browser's
// authenticator controls a bridge account. `navigator.credentials.create` makes it; each
// transfer or withdrawal is signed by `navigator.credentials.get` with the transaction's digest
// as the challenge. The page keeps only the credential id and the public key (no secret).

import { UserError, el, info, postJSON } from "./api.js";
import { balances, bitcoinDeposit, transferForm, withBusy, withdrawForm } from "./wallet.js";

const STORE = "bridge.passkey.v1";
// The P-256 group order: a signature's s above n/2 is sent as n − s, the one form the bridge takes.
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

function hex(buffer) {
  return "0x" + [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function fromHex(text) {
  const digits = text.startsWith("0x") ? text.slice(2) : text;
  if (!/^([0-9a-fA-F]{2})*$/.test(digits)) throw new UserError(`"${text}" is not hex`);
  return Uint8Array.from(digits.match(/../g) || [], (pair) => parseInt(pair, 16));
}

function toBase64url(buffer) {
  return btoa(String.fromCharCode(...new Uint8Array(buffer))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64url(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(base64 + "===".slice((base64.length + 3) % 4)), (c) => c.charCodeAt(0));
}

async function sha256(...parts) {
  const data = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { data.set(p, at); at += p.length; }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

/** The account of public key `x ‖ y`: the last 20 bytes of tagged_hash("bridge/passkey-address/v1", x ‖ y). */
export async function passkeyAddress(publicKey) {
  const tag = await sha256(new TextEncoder().encode("bridge/passkey-address/v1"));
  return hex((await sha256(tag, tag, publicKey)).slice(12));
}

/** A DER ECDSA signature (what authenticators return) as r ‖ s, 32 bytes each, s made low. */
export function rawSignature(der) {
  let i = 0;
  const fail = () => { throw new UserError("The authenticator's signature is not a DER-encoded P-256 signature."); };
  if (der[i++] !== 0x30 || der[i++] !== der.length - 2) fail();
  const integer = () => {
    if (der[i++] !== 0x02) fail();
    const length = der[i++];
    if (length < 1 || length > 33 || i + length > der.length) fail();
    let value = 0n;
    for (const b of der.slice(i, i + length)) value = (value << 8n) | BigInt(b);
    i += length;
    return value;
  };
  const r = integer();
  let s = integer();
  if (i !== der.length || r === 0n || s === 0n || r >= P256_N || s >= P256_N) fail();
  if (s > P256_N / 2n) s = P256_N - s;
  const out = new Uint8Array(64);
  for (let k = 0; k < 32; k++) {
    out[31 - k] = Number((r >> BigInt(8 * k)) & 0xffn);
    out[63 - k] = Number((s >> BigInt(8 * k)) & 0xffn);
  }
  return out;
}

function rules(network) {
  const webauthn = network.params.webauthn;
  if (!webauthn) throw new UserError("This network takes no passkey accounts: its parameters have no WebAuthn rules.");
  if (!webauthn.allowed_origins.includes(location.origin)) {
    throw new UserError(`This page is open at ${location.origin}, but the network takes passkey signatures only from ${webauthn.allowed_origins.join(", ")}: open the app there.`);
  }
  if (!window.PublicKeyCredential || !navigator.credentials) {
    throw new UserError("This browser offers no passkeys (WebAuthn): use a recent browser, on an https:// or http://localhost address.");
  }
  return webauthn;
}

/** A WebAuthn failure in words a user can act on. */
function passkeyError(error, what) {
  const name = error && error.name;
  if (name === "NotAllowedError") return new UserError(`${what}: the passkey prompt was cancelled, timed out, or found no passkey for this account on this device.`);
  if (name === "SecurityError") return new UserError(`${what}: the browser does not accept this page for the network's passkey site (${error.message}).`);
  if (name === "InvalidStateError") return new UserError(`${what}: this authenticator already holds that passkey.`);
  return new UserError(`${what}: ${error && error.message ? error.message : error}`);
}

function load() {
  try {
    const stored = JSON.parse(localStorage.getItem(STORE) || "null");
    return stored && stored.address && stored.publicKey && stored.credentialId ? stored : null;
  } catch {
    return null;
  }
}

async function createAccount(network) {
  const webauthn = rules(network);
  const userId = crypto.getRandomValues(new Uint8Array(16));
  let credential;
  try {
    credential = await navigator.credentials.create({
      publicKey: {
        rp: { id: webauthn.rp_id, name: "Settlement Bridge" },
        user: { id: userId, name: `bridge-${hex(userId).slice(2, 10)}`, displayName: "Settlement Bridge account" },
        challenge: crypto.getRandomValues(new Uint8Array(32)),
        pubKeyCredParams: [{ type: "public-key", alg: -7 }],
        authenticatorSelection: { residentKey: "required", userVerification: webauthn.require_user_verification ? "required" : "preferred" },
        attestation: "none",
        timeout: 120000,
      },
    });
  } catch (error) {
    throw passkeyError(error, "Creating the passkey");
  }
  if (!credential) throw new UserError("Creating the passkey: the browser returned no credential.");
  if (credential.response.getPublicKeyAlgorithm() !== -7) throw new UserError("The authenticator made a key other than P-256 (ES256), which the bridge does not take.");
  // A P-256 SubjectPublicKeyInfo ends with the uncompressed point 0x04 ‖ x ‖ y.
  const spki = new Uint8Array(credential.response.getPublicKey());
  const point = spki.slice(spki.length - 65);
  if (spki.length !== 91 || point[0] !== 4) throw new UserError("The authenticator's public key is not an uncompressed P-256 point.");
  const publicKey = point.slice(1);
  const stored = { credentialId: toBase64url(credential.rawId), publicKey: hex(publicKey), address: await passkeyAddress(publicKey) };
  localStorage.setItem(STORE, JSON.stringify(stored));
  return stored;
}

/** Signs the transaction `body` with the passkey and sends it; returns its hash. */
async function signAndSend(network, stored, primaryType, body) {
  const webauthn = rules(network);
  const what = primaryType.toLowerCase();
  const { digest } = await postJSON("/web/v1/digest", body, `Computing the ${what}'s digest`);
  let assertion;
  try {
    assertion = await navigator.credentials.get({
      publicKey: {
        challenge: fromHex(digest),
        rpId: webauthn.rp_id,
        allowCredentials: [{ type: "public-key", id: fromBase64url(stored.credentialId) }],
        userVerification: webauthn.require_user_verification ? "required" : "preferred",
        timeout: 120000,
      },
    });
  } catch (error) {
    throw passkeyError(error, `Signing the ${what} with your passkey`);
  }
  const response = assertion.response;
  const sent = await postJSON("/web/v1/relay/tx", {
    ...body,
    passkey: {
      public_key: stored.publicKey,
      authenticator_data: hex(response.authenticatorData),
      client_data_json: hex(response.clientDataJSON),
      signature: hex(rawSignature(new Uint8Array(response.signature))),
    },
  }, `Sending the ${what}`);
  if (sent.hash !== digest) throw new UserError(`The coordinator took the ${what} as ${sent.hash}, but this page signed ${digest}: tell the operators.`);
  return sent.hash;
}

export async function passkey(view) {
  const network = await info();
  const status = el("div", { "aria-live": "polite" });
  const create = el("button", { type: "button", id: "create-passkey" }, "Create a passkey account");
  const forget = el("button", { type: "button", class: "secondary", id: "forget-passkey" }, "Forget it on this browser");
  const body = el("div");
  view.replaceChildren(
    el("h2", {}, "Passkey account"),
    el("p", {}, "A passkey kept by this device (fingerprint, face, PIN or security key) controls the account: no private key to copy, no browser wallet needed. ",
      "Each transfer and withdrawal asks the passkey to sign that exact transaction."),
    el("p", {}, create, " ", forget),
    status, body);
  const render = async (stored) => {
    const signer = { account: stored.address, send: (primaryType, _message, tx) => signAndSend(network, stored, primaryType, tx) };
    const held = el("div", { "data-testid": "wallet-balances" });
    const btc = el("div", { "data-testid": "btc-deposit" });
    body.replaceChildren(
      el("p", {}, "Your account: ", el("a", { href: `#/account/${stored.address}`, class: "mono", "data-testid": "passkey-account" }, stored.address)),
      el("p", {}, "Its passkey's public key: ", el("span", { class: "mono", "data-testid": "passkey-public-key" }, stored.publicKey)),
      el("section", { class: "panel", "aria-labelledby": "bal-h" }, el("h3", { id: "bal-h" }, "Balances"), held),
      el("section", { class: "panel", "aria-labelledby": "recv-h" }, el("h3", { id: "recv-h" }, "Receive"),
        el("p", {}, "Anyone may pay this account: a transfer inside the bridge to the address above, an Ethereum deposit to the vault naming it (",
          el("code", {}, "depositETH(account)"), "), or bitcoin to its deposit address:"), btc),
      transferForm(network, signer), withdrawForm(network, signer));
    await Promise.all([balances(held, stored.address), bitcoinDeposit(network, btc, stored.address)]);
  };
  create.addEventListener("click", withBusy(create, status, async () => {
    if (load() && !window.confirm("This browser already knows a passkey account; make another and forget that one here?")) {
      status.replaceChildren();
      return;
    }
    const stored = await createAccount(network);
    status.replaceChildren(el("p", { class: "proof-ok" }, "Passkey account created."));
    await render(stored);
  }));
  forget.addEventListener("click", () => {
    localStorage.removeItem(STORE);
    body.replaceChildren();
    status.replaceChildren(el("p", {}, "Forgotten on this browser (the passkey itself stays on your device)."));
  });
  const stored = load();
  if (stored) await render(stored);
  else if (!network.params.webauthn) status.replaceChildren(el("p", { class: "proof-bad" }, "This network takes no passkey accounts."));
}


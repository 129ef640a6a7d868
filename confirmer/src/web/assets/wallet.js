// The wallet: an EIP-1193 provider (MetaMask and the like) signs transfers and withdrawals as
// EIP-712 typed data with the domain from `/info`, and sends deposits to the vault. The page
// holds no key.

import { UserError, el, getJSON, info, postJSON, short, stageList } from "./api.js";
import { account } from "./explorer.js";

// Vault and ERC-20 function selectors (the first 4 bytes of keccak256 of each signature); a
// confirmer unit test checks each against the vault's compiled ABI.
export const DEPOSIT_ETH = "0x2d2da806"; // depositETH(address)
export const DEPOSIT_ERC20 = "0x1828686a"; // depositERC20(address,uint256,address)
export const APPROVE = "0x095ea7b3"; // approve(address,uint256)

const TYPES = {
  EIP712Domain: [
    { name: "name", type: "string" },
    { name: "version", type: "string" },
    { name: "chainId", type: "uint256" },
    { name: "verifyingContract", type: "address" },
  ],
  Transfer: [
    { name: "from", type: "address" },
    { name: "to", type: "address" },
    { name: "asset", type: "string" },
    { name: "amount", type: "uint256" },
    { name: "fee", type: "uint256" },
    { name: "nonce", type: "uint64" },
  ],
  Withdraw: [
    { name: "from", type: "address" },
    { name: "asset", type: "string" },
    { name: "amount", type: "uint256" },
    { name: "fee", type: "uint256" },
    { name: "recipient", type: "string" },
    { name: "nonce", type: "uint64" },
  ],
};

const U128_MAX = (1n << 128n) - 1n;

/** A whole number of base units, as the protocol takes it (no decimals, at most 2^128 − 1). */
function units(text, what) {
  const t = String(text).trim();
  if (!/^[0-9]+$/.test(t)) throw new UserError(`${what} must be a whole number of base units (digits only), got "${text}"`);
  const n = BigInt(t);
  if (n > U128_MAX) throw new UserError(`${what} is above 2^128 − 1`);
  return n;
}

function word(hexWithout0x) {
  return hexWithout0x.toLowerCase().padStart(64, "0");
}

function addressWord(address) {
  if (!/^0x[0-9a-fA-F]{40}$/.test(address)) throw new UserError(`${address} is not an Ethereum address`);
  return word(address.slice(2));
}

/** A provider's refusal in words a user can act on. */
function walletError(error, what) {
  if (error && error.code === 4001) return new UserError(`${what}: you rejected the request in your wallet.`);
  if (error && error.code === 4100) return new UserError(`${what}: the wallet has not authorised this page; connect again.`);
  const message = error && error.message ? error.message : String(error);
  return new UserError(`${what}: the wallet refused: ${message}`);
}

async function request(method, params, what) {
  try {
    return await window.ethereum.request({ method, params });
  } catch (error) {
    throw walletError(error, what);
  }
}

const state = { account: null, chainId: null };

function assetLabel(asset) {
  if (asset === "eth:ETH") return "ETH (wei)";
  if (asset === "btc:BTC") return "BTC (satoshi)";
  return `${short(asset.slice(4))} token (base units)`;
}

function assetSelect(id, assets) {
  return el("select", { id, name: "asset", required: true }, assets.map((a) => el("option", { value: a.asset }, assetLabel(a.asset))));
}

/** The asset's minimum fee follows the asset chosen; the user may pay more. */
function feeFollows(asset, fee, assets) {
  const minimum = () => (assets.find((a) => a.asset === asset.value) || assets[0]).min_fee;
  fee.value = minimum();
  asset.addEventListener("change", () => { fee.value = minimum(); });
}

function field(label, input) {
  return [el("label", { for: input.id }, label), input];
}

/** Checks the wallet is on the vault's chain, as MetaMask requires to sign the domain. */
async function onVaultChain(network) {
  const chainHex = await request("eth_chainId", [], "Reading your wallet's chain");
  state.chainId = Number(BigInt(chainHex));
  const want = network.eip712_domain.chainId;
  if (state.chainId !== want) {
    throw new UserError(
      `Your wallet is on chain ${state.chainId}, but this bridge's vault is on chain ${want}. ` +
      `Switch your wallet to chain ${want} (the button below asks it to), then try again.`);
  }
}

async function nextNonce(account) {
  const view = await getJSON(`/web/v1/relay/accounts/${account}`, "Asking the coordinator for your next nonce");
  return view.nonce;
}

/** Signs `message` of `primaryType` with the wallet and sends it; returns the transaction hash. */
async function signAndSend(network, primaryType, message, body) {
  await onVaultChain(network);
  const typed = { types: { EIP712Domain: TYPES.EIP712Domain, [primaryType]: TYPES[primaryType] }, primaryType, domain: network.eip712_domain, message };
  const signature = await request("eth_signTypedData_v4", [state.account, JSON.stringify(typed)], `Signing the ${primaryType.toLowerCase()}`);
  const sent = await postJSON("/web/v1/relay/tx", {
    ...body,
    signature,
    chain_id: network.eip712_domain.chainId,
    vault: network.eip712_domain.verifyingContract,
  }, `Sending the ${primaryType.toLowerCase()}`);
  return sent.hash;
}

/** Follows a sent transaction on the page until its last stage (at most ten minutes). */
export async function follow(target, hash) {
  target.replaceChildren(el("p", {}, "Sent: ", el("a", { href: `#/tx/${hash}`, class: "mono", "data-testid": "sent-tx" }, hash)));
  for (let i = 0; i < 600; i++) {
    let detail;
    try {
      detail = await getJSON(`/web/v1/tx/${hash}`, "Following the transaction");
    } catch (error) {
      target.append(el("p", { class: "proof-bad" }, error.message));
      return;
    }
    target.replaceChildren(
      el("p", {}, "Sent: ", el("a", { href: `#/tx/${hash}`, class: "mono", "data-testid": "sent-tx" }, hash)),
      stageList(detail.stages));
    if (detail.stages.every((s) => s.reached)) return;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

export function withBusy(button, output, work) {
  return async (event) => {
    event.preventDefault();
    button.disabled = true;
    output.replaceChildren(el("p", {}, "Working…"));
    try {
      await work();
    } catch (error) {
      output.replaceChildren(el("p", { class: "proof-bad", role: "alert" }, error.message));
    } finally {
      button.disabled = false;
    }
  };
}

/** `signer` is `{ account, send(primaryType, message, body) → hash }`: an EIP-1193 wallet or a passkey. */
export function transferForm(network, signer) {
  const out = el("div", { "aria-live": "polite", "data-testid": "transfer-result" });
  const button = el("button", { type: "submit" }, "Sign and send transfer");
  const to = el("input", { id: "transfer-to", name: "to", required: true, placeholder: "0x…", autocomplete: "off", spellcheck: "false" });
  const asset = assetSelect("transfer-asset", network.params.assets);
  const amount = el("input", { id: "transfer-amount", name: "amount", required: true, inputmode: "numeric" });
  const fee = el("input", { id: "transfer-fee", name: "fee", required: true, inputmode: "numeric" });
  feeFollows(asset, fee, network.params.assets);
  const form = el("form", { class: "tx", id: "transfer-form" }, field("To (bridge account)", to), field("Asset", asset), field("Amount", amount), field("Fee", fee), button);
  form.addEventListener("submit", withBusy(button, out, async () => {
    if (!/^0x[0-9a-fA-F]{40}$/.test(to.value.trim())) throw new UserError(`"${to.value}" is not an account address (0x and 40 hex digits)`);
    const message = {
      from: signer.account, to: to.value.trim(), asset: asset.value,
      amount: units(amount.value, "The amount").toString(), fee: units(fee.value, "The fee").toString(),
      nonce: await nextNonce(signer.account),
    };
    const hash = await signer.send("Transfer", message, { type: "transfer", ...message });
    await follow(out, hash);
  }));
  return el("section", { class: "panel", "aria-labelledby": "transfer-h" }, el("h3", { id: "transfer-h" }, "Transfer inside the bridge"), form, out);
}

export function withdrawForm(network, signer) {
  const out = el("div", { "aria-live": "polite", "data-testid": "withdraw-result" });
  const button = el("button", { type: "submit" }, "Sign and send withdrawal");
  const asset = assetSelect("withdraw-asset", network.params.assets);
  const recipient = el("input", { id: "withdraw-recipient", name: "recipient", required: true, placeholder: "an address on the asset's chain", autocomplete: "off", spellcheck: "false" });
  const amount = el("input", { id: "withdraw-amount", name: "amount", required: true, inputmode: "numeric" });
  const fee = el("input", { id: "withdraw-fee", name: "fee", required: true, inputmode: "numeric" });
  feeFollows(asset, fee, network.params.assets);
  const form = el("form", { class: "tx", id: "withdraw-form" }, field("Asset", asset), field("Pay to (on L1)", recipient), field("Amount", amount), field("Fee", fee), button);
  form.addEventListener("submit", withBusy(button, out, async () => {
    const message = {
      from: signer.account, asset: asset.value,
      amount: units(amount.value, "The amount").toString(), fee: units(fee.value, "The fee").toString(),
      recipient: recipient.value.trim(), nonce: await nextNonce(signer.account),
    };
    if (!message.recipient) throw new UserError("Say where to pay: an address on the asset's chain.");
    const hash = await signer.send("Withdraw", message, { type: "withdraw", ...message });
    await follow(out, hash);
  }));
  return el("section", { class: "panel", "aria-labelledby": "withdraw-h" }, el("h3", { id: "withdraw-h" }, "Withdraw to L1"), form, out);
}

function depositForm(network) {
  const out = el("div", { "aria-live": "polite", "data-testid": "deposit-result" });
  const button = el("button", { type: "submit" }, "Deposit from your wallet");
  const ethAssets = network.params.assets.filter((a) => a.asset.startsWith("eth:"));
  const asset = assetSelect("deposit-asset", ethAssets);
  const amount = el("input", { id: "deposit-amount", name: "amount", required: true, inputmode: "numeric" });
  const vault = network.eip712_domain.verifyingContract;
  const form = el("form", { class: "tx", id: "deposit-form" }, field("Asset", asset), field("Amount", amount), button);
  form.addEventListener("submit", withBusy(button, out, async () => {
    await onVaultChain(network);
    const n = units(amount.value, "The amount");
    if (n === 0n) throw new UserError("The vault refuses a deposit of 0.");
    const hashes = [];
    if (asset.value === "eth:ETH") {
      hashes.push(await request("eth_sendTransaction", [{ from: state.account, to: vault, value: "0x" + n.toString(16), data: DEPOSIT_ETH + addressWord(state.account) }], "Depositing ether"));
    } else {
      const token = asset.value.slice(4);
      hashes.push(await request("eth_sendTransaction", [{ from: state.account, to: token, data: APPROVE + addressWord(vault) + word(n.toString(16)) }], "Approving the vault to take the tokens"));
      hashes.push(await request("eth_sendTransaction", [{ from: state.account, to: vault, data: DEPOSIT_ERC20 + addressWord(token) + word(n.toString(16)) + addressWord(state.account) }], "Depositing the tokens"));
    }
    out.replaceChildren(
      el("p", {}, "Sent to the vault on L1: ", hashes.map((h) => el("code", { "data-testid": "deposit-l1-tx" }, h, " "))),
      el("p", {}, "The coordinator credits it once its block is final on L1; your balance below then grows."));
  }));
  return el("section", { class: "panel", "aria-labelledby": "deposit-h" }, el("h3", { id: "deposit-h" }, "Deposit from Ethereum"), form, out);
}

export async function bitcoinDeposit(network, target, owner) {
  if (!network.btc_vault) {
    target.replaceChildren(el("p", {}, "This network takes no bitcoin."));
    return;
  }
  try {
    const a = await getJSON(`/web/v1/accounts/${owner}/btc-deposit-address`, "Getting your Bitcoin deposit address");
    const img = el("img", { src: "data:image/svg+xml;base64," + btoa(a.qr_svg), alt: `QR code of ${a.address}` });
    target.replaceChildren(
      el("p", {}, `Send bitcoin (${a.btc_network}) to this address; it is credited to your account once deep enough:`),
      el("p", { class: "mono", "data-testid": "btc-address" }, a.address),
      el("div", { class: "qr" }, img),
      el("p", {}, "Checked: this confirmer computed it from the watchmen's group key, and the coordinator watches it."));
  } catch (error) {
    target.replaceChildren(el("p", { class: "proof-bad" }, error.message));
  }
}

export async function balances(target, owner) {
  try {
    await account(target, owner);
  } catch (error) {
    target.replaceChildren(el("p", { class: "proof-bad" }, error.message));
  }
}

export async function wallet(view) {
  const network = await info();
  if (!window.ethereum) {
    view.replaceChildren(el("h2", {}, "Wallet"), el("p", { role: "alert", class: "proof-bad" },
      "No browser wallet found. Install MetaMask or another EIP-1193 wallet, then reload this page."));
    return;
  }
  const status = el("div", { "aria-live": "polite" });
  const connect = el("button", { type: "button", id: "connect" }, state.account ? "Reconnect" : "Connect wallet");
  const switchChain = el("button", { type: "button", class: "secondary", id: "switch-chain" }, `Switch wallet to chain ${network.eip712_domain.chainId}`);
  const body = el("div");
  view.replaceChildren(
    el("h2", {}, "Wallet"),
    window.ethereum.isTestWallet ? el("p", { class: "test-wallet" }, "A TEST wallet injected by the test suite is connected, not a real one.") : null,
    el("p", {}, connect, " ", switchChain),
    status, body);
  const signer = {
    get account() { return state.account; },
    send: (primaryType, message, body) => signAndSend(network, primaryType, message, body),
  };
  const render = async () => {
    const btc = el("div", { "data-testid": "btc-deposit" });
    const held = el("div", { "data-testid": "wallet-balances" });
    body.replaceChildren(
      el("p", {}, "Connected: ", el("a", { href: `#/account/${state.account}`, class: "mono", "data-testid": "account" }, state.account),
        ` on chain ${state.chainId}`),
      el("section", { class: "panel", "aria-labelledby": "bal-h" }, el("h3", { id: "bal-h" }, "Balances"), held),
      transferForm(network, signer), withdrawForm(network, signer), depositForm(network),
      el("section", { class: "panel", "aria-labelledby": "btc-h" }, el("h3", { id: "btc-h" }, "Deposit bitcoin"), btc));
    await Promise.all([balances(held, state.account), bitcoinDeposit(network, btc, state.account)]);
  };
  connect.addEventListener("click", withBusy(connect, status, async () => {
    const accounts = await request("eth_requestAccounts", [], "Connecting your wallet");
    if (!accounts || accounts.length === 0) throw new UserError("Your wallet shared no account with this page.");
    state.account = accounts[0];
    await onVaultChain(network);
    status.replaceChildren();
    await render();
  }));
  switchChain.addEventListener("click", withBusy(switchChain, status, async () => {
    await request("wallet_switchEthereumChain", [{ chainId: "0x" + network.eip712_domain.chainId.toString(16) }], "Switching your wallet's chain");
    status.replaceChildren(el("p", {}, `Your wallet is now on chain ${network.eip712_domain.chainId}.`));
  }));
  if (state.account) await render();
}

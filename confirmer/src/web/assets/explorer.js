// The explorer: latest batches, a batch's transactions, a transaction's stages, an account's
// balances with their proofs checked here against the hard-final state root.

import { UserError, badge, el, getJSON, short, stageList, when } from "./api.js";
import { decodeEntry, verifyProof } from "./proof.js";

function txSummary(entry) {
  const t = entry.tx;
  if (t.source === "user") {
    const m = t.tx;
    if (m.type === "transfer") return `transfer ${m.amount} ${m.asset} from ${short(m.from)} to ${short(m.to)}`;
    if (m.type === "withdraw") return `withdraw ${m.amount} ${m.asset} from ${short(m.from)} to ${short(m.recipient)}`;
    return m.type;
  }
  if (t.type === "deposit") return `deposit ${t.amount} ${t.asset} to ${short(t.account)} (${t.chain})`;
  return t.type.replaceAll("_", " ");
}

function finality(batch) {
  if (batch.hard_final) return badge(true, "hard-final", "");
  if (batch.unverified) return el("span", { class: "badge wait", title: batch.unverified }, "replayed, not verified");
  return badge(false, "", "replayed", true);
}

function arweaveLink(batch) {
  return batch.arweave_url
    ? el("a", { href: batch.arweave_url, rel: "noopener", target: "_blank", class: "mono" }, short(batch.locator))
    : el("span", { class: "mono" }, short(batch.locator));
}

export async function latest(view) {
  const listing = await getJSON("/web/v1/batches?limit=20", "Reading the latest batches");
  view.replaceChildren(
    el("h2", {}, "Latest batches"),
    el("p", {}, `Replayed to batch ${listing.replayed}; hard-final to batch ${listing.hard_final}.`),
    listing.batches.length === 0
      ? el("p", {}, "No batch has been replayed yet.")
      : el("div", { class: "table-wrap" }, el("table", { "data-testid": "batches" },
        el("thead", {}, el("tr", {}, ["Batch", "Time", "Transactions", "Finality", "Arweave"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, listing.batches.map((b) => el("tr", {},
          el("td", {}, el("a", { href: `#/batch/${b.number}` }, `#${b.number}`)),
          el("td", {}, when(b.timestamp_ms)),
          el("td", {}, String(b.tx_count)),
          el("td", {}, finality(b)),
          el("td", {}, arweaveLink(b))))))));
}

export async function batch(view, number) {
  const b = await getJSON(`/web/v1/batches/${encodeURIComponent(number)}`, `Reading batch ${number}`);
  view.replaceChildren(
    el("h2", {}, `Batch ${b.number} `, finality(b)),
    el("dl", { class: "panel" },
      el("dt", {}, "Sealed"), el("dd", {}, when(b.timestamp_ms)),
      el("dt", {}, "Hash"), el("dd", { class: "mono" }, b.hash),
      el("dt", {}, "State root after it"), el("dd", { class: "mono" }, b.post_state_root),
      el("dt", {}, "Published at"), el("dd", {}, arweaveLink(b)),
      b.unverified ? [el("dt", {}, "Not verified because"), el("dd", {}, b.unverified)] : null),
    el("h3", {}, `${b.txs.length} transaction${b.txs.length === 1 ? "" : "s"}`),
    el("div", { class: "table-wrap" }, el("table", { "data-testid": "batch-txs" },
      el("thead", {}, el("tr", {}, ["#", "Transaction", "What"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, b.txs.map((t) => el("tr", {},
        el("td", {}, String(t.index)),
        el("td", {}, el("a", { href: `#/tx/${t.id}`, class: "mono" }, short(t.id))),
        el("td", {}, txSummary(t))))))));
}

/** The L1 transaction paying a withdrawal, as this confirmer's own node shows it. */
function l1Text(tx) {
  const depth = tx.confirmations === 0 ? "in the mempool" : `${tx.confirmations} confirmation${tx.confirmations === 1 ? "" : "s"}`;
  return el("span", {}, `${tx.chain} `, el("span", { class: "mono" }, tx.hash), ` (${depth})`);
}

/** Renders a transaction and keeps its stages live until the last one is reached. */
export async function tx(view, hash, isCurrent) {
  let polls = 0;
  // One poll a second for at most ten minutes: a payout takes seconds on the devnet and
  // minutes on a public chain; after that the user reloads.
  const MAX_POLLS = 600;
  for (;;) {
    const detail = await getJSON(`/web/v1/tx/${encodeURIComponent(hash)}`, `Reading transaction ${short(hash)}`);
    if (!isCurrent()) return;
    const done = detail.stages.every((s) => s.reached);
    const m = detail.tx && detail.tx.tx ? detail.tx.tx : null;
    view.replaceChildren(
      el("h2", {}, "Transaction"),
      el("p", { class: "mono" }, detail.hash),
      el("dl", { class: "panel" },
        el("dt", {}, "Batch"), el("dd", {}, detail.batch ? el("a", { href: `#/batch/${detail.batch}` }, `#${detail.batch}`) : "not yet"),
        m ? [el("dt", {}, "Type"), el("dd", {}, m.type)] : null,
        detail.tx && detail.tx.source === "system" ? [el("dt", {}, "System transaction"), el("dd", {}, txSummary({ tx: detail.tx }))] : null,
        m && m.from ? [el("dt", {}, "From"), el("dd", {}, el("a", { href: `#/account/${m.from}`, class: "mono" }, m.from))] : null,
        m && m.to ? [el("dt", {}, "To"), el("dd", {}, el("a", { href: `#/account/${m.to}`, class: "mono" }, m.to))] : null,
        m && m.recipient ? [el("dt", {}, "Recipient on L1"), el("dd", { class: "mono" }, m.recipient)] : null,
        m && m.amount ? [el("dt", {}, "Amount"), el("dd", {}, `${m.amount} ${m.asset} (fee ${m.fee})`)] : null,
        detail.l1_tx ? [el("dt", {}, "Paid on L1 in"), el("dd", { "data-testid": "l1-tx" }, l1Text(detail.l1_tx))] : null,
        detail.coordinator_error ? [el("dt", {}, "Coordinator"), el("dd", {}, detail.coordinator_error)] : null),
      el("h3", {}, "Stages"),
      stageList(detail.stages),
      done ? null : el("p", { class: "muted" }, "Updating every second…"));
    if (done || ++polls >= MAX_POLLS) return;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    if (!isCurrent()) return;
  }
}

/**
 * An account: its nonce and balances as its proof says, the proof checked here against the state root of
 * the batch the confirmer answered for, and that root against the batch's header.
 */
export async function account(view, address) {
  if (!/^0x[0-9a-fA-F]{40}$/.test(address)) throw new UserError(`${address} is not an account address (0x and 40 hex digits)`);
  const [a, status] = await Promise.all([
    getJSON(`/accounts/${address}`, `Reading account ${short(address)}`),
    getJSON("/status", "Reading the confirmer's status"),
  ]);
  const header = a.batch > 0 ? await getJSON(`/batches/${a.batch}`, `Reading batch ${a.batch}`) : null;
  const root = header ? header.header.post_state_root : a.state_root;
  const results = await Promise.all(a.proofs.map((p) => verifyProof(p, root)));
  const rootMatches = root === a.state_root;
  const allOk = rootMatches && results.every((r) => r.ok);
  const entries = a.proofs.map(decodeEntry);
  const own = address.toLowerCase();
  const mine = entries.length > 0 && entries.every((e) => e && e.account === own);
  const balances = entries.flatMap((e) => (e ? e.balances : [])).filter((b) => b.value > 0n);
  const nonce = entries.find((e) => e !== null);
  const hardFinal = a.batch > 0 && a.batch <= status.hard_final;
  let verdict;
  if (!allOk || !mine) {
    const why = !rootMatches ? "the state root is not the batch header's"
      : !mine ? "a proof is about another account, or is missing"
      : results.find((r) => !r.ok).reason;
    verdict = el("p", { class: "proof-bad", "data-testid": "proof-verdict" }, `✗ The proofs do NOT check: ${why}. Do not rely on these balances.`);
  } else {
    verdict = el("p", { class: "proof-ok", "data-testid": "proof-verdict" },
      `✓ ${results.length} proof${results.length === 1 ? "" : "s"} checked in this browser against the state root of batch ${a.batch}`,
      hardFinal ? " (hard-final)." : ` (replayed, not yet hard-final: hard-final is batch ${status.hard_final}).`);
  }
  view.replaceChildren(
    el("h2", {}, "Account"),
    el("p", { class: "mono" }, a.address),
    verdict,
    el("p", { class: "mono" }, `state root ${root}`),
    el("p", {}, `Next nonce: ${nonce ? nonce.nonce : 0n}`),
    balances.length === 0 ? el("p", {}, "No balance.") : el("div", { class: "table-wrap" }, el("table", { "data-testid": "balances" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Asset"), el("th", { scope: "col" }, "Balance (base units)"))),
      el("tbody", {}, balances.map((b) => el("tr", {}, el("td", { class: "mono" }, b.asset), el("td", {}, b.value.toString())))))));
  return { allOk, hardFinal, balances };
}

/** Shows the confirmer's alarms above everything, on every page. */
export async function alarms(banner) {
  const listing = await getJSON("/web/v1/batches?limit=1", "Reading the alarms");
  if (listing.alarms.length === 0) {
    banner.replaceChildren();
    return;
  }
  banner.replaceChildren(
    el("h2", {}, `⚠ ${listing.alarms.length} alarm${listing.alarms.length === 1 ? "" : "s"}: this confirmer found the coordinator's batches wrong. Nothing from the first bad batch on is final.`),
    el("ul", {}, listing.alarms.map((a) => el("li", {}, `batch ${a.number}: ${a.kind} — ${a.detail}`))));
}

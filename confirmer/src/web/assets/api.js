// Talking to the confirmer that serves this page, and the helpers every view uses.

/** An error with a message fit to show a user as it is. */
export class UserError extends Error {}

async function answer(response, what) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: said below with the status.
  }
  if (!response.ok) {
    const message = body && body.message ? body.message : `HTTP ${response.status}`;
    const code = body && body.code ? ` (${body.code})` : "";
    throw new UserError(`${what}: ${message}${code}`);
  }
  if (body === null) throw new UserError(`${what}: the confirmer's answer is not JSON`);
  return body;
}

/** GET a JSON resource of this confirmer. */
export async function getJSON(path, what = `Reading ${path}`) {
  let response;
  try {
    response = await fetch(path, { headers: { accept: "application/json" } });
  } catch (error) {
    throw new UserError(`${what}: the confirmer did not answer (${error.message}); is it running?`);
  }
  return answer(response, what);
}

/** POST JSON to this confirmer. */
export async function postJSON(path, body, what) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify(body),
    });
  } catch (error) {
    throw new UserError(`${what}: the confirmer did not answer (${error.message}); is it running?`);
  }
  return answer(response, what);
}

let infoPromise = null;
/** `GET /info`, once per page load: the network's parameters and its EIP-712 domain. */
export function info() {
  if (!infoPromise) infoPromise = getJSON("/info", "Reading the network's parameters");
  infoPromise.catch(() => { infoPromise = null; });
  return infoPromise;
}

/** Builds an element: `el("a", {href: "#/"}, "text", child…)`. Text is never parsed as HTML. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function short(hex) {
  return hex && hex.length > 20 ? `${hex.slice(0, 10)}…${hex.slice(-8)}` : hex;
}

export function when(ms) {
  return new Date(Number(ms)).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

export function badge(ok, yes, no, waiting = false) {
  return el("span", { class: `badge ${ok ? "ok" : waiting ? "wait" : "bad"}` }, ok ? yes : no);
}

/** The stages of a transaction as a list, each with who vouches for it. */
export function stageList(stages) {
  return el("ol", { class: "stages", "data-testid": "stages" },
    stages.map((s) => el("li", { class: s.reached ? "reached" : "", "data-stage": s.stage },
      el("span", { class: "mark", "aria-hidden": "true" }, s.reached ? "✓" : "…"),
      el("span", { class: "name" }, s.stage),
      el("span", { class: `source ${s.source}` }, s.source),
      el("span", { class: "visually-hidden" }, s.reached ? "reached" : "not yet"),
      s.detail ? el("span", { class: "mono" }, s.detail) : null)));
}

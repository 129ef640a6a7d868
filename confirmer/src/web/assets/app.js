// The page's router: `#/` latest batches, `#/batch/N`, `#/tx/HASH`, `#/account/ADDRESS`,
// `#/wallet`, `#/passkey`. Every failure is shown as a message on the page.

import { UserError } from "./api.js";
import { account, alarms, batch, latest, tx } from "./explorer.js";
import { passkey } from "./passkey.js";
import { wallet } from "./wallet.js";

const view = document.getElementById("view");
const errorBox = document.getElementById("error");
const banner = document.getElementById("alarms");
let generation = 0;

function showError(error) {
  errorBox.textContent = error instanceof UserError ? error.message : `Something went wrong in this page: ${error.message}`;
  errorBox.hidden = false;
}

async function route() {
  const current = ++generation;
  const isCurrent = () => current === generation;
  errorBox.hidden = true;
  const [, page, arg] = (location.hash || "#/").split("/");
  for (const link of document.querySelectorAll("nav a")) link.removeAttribute("aria-current");
  const nav = { wallet: "nav-wallet", passkey: "nav-passkey" }[page] || "nav-explorer";
  document.getElementById(nav).setAttribute("aria-current", "page");
  try {
    if (!page) await latest(view);
    else if (page === "batch") await batch(view, arg);
    else if (page === "tx") await tx(view, arg, isCurrent);
    else if (page === "account") await account(view, arg);
    else if (page === "wallet") await wallet(view);
    else if (page === "passkey") await passkey(view);
    else throw new UserError(`There is no page "${location.hash}" here.`);
    if (isCurrent()) document.title = `${page || "batches"} · Settlement Bridge`;
  } catch (error) {
    if (isCurrent()) {
      view.replaceChildren();
      showError(error);
    }
  }
  if (isCurrent()) view.dataset.ready = page || "batches";
}

document.getElementById("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = document.getElementById("search-input").value.trim();
  if (/^[0-9]+$/.test(q)) location.hash = `#/batch/${q}`;
  else if (/^0x[0-9a-fA-F]{64}$/.test(q)) location.hash = `#/tx/${q}`;
  else if (/^0x[0-9a-fA-F]{40}$/.test(q)) location.hash = `#/account/${q}`;
  else showError(new UserError(`"${q}" is neither a batch number, a transaction hash (0x and 64 hex digits) nor an address (0x and 40).`));
});

// A new page moves focus to its content, so keyboard and screen-reader users land on it.
window.addEventListener("hashchange", () => {
  route();
  view.focus({ preventScroll: true });
});

async function watchAlarms() {
  try {
    await alarms(banner);
  } catch {
    // The view shows the confirmer being unreachable; the banner keeps what it last knew.
  }
}
watchAlarms();
// Alarms are rare and grave: every ten seconds is soon enough, and cheap for the confirmer.
setInterval(watchAlarms, 10000);
route();

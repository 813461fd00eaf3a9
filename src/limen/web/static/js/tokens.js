// The API tokens page (/tokens, every user): your tokens with prefix, created, last used and revoked;
// create one (its secret shown once, in a panel with Copy and a warning); revoke after a dialog naming it.
// Administrators can list everyone's ("Every user's tokens", GET /api/tokens?all=true). Every value from
// the server is shown as text; the secret lives only in the panel's field until "I have copied it".

import { api, ApiError } from "./api.js";
import { disableRow, errorBox, h, placeOf, redrawKeepingPlace, returnToPlace, spinner, takeForm } from "./dom.js";
import { latestRead, STALE } from "./latest-read.js";
import { mountUserMenu } from "./session.js";
import { fieldErrorText, formatDateTime, formatNumber, t, tWith } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const ui = {
  note: $("tokens-note"),
  error: $("tokens-error"),
  toast: $("tokens-toast"),
  allRow: $("all-toggle-row"),
  all: $("all-toggle"),
  form: $("token-form"),
  name: $("token-name"),
  nameError: $("token-name-error"),
  create: $("token-create"),
  result: $("token-result"),
  panel: $("secret-panel"),
  panelName: $("secret-token-name"),
  secret: $("secret-value"),
  copy: $("secret-copy"),
  copyStatus: $("secret-copy-status"),
  done: $("secret-done"),
  rows: $("token-rows"),
  empty: $("token-empty"),
  ownerHead: $("owner-head"),
  // Where the keyboard goes when no token is left to act on (the table, named by its caption): the page's
  // heading, at the top, was a long way back for a keyboard user.
  table: $("token-table"),
  dialog: $("revoke-dialog"),
  dialogText: $("revoke-text"),
  dialogCancel: $("revoke-cancel"),
};

let me = null;
let tokens = [];
let revoking = null;
// The tokens whose revoke is on its way: a list read meanwhile (the one after a create) is drawn with their
// Revoke off, or a second press re-opened the dialog and was refused (NOT_FOUND) after the first did it.
const revokingNow = new Set();
let revokePlace = null; // where the keyboard was: the row loses its button, the focus must not fall to <body>

function asBox(exc, what) {
  return exc instanceof ApiError ? exc.body
    : { error: t("details.failed", { what }), code: "CLIENT_ERROR", details: String(exc), message: t("details.reload") };
}

const when = (value) => formatDateTime(value);
const showingAll = () => ui.all.checked && me && me.role === "admin";

// -- the list ---------------------------------------------------------------------------------------

function tokenRow(token) {
  const revoked = token.revoked_at !== null;
  const state = revoked
    ? h("span", { class: "badge crashed", dataset: { state: "revoked" }, text: t("tokens.revoked"), title: when(token.revoked_at) })
    : h("span", { class: "badge running", dataset: { state: "active" }, text: t("tokens.active") });
  const actions = revoked ? h("span", { class: "refresh-note", text: t("tokens.revoked_when", { when: when(token.revoked_at) }) })
    : h("button", { class: "btn small danger", type: "button", dataset: { action: "revoke" },
                    disabled: revokingNow.has(token.id),
                    "aria-label": t("tokens.revoke_label", { name: token.name }), onclick: () => askRevoke(token),
                    text: t("tokens.revoke_button") });
  return h(
    "tr", { dataset: { token: String(token.id), revoked: String(revoked) } },
    h("td", { class: "token-name-cell" }, h("span", { class: "user-ref", tabindex: "0", title: token.name, text: token.name })),
    showingAll() ? h("td", { "data-label": t("col.user"), class: "token-owner" },
      h("span", { class: "user-ref", tabindex: "0", title: token.owner, text: token.owner })) : null,
    h("td", { "data-label": t("col.prefix") }, h("code", { text: `${token.prefix}…` })),
    h("td", { "data-label": t("col.created"), text: when(token.created_at) }),
    h("td", { "data-label": t("col.last_used"), text: token.last_used_at ? when(token.last_used_at) : t("tokens.never") }),
    h("td", { "data-label": t("col.state") }, state),
    h("td", { class: "cell-actions" }, actions),
  );
}

// Only the latest read's answer is shown: everyone's tokens arriving after the answer for "Every user's
// tokens" unchecked were listed without their owners.
const readTokens = latestRead((all) => api("GET", all ? "/api/tokens?all=true" : "/api/tokens"));

async function refresh() {
  let answer;
  try {
    answer = await readTokens(showingAll());
  } catch (exc) {
    ui.error.replaceChildren(errorBox(asBox(exc, t("tokens.loading")), {
      extraClass: "notice error",
      actions: [h("button", { class: "btn small", type: "button", onclick: refresh, text: t("console.retry") })],
    }));
    ui.note.textContent = t("tokens.cannot_load");
    return;
  }
  if (answer === STALE) return;
  tokens = answer;
  ui.error.replaceChildren();
  ui.ownerHead.hidden = !showingAll();
  // Newest first: the one just made is at the top.
  redrawKeepingPlace(ui.rows, "token", () => ui.rows.replaceChildren(...[...tokens].reverse().map(tokenRow)),
                     ui.table);
  ui.empty.hidden = tokens.length > 0;
  const active = tokens.filter((token) => token.revoked_at === null).length;
  const note = tokens.length === 1 ? "one" : "many";
  ui.note.textContent = t(`tokens.note_${showingAll() ? "all" : "yours"}_${note}`,
                          { count: formatNumber(tokens.length), active: formatNumber(active) });
}

// -- create and the secret ------------------------------------------------------------------------

function showSecret(made) {
  ui.panelName.textContent = `“${made.name}”`;
  ui.secret.value = made.secret;
  ui.copyStatus.replaceChildren();
  ui.copyStatus.className = "row-status";
  ui.panel.hidden = false;
  ui.panel.scrollIntoView({ block: "nearest" });
  ui.copy.focus();
}

function hideSecret() {
  ui.secret.value = "";
  ui.panel.hidden = true;
  ui.name.focus();
}

/** Copies the secret: the Clipboard API where the page may use it (HTTPS or this machine), else the
 * browser's copy command on the selected text; if both fail, the text stays selected for Ctrl+C. */
async function copySecret() {
  const secret = ui.secret.value;
  let copied = false;
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(secret);
      copied = true;
    } catch {
      copied = false;
    }
  }
  ui.secret.focus();
  ui.secret.select();
  if (!copied) {
    try {
      copied = document.execCommand("copy");
    } catch {
      copied = false;
    }
  }
  ui.copyStatus.className = `row-status ${copied ? "ok" : ""}`.trim();
  ui.copyStatus.textContent = copied ? t("tokens.copied") : t("tokens.copy_refused");
  ui.copyStatus.dataset.copied = String(copied);
}

function wireCreate() {
  takeForm(ui.form, async (event) => {
    event.preventDefault();
    ui.nameError.hidden = true;
    ui.name.setAttribute("aria-invalid", "false");
    ui.result.replaceChildren();
    const name = ui.name.value.trim();
    if (!name) {
      ui.nameError.textContent = t("tokens.name_missing");
      ui.nameError.hidden = false;
      ui.name.setAttribute("aria-invalid", "true");
      ui.name.focus();
      return;
    }
    ui.create.disabled = true;
    ui.result.replaceChildren(h("div", { class: "row-status" }, spinner(), t("common.creating")));
    try {
      const made = await api("POST", "/api/tokens", { name });
      ui.result.replaceChildren();
      ui.form.reset();
      showSecret(made);
      ui.toast.textContent = t("tokens.created", { name: made.name });
      await refresh();
    } catch (exc) {
      ui.result.replaceChildren();
      if (exc instanceof ApiError && exc.field === "name") {
        ui.nameError.textContent = fieldErrorText(exc, "name");
        ui.nameError.hidden = false;
        ui.name.setAttribute("aria-invalid", "true");
      } else {
        ui.result.replaceChildren(errorBox(asBox(exc, t("tokens.creating")), { extraClass: "notice error" }));
      }
    } finally {
      ui.create.disabled = false;
      // The button was disabled during the request (the focus fell to <body>): back to the refused field.
      if (ui.name.getAttribute("aria-invalid") === "true") ui.name.focus();
    }
  });
  ui.copy.addEventListener("click", copySecret);
  ui.done.addEventListener("click", hideSecret);
}

// -- revoke ----------------------------------------------------------------------------------------

function askRevoke(token) {
  revoking = token;
  revokePlace = placeOf(document.activeElement, "token");
  const whose = me && token.owner !== me.name
    ? [t("tokens.dialog_user"), h("strong", { class: "vm-ref", text: token.owner }), ". "] : [];
  ui.dialogText.replaceChildren(
    t("tokens.revoke_q"), h("strong", { class: "dialog-name", text: token.name }),
    // The prefix is the token's whole stored part: no "…" after it (one read "limen_PZdKLn….").
    ...whose, ...tWith("tokens.dialog_prefix", { prefix: h("code", { text: token.prefix }) }),
    t("tokens.revoke_effect"),
  );
  ui.dialog.showModal();
}

function wireRevoke() {
  ui.dialogCancel.addEventListener("click", () => ui.dialog.close("cancel"));
  ui.dialog.addEventListener("close", async () => {
    const token = revoking;
    revoking = null;
    if (!token || ui.dialog.returnValue !== "revoke") return;
    ui.dialog.returnValue = "";
    const { release } = disableRow(ui.rows, "token", String(token.id));
    revokingNow.add(token.id);
    let failure = null;
    try {
      await api("DELETE", `/api/tokens/${encodeURIComponent(token.id)}`);
      ui.toast.textContent = t("tokens.revoked_toast", { name: token.name });
    } catch (exc) {
      failure = exc;
    }
    revokingNow.delete(token.id);
    await refresh(); // also after a refusal: the list as it is now
    release();
    // Beside the list's own error, if it could not be read: that one's Retry is the way back.
    if (failure) ui.error.append(errorBox(asBox(failure, t("tokens.revoking")), { extraClass: "notice error" }));
    returnToPlace(revokePlace, ui.rows, ui.table);
  });
}

async function main() {
  me = await mountUserMenu({ needed: true });
  if (!me) {
    ui.note.textContent = t("tokens.cannot_load"); // not "Loading…" under the error box that says why
    return;
  }
  ui.allRow.hidden = me.role !== "admin";
  ui.all.addEventListener("change", refresh);
  wireCreate();
  wireRevoke();
  await refresh();
}

main();

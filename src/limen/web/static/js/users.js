// The users page (/users, administrators): every user with role, state and creation time; create a user
// with a password; change a role; disable and enable; lift sign-in blocks (unlock); delete after a
// dialog naming the user. Approval and quotas appear only where the server has them: "Approve" when
// user objects carry "approved", "Quota…" when GET /api/users/{name}/quota answers (a 404 or 405 from
// that route hides it). Users who are not administrators get a 403 from the API, and the page says so.
// Every value from the server is shown as text.

import { api, ApiError } from "./api.js";
import { errorBox, h, placeOf, redrawKeepingPlace, returnToPlace, spinner, takeForm } from "./dom.js";
import { latestRead, STALE } from "./latest-read.js";
import { mountUserMenu } from "./session.js";
import { quotaBody, quotaFields, quotaRefusalText } from "./user-quota.js";
import { fieldErrorText, formatDateTime, localizedError, refusalText, t } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const ui = {
  note: $("users-note"),
  error: $("users-error"),
  toast: $("users-toast"),
  admin: $("users-admin"),
  rows: $("user-rows"),
  form: $("create-form"),
  name: $("new-name"),
  nameError: $("new-name-error"),
  password: $("new-password"),
  passwordError: $("new-password-error"),
  role: $("new-role"),
  createResult: $("create-result"),
  createSubmit: $("create-submit"),
  deleteDialog: $("delete-dialog"),
  deleteText: $("delete-text"),
  deleteCancel: $("delete-cancel"),
  quotaDialog: $("quota-dialog"),
  quotaForm: $("quota-form"),
  quotaText: $("quota-text"),
  quotaFields: $("quota-fields"),
  quotaError: $("quota-error"),
  quotaCancel: $("quota-cancel"),
  quotaSave: $("quota-save"),
};

let me = null;
let users = [];
let quotaRoute = false; // GET /api/users/{name}/quota answers
let deleting = null;
let deletePlace = null; // where the keyboard was: the row goes, the focus must not fall to <body>
let editingQuota = null; // {user, quota}
const notes = new Map(); // user name -> {kind, text}: the last result shown in the user's row
// User name -> what their row says while a change of theirs runs: a list read meanwhile (the one after a
// create, or another row's change) is drawn with that row's controls still off, not pressable twice.
const busy = new Map();

const userPath = (name, suffix = "") => `/api/users/${encodeURIComponent(name)}${suffix}`;

function asBox(exc, what) {
  return exc instanceof ApiError ? exc.body
    : { error: t("details.failed", { what }), code: "CLIENT_ERROR", details: String(exc), message: t("details.reload") };
}

/** A route the server does not have (yet) answers 404 NOT_FOUND or 405; a missing user is USER_NOT_FOUND. */
function isMissingRoute(exc) {
  return exc instanceof ApiError && (exc.status === 405 || (exc.status === 404 && exc.code !== "USER_NOT_FOUND"));
}


function announce(text) {
  ui.toast.textContent = text;
}

// -- the list ---------------------------------------------------------------------------------------

function nameCell(user) {
  const self = me && user.name === me.name;
  // A name can be 64 characters without a space: it is cut with "…"; hover or focus shows all of it.
  return h("td", { class: "user-name-cell" },
    h("span", { class: "user-ref", tabindex: "0", title: user.name, text: user.name }),
    self ? h("span", { class: "you-tag", text: t("users.you") }) : null);
}

function stateBadges(user) {
  const badges = [user.disabled
    ? h("span", { class: "badge crashed", dataset: { state: "disabled" }, text: t("users.disabled") })
    : h("span", { class: "badge running", dataset: { state: "enabled" }, text: t("users.enabled") })];
  if (user.approved === false) {
    badges.push(h("span", { class: "badge paused", dataset: { state: "awaiting-approval" }, text: t("users.awaiting") }));
  }
  return h("td", { class: "user-state", "data-label": t("col.state") }, ...badges);
}

function roleCell(user) {
  const select = h("select", { class: "role-select", "aria-label": t("users.role_of", { name: user.name }), dataset: { action: "role" } },
    h("option", { value: "user", text: t("role.user"), selected: user.role === "user" }),
    h("option", { value: "admin", text: t("role.admin"), selected: user.role === "admin" }));
  // Choosing is not changing: a closed <select> changes its value on an arrow key or a typed letter, and
  // making someone an administrator takes the button beside it.
  const apply = h("button", { class: "btn small", type: "button", hidden: true, dataset: { action: "apply-role" },
                              text: t("users.apply_role"), "aria-label": t("users.apply_role_of", { name: user.name }) });
  select.addEventListener("change", () => {
    apply.hidden = select.value === user.role;
  });
  apply.addEventListener("click", async () => {
    await change(user, "role", t("users.role_changed", { role: t(`role.${select.value}`) }),
                 "PUT", userPath(user.name, "/role"), { role: select.value });
    rowOf(user.name)?.querySelector(".role-select")?.focus(); // the list was drawn again: not lost to <body>
  });
  return h("td", { "data-label": t("col.role") }, h("div", { class: "role-change" }, select, apply));
}

function button(action, text, label, onclick, extra = "") {
  return h("button", { class: `btn small ${extra}`.trim(), type: "button", dataset: { action },
                       "aria-label": label, onclick, text });
}

function actionsCell(user) {
  const buttons = [
    user.disabled
      ? button("enable", t("users.enable"), t("list.action_label", { action: t("users.enable"), name: user.name }),
        () => change(user, "enable", t("users.enabled_note"),
        "PUT", userPath(user.name, "/disabled"), { disabled: false }))
      : button("disable", t("users.disable"), t("list.action_label", { action: t("users.disable"), name: user.name }),
        () => change(user, "disable", t("users.disabled_note"),
        "PUT", userPath(user.name, "/disabled"), { disabled: true })),
    button("unlock", t("users.unlock"), t("users.unlock_label", { name: user.name }), () => unlock(user)),
  ];
  if (user.approved === false) {
    buttons.unshift(button("approve", t("users.approve"), t("list.action_label", { action: t("users.approve"), name: user.name }), () => approve(user), "primary"));
  }
  if (quotaRoute) buttons.push(button("quota", t("users.quota_button"), t("users.quota_of", { name: user.name }), () => openQuota(user)));
  const remove = button("delete", t("action.delete.label"), t("list.action_label", { action: t("users.delete_verb"), name: user.name }), () => askDelete(user), "danger");
  if (me && user.name === me.name) { // refused by the server (FORBIDDEN, "ask an administrator"): say why here
    remove.disabled = true;
    remove.title = t("users.cannot_delete_yourself");
  }
  buttons.push(remove);
  const note = notes.get(user.name);
  const status = h("div", { class: `row-status ${note ? note.kind : ""}`.trim(), dataset: { status: user.name } });
  if (note && note.kind === "error") status.append(errorBox(note.body));
  else if (note) status.textContent = note.text;
  return h("td", { class: "cell-actions" }, h("div", { class: "actions" }, ...buttons), status);
}

function userRow(user) {
  const row = h(
    "tr", { dataset: { user: user.name, role: user.role, disabled: String(user.disabled) } },
    nameCell(user),
    roleCell(user),
    stateBadges(user),
    h("td", { "data-label": t("col.created"), text: formatDateTime(user.created_at) }),
    actionsCell(user),
  );
  if (busy.has(user.name)) showBusy(row, busy.get(user.name));
  return row;
}

function render() {
  redrawKeepingPlace(ui.rows, "user", () => ui.rows.replaceChildren(...users.map(userRow)),
                     document.querySelector("main h1"));
  const admins = users.filter((user) => user.role === "admin" && !user.disabled).length;
  const waiting = users.filter((user) => user.approved === false).length;
  ui.note.textContent = t(users.length === 1 ? "users.note_one" : "users.note", { count: users.length })
    + t(admins === 1 ? "users.note_admin_one" : "users.note_admins", { count: admins })
    + (waiting ? t("users.note_waiting", { count: waiting }) : "");
}

// Only the latest read's answer is shown: a read asked before a change (the one after a create) and answered
// after the change's own read brought a deleted user back.
const readUsers = latestRead(() => api("GET", "/api/users"));

async function refresh() {
  let answer;
  try {
    answer = await readUsers();
  } catch (exc) {
    showLoadError(exc);
    return;
  }
  if (answer === STALE) return;
  users = answer;
  ui.error.replaceChildren();
  ui.admin.hidden = false;
  render();
}

function showLoadError(exc) {
  ui.admin.hidden = true;
  if (exc instanceof ApiError && exc.status === 403) {
    ui.note.textContent = t("users.admins_only");
    ui.error.replaceChildren(h("div", { class: "notice info", role: "alert", dataset: { code: exc.code } },
      h("strong", { text: t("users.only_admins") }),
      t("users.tokens_before"),
      h("a", { href: "/tokens", text: t("nav.tokens") }), t("users.tokens_after")));
    return;
  }
  ui.note.textContent = t("users.cannot_load");
  ui.error.replaceChildren(errorBox(asBox(exc, t("owner.loading_users")), {
    extraClass: "notice error",
    actions: [h("button", { class: "btn small", type: "button", onclick: refresh, text: t("console.retry") })],
  }));
}

// -- changes ----------------------------------------------------------------------------------------

function rowOf(name) {
  return [...ui.rows.children].find((row) => row.dataset.user === name) || null;
}

function showBusy(row, text) {
  for (const control of row.querySelectorAll("button, select")) control.disabled = true;
  const status = row.querySelector(".row-status");
  status.className = "row-status";
  status.replaceChildren(spinner(), text);
}

/** Turns off the user's row while a change of theirs runs, saying ``text`` in it, until setRowDone(). */
function setRowBusy(name, text) {
  busy.set(name, text);
  const row = rowOf(name);
  if (row) showBusy(row, text);
}

/** The change is done: the row is drawn with its controls by the list read next. */
function setRowDone(name) {
  busy.delete(name);
}

/** Runs one change of ``user``, notes its result in the user's row and reloads the list. */
async function change(user, what, done, method, path, body) {
  setRowBusy(user.name, t("details.saving"));
  try {
    await api(method, path, body);
    notes.set(user.name, { kind: "ok", text: done });
    announce(`${user.name}: ${done}`);
  } catch (exc) {
    const box = asBox(exc, what);
    notes.set(user.name, { kind: "error", body: box });
    const shown = localizedError(box); // the server's title and details are English
    announce(`${user.name}: ${shown.error}. ${shown.message || ""}`.trim());
  }
  setRowDone(user.name);
  await refresh();
}

async function unlock(user) {
  setRowBusy(user.name, t("users.unlocking"));
  try {
    const result = await api("POST", userPath(user.name, "/unlock"));
    const text = result.cleared
      ? t(result.cleared === 1 ? "users.unlocked_one" : "users.unlocked", { count: result.cleared })
      : t("users.unlocked_none");
    notes.set(user.name, { kind: "ok", text });
    announce(`${user.name}: ${text}`);
  } catch (exc) {
    notes.set(user.name, { kind: "error", body: asBox(exc, t("users.unlock")) });
  }
  setRowDone(user.name);
  await refresh();
}

async function approve(user) {
  setRowBusy(user.name, t("users.approving"));
  try {
    await api("PUT", userPath(user.name, "/approved"), { approved: true });
    notes.set(user.name, { kind: "ok", text: t("users.approved") });
    announce(t("users.approved_name", { name: user.name }));
  } catch (exc) {
    if (isMissingRoute(exc)) {
      notes.set(user.name, { kind: "ok", text: t("users.cannot_approve") });
      users = users.map((other) => ({ ...other, approved: undefined }));
    } else {
      notes.set(user.name, { kind: "error", body: asBox(exc, t("users.approve")) });
    }
  }
  setRowDone(user.name);
  await refresh();
}

// -- delete ------------------------------------------------------------------------------------------

function askDelete(user) {
  deleting = user;
  deletePlace = placeOf(document.activeElement, "user");
  ui.deleteText.replaceChildren(
    t("users.delete_q"), h("strong", { class: "dialog-name", text: user.name }),
    t("users.delete_effect"),
  );
  ui.deleteDialog.showModal();
}

function wireDelete() {
  ui.deleteCancel.addEventListener("click", () => ui.deleteDialog.close("cancel"));
  ui.deleteDialog.addEventListener("close", async () => {
    const user = deleting;
    deleting = null;
    if (!user || ui.deleteDialog.returnValue !== "delete") return;
    ui.deleteDialog.returnValue = "";
    setRowBusy(user.name, t("action.delete.busy"));
    try {
      await api("DELETE", userPath(user.name));
      notes.delete(user.name);
      announce(t("users.deleted", { name: user.name }));
    } catch (exc) {
      notes.set(user.name, { kind: "error", body: asBox(exc, t("users.delete_verb")) });
    }
    setRowDone(user.name);
    await refresh();
    returnToPlace(deletePlace, ui.rows, document.querySelector("main h1"));
  });
}

// -- quota -------------------------------------------------------------------------------------------

/** Whether this limen has quotas: asks for the signed-in administrator's own. */
async function detectQuotaRoute() {
  try {
    await api("GET", userPath(me.name, "/quota"));
    return true;
  } catch (exc) {
    return !isMissingRoute(exc) && exc instanceof ApiError && exc.status !== 0 && exc.status < 500
      && exc.status !== 403;
  }
}

// Where the keyboard was when the quota dialog was asked for: its row's button is redrawn meanwhile, and the
// dialog gave the focus back to nothing (<body>) whether cancelled, escaped or saved.
let quotaPlace = null;

async function openQuota(user) {
  quotaPlace = placeOf(document.activeElement, "user");
  setRowBusy(user.name, t("users.loading_quota"));
  let quota;
  try {
    quota = await api("GET", userPath(user.name, "/quota"));
  } catch (exc) {
    setRowDone(user.name);
    if (isMissingRoute(exc)) quotaRoute = false;
    else notes.set(user.name, { kind: "error", body: asBox(exc, t("users.loading_quota_what")) });
    await refresh();
    return;
  }
  setRowDone(user.name);
  notes.delete(user.name);
  render();
  editingQuota = { user, quota };
  ui.quotaText.replaceChildren(h("strong", { class: "dialog-name", text: user.name }),
    t("users.quota_hint"));
  const fields = quotaFields(quota);
  ui.quotaFields.replaceChildren(...(fields.length ? fields
    : [h("p", { class: "refresh-note", text: t("users.quota_none") })]));
  ui.quotaError.replaceChildren();
  ui.quotaDialog.showModal();
}

function wireQuota() {
  ui.quotaCancel.addEventListener("click", () => ui.quotaDialog.close("cancel"));
  ui.quotaDialog.addEventListener("close", () => {
    // After the dialog's own return of the focus (to a button that is gone): back to the row's Quota button.
    setTimeout(() => returnToPlace(quotaPlace, ui.rows, document.querySelector("main h1")), 0);
  });
  ui.quotaForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { user, quota } = editingQuota;
    let body;
    try {
      body = quotaBody(ui.quotaForm, quota);
    } catch (exc) {
      ui.quotaError.replaceChildren(h("div", { class: "field-error", role: "alert", text: exc.message }));
      return;
    }
    ui.quotaError.replaceChildren(h("div", { class: "row-status" }, spinner(), t("details.saving")));
    ui.quotaSave.disabled = true; // one PUT at a time
    try {
      await api("PUT", userPath(user.name, "/quota"), body);
    } catch (exc) {
      const raw = asBox(exc, t("users.saving_quota"));
      if (ui.quotaDialog.open) {
        const box = localizedError(raw);
        const refused = exc instanceof ApiError ? quotaRefusalText(exc.fields) : null;
        ui.quotaError.replaceChildren(errorBox(refused ? { ...box, message: refused } : box,
                                               { extraClass: "notice error", localize: false }));
      } else { // closed (Escape) while it was on its way: said in the user's row instead of the hidden dialog
        notes.set(user.name, { kind: "error", body: raw });
        render();
      }
      return;
    } finally {
      ui.quotaSave.disabled = false;
    }
    ui.quotaDialog.close("saved");
    notes.set(user.name, { kind: "ok", text: t("users.quota_saved") });
    announce(t("users.quota_saved_name", { name: user.name }));
    await refresh();
    returnToPlace(quotaPlace, ui.rows, document.querySelector("main h1")); // the rows were drawn anew
  });
}

// -- create ------------------------------------------------------------------------------------------

/** What an error says about one field: its details without "field: " or the request id. */
function aboutField(exc) {
  if (exc.code === "USER_ALREADY_EXISTS") return t("users.name_taken");
  return fieldErrorText(exc);
}

function fieldError(input, slot, text) {
  input.setAttribute("aria-invalid", text ? "true" : "false");
  slot.hidden = !text;
  slot.textContent = text || "";
}

function wireCreate() {
  takeForm(ui.form, async (event) => {
    event.preventDefault();
    fieldError(ui.name, ui.nameError, "");
    fieldError(ui.password, ui.passwordError, "");
    ui.createResult.replaceChildren();
    const name = ui.name.value;
    // The server checks both fields and names each it refuses (checked here, the password's length was said
    // only once the name was right, and a name only the server refuses on the submit after).
    ui.createSubmit.disabled = true;
    ui.createResult.replaceChildren(h("div", { class: "row-status" }, spinner(), t("common.creating")));
    try {
      const made = await api("POST", "/api/users", { name, password: ui.password.value, role: ui.role.value });
      ui.form.reset();
      const text = t("users.created_name", { name: made.name, role: t(`role.${made.role}`) });
      ui.createResult.replaceChildren(h("div", { class: "row-status ok", text }));
      notes.set(made.name, { kind: "ok", text: t("users.created") });
      announce(text);
      await refresh();
    } catch (exc) {
      ui.createResult.replaceChildren();
      const box = asBox(exc, t("users.creating"));
      // Every field refused (VALIDATION_ERROR's `fields`), or the name a taken one names.
      for (const refusal of exc instanceof ApiError ? exc.fields : []) {
        if (refusal.field.includes("password")) fieldError(ui.password, ui.passwordError, refusalText(refusal));
        else if (refusal.field.includes("name")) fieldError(ui.name, ui.nameError, refusalText(refusal));
      }
      if (exc instanceof ApiError && exc.code === "USER_ALREADY_EXISTS") {
        fieldError(ui.name, ui.nameError, aboutField(exc));
      }
      if (![ui.name, ui.password].some((input) => input.getAttribute("aria-invalid") === "true")) {
        ui.createResult.replaceChildren(errorBox(box, { extraClass: "notice error" }));
      }
    } finally {
      ui.createSubmit.disabled = false;
      // The button was disabled during the request (the focus fell to <body>): back to the first refused field.
      [ui.name, ui.password].find((input) => input.getAttribute("aria-invalid") === "true")?.focus();
    }
  });
}

async function main() {
  me = await mountUserMenu({ needed: true });
  if (!me) return;
  wireCreate();
  wireDelete();
  wireQuota();
  if (me.role === "admin") quotaRoute = await detectQuotaRoute();
  await refresh();
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && !ui.deleteDialog.open && !ui.quotaDialog.open) refresh();
  });
}

main();

// The audit page: console sessions (admins: everyone's, with "End session" on live ones, asked first in a
// dialog; users: their own) and VM actions, refreshed every few seconds. Every value from the server is
// shown as text.

import { api, ApiError } from "./api.js";
import { errorBox, formatBytes, h, placeOf, redrawKeepingPlace, returnToPlace } from "./dom.js";
import { actionDetailsText, actionResultText, sessionEndDetailsText } from "./action-details.js";
import { latestRead, STALE } from "./latest-read.js";
import { mountUserMenu } from "./session.js";
import {
  actionName, clientError, formatDateTime, formatNumber, formatTime, sessionEndText, t, tWith,
} from "./i18n.js";

const REFRESH_MS = 3000;
// Rows asked for at first, and the most the API gives (MAX_LIMIT); "Show more" doubles the first.
const FIRST_ROWS = 100;
const MOST_ROWS = 1000;
const shown = { sessions: FIRST_ROWS, actions: FIRST_ROWS };
const ui = {
  note: document.getElementById("audit-note"),
  error: document.getElementById("audit-error"), // the lists' own: cleared by each read that works
  actionError: document.getElementById("audit-action-error"), // End session's: kept until dismissed
  toast: document.getElementById("audit-toast"),
  sessions: document.getElementById("session-rows"),
  sessionTable: document.getElementById("session-table"),
  actions: document.getElementById("action-rows"),
  cut: { sessions: document.getElementById("sessions-cut"), actions: document.getElementById("actions-cut") },
  more: { sessions: document.getElementById("sessions-more"), actions: document.getElementById("actions-more") },
  endDialog: document.getElementById("end-dialog"),
  endText: document.getElementById("end-text"),
  endCancel: document.getElementById("end-cancel"),
};
let user = null;
let ending = null; // the session the end dialog asks about, and the keyboard's place when it was asked
// Sessions whose End session is on its way: their buttons stay disabled through the redraws meanwhile (a
// redraw every few seconds made the button anew, and it could be pressed again).
const endingNow = new Set();

function when(value) {
  return formatDateTime(value);
}

/** A user or VM name, cut short with an ellipsis when long (63 characters fit no column); the whole
 * name (and the VM's UUID) on hover, and on screen while the row holds the focus. */
function clipped(name, uuid) {
  const text = name || "—";
  return h("span", { class: "clip", title: uuid ? `${text} (${uuid})` : text, text });
}

/** How a session ended, in words beside its stable code (the code is what the API and the logs say). */
function sessionEnd(session) {
  if (session.live) return h("span", { class: "badge running", text: t("audit.live") });
  if (!session.end_code) return "—";
  const words = sessionEndText(session.end_code);
  return h("span", { title: session.end_details || "" }, words ? `${words} ` : "", h("code", { text: session.end_code }));
}

function sessionRow(session) {
  const end = sessionEnd(session);
  const actions = [];
  if (session.live && user && user.role === "admin") {
    actions.push(h("button", {
      class: "btn small danger", type: "button", dataset: { action: "terminate" },
      disabled: endingNow.has(session.id),
      onclick: (event) => askEnd(session, event.currentTarget), text: t("audit.end_session"),
    }));
  }
  return h(
    "tr", { dataset: { session: session.id, live: String(session.live) } },
    h("td", { "data-label": t("col.user") }, clipped(session.user)),
    h("td", { class: "vm-name", "data-label": t("col.vm") }, clipped(session.vm_name, session.vm_uuid),
      session.kind === "serial" ? h("span", { class: "console-kind", text: ` · ${t("audit.kind_serial")}` }) : ""),
    h("td", { class: "client", "data-label": t("col.client"), text: session.client_address }),
    h("td", { "data-label": t("col.started"), text: when(session.started_at) }),
    h("td", { "data-label": t("col.ended"), text: when(session.ended_at) }),
    h("td", { class: "num", "data-label": t("col.to_browser"), text: formatBytes(session.bytes_to_client) }),
    h("td", { class: "num", "data-label": t("col.from_browser"), text: formatBytes(session.bytes_from_client) }),
    h("td", { class: "end-code", "data-label": t("col.end") }, end, session.terminated_by ? t("audit.ended_by", { user: session.terminated_by }) : "",
      // Why it ended, in words (e.g. "API token 12 revoked by 'root'"), when the server says.
      session.end_details ? h("div", { class: "end-details", text: sessionEndDetailsText(session) }) : ""),
    h("td", { class: "cell-actions", "data-label": t("col.actions") }, ...actions),
  );
}

function actionRow(action) {
  return h(
    "tr", { dataset: { action: action.action } },
    h("td", { "data-label": t("col.when"), text: when(action.at) }),
    h("td", { "data-label": t("col.user") }, clipped(action.user)),
    h("td", { "data-label": t("col.action"), title: action.action, text: actionName(action.action) }),
    h("td", { class: "vm-name", "data-label": t("col.vm") }, clipped(action.vm_name, action.vm_uuid)),
    h("td", { "data-label": t("col.result"), title: action.result_code }, actionResultText(action.result_code),
      action.result_code === "OK" || action.result_code === "STARTED" ? null
        : h("code", { class: "result-code", text: ` ${action.result_code}` })),
    h("td", { "data-label": t("col.details"), title: action.details, text: actionDetailsText(action) }),
  );
}

/** Ending a live console cuts someone off at once: asked first, as Force stop, delete and revoke are. */
function askEnd(session, button) {
  // The keyboard's place: the row is drawn anew every few seconds, and goes once the session has ended.
  ending = { session, place: placeOf(button, "session") };
  ui.endText.replaceChildren(
    ...tWith("audit.end_q", {
      user: h("strong", { class: "vm-ref", text: session.user || "—" }),
      vm: h("strong", { class: "vm-ref", text: session.vm_name || "—" }),
    }),
    t("audit.end_effect"),
  );
  ui.endDialog.showModal();
}

function wireEndDialog() {
  ui.endCancel.addEventListener("click", () => ui.endDialog.close("cancel"));
  ui.endDialog.addEventListener("close", () => {
    const asked = ending;
    ending = null;
    if (!asked) return;
    const confirmed = ui.endDialog.returnValue === "end";
    ui.endDialog.returnValue = "";
    // The dialog gives the focus back to the button only if no redraw replaced it meanwhile; else the focus
    // stays on the closed dialog's button, lost to a keyboard user.
    if (ui.endDialog.contains(document.activeElement)) document.activeElement.blur();
    if (!confirmed) returnToPlace(asked.place, ui.sessions, ui.sessionTable);
    else terminate(asked.session, asked.place);
  });
}

async function terminate(session, place) {
  const button = ui.sessions.querySelector(`tr[data-session="${CSS.escape(String(session.id))}"] [data-action="terminate"]`);
  if (button) button.disabled = true;
  endingNow.add(session.id);
  ui.actionError.replaceChildren();
  try {
    const result = await api("DELETE", `/api/console-sessions/${encodeURIComponent(session.id)}`);
    ui.toast.textContent = result && result.closed
      ? t("audit.server_lost", { user: session.user, vm: session.vm_name })
      : t("audit.ending", { user: session.user, vm: session.vm_name });
  } catch (exc) {
    // Not in the lists' error box: the read right after (and each one every few seconds) empties that one,
    // and the failure was gone before anyone could read it.
    const box = exc instanceof ApiError ? exc.body : clientError("CLIENT_ERROR", String(exc));
    const dismiss = h("button", { class: "btn small dismiss", type: "button", text: t("list.dismiss"),
      onclick: () => ui.actionError.replaceChildren() });
    ui.actionError.replaceChildren(errorBox(box, { actions: [dismiss] }));
  }
  endingNow.delete(session.id);
  await refresh();
  returnToPlace(place, ui.sessions, ui.sessionTable);
}

/** The one row of an empty table, saying so (a bare header reads as a page still loading). */
function noneRow(columns, key) {
  return h("tr", { class: "none-row" }, h("td", { colspan: String(columns), class: "empty-cell", text: t(key) }));
}

/** Under a table that got as many rows as it asked for: that older ones exist, and (below the API's most) a
 * button that asks for twice as many. */
function sayCut(list, count) {
  const cut = ui.cut[list];
  cut.hidden = count < shown[list];
  cut.querySelector("span").textContent = t("audit.latest_shown", { count: formatNumber(count) });
  ui.more[list].hidden = shown[list] >= MOST_ROWS;
}

for (const list of ["sessions", "actions"]) {
  ui.more[list].addEventListener("click", () => {
    shown[list] = Math.min(MOST_ROWS, shown[list] * 2);
    refresh();
  });
}

// Only the latest read's answer is shown: the timer's, asked for 100 rows and answered after "Show more"'s
// 200, took the rows just shown away again. The timer is set after each answer (not setInterval), so reads
// never pile up on a server slower than it, each making the one before it stale: none would be shown.
const readLists = latestRead((sessions, actions) => Promise.all([
  api("GET", `/api/console-sessions?limit=${sessions}`), api("GET", `/api/vm-actions?limit=${actions}`),
]));
let refreshTimer = null;

async function refresh() {
  clearTimeout(refreshTimer);
  let lists;
  try {
    lists = await readLists(shown.sessions, shown.actions);
  } catch (exc) {
    const box = exc instanceof ApiError ? exc.body : clientError("CLIENT_ERROR", String(exc));
    ui.error.replaceChildren(errorBox(box));
    refreshTimer = setTimeout(refresh, REFRESH_MS);
    return;
  }
  if (lists === STALE) return; // the latest read, still on its way, draws and sets the timer
  const [sessions, actions] = lists;
  // Every few seconds: a keyboard user on a row's button keeps it (the rows are drawn anew).
  redrawKeepingPlace(ui.sessions, "session", () => ui.sessions.replaceChildren(
    ...(sessions.length ? sessions.map(sessionRow) : [noneRow(9, "audit.no_sessions")])), ui.sessionTable);
  ui.actions.replaceChildren(...(actions.length ? actions.map(actionRow) : [noneRow(6, "audit.no_actions")]));
  sayCut("sessions", sessions.length);
  sayCut("actions", actions.length);
  ui.error.replaceChildren();
  const whose = user && user.role === "admin" ? "audit.note_everyone" : "audit.note_yours";
  ui.note.textContent = t(whose, { at: formatTime(new Date()) });
  refreshTimer = setTimeout(refresh, REFRESH_MS);
}

async function main() {
  user = await mountUserMenu();
  wireEndDialog();
  await refresh();
}

main();

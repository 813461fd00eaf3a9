// The VM list: a table updated in place when limen pushes a change (GET /api/events; polled every 2 s
// only while that stream is down), actions with progress and their result or error, a delete dialog,
// and a small screenshot of each running VM with its CPU % and memory (GET /api/stats/vms, every
// sampling interval). A VM's name opens its details page, Console its console.

import { api, ApiError } from "./api.js";
import {
  errorBox, formatMemory, h, placeOf, returnToPlace, spinner, STATE_LABELS, vmBadge, vmUptime,
} from "./dom.js";
import { showQuota } from "./quota.js";
import { mountUserMenu, remountUserMenu } from "./session.js";
import { formatPercent, formatSize } from "./stats-series.js";
import { STOP_FOLLOW_UP_MS, stillRunningText } from "./stop-follow-up.js";
import { POLL_MS, VmEvents } from "./vm-events.js";
import { deletedText, takeHandedOver } from "./vm-deleted.js";
import { showDiskChoice } from "./vm-delete-disks.js";
import { NO_CONSOLE_PLACEHOLDER, showConsoleLink } from "./vm-graphics.js";
import { actionOnVm, clientError, formatTime, lang, localizedError, t, tWith } from "./i18n.js";


const REFRESH_MS = POLL_MS;
const EVENT_REFRESH_MS = 100; // a burst of events (start = resumed + started) becomes one reload
// On a busy host changes never stop: reload the whole list at most this often (badges change at once).
const MIN_EVENT_REFRESH_GAP_MS = 1000;
const SCREENSHOT_MS = 5000;
const THUMB_WIDTH = 480; // the browser scales it down further, smoothly
const RESULT_SHOWN_MS = 5000;
const ACTIVE_STATES = new Set(["running", "paused", "shutting_down", "suspended"]);

// Labels from the catalogue: action.<name>.label / .busy / .done.
const ACTION_WIRE = {
  start: { method: "POST", path: "start" },
  stop: { method: "POST", path: "stop" },
  "force-stop": { method: "POST", path: "stop?force=true", key: "force_stop" },
  reboot: { method: "POST", path: "reboot" },
  reset: { method: "POST", path: "reboot?force=true" },
  delete: { method: "DELETE", path: "" },
};
const ACTIONS = Object.fromEntries(Object.entries(ACTION_WIRE).map(([name, wire]) => {
  const key = `action.${wire.key || name}`;
  return [name, { ...wire, label: t(`${key}.label`), busy: t(`${key}.busy`), done: t(`${key}.done`) }];
}));

const ui = {
  heading: document.querySelector("main h1"),
  rows: document.getElementById("vm-rows"),
  table: document.getElementById("vm-table"),
  empty: document.getElementById("empty"),
  note: document.getElementById("refresh-note"),
  loadError: document.getElementById("load-error"),
  toast: document.getElementById("toast"),
  result: document.getElementById("list-result"),
  dialog: document.getElementById("delete-dialog"),
  dialogText: document.getElementById("delete-text"),
  dialogDisks: document.getElementById("delete-disks"),
  dialogDiskList: document.getElementById("delete-disk-list"),
  dialogDisksReason: document.getElementById("delete-disks-reason"),
  dialogCancel: document.getElementById("delete-cancel"),
  force: document.getElementById("force-dialog"),
  forceTitle: document.getElementById("force-title"),
  forceText: document.getElementById("force-text"),
  forceOk: document.getElementById("force-ok"),
  forceCancel: document.getElementById("force-cancel"),
  dialogForm: document.getElementById("delete-form"),
};

/** uuid → row: {vm, tr, cells, buttons, status, pending, shotLoading, resultTimer} */
const rows = new Map();
let refreshTimer = null;
let deleteTarget = null;
let me = null; // who is signed in (GET /api/me), once known: the delete dialog's disk box depends on the role
let events = null;
let lastUpdated = null;
let lastRefreshAt = 0;
let figuresTimer = null;
const FIGURES_RETRY_MS = 30000;

// -- rows ------------------------------------------------------------------------------------------

function actionButton(row, action, extraClass = "") {
  return h("button", {
    class: `btn small ${extraClass}`.trim(),
    type: "button",
    dataset: { action },
    onclick: () => onAction(row, action),
    text: ACTIONS[action].label,
  });
}

function createRow(vm) {
  const row = { vm: null, pending: null, shotLoading: false, resultTimer: null, followUpTimer: null, hasShot: false,
                eventAt: 0, hostWhy: "" };
  const link = `/vms/${encodeURIComponent(vm.uuid)}`;
  row.thumb = h("a", { class: "thumb", href: link });
  row.nameLink = h("a", { class: "clip", href: link, dataset: { role: "details" } }); // long names: CSS
  row.uuid = h("span", { class: "uuid mono" });
  row.badge = h("span");
  row.figures = h("span", { class: "vm-figures" });
  row.cells = {
    state: h("td", { "data-label": t("col.state") }, row.badge, row.figures),
    vcpus: h("td", { class: "num", "data-label": t("col.vcpus") }),
    memory: h("td", { class: "num", "data-label": t("col.memory") }),
    vnc: h("td", { class: "num", "data-label": t("col.vnc_port") }),
    uptime: h("td", { class: "num", "data-label": t("col.uptime") }),
  };
  row.console = h("a", { class: "btn small primary", dataset: { action: "console" }, text: t("console.title") });
  row.buttons = {
    start: actionButton(row, "start"),
    stop: actionButton(row, "stop"),
    reboot: actionButton(row, "reboot"),
    "force-stop": actionButton(row, "force-stop"),
    reset: actionButton(row, "reset"),
    delete: actionButton(row, "delete", "danger"),
  };
  row.moreSummary = h("summary", { class: "btn small", text: t("list.more") });
  row.more = h(
    "details",
    { class: "more" },
    row.moreSummary,
    h("div", { class: "more-menu" }, row.buttons["force-stop"], row.buttons.reset, row.buttons.delete),
  );
  row.moreSummary.addEventListener("click", (event) => {
    if (row.moreSummary.getAttribute("aria-disabled") === "true") event.preventDefault();
  });
  // Tabbing out of the open menu closes it: left open, it covered the next row's buttons.
  row.more.addEventListener("focusout", (event) => {
    if (row.more.open && !row.more.contains(event.relatedTarget)) row.more.open = false;
  });
  row.status = h("div", { class: "row-status", "aria-live": "polite" });
  row.tr = h(
    "tr",
    { dataset: { uuid: vm.uuid } },
    h("td", { class: "cell-thumb", "data-label": t("col.screen") }, row.thumb),
    h("td", { class: "vm-name", "data-label": t("col.name") }, row.nameLink, row.uuid),
    row.cells.state,
    row.cells.vcpus,
    row.cells.memory,
    row.cells.vnc,
    row.cells.uptime,
    h(
      "td",
      { class: "cell-actions", "data-label": t("col.actions") },
      h("div", { class: "actions" }, row.console, row.buttons.start, row.buttons.stop, row.buttons.reboot, row.more),
      row.status,
    ),
  );
  updateRow(row, vm);
  return row;
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function updateRow(row, vm) {
  const previous = row.vm;
  row.vm = vm;
  row.tr.dataset.vmName = vm.name;
  row.tr.dataset.state = vm.state;
  setText(row.nameLink, vm.name);
  row.nameLink.title = vm.name; // cut short on screen when long: whole on hover (and on focus, by CSS)
  setText(row.uuid, vm.uuid);
  const stale = vm.host_available === false;
  if (!previous || previous.state !== vm.state || (previous.host_available === false) !== stale || !row.badge.firstChild) {
    row.badge.replaceChildren(vmBadge(vm));
  }
  if (!ACTIVE_STATES.has(vm.state)) showFigures(row, null);
  setText(row.cells.vcpus, String(vm.vcpus));
  setText(row.cells.memory, formatMemory(vm.memory_mib));
  const port = vm.vnc ? (vm.vnc.port ?? "—") : t("list.vnc_none");
  setText(row.cells.vnc, String(port));
  row.cells.vnc.title = vm.vnc ? t("list.vnc_on", { host: vm.vnc.host }) : t("list.no_vnc");
  const uptime = vmUptime(vm);
  setText(row.cells.uptime, uptime.text);
  row.cells.uptime.title = uptime.title ?? "";
  row.thumb.setAttribute("aria-label", t("list.open_details", { name: vm.name }));
  row.moreSummary.setAttribute("aria-label", t("list.more_for", { name: vm.name }));
  row.console.setAttribute("aria-label", t("list.open_console", { name: vm.name }));
  for (const [action, button] of Object.entries(row.buttons)) {
    button.setAttribute("aria-label", actionOnVm(ACTIONS[action].label, vm.name));
  }
  const active = ACTIVE_STATES.has(vm.state);
  row.buttons.start.hidden = active;
  row.buttons.stop.hidden = !active;
  if (row.console.title === row.hostWhy) row.console.removeAttribute("title"); // the host answers again
  showConsoleLink(row.console, vm, `/vms/${encodeURIComponent(vm.uuid)}/console`);
  if (stale) { // as the details page's "Start and open console": nothing to open
    row.console.removeAttribute("href");
    row.console.setAttribute("aria-disabled", "true");
  }
  applyEnabled(row);
  const hostChanged = (previous?.host_available === false) !== stale;
  if (!vm.vnc) {
    if (!previous || previous.vnc || !row.thumb.firstChild) showThumbPlaceholder(row, NO_CONSOLE_PLACEHOLDER);
  } else if (stale) { // its host's last word (e.g. "Stopped") beside "Host unavailable" would contradict it
    if (hostChanged || row.hasShot || !row.thumb.firstChild) showThumbPlaceholder(row);
  } else if (!active) {
    if (row.hasShot || !row.thumb.firstChild || previous?.state !== vm.state || hostChanged) showThumbPlaceholder(row);
  } else if (!previous || !ACTIVE_STATES.has(previous.state) || hostChanged) {
    showThumbPlaceholder(row, t("common.loading"));
    loadScreenshot(row);
  }
}

function applyEnabled(row) {
  const active = ACTIVE_STATES.has(row.vm.state);
  // A VM whose host does not answer: every action would be HYPERVISOR_UNAVAILABLE (503), as on its details page.
  const blocked = row.pending !== null || row.vm.host_available === false;
  row.buttons.start.disabled = blocked || active;
  row.buttons.stop.disabled = blocked || !active || row.vm.state === "shutting_down";
  row.buttons.reboot.disabled = blocked || row.vm.state !== "running";
  row.buttons["force-stop"].disabled = blocked || !active;
  row.buttons.reset.disabled = blocked || row.vm.state !== "running";
  row.buttons.delete.disabled = blocked;
  // A control disabled for the host says why on hover; the others keep no title (their label says it all).
  const why = row.vm.host_available === false ? t("list.host_unavailable_why", { host: row.vm.host }) : "";
  for (const control of [...Object.values(row.buttons), row.moreSummary, row.console]) {
    if (why) control.title = why;
    else if (row.hostWhy && control.title === row.hostWhy) control.removeAttribute("title");
  }
  row.hostWhy = why;
  // A <summary> cannot be disabled: it says so (and looks it, limen.css), and its clicks open nothing.
  if (blocked) {
    row.moreSummary.setAttribute("aria-disabled", "true");
    row.more.open = false;
  } else {
    row.moreSummary.removeAttribute("aria-disabled");
  }
}

function render(vms, askedAt = Date.now()) {
  const seen = new Set(vms.map((vm) => vm.uuid));
  // Rows of VMs gone first: placed before, every row after a vanished one was moved up, and moving a row
  // drops the focus in it (and closes its open menu).
  for (const [uuid, row] of rows) {
    if (!seen.has(uuid) && row.pending === null) {
      const place = row.tr.contains(document.activeElement) ? placeOf(document.activeElement, "uuid") : null;
      row.tr.remove();
      rows.delete(uuid);
      if (place) returnToPlace(place, ui.rows, ui.heading);
    }
  }
  let index = 0;
  for (const vm of vms) {
    let row = rows.get(vm.uuid);
    if (row) {
      // An answer asked for before the row's last pushed change is older than it: keep the pushed state
      // (the reload that change scheduled brings the rest).
      updateRow(row, row.eventAt > askedAt ? { ...vm, state: row.vm.state } : vm);
    } else {
      row = createRow(vm);
      rows.set(vm.uuid, row);
    }
    // Move a row only when it is out of place, so focus and open menus survive refreshes.
    if (ui.rows.children[index] !== row.tr) ui.rows.insertBefore(row.tr, ui.rows.children[index] || null);
    index += 1;
  }
  ui.empty.hidden = vms.length > 0;
  ui.table.hidden = vms.length === 0;
}

// -- screenshots -----------------------------------------------------------------------------------

function showThumbPlaceholder(row, text = null) {
  row.hasShot = false;
  const label = text ?? (row.vm.host_available === false ? t("host.unavailable")
    : STATE_LABELS[row.vm.state] || t("vm.no_picture"));
  row.thumb.replaceChildren(h("span", { text: label }));
}

function loadScreenshot(row) {
  if (row.shotLoading || !ACTIVE_STATES.has(row.vm.state) || !row.vm.vnc || row.vm.host_available === false) return;
  row.shotLoading = true;
  const vm = row.vm;
  const img = new Image();
  img.alt = t("list.screen_of", { name: vm.name });
  img.decoding = "async";
  img.onload = () => {
    row.shotLoading = false;
    if (!ACTIVE_STATES.has(row.vm.state)) return;
    row.thumb.replaceChildren(img);
    row.hasShot = true;
  };
  img.onerror = () => {
    row.shotLoading = false;
    if (!row.hasShot && ACTIVE_STATES.has(row.vm.state)) showThumbPlaceholder(row, t("list.no_picture_yet"));
  };
  img.src = `/api/vms/${encodeURIComponent(vm.uuid)}/screenshot?max_width=${THUMB_WIDTH}&t=${Date.now()}`;
}

function refreshScreenshots() {
  if (document.visibilityState === "visible") {
    for (const row of rows.values()) loadScreenshot(row);
  }
}

// -- actions ---------------------------------------------------------------------------------------

function setRowStatus(row, ...children) {
  clearTimeout(row.resultTimer);
  row.status.className = "row-status";
  row.status.replaceChildren(...children);
}

// Forced actions ask first, as on the details page (same words): one click in a menu left open over the
// next row reset another VM.
const CONFIRMED = { "force-stop": "force_stop", reset: "reset" };
let forceTarget = null; // [row, action] while the force dialog is open

function onAction(row, action) {
  row.more.open = false;
  if (action === "delete") {
    openDeleteDialog(row);
    return;
  }
  if (CONFIRMED[action]) {
    openForceDialog(row, action);
    return;
  }
  runAction(row, action);
}

function openForceDialog(row, action) {
  const key = CONFIRMED[action];
  const verb = t(`details.confirm.${key}.title`);
  forceTarget = [row, action];
  ui.forceTitle.textContent = t("details.confirm_q", { title: verb });
  ui.forceText.replaceChildren(h("strong", { class: "vm-ref", text: row.vm.name }), h("br"),
                               t(`details.confirm.${key}.text`));
  ui.forceOk.textContent = verb;
  ui.forceOk.setAttribute("aria-label", t("list.action_label", { action: verb, name: row.vm.name }));
  ui.force.returnValue = "";
  ui.force.showModal();
  ui.forceCancel.focus();
}

async function runAction(row, action, { deleteDisks = false } = {}) {
  const spec = ACTIONS[action];
  const vm = row.vm;
  // The row's buttons are disabled while it runs (a disabled button drops the focus to <body>), and a
  // delete removes the row: the keyboard comes back to the row, or to the one that took its place.
  const place = placeOf(row.tr.querySelector(`[data-action="${action}"]`) || row.buttons.start, "uuid");
  clearTimeout(row.followUpTimer);
  row.pending = action;
  applyEnabled(row);
  setRowStatus(row, spinner(), spec.busy);
  row.tr.dataset.pending = action;
  const base = `/api/vms/${encodeURIComponent(vm.uuid)}`;
  const path = action === "delete" ? `${base}?delete_disks=${deleteDisks}` : `${base}/${spec.path}`;
  try {
    const result = await api(spec.method, path);
    row.pending = null;
    delete row.tr.dataset.pending;
    if (action === "delete") {
      announce(deletedText(vm.name, result));
      row.tr.remove();
      rows.delete(vm.uuid);
      ui.empty.hidden = rows.size > 0;
      ui.table.hidden = rows.size === 0;
      returnToPlace(place, ui.rows, ui.heading);
    } else {
      if (result && result.uuid) updateRow(row, result);
      applyEnabled(row);
      setRowStatus(row, `✓ ${spec.done}`);
      row.status.classList.add("ok");
      row.resultTimer = setTimeout(() => row.status.replaceChildren(), RESULT_SHOWN_MS);
      if (action === "stop") row.followUpTimer = setTimeout(() => followUpStop(row), STOP_FOLLOW_UP_MS);
      returnToPlace(place, ui.rows, ui.heading);
    }
  } catch (exc) {
    row.pending = null;
    delete row.tr.dataset.pending;
    applyEnabled(row);
    returnToPlace(place, ui.rows, ui.heading);
    const body = exc instanceof ApiError ? exc.body
      : clientError("CLIENT_ERROR", `${spec.label}: ${exc}`);
    const dismiss = h("button", {
      class: "btn small dismiss", type: "button", text: t("list.dismiss"),
      "aria-label": t("list.dismiss_error", { name: vm.name }), onclick: () => row.status.replaceChildren(),
    });
    // The title translated first, then prefixed (errorBox translated it again, by its code, and the Korean
    // page lost which VM and action failed).
    const shown = localizedError(body);
    setRowStatus(row, errorBox({ ...shown, error: `${actionOnVm(spec.label, vm.name)}: ${shown.error}` },
                               { actions: [dismiss], localize: false }));
  }
  scheduleRefresh(0);
}

/** A guest may ignore the ACPI shutdown Stop asks for (GRUB does): if the VM still runs a while later, say
 * so and offer Force stop. */
async function followUpStop(row) {
  let vm;
  try {
    vm = await api("GET", `/api/vms/${encodeURIComponent(row.vm.uuid)}`);
  } catch {
    return; // gone or unreachable: the list's own refresh says so
  }
  if (!rows.has(vm.uuid) || row.pending !== null || !ACTIVE_STATES.has(vm.state)) return;
  updateRow(row, vm);
  const force = h("button", {
    class: "btn small danger", type: "button", dataset: { action: "follow-up-force-stop" }, text: t("action.force_stop.label"),
    "aria-label": t("list.action_label", { action: t("action.force_stop.label"), name: vm.name }), onclick: () => onAction(row, "force-stop"),
  });
  const dismiss = h("button", {
    class: "btn small", type: "button", text: t("list.dismiss"), "aria-label": t("list.dismiss_note", { name: vm.name }),
    onclick: () => row.status.replaceChildren(),
  });
  setRowStatus(row, h("span", { class: "follow-up", dataset: { followUp: "stop" } },
                      stillRunningText(STOP_FOLLOW_UP_MS), force, dismiss));
  row.status.classList.add("warn");
}

/** Says a delete's result: to screen readers once (the toast), and on screen until dismissed or replaced by
 * the next one (not in the refresh note: the list's next "updated … live" line wrote over it at once). */
function announce(text) {
  ui.toast.textContent = text;
  const dismiss = h("button", {
    class: "btn small", type: "button", text: t("list.dismiss"), "aria-label": t("list.dismiss_result"),
    onclick: () => {
      ui.result.replaceChildren();
      ui.heading.setAttribute("tabindex", "-1"); // the button is gone: the keyboard goes back to the page's top
      ui.heading.focus();
    },
  });
  ui.result.replaceChildren(h("div", { class: "notice ok list-result", dataset: { result: "deleted" } },
                              h("span", { text }), dismiss));
}

function openDeleteDialog(row) {
  deleteTarget = row;
  const vm = row.vm;
  // Filled once the VM's snapshots are counted: deleting the VM deletes them too, and the dialog says so.
  const snapshotsNote = h("span", { id: "delete-snapshots" });
  ui.dialogText.replaceChildren(...tWith("list.delete_q", { name: h("strong", { class: "vm-ref", text: vm.name }) }),
    ACTIVE_STATES.has(vm.state) ? t("list.delete_running") : "", snapshotsNote);
  countSnapshots(row, snapshotsNote);
  const disks = (vm.disks || []).filter((d) => d.device === "disk" && d.path);
  showDiskChoice({ box: ui.dialogDisks, reason: ui.dialogDisksReason }, me, disks.length);
  ui.dialogDiskList.textContent = disks.length === 0 ? t("list.no_disks")
    : `(${disks.map((d) => d.path).join(", ")})`;
  ui.dialog.returnValue = "";
  ui.dialog.showModal();
  ui.dialogCancel.focus();
}

/** Says in the open delete dialog how many snapshots go with the VM; says nothing if they cannot be
 *  counted (the delete itself still removes them), or if the dialog has moved on to another VM. */
async function countSnapshots(row, note) {
  let snapshots;
  try {
    snapshots = await api("GET", `/api/vms/${encodeURIComponent(row.vm.uuid)}/snapshots`);
  } catch {
    return;
  }
  if (deleteTarget !== row || !Array.isArray(snapshots) || snapshots.length === 0) return;
  note.textContent = t(snapshots.length === 1 ? "details.snapshot_goes" : "details.snapshots_go",
    { count: snapshots.length });
  note.dataset.count = String(snapshots.length);
}

function wireDialog() {
  ui.forceCancel.addEventListener("click", () => ui.force.close("cancel"));
  ui.force.addEventListener("close", () => {
    const [row, action] = forceTarget || [];
    forceTarget = null;
    if (row && ui.force.returnValue === "confirm") {
      if (!goneMeanwhile(row)) runAction(row, action);
    } else if (row) row.moreSummary.focus();
  });
  ui.dialogCancel.addEventListener("click", () => ui.dialog.close("cancel"));
  ui.dialog.addEventListener("close", () => {
    const row = deleteTarget;
    deleteTarget = null;
    if (row && ui.dialog.returnValue === "delete") {
      if (!goneMeanwhile(row)) runAction(row, "delete", { deleteDisks: ui.dialogDisks.checked });
    } else if (row) {
      row.moreSummary.focus();
    }
  });
}

/** Whether the row a dialog asked about left the list while it was open (the VM was deleted elsewhere): then
 * that is said where the page says results; the action went to the removed row, and nothing showed. */
function goneMeanwhile(row) {
  if (rows.get(row.vm.uuid) === row) return false;
  announce(t("list.gone_meanwhile", { name: row.vm.name }));
  return true;
}

// -- CPU and memory figures ------------------------------------------------------------------------

function showFigures(row, latest) {
  const cpu = latest ? latest.cpu_vcpu_percent : null;
  const memory = latest ? (latest.memory_used_bytes ?? latest.rss_bytes) : null;
  const text = cpu === null && memory === null ? "" : `CPU ${formatPercent(cpu, lang)} · ${formatSize(memory, lang)}`;
  setText(row.figures, text);
  row.figures.title = text ? t("list.figures_title") : "";
}

async function refreshFigures() {
  clearTimeout(figuresTimer);
  let delay = FIGURES_RETRY_MS;
  if (document.visibilityState === "visible") {
    try {
      const body = await api("GET", "/api/stats/vms", undefined, { timeoutMs: 10000 });
      for (const [uuid, row] of rows) showFigures(row, ACTIVE_STATES.has(row.vm.state) ? body.vms[uuid] : null);
      if (body.enabled) delay = Math.max(1000, body.interval * 1000);
    } catch {
      // The figures are extras: the list's own error handling speaks for the server.
    }
  }
  figuresTimer = setTimeout(refreshFigures, delay);
}

// -- refreshing ------------------------------------------------------------------------------------

function scheduleRefresh(delay = REFRESH_MS) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, delay);
}

function describeUpdates() {
  if (lastUpdated === null) return;
  const how = events && events.live ? t("list.live") : t("list.polling", { seconds: REFRESH_MS / 1000 });
  ui.note.textContent = t(lastUpdated.count === 1 ? "list.updated_one" : "list.updated",
                          { count: lastUpdated.count, at: lastUpdated.at, how });
}

/** The usage bars follow the list; a quota that cannot be read leaves the last bars shown. */
async function refreshQuota() {
  try {
    showQuota(document.getElementById("quota"), await api("GET", "/api/quota", undefined, { timeoutMs: 10000 }));
  } catch {
    // the list's own error says what is wrong
  }
}

async function refresh() {
  clearTimeout(refreshTimer);
  refreshTimer = null;
  lastRefreshAt = Date.now();
  const askedAt = lastRefreshAt;
  try {
    const vms = await api("GET", "/api/vms", undefined, { timeoutMs: 10000 });
    render(vms, askedAt);
    ui.loadError.replaceChildren();
    refreshQuota();
    lastUpdated = { count: vms.length, at: formatTime(new Date()) };
    describeUpdates();
  } catch (exc) {
    const body = exc instanceof ApiError ? exc.body
      : { error: t("list.cannot_load"), code: "CLIENT_ERROR", details: String(exc), message: "" };
    const shown = localizedError(body);
    ui.loadError.replaceChildren(h("div", { class: "notice error" }, errorBox({
      ...shown,
      error: t("list.cannot_load_because", { error: shown.error }),
      message: `${shown.message || ""} ${t("list.retrying", { seconds: REFRESH_MS / 1000 })}`.trim(),
    }, { localize: false })));
    ui.note.textContent = t("list.not_updated");
    if (events && events.live) scheduleRefresh(); // while polling, the next poll retries anyway
  }
}

/** A change pushed by limen: its new state shows at once, the rest of the row with the reload. */
function onVmEvent(change) {
  const row = rows.get(change.uuid);
  if (row && change.state && row.pending === null) {
    row.eventAt = Date.now();
    if (row.vm.state !== change.state) updateRow(row, { ...row.vm, state: change.state, uptime_seconds: undefined });
  }
  if (refreshTimer === null) {
    scheduleRefresh(Math.max(EVENT_REFRESH_MS, lastRefreshAt + MIN_EVENT_REFRESH_GAP_MS - Date.now()));
  }
}

function onStreamStatus(live) {
  document.body.dataset.events = live ? "live" : "polling";
  describeUpdates();
}

function closeMenusOnOutsideClick(event) {
  for (const row of rows.values()) {
    if (row.more.open && !row.more.contains(event.target)) row.more.open = false;
  }
}

function closeMenusOnEscape(event) {
  if (event.key !== "Escape") return;
  for (const row of rows.values()) {
    if (row.more.open) {
      row.more.open = false;
      row.moreSummary.focus();
    }
  }
}

wireDialog();
document.addEventListener("click", closeMenusOnOutsideClick);
document.addEventListener("keydown", closeMenusOnEscape);
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  scheduleRefresh(0);
  refreshFigures();
});
setInterval(refreshScreenshots, SCREENSHOT_MS);
mountUserMenu().then((user) => { me = user; });
document.body.dataset.events = "polling";
// A delete made on a details page, which came back here: said once the list is shown.
const handedOver = takeHandedOver();
refresh().then(() => {
  if (handedOver) announce(handedOver);
  refreshFigures();
});
events = new VmEvents({
  reload: () => scheduleRefresh(0),
  onEvent: onVmEvent,
  onStatus: onStreamStatus,
  onEnded: () => remountUserMenu().then((user) => { me = user; }),
}).start();

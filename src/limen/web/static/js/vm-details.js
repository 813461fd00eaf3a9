// A VM's details page (/vms/{id}): state, facts, disks, CD-ROM, boot order, network, a live screenshot,
// its recent actions, and every action. Opening the page never starts the VM: it only reads
// (GET /api/vms/{id}, /api/vm-actions?vm=, /api/isos, the screenshot); only Start and "Start and open
// console" start it. Force stop, force reset and delete ask first, naming the VM. The page follows the
// VM through GET /api/events (polling every 2 s only while that stream is down).
//
// Fields the server may not send yet (allocation, bus, cdrom, nics, pending_restart) show as "—". A running
// VM's boot order and settings may be older than its definition: the definition's wait in `pending`.

import { api, ApiError } from "./api.js";
import {
  errorBox, formatBytes, formatDuration, formatMemory, h, spinner, STATE_LABELS, takeForm, vmBadge, vmUptime,
} from "./dom.js";
import { actionDetailsText, actionResultText } from "./action-details.js";
import { latestRead, STALE } from "./latest-read.js";
import { mountUserMenu, remountUserMenu } from "./session.js";
import { VmEvents } from "./vm-events.js";
import { OwnerControl } from "./vm-owner.js";
import { mountSnapshots } from "./vm-snapshots.js";
import { deletedText, handToList } from "./vm-deleted.js";
import { showDiskChoice } from "./vm-delete-disks.js";
import { STOP_FOLLOW_UP_MS, stillRunningText } from "./stop-follow-up.js";
import { NO_CONSOLE_PLACEHOLDER, NO_CONSOLE_REASON, SERIAL_ONLY, showConsoleLink } from "./vm-graphics.js";
import { actionName, actionOnVm, formatDateTime, formatTime, has, lang, localizedError, ruleText, t } from "./i18n.js";

const SCREENSHOT_MS = 3000;
const SCREEN_WIDTH = 800;
const ACTIONS_SHOWN = 15;
const RESULT_SHOWN_MS = 5000;
const EVENT_RELOAD_MS = 100;
const ACTIVE_STATES = new Set(["running", "paused", "shutting_down", "suspended"]);
const BOOT_LABELS = { cdrom: "CD-ROM", hd: t("details.boot_disk") };
const UPTIME_TICK_MS = 1000;

// Texts from the catalogue (action.<name>.*, details.confirm.*); the same words as on the VM list.
function action(name, wire, { label = null, confirm = null } = {}) {
  return {
    ...wire, label: label || t(`action.${name}.label`), busy: t(`action.${name}.busy`), done: t(`action.${name}.done`),
    confirm: confirm && {
      name: confirm, title: t(`details.confirm.${confirm}.title`), verb: t(`details.confirm.${confirm}.title`),
      text: t(`details.confirm.${confirm}.text`),
    },
  };
}
const ACTIONS = {
  start: action("start", { method: "POST", path: "start" }),
  "start-console": action("start", { method: "POST", path: "start" }, { label: t("details.start_console") }),
  stop: action("stop", { method: "POST", path: "stop" }),
  "force-stop": action("force_stop", { method: "POST", path: "stop?force=true" },
                       { label: t("details.force_stop_label"), confirm: "force_stop" }),
  reboot: action("reboot", { method: "POST", path: "reboot" }),
  reset: action("reset", { method: "POST", path: "reboot?force=true" },
                { label: t("details.force_reset_label"), confirm: "reset" }),
  delete: action("delete", { method: "DELETE", path: "" }, { confirm: "delete" }),
};

const $ = (id) => document.getElementById(id);
const ui = {
  name: $("vm-name"), state: $("vm-state"), liveNote: $("live-note"), loadError: $("load-error"),
  pending: $("pending-notice"), actions: $("vm-actions"), actionStatus: $("action-status"),
  screenBox: $("screen-box"), screenNote: $("screen-note"), facts: $("facts"),
  isoSelect: $("iso-select"), mediaInsert: $("media-insert"), mediaEject: $("media-eject"),
  mediaCurrent: $("media-current"), bootSelect: $("boot-select"), bootSave: $("boot-save"),
  bootCurrent: $("boot-current"), finishInstall: $("finish-install"), finishInstallBtn: $("finish-install-btn"),
  finishInstallText: $("finish-install-text"),
  mediaStatus: $("media-status"), settingsForm: $("settings-form"), settingsSave: $("settings-save"), setName: $("set-name"),
  setVcpus: $("set-vcpus"), setMemory: $("set-memory"), setAutostart: $("set-autostart"),
  settingsStatus: $("settings-status"), diskRows: $("disk-rows"), diskTable: $("disk-table"),
  noDisks: $("no-disks"), diskStatus: $("disk-status"), nics: $("nics"), actionRows: $("action-rows"),
  actionTable: $("action-table"), noActions: $("no-actions"),
  confirm: $("confirm-dialog"), confirmTitle: $("confirm-title"), confirmText: $("confirm-text"),
  confirmDisksRow: $("confirm-disks-row"), confirmDisks: $("confirm-disks"),
  confirmDiskList: $("confirm-disk-list"), confirmDisksReason: $("confirm-disks-reason"), confirmOk: $("confirm-ok"), confirmCancel: $("confirm-cancel"),
  resize: $("resize-dialog"), resizeText: $("resize-text"), resizeSize: $("resize-size"),
  resizeError: $("resize-error"), resizeCancel: $("resize-cancel"),
};

const vmId = decodeURIComponent(window.location.pathname.replace(/\/+$/, "").split("/").pop() || "");
let vm = null;
let gone = false;
let busy = null;
// The cards with a request on its way ("media", "settings", "disks"): their controls stay disabled from the
// press until the page shows the VM reloaded after the answer. A second press sent the same change twice, and
// Resize pressed again proposed a size from the capacity before.
const cardsBusy = new Set();
let isos = null;
let events = null;
let reloadTimer = null;
let lastEventAt = 0;
let shotLoading = false;
let confirmAction = null;
let me = null; // who is signed in (GET /api/me), once known: the delete dialog's disk box depends on the role
let resizeTarget = null;
let settingsShownFor = null;
// The uptime the server last reported and when: the Overview counts on from there between reloads.
let uptimeSince = null;
let stopFollowUpTimer = null;
const buttons = {};
const owner = new OwnerControl($("owner-control"), { onChanged: (changed) => render(changed) });
const snapshots = mountSnapshots(); // its own section: tree, take, revert, delete

// -- helpers ---------------------------------------------------------------------------------------

const apiPath = (suffix = "") => `/api/vms/${encodeURIComponent(vm ? vm.uuid : vmId)}${suffix}`;
const dash = (value) => (value === null || value === undefined || value === "" ? "—" : String(value));
const baseName = (path) => (path ? String(path).split("/").pop() : null);
const bootLabel = (order) => order.map((d) => BOOT_LABELS[d] || d).join(t("details.boot_then"));

/** The boot order the VM starts with next time: its definition's, which waits in ``pending`` while it runs. */
function nextBootOrder(current) {
  const waiting = current.pending && current.pending.boot_order;
  return Array.isArray(waiting) ? waiting : current.boot_order || [];
}

/** What waits for the next start, in words: "boot order: disk only; memory: 512 MiB". */
function describePending(pending) {
  const words = {
    vcpus: (v) => t("details.pending_vcpus", { value: v }),
    memory_mib: (v) => t("details.pending_memory", { value: formatMemory(v) }),
    boot_order: (v) => t("details.pending_boot", { value: bootChoiceLabel(v) }),
  };
  return Object.entries(pending || {}).map(([key, value]) => (words[key] ? words[key](value)
    : `${key}: ${Array.isArray(value) ? value.join(", ") : value}`)).join("; ");
}

/** The boot order as the select names it, for the middle of a sentence: "disk only", "CD-ROM, then disk". */
function bootChoiceLabel(order) {
  const option = [...ui.bootSelect.options].find((o) => o.value === order.join(","));
  const text = option ? option.textContent : bootLabel(order);
  return lang === "en" && /^[A-Z][a-z]/.test(text) ? text[0].toLowerCase() + text.slice(1) : text;
}

function bodyOf(exc, what) {
  return exc instanceof ApiError ? exc.body
    : { error: t("details.failed", { what }), code: "CLIENT_ERROR", details: String(exc), message: t("details.reload") };
}

function showStatus(el, kind, ...children) {
  clearTimeout(el.resultTimer);
  el.className = `row-status ${kind || ""}`.trim();
  el.replaceChildren(...children);
  if (kind === "ok") el.resultTimer = setTimeout(() => el.replaceChildren(), RESULT_SHOWN_MS);
}

// The settings form's fields by the name the API gives them (a validation error's `field`).
const FIELD_LABELS = { name: "col.name", vcpus: "col.vcpus", memory_mib: "field.memory_mib" };

function showError(el, exc, what, actions = []) {
  const body = bodyOf(exc, what);
  const dismiss = h("button", { class: "btn small dismiss", type: "button", text: t("list.dismiss"),
                                onclick: () => el.replaceChildren() });
  const shown = localizedError(body);
  // The fields refused, each named with what is wrong, where the advice only says "correct the fields named
  // in the details" (folded away): a Korean page words limen's rules, an English one shows the server's
  // words; the page's general advice too if a refusal has no words in the page's language.
  const refusals = exc instanceof ApiError ? exc.fields : [];
  const wording = (refusal) => ruleText(refusal.rule) || (lang === "en" ? refusal.details : null);
  const worded = refusals.filter(wording)
    .map((refusal) => `${FIELD_LABELS[refusal.field] ? t(FIELD_LABELS[refusal.field]) : refusal.field}: `
      + wording(refusal));
  if (worded.length && worded.length < refusals.length) worded.push(shown.message);
  const message = worded.length ? worded.join(" ") : shown.message;
  showStatus(el, "", errorBox({ ...shown, message, error: `${what}: ${shown.error}` },
                              { actions: [...actions, dismiss], localize: false }));
}

let lastRefusal = null; // the error of the last request that failed (its `fields`, for the settings form)

/** Runs a request with progress in ``el``; resolves to its result, or null after showing its error. */
async function request(el, what, busyText, method, path, body) {
  showStatus(el, "", spinner(), busyText);
  lastRefusal = null;
  try {
    const result = await api(method, path, body);
    return result ?? {};
  } catch (exc) {
    lastRefusal = exc;
    showError(el, exc, what);
    return null;
  }
}

// -- rendering -------------------------------------------------------------------------------------

function fact(label, value, extra = {}) {
  return [h("dt", { text: label }), h("dd", { ...extra, text: value })];
}

function cdromIso(current) {
  if (current.cdrom !== undefined) return current.cdrom ? current.cdrom.iso : null;
  return baseName(current.iso);
}

/** A page opened by the VM's name follows its renames (here or elsewhere): reloaded, the old name found nothing. */
function followRename(current) {
  const shown = decodeURIComponent(window.location.pathname.replace(/\/+$/, "").split("/").pop() || "");
  if (shown === current.uuid || shown === current.name) return;
  const url = `/vms/${encodeURIComponent(current.name)}${window.location.search}${window.location.hash}`;
  window.history.replaceState(window.history.state, "", url);
}

function render(current) {
  const previous = vm;
  vm = current;
  document.title = `${vm.name} — limen`;
  followRename(vm);
  const graphs = document.getElementById("resource-graphs");
  graphs.dataset.vm = vm.uuid; // the graphs ask by it (vm-graphs.js)
  // Without an interface the network graph never has a figure: it says why (vm-graphs.js).
  if (vm.nics === undefined) delete graphs.dataset.nics;
  else graphs.dataset.nics = String(vm.nics.length);
  ui.name.textContent = vm.name;
  ui.name.title = vm.name;
  document.body.dataset.state = vm.state;
  const stale = vm.host_available === false;
  if (!previous || previous.state !== vm.state || (previous.host_available === false) !== stale || !ui.state.firstChild) {
    ui.state.replaceChildren(vmBadge(vm));
  }
  const active = ACTIVE_STATES.has(vm.state);
  const vnc = vm.vnc ? (vm.vnc.port ?? t("details.vnc_unassigned")) : t("details.vnc_none");
  const uptime = vmUptime(vm);
  ui.facts.replaceChildren(
    ...fact(t("col.state"), lang === "en" ? vm.state.replace("_", " ") : (STATE_LABELS[vm.state] || vm.state),
      { id: "fact-state" }),
    ...fact(t("col.uptime"), uptime.text, { id: "fact-uptime", title: uptime.title }),
    ...fact(t("details.owner"), vm.owner ?? t("details.unowned")),
    ...fact(t("details.host"), vm.host ? `${vm.host}${stale ? ` — ${t("host.unavailable")}` : ""}` : "—", { id: "fact-host" }),
    ...fact(t("col.vcpus"), String(vm.vcpus)),
    ...fact(t("col.memory"), formatMemory(vm.memory_mib)),
    ...fact(t("col.vnc_port"), String(vnc)),
    ...fact(t("details.autostart"), vm.autostart ? t("details.yes") : t("details.no")),
    ...fact(t("col.created"), formatDateTime(vm.created_at)),
    ...fact("UUID", vm.uuid, { class: "mono uuid-value" }),
  );
  owner.show(vm);
  uptimeSince = active && vm.uptime_seconds != null ? { seconds: vm.uptime_seconds, at: Date.now() } : null;
  renderPending();
  renderMedia();
  renderSettings(previous);
  renderDisks();
  renderNics();
  snapshots.show(vm);
  applyEnabled();
  showConsoleLink(ui.screenBox, vm, `/vms/${encodeURIComponent(vm.uuid)}/console`);
  ui.screenBox.removeAttribute("aria-disabled"); // the box is no button: only its link goes
  ui.screenBox.setAttribute("aria-label", vm.vnc ? t("list.open_console", { name: vm.name })
    : vm.serial_console ? SERIAL_ONLY : NO_CONSOLE_REASON);
  if (!vm.vnc) {
    showScreenPlaceholder(NO_CONSOLE_PLACEHOLDER);
    ui.screenBox.dataset.shot = "no-graphics";
  } else if (!active) {
    showScreenPlaceholder(vm.state === "stopped" ? t("details.stopped_no_picture") : t("vm.no_picture"));
  } else if (!previous || !ACTIVE_STATES.has(previous.state)) {
    showScreenPlaceholder(t("common.loading"));
    loadScreenshot();
  }
}

function renderPending() {
  const pending = vm.pending_restart === true;
  ui.pending.hidden = !pending;
  if (pending) {
    const what = vm.pending && typeof vm.pending === "object" ? describePending(vm.pending) : "";
    ui.pending.replaceChildren(h("strong", { text: t("details.restart_pending") }),
      what ? t("details.pending_what", { what }) : t("details.pending"));
  }
}

function hasCdromDrive(current) {
  const drive = (current.disks || []).some((d) => d.device === "cdrom");
  return current.cdrom !== undefined ? current.cdrom !== null || drive : drive;
}

function renderMedia() {
  const iso = cdromIso(vm);
  ui.mediaCurrent.textContent = !hasCdromDrive(vm) ? t("details.no_cdrom")
    : iso ? t("details.inserted", { iso }) : t("details.cd_empty");
  ui.mediaCurrent.dataset.iso = iso || "";
  fillIsoSelect(iso);
  // The select shows (and sets) the definition's order; a running VM may still run with an older one.
  const order = vm.boot_order || [];
  const next = nextBootOrder(vm);
  const key = next.join(",");
  ui.bootCurrent.textContent = t("details.boot_now", { order: order.length ? bootChoiceLabel(order) : "—" })
    + (key !== order.join(",") ? t("details.boot_next", { order: bootChoiceLabel(next) }) : "");
  if (![...ui.bootSelect.options].some((o) => o.value === key) && key) {
    ui.bootSelect.append(h("option", { value: key, text: bootLabel(next) }));
  }
  // Set the choices only when the VM's own values changed: a live update must not undo the user's pick.
  if (ui.bootSelect.dataset.shown !== key) {
    ui.bootSelect.value = key;
    ui.bootSelect.dataset.shown = key;
  }
  // Finishing the install ejects the CD and boots from the disk: offered while a CD is in and the VM still
  // boots (now or next time) from it, and only when there is a disk to boot (else DISK_NOT_FOUND).
  const hasDisk = (vm.disks || []).some((d) => d.device === "disk");
  ui.finishInstall.hidden = !(iso && hasDisk && (order[0] === "cdrom" || next[0] === "cdrom"));
  ui.finishInstallText.textContent = next[0] === "cdrom"
    ? t("vm.finish_install_text") : t("details.runs_from_cd");
}

function fillIsoSelect(current) {
  const names = (isos || []).map((i) => i.name);
  if (current && !names.includes(current)) names.unshift(current);
  const want = [h("option", { value: "", text: names.length ? t("details.choose_iso") : t("details.no_isos") }),
                ...names.map((n) => h("option", { value: n, text: n }))];
  const signature = names.join("\n");
  const picked = ui.isoSelect.value;
  const rebuilt = ui.isoSelect.dataset.signature !== signature;
  if (rebuilt) {
    ui.isoSelect.replaceChildren(...want);
    ui.isoSelect.dataset.signature = signature;
  }
  // As for the boot order: the user's pick stands until the VM's own medium changes (a new list of images
  // keeps it while it is still in the list).
  const shown = current || "";
  const inserted = current && names.includes(current) ? current : "";
  if (ui.isoSelect.dataset.shown !== shown) {
    ui.isoSelect.value = inserted;
    ui.isoSelect.dataset.shown = shown;
  } else if (rebuilt) {
    ui.isoSelect.value = picked && names.includes(picked) ? picked : inserted;
  }
}

function renderSettings(previous) {
  // The values the VM has from its next start: a running VM's saved change waits in `pending` (showing the
  // live value again after "Saved" read as if the save had failed). The notice above says what waits.
  const waiting = Object.entries(vm.pending && typeof vm.pending === "object" ? vm.pending : {})
    .filter(([, value]) => value !== null && value !== undefined);
  const next = { ...vm, ...Object.fromEntries(waiting) };
  // Refill the form only when the VM's values changed, and then only the fields the user has not edited
  // since they were filled: a rename made in another tab must not put back the vCPUs typed here, which
  // "Save settings" would then find unchanged ("Nothing changed").
  const fresh = { name: next.name, vcpus: String(next.vcpus), memory: String(next.memory_mib),
                  autostart: Boolean(next.autostart) };
  const values = JSON.stringify(fresh);
  if (settingsShownFor === values && previous) return;
  const fields = { name: [ui.setName, "value"], vcpus: [ui.setVcpus, "value"], memory: [ui.setMemory, "value"],
                   autostart: [ui.setAutostart, "checked"] };
  const shown = settingsShownFor === null ? null : JSON.parse(settingsShownFor);
  for (const [key, [field, property]] of Object.entries(fields)) {
    const edited = shown !== null && field[property] !== shown[key];
    if (!edited) field[property] = fresh[key];
  }
  settingsShownFor = values;
}

function renderDisks() {
  const disks = (vm.disks || []).filter((d) => d.device === "disk");
  ui.noDisks.hidden = disks.length > 0;
  ui.diskTable.hidden = disks.length === 0;
  ui.diskRows.replaceChildren(...disks.map((disk) => h(
    "tr", { dataset: { target: disk.target } },
    h("td", { class: "mono", "data-label": t("col.target"), text: disk.target }),
    h("td", { "data-label": t("col.bus"), text: dash(disk.bus) }),
    h("td", { class: "mono path", "data-label": t("col.path"), text: dash(disk.path) }),
    h("td", { class: "num", "data-label": t("col.capacity"),
              text: disk.capacity_bytes == null ? "—" : formatBytes(disk.capacity_bytes) }),
    h("td", { class: "num", "data-label": t("col.allocated"),
              text: disk.allocation_bytes == null ? "—" : formatBytes(disk.allocation_bytes) }),
    h("td", { class: "cell-actions" }, h("button", {
      class: "btn small", type: "button", text: t("details.resize_button"), "aria-label": t("details.resize_label", { target: disk.target }),
      onclick: () => openResize(disk), // enabled by applyEnabled()
    })),
  )));
}

function renderNics() {
  if (vm.nics === undefined) {
    ui.nics.replaceChildren(h("p", { class: "refresh-note", text: t("details.nics_unknown") }));
    return;
  }
  if (!vm.nics.length) {
    ui.nics.replaceChildren(h("p", { class: "refresh-note", text: t("details.no_nics") }));
    return;
  }
  ui.nics.replaceChildren(h("div", { class: "table-scroll" }, h(
    "table", { class: "vm-table detail-table" },
    h("thead", {}, h("tr", {}, ...["MAC", t("details.nic_source"), t("details.nic_model")].map((text) => h("th", { scope: "col", text })))),
    h("tbody", {}, ...vm.nics.map((nic) => h("tr", {},
      h("td", { class: "mono", "data-label": "MAC", text: dash(nic.mac) }),
      h("td", { "data-label": t("details.nic_source"), text: dash(nic.source) }),
      h("td", { "data-label": t("details.nic_model"), text: dash(nic.model) }),
    ))),
  )));
}

function renderActions(actions) {
  ui.noActions.hidden = actions.length > 0;
  ui.actionTable.hidden = actions.length === 0;
  ui.actionRows.replaceChildren(...actions.map((a) => h(
    "tr", {},
    h("td", { class: "num", "data-label": t("col.when"), text: formatDateTime(a.at) }),
    h("td", { "data-label": t("col.who"), text: a.user }),
    h("td", { "data-label": t("col.action"), title: a.action, text: actionName(a.action) }),
    h("td", { "data-label": t("col.result") }, h("span", { class: a.result_code === "OK" ? "result-ok" : "result-bad",
                                                      title: a.result_code, text: actionResultText(a.result_code) })),
    h("td", { class: "action-details", "data-label": t("col.details"), title: a.details || "",
              text: actionDetailsText(a) }),
  )));
}

// -- actions ---------------------------------------------------------------------------------------

function buildActionButtons() {
  for (const [action, spec] of Object.entries(ACTIONS)) {
    const extra = action === "delete" || spec.confirm ? "danger" : action === "start-console" ? "primary" : "";
    // Disabled, and the Console link without an address, until the VM is known (applyEnabled).
    buttons[action] = h("button", { class: `btn ${extra}`.trim(), type: "button", dataset: { action },
                                    text: spec.label, disabled: true, onclick: () => onAction(action) });
  }
  buttons.console = h("a", { class: "btn", "aria-disabled": "true", dataset: { action: "console" },
                             text: t("console.title") });
  ui.actions.replaceChildren(
    buttons.start, buttons["start-console"], buttons.console, buttons.stop, buttons.reboot,
    h("span", { class: "action-gap", "aria-hidden": "true" }),
    buttons["force-stop"], buttons.reset, buttons.delete,
  );
}

/** The controls of the cards that change the VM: CD-ROM and boot order, settings, disks. */
function cardControls() {
  return [ui.isoSelect, ui.mediaInsert, ui.mediaEject, ui.bootSelect, ui.bootSave, ui.finishInstallBtn,
          ...ui.settingsForm.elements, ...ui.diskRows.querySelectorAll("button")];
}

function applyEnabled() {
  // Until the VM is known (for ever when it cannot be: VM_NOT_FOUND) nothing acts on it: a press sent the
  // markup's defaults (the boot order), or failed on the missing VM and left the page's controls dead.
  if (!vm) {
    for (const control of [...Object.values(buttons), ...cardControls()]) {
      if (control instanceof HTMLAnchorElement) control.removeAttribute("href");
      else control.disabled = true;
    }
    return;
  }
  const active = ACTIVE_STATES.has(vm.state);
  // A VM whose host does not answer: every action would be HYPERVISOR_UNAVAILABLE (503), so none is offered.
  const blocked = busy !== null || gone || vm.host_available === false;
  buttons.start.disabled = blocked || active;
  buttons["start-console"].hidden = active;
  buttons["start-console"].disabled = blocked || !(vm.vnc || vm.serial_console);
  buttons["start-console"].title = vm.vnc ? "" : vm.serial_console ? SERIAL_ONLY : NO_CONSOLE_REASON;
  buttons.stop.disabled = blocked || !active || vm.state === "shutting_down";
  buttons.reboot.disabled = blocked || vm.state !== "running";
  buttons["force-stop"].disabled = blocked || !active;
  buttons.reset.disabled = blocked || vm.state !== "running";
  buttons.delete.disabled = blocked;
  showConsoleLink(buttons.console, vm, `/vms/${encodeURIComponent(vm.uuid)}/console`);
  buttons.console.classList.toggle("primary", active && Boolean(vm.vnc));
  if (gone) { // markGone() took the address away; a card's request ending after that must not give it back
    buttons.console.removeAttribute("href");
    buttons.console.setAttribute("aria-disabled", "true");
  }
  for (const [action, button] of Object.entries(buttons)) {
    const label = action === "console" ? t("console.title") : ACTIONS[action].label;
    button.setAttribute("aria-label", actionOnVm(label, vm.name)); // as the list says it
  }
  const mediaBlocked = blocked || cardsBusy.has("media");
  for (const control of [ui.isoSelect, ui.bootSelect, ui.bootSave, ui.finishInstallBtn]) control.disabled = mediaBlocked;
  ui.mediaEject.disabled = mediaBlocked || !cdromIso(vm);
  ui.mediaInsert.disabled = mediaBlocked || !hasCdromDrive(vm);
  for (const control of ui.settingsForm.elements) control.disabled = blocked || cardsBusy.has("settings");
  for (const resize of ui.diskRows.querySelectorAll("button")) resize.disabled = blocked || cardsBusy.has("disks");
  // A rename needs a stopped VM: said at the field, not by a refusal (VM_MUST_BE_STOPPED) after a save,
  // which dropped the vCPU and memory changes sent with it.
  ui.setName.disabled = blocked || cardsBusy.has("settings") || active;
  document.getElementById("set-name-hint").hidden = !active || gone;
}

const usable = (control) => Boolean(control) && !control.disabled && !control.hidden
  && control.offsetParent !== null && control.getAttribute("aria-disabled") !== "true";

/**
 * After an action on ``from`` (the page redrawn): a control disabled or hidden by it drops the focus to
 * <body>, the page's start for a keyboard or screen-reader user. The focus goes back to ``from``, else to the
 * first usable of ``candidates``, else to ``fallback`` (a status line, made focusable); nothing moves when the
 * person went elsewhere meanwhile.
 */
function keepFocusNear(from, candidates, fallback) {
  const here = document.activeElement;
  const lost = !here || here === document.body || !here.isConnected || here.disabled
    || (here === from && !usable(from));
  if (!lost) return;
  const target = [from, ...candidates].find(usable) || fallback;
  if (!target.matches("button, select, input, a[href], [tabindex]")) target.setAttribute("tabindex", "-1");
  target.focus({ preventScroll: true });
}

/** The VM's actions: the console before Stop (an Enter pressed twice on Start must not stop the VM it started). */
function keepFocusInActions(button) {
  keepFocusNear(button, [buttons.console, buttons.start, ...Object.values(buttons)], ui.actionStatus);
}

function onAction(action) {
  if (ACTIONS[action].confirm) openConfirm(action);
  else runAction(action);
}

async function runAction(action, { deleteDisks = false } = {}) {
  if (!vm) return;
  const spec = ACTIONS[action];
  if (action === "start-console" && ACTIVE_STATES.has(vm.state)) {
    window.location.assign(`/vms/${encodeURIComponent(vm.uuid)}/console`);
    return;
  }
  clearTimeout(stopFollowUpTimer);
  busy = action;
  document.body.dataset.pending = action;
  applyEnabled();
  const path = action === "delete" ? apiPath(`?delete_disks=${deleteDisks}`) : apiPath(`/${spec.path}`);
  const result = await request(ui.actionStatus, actionOnVm(spec.label, vm.name), spec.busy, spec.method, path);
  busy = null;
  delete document.body.dataset.pending;
  if (result === null) {
    applyEnabled();
    keepFocusInActions(buttons[action]);
    return;
  }
  if (action === "delete") {
    handToList(deletedText(vm.name, result)); // the list says it, as after a delete made there
    window.location.assign("/");
    return;
  }
  if (action === "start-console") {
    window.location.assign(`/vms/${encodeURIComponent(vm.uuid)}/console`);
    return;
  }
  if (result.uuid) render(result);
  applyEnabled();
  showStatus(ui.actionStatus, "ok", `✓ ${spec.done}`);
  keepFocusInActions(buttons[action]);
  if (action === "stop") stopFollowUpTimer = setTimeout(followUpStop, STOP_FOLLOW_UP_MS);
  scheduleReload(0);
}

/** A guest may ignore the ACPI shutdown Stop asks for (GRUB does): if the VM still runs a while later, say
 * so and offer Force stop (through its confirmation). */
async function followUpStop() {
  // The page's own reload: a read of its own, answered after a reload that showed the VM stopped, drew it
  // running again (and said it still ran). Overtaken, or failed (said by the reload), it says nothing.
  if (!(await reloadNow()) || busy !== null || gone || !ACTIVE_STATES.has(vm.state)) return;
  const force = h("button", {
    class: "btn small danger", type: "button", dataset: { action: "follow-up-force-stop" }, text: t("details.force_stop_label"),
    "aria-label": t("list.action_label", { action: t("action.force_stop.label"), name: vm.name }), onclick: () => onAction("force-stop"),
  });
  const dismiss = h("button", { class: "btn small", type: "button", text: t("list.dismiss"),
                                onclick: () => ui.actionStatus.replaceChildren() });
  showStatus(ui.actionStatus, "warn", h("span", { class: "follow-up", dataset: { followUp: "stop" } },
                                        stillRunningText(STOP_FOLLOW_UP_MS), force, dismiss));
}

function openConfirm(action) {
  if (!vm) return;
  const spec = ACTIONS[action];
  confirmAction = action;
  // A question of its own where the title does not make one ("가상 머신 삭제" + "할까요?" lacks its particle).
  const question = `details.confirm.${spec.confirm.name}.question`;
  ui.confirmTitle.textContent = has(question) ? t(question) : t("details.confirm_q", { title: spec.confirm.title });
  ui.confirmText.replaceChildren(h("strong", { class: "vm-ref", text: vm.name }), h("br"), spec.confirm.text,
    action === "delete" && ACTIVE_STATES.has(vm.state) ? t("list.delete_running") : "",
    action === "delete" && snapshots.count() > 0
      ? t(snapshots.count() === 1 ? "details.snapshot_goes" : "details.snapshots_go", { count: snapshots.count() }) : "");
  ui.confirmOk.textContent = spec.confirm.verb;
  ui.confirmOk.setAttribute("aria-label", t("list.action_label", { action: spec.confirm.verb, name: vm.name }));
  const isDelete = action === "delete";
  ui.confirmDisksRow.hidden = !isDelete;
  if (isDelete) {
    const disks = (vm.disks || []).filter((d) => d.device === "disk" && d.path);
    showDiskChoice({ box: ui.confirmDisks, reason: ui.confirmDisksReason }, me, disks.length);
    ui.confirmDiskList.textContent = disks.length === 0 ? t("details.confirm_no_disks")
      : `(${disks.map((d) => d.path).join(", ")})`;
  }
  ui.confirm.returnValue = "";
  ui.confirm.showModal();
  ui.confirmCancel.focus();
}

function wireConfirm() {
  ui.confirmCancel.addEventListener("click", () => ui.confirm.close("cancel"));
  ui.confirm.addEventListener("close", () => {
    const action = confirmAction;
    confirmAction = null;
    if (action && ui.confirm.returnValue === "confirm") {
      runAction(action, { deleteDisks: ui.confirmDisks.checked });
    } else if (action) {
      buttons[action].focus();
    }
  });
}

// -- media, boot order, settings, disks (PUT /media, PATCH, finish-install, resize) ------------------

// Where the keyboard goes when the control pressed is no longer usable (Eject with no disc left, Finish
// install once done): the first usable of these controls, else the card's status line.
const FOCUS_NEAR = {
  media: () => [[ui.isoSelect], ui.mediaStatus],
  settings: () => [[ui.settingsSave], ui.settingsStatus],
};

/**
 * Runs ``send`` (resolves true once its request succeeded) with ``card``'s controls disabled until the VM is
 * reloaded after a success, or until the failure is shown; then the focus goes back to the control pressed
 * (disabling it dropped the focus), or near it (``near()``: candidates and a fallback, as FOCUS_NEAR's).
 * Resolves to what ``send`` did.
 */
async function whileCardBusy(card, send, near = FOCUS_NEAR[card]) {
  const pressed = document.activeElement;
  cardsBusy.add(card);
  applyEnabled();
  let succeeded = false;
  try {
    succeeded = await send();
    if (succeeded) await reloadNow();
  } finally {
    cardsBusy.delete(card);
    applyEnabled();
    keepFocusNear(pressed, ...near());
  }
  return succeeded;
}

function changeMedia(iso, force = false) {
  const what = iso ? t("details.insert_what", { iso }) : t("details.eject_what");
  return whileCardBusy("media", async () => {
    showStatus(ui.mediaStatus, "", spinner(), iso ? t("details.inserting", { iso }) : t("details.ejecting"));
    try {
      const result = await api("PUT", apiPath("/media"), { iso, force });
      if (result && result.uuid) render(result);
      showStatus(ui.mediaStatus, "ok", iso ? t("details.inserted_ok", { iso }) : t("details.ejected_ok"));
      return true;
    } catch (exc) {
      const actions = exc instanceof ApiError && exc.code === "MEDIA_LOCKED" ? [h("button", {
        class: "btn small danger", type: "button", text: t("details.force_it"), onclick: () => changeMedia(iso, true),
      })] : [];
      showError(ui.mediaStatus, exc, what, actions);
      return false;
    }
  });
}

async function patchVm(statusEl, what, body, { refillSettings = false } = {}) {
  const result = await request(statusEl, what, t("details.saving"), "PATCH", apiPath(), body);
  if (result === null) return false;
  // Saved: every settings field takes the VM's values now (a name as the server kept it). Only then: after a
  // refusal the fields keep what was typed, which the error speaks of, through every redraw meanwhile.
  if (refillSettings) settingsShownFor = null;
  if (result.uuid) render(result);
  showStatus(statusEl, "ok", t("details.saved"));
  return true;
}

// The settings form's inputs by the field the API names.
const SETTINGS_INPUTS = { name: "set-name", vcpus: "set-vcpus", memory_mib: "set-memory" };

/** The marks of the last refusal go: a field put back to the VM's own value is no longer wrong either. */
function unmarkSettings() {
  for (const id of Object.values(SETTINGS_INPUTS)) document.getElementById(id).removeAttribute("aria-invalid");
}

/** Saves the settings; each field the server refuses is marked (aria-invalid) and the first focused. */
async function saveSettings(body) {
  unmarkSettings();
  const what = t("details.save_settings_of", { name: vm.name });
  if (await whileCardBusy("settings", () => patchVm(ui.settingsStatus, what, body, { refillSettings: true }))) return;
  const refused = (lastRefusal instanceof ApiError ? lastRefusal.fields : [])
    .map((refusal) => document.getElementById(SETTINGS_INPUTS[refusal.field]))
    .filter(Boolean);
  for (const control of refused) control.setAttribute("aria-invalid", "true");
  if (refused.length && !refused[0].disabled) refused[0].focus();
}

function wireForms() {
  ui.mediaInsert.addEventListener("click", () => {
    if (!ui.isoSelect.value) {
      showStatus(ui.mediaStatus, "", t("details.choose_iso_first"));
      ui.isoSelect.focus();
      return;
    }
    changeMedia(ui.isoSelect.value);
  });
  ui.mediaEject.addEventListener("click", () => changeMedia(null));
  ui.bootSave.addEventListener("click", () => whileCardBusy("media", () => patchVm(
    ui.mediaStatus, t("details.change_boot"), { boot_order: ui.bootSelect.value.split(",") })));
  ui.finishInstallBtn.addEventListener("click", () => whileCardBusy("media", async () => {
    const result = await request(ui.mediaStatus, t("vm.finish_install"), t("details.finishing"), "POST",
                                 apiPath("/finish-install"));
    if (result === null) return false;
    if (result.uuid) render(result);
    showStatus(ui.mediaStatus, "ok", result.pending_restart
      ? t("details.finished_next_start") : t("details.finished"));
    return true;
  }));
  takeForm(ui.settingsForm, (event) => {
    event.preventDefault();
    // The form is disabled until the VM is known; a submit before that (none the page offers) has nothing
    // to compare with, and the form's fields are about to be filled with the VM's values.
    if (!vm) return;
    const body = {};
    const name = ui.setName.value.trim();
    const vcpus = Number(ui.setVcpus.value);
    const memory = Number(ui.setMemory.value);
    if (name !== vm.name) body.name = name;
    if (vcpus !== vm.vcpus) body.vcpus = vcpus;
    if (memory !== vm.memory_mib) body.memory_mib = memory;
    if (ui.setAutostart.checked !== Boolean(vm.autostart)) body.autostart = ui.setAutostart.checked;
    if (Object.keys(body).length === 0) {
      unmarkSettings();
      showStatus(ui.settingsStatus, "", t("details.nothing_changed"));
      return;
    }
    saveSettings(body);
  });
  ui.resizeCancel.addEventListener("click", () => ui.resize.close("cancel"));
  ui.resize.addEventListener("close", () => {
    const disk = resizeTarget;
    resizeTarget = null;
    if (!disk || ui.resize.returnValue !== "resize") return;
    const size = Number(ui.resizeSize.value);
    whileCardBusy("disks", async () => {
      const result = await request(ui.diskStatus, t("details.resize_label", { target: disk.target }),
                                   t("details.resizing", { target: disk.target }), "POST",
                                   apiPath(`/disks/${encodeURIComponent(disk.target)}/resize`), { size_gib: size });
      if (result === null) return false;
      if (result.uuid) render(result);
      showStatus(ui.diskStatus, "ok", t("details.resized", { target: disk.target, size }));
      return true;
    }, () => [ui.diskRows.querySelectorAll(`tr[data-target="${CSS.escape(disk.target)}"] button`), ui.diskStatus]);
  });
  ui.resize.querySelector("form").addEventListener("submit", (event) => {
    const size = Number(ui.resizeSize.value);
    if (!Number.isInteger(size) || size < 1) {
      event.preventDefault();
      ui.resizeError.textContent = t("details.resize_invalid");
      ui.resizeSize.setAttribute("aria-invalid", "true");
    }
  });
}

function openResize(disk) {
  resizeTarget = disk;
  const gib = disk.capacity_bytes ? Math.ceil(disk.capacity_bytes / 2 ** 30) : 1;
  ui.resizeText.replaceChildren(t("details.resize_disk_before"), h("strong", { class: "mono", text: disk.target }),
    t("details.resize_disk_of"), h("strong", { class: "vm-ref", text: vm.name }),
    disk.capacity_bytes ? t("details.resize_now", { size: formatBytes(disk.capacity_bytes) }) : t("details.resize_grow"));
  ui.resizeSize.value = String(gib + 1);
  ui.resizeSize.min = String(gib);
  ui.resizeError.textContent = "";
  ui.resizeSize.removeAttribute("aria-invalid");
  ui.resize.returnValue = "";
  ui.resize.showModal();
  ui.resizeSize.select(); // typing replaces the proposed size ("2" then "0.5" made "20.5")
  ui.resizeSize.focus();
}

// -- screenshot ------------------------------------------------------------------------------------

function showScreenPlaceholder(text) {
  ui.screenBox.replaceChildren(h("span", { text }));
  ui.screenNote.textContent = "";
  ui.screenBox.dataset.shot = "none";
}

function loadScreenshot() {
  if (shotLoading || !vm || !vm.vnc || !ACTIVE_STATES.has(vm.state) || document.visibilityState !== "visible") return;
  shotLoading = true;
  const img = new Image();
  img.alt = t("list.screen_of", { name: vm.name });
  img.decoding = "async";
  img.onload = () => {
    shotLoading = false;
    if (!ACTIVE_STATES.has(vm.state)) return;
    ui.screenBox.replaceChildren(img);
    ui.screenBox.dataset.shot = "loaded";
    ui.screenNote.textContent = t("details.screen_at", { at: formatTime(new Date()) });
  };
  img.onerror = () => {
    shotLoading = false;
    if (ui.screenBox.dataset.shot !== "loaded" && ACTIVE_STATES.has(vm.state)) showScreenPlaceholder(t("list.no_picture_yet"));
  };
  img.src = `${apiPath("/screenshot")}?max_width=${SCREEN_WIDTH}&t=${Date.now()}`;
}

// -- loading ---------------------------------------------------------------------------------------

function scheduleReload(delay) {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(reload, delay);
}

/** Reloads the VM now (instead of a reload scheduled); resolves to whether the page shows its answer. */
function reloadNow() {
  clearTimeout(reloadTimer);
  return reload();
}

// Only the latest read of the VM is drawn: the page reads it again on each event, after each change and while
// polling, and those reads overlap. An older read answered after a newer one drew the VM as it was before
// (running again after a stop, with Stop on).
const readVm = latestRead(() => api("GET", apiPath(), undefined, { timeoutMs: 10000 }));
let readsOnTheirWay = 0;
let readAgain = false; // the event stream asked for a reload while a read was on its way

/** The event stream's reloads (its polling every 2 s while it is down, "ready", "resync") wait for a read on
 * its way and follow it: each would overtake it, and on a server slower than the polling none was drawn. */
function reloadForStream() {
  if (readsOnTheirWay > 0) readAgain = true;
  else scheduleReload(0);
}

async function reload() {
  reloadTimer = null;
  if (gone) return false;
  const askedAt = Date.now();
  readsOnTheirWay += 1;
  try {
    const current = await readVm();
    if (current === STALE) return false; // the latest read, still on its way, draws (and reads the actions)
    if (gone) return false;
    // Older than the last pushed change: keep its state (the reload that change scheduled brings the rest).
    render(lastEventAt > askedAt ? { ...current, state: vm.state } : current);
    ui.loadError.replaceChildren();
    describeUpdates();
  } catch (exc) {
    if (exc instanceof ApiError && exc.code === "VM_NOT_FOUND" && vm) {
      markGone();
      return false;
    }
    if (exc instanceof ApiError && exc.code === "VM_NOT_FOUND") {
      // Never there, or not this user's: nothing of the page applies (its buttons and forms would act on
      // nothing), and asking again would not change it.
      gone = true;
      document.body.dataset.state = "missing";
    }
    const body = bodyOf(exc, t("details.loading_vm"));
    ui.loadError.replaceChildren(h("div", { class: "notice error" }, errorBox({
      ...localizedError(body), error: t("details.cannot_load", { error: localizedError(body).error }),
    }, { localize: false, actions: [h("a", { class: "btn small", href: "/", text: t("details.back_to_list") })] })));
    if (!vm) ui.name.textContent = vmId;
    loadActions();
    return false;
  } finally {
    readsOnTheirWay -= 1;
    if (readsOnTheirWay === 0 && readAgain) {
      readAgain = false;
      scheduleReload(0);
    }
  }
  loadActions();
  return true;
}

// Only the latest read of the actions is drawn: one asked before an action was recorded, answered after the
// read that shows it, took the newest action off the list again.
const readActions = latestRead((uuid) => api("GET", `/api/vm-actions?vm=${encodeURIComponent(uuid)}&limit=${ACTIONS_SHOWN}`));

async function loadActions() {
  if (!vm) return;
  let actions;
  try {
    actions = await readActions(vm.uuid);
  } catch {
    return; // the audit trail is secondary here: the audit page shows its errors
  }
  if (actions !== STALE) renderActions(actions);
}

const readIsos = latestRead(() => api("GET", "/api/isos"));

async function loadIsos() {
  let answer;
  try {
    answer = await readIsos();
  } catch {
    answer = isos === null ? [] : STALE; // a failed re-read keeps the list the page has
  }
  if (answer === STALE) return;
  isos = answer;
  if (vm) renderMedia();
}

// The image library changes elsewhere (an upload in another tab, another admin's delete): it is read again
// whenever the user comes back to this page, so the CD list offers what is there now.
function loadIsosOnReturn() {
  if (document.visibilityState === "visible" && isos !== null && !gone) loadIsos();
}

function markGone() {
  // Once: a reload already on its way when the VM went answers VM_NOT_FOUND and calls this again, which
  // replaced the focused "Back to the VM list" with a new link and dropped the focus to <body>.
  if (document.body.dataset.state === "deleted") return;
  gone = true;
  document.body.dataset.state = "deleted";
  ui.state.replaceChildren(h("span", { class: "badge crashed", text: t("details.deleted") }));
  const state = document.getElementById("fact-state"); // the overview too: not "Stopped" as it last was
  if (state) state.textContent = t("details.deleted");
  const back = h("a", { href: "/", text: t("details.back_to_list") });
  ui.loadError.replaceChildren(h("div", { class: "notice error", role: "alert" },
    h("strong", { text: t("details.was_deleted") }), back));
  showScreenPlaceholder(t("details.deleted"));
  applyEnabled();
  // Nothing on the page acts on a deleted VM: every control of its cards (media, disks, snapshots, owner…)
  // is disabled and an open dialog closed; focus inside them moves to the way back rather than to <body>.
  const focusWasInside = document.querySelector("main")?.contains(document.activeElement)
    || document.querySelector("dialog[open]") !== null;
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
  for (const control of document.querySelectorAll("main :is(button, input, select, textarea)")) {
    control.disabled = true;
  }
  // Their own state too: an answer on its way (a save, a snapshot) would enable them again when it comes.
  owner.vmGone();
  snapshots.vmGone();
  // The console links (the Console button, the screen) led to a console page saying VM_NOT_FOUND.
  for (const link of document.querySelectorAll("main a[href*='/console']")) {
    link.removeAttribute("href");
    link.setAttribute("aria-disabled", "true");
  }
  if (focusWasInside) back.focus();
}

function describeUpdates() {
  ui.liveNote.textContent = events && events.live ? t("details.live") : t("details.refreshing");
}

function onVmEvent(change) {
  if (!vm || change.uuid !== vm.uuid) return;
  snapshots.onEvent(change);
  if (change.type === "undefined") {
    markGone();
    return;
  }
  if (change.state && busy === null) {
    lastEventAt = Date.now();
    if (change.state !== vm.state) render({ ...vm, state: change.state });
  }
  scheduleReload(EVENT_RELOAD_MS);
}

buildActionButtons();
wireConfirm();
wireForms();
function knowUser(user) {
  me = user;
  owner.mount(user);
}

mountUserMenu().then(knowUser);
reload().then(loadIsos);
window.addEventListener("focus", loadIsosOnReturn); // back from another window, which hid nothing
events = new VmEvents({
  reload: reloadForStream,
  onEvent: onVmEvent,
  onEnded: () => remountUserMenu().then(knowUser),
  onStatus: (live) => {
    document.body.dataset.events = live ? "live" : "polling";
    describeUpdates();
  },
}).start();
setInterval(loadScreenshot, SCREENSHOT_MS);
setInterval(() => {
  const shown = document.getElementById("fact-uptime");
  if (uptimeSince && shown) shown.textContent = formatDuration(uptimeSince.seconds + (Date.now() - uptimeSince.at) / 1000);
}, UPTIME_TICK_MS);
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  scheduleReload(0);
  loadIsosOnReturn();
});

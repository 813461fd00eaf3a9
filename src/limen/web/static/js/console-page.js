// The console page: the stage list while the console opens, noVNC once it is open, and a clear panel
// for every way it can fail or end. Query parameters: ?watchdog=SECONDS (default 10).
// Each connection first asks for a one-time console ticket (POST /api/vms/{id}/console-ticket) and opens
// the WebSocket with ?ticket=; the ticket is never shown or stored.

import { api, ApiError, loadErrorCodes } from "./api.js";
import { errorBox, formatMs, h, spinner, stateBadge } from "./dom.js";
import { ConsoleConnection, consoleUrl, DEFAULT_WATCHDOG_MS, Phase } from "./console-client.js";
import { comboEvents, isLeaveChord, LEAVE_CHORD_LABEL, SEND_KEYS } from "./key-combos.js";
import { typeKeys, TypingCancelled } from "./typing-pacer.js";
import { planTyping, refusalMessage } from "./us-keyboard.js";
import { VmEvents } from "./vm-events.js";
import { SerialTab } from "./serial-console.js";

const NOVNC = "/static/novnc";
const NOVNC_LOAD_MS = 20000;
// Session ends worth reconnecting to by themselves; others (VM stopped, user, idle) wait for the user.
const TRANSIENT_CODES = new Set([
  "SERVER_SHUTDOWN", "SLOW_CLIENT", "HYPERVISOR_UNAVAILABLE", "CONNECTION_LOST", "CONNECTION_FAILED",
  "WATCHDOG_TIMEOUT",
]);
const TRANSIENT_CLOSE_CODES = new Set([1001, 1006, 1011, 1012, 1013]);
const BACKOFF_SECONDS = [1, 2, 4, 8, 15, 30];
const STAGE_NAMES = {
  check_vm: "checking the VM",
  start_vm: "starting the VM",
  get_port: "getting the VNC port",
  connect: "connecting to the VNC server",
  read_banner: "reading the VNC server's banner",
  proxy: "starting the screen",
};

// The console lives at /vms/{id}/console (/console/{id}, its old address, redirects there).
const vmId = decodeURIComponent((window.location.pathname.match(/^\/vms\/([^/]+)\/console\/?$/) || [])[1] || "");
const params = new URLSearchParams(window.location.search);
const backLink = document.querySelector(".console-bar .back");
if (backLink && vmId) {
  backLink.href = `/vms/${encodeURIComponent(vmId)}`;
  backLink.textContent = "← Details";
  backLink.setAttribute("aria-label", "Back to the VM's details");
}
const watchdogMs = parseWatchdog(params.get("watchdog"));

const ui = {
  body: document.body,
  name: document.getElementById("vm-name"),
  state: document.getElementById("vm-state"),
  status: document.getElementById("conn-status"),
  screen: document.getElementById("screen"),
  screenWrap: document.getElementById("screen-wrap"),
  overlay: document.getElementById("overlay"),
  title: document.getElementById("panel-title"),
  sub: document.getElementById("panel-sub"),
  stages: document.getElementById("stages"),
  extra: document.getElementById("panel-extra"),
  keys: document.getElementById("btn-keys"),
  keysMenu: document.getElementById("keys-menu"),
  clipboard: document.getElementById("btn-clipboard"),
  leaveHint: document.getElementById("leave-hint"),
  paste: document.getElementById("btn-paste"),
  scale: document.getElementById("btn-scale"),
  fullscreen: document.getElementById("btn-fullscreen"),
  connect: document.getElementById("btn-connect"),
  pasteDialog: document.getElementById("paste-dialog"),
  pasteForm: document.getElementById("paste-form"),
  pasteText: document.getElementById("paste-text"),
  pasteCancel: document.getElementById("paste-cancel"),
  pasteError: document.getElementById("paste-error"),
  clipDialog: document.getElementById("clipboard-dialog"),
  clipFromVm: document.getElementById("clip-from-vm"),
  clipCopy: document.getElementById("clip-copy"),
  clipCopyStatus: document.getElementById("clip-copy-status"),
  clipToVm: document.getElementById("clip-to-vm"),
  clipSend: document.getElementById("clip-send"),
  clipSendStatus: document.getElementById("clip-send-status"),
  clipClose: document.getElementById("clip-close"),
};

let RFB = null;
let errorCodes = {};
let connection = null;
let rfb = null;
let attempt = 0; // consecutive automatic reconnects
let backoffTimer = null;
let elapsedTicker = null;
let typing = null; // the paste being typed: { cancelled }
let vncSocket = null; // the WebSocket noVNC speaks over: its bufferedAmount paces typing
let vncMessages = 0; // messages from the VNC server so far: a screen change tells typing the guest keeps up
let vmName = vmId;
let vmUuid = null; // known once the VM has been read: events name VMs by UUID
let connectGeneration = 0; // a newer connect() makes an older one's pending ticket request moot

function parseWatchdog(value) {
  const seconds = Number.parseFloat(value ?? "");
  if (!Number.isFinite(seconds) || seconds <= 0) return DEFAULT_WATCHDOG_MS;
  return Math.min(Math.max(seconds, 0.5), 600) * 1000;
}

function setState(state, text, tone = "") {
  ui.body.dataset.consoleState = state;
  ui.status.className = `conn-status ${tone}`.trim();
  ui.status.replaceChildren(...(tone === "busy" ? [spinner(), text] : [text]));
}

function setConnected(connected) {
  ui.keys.disabled = !connected;
  ui.paste.disabled = !connected;
  ui.clipboard.disabled = !connected;
  if (!connected) closeKeysMenu(false);
}

function setConnectButton(open) {
  ui.connect.textContent = open ? "Disconnect" : "Connect";
  ui.connect.dataset.action = open ? "disconnect" : "connect";
}

/** The server's title and message for a code it named without them (close frames carry only the code). */
function describe(err) {
  const known = errorCodes[err.code] || {};
  return {
    ...err,
    error: err.error || known.title || "Console closed",
    message: err.message || known.message || "Reconnect to open the console again.",
  };
}

// -- the stage list --------------------------------------------------------------------------------

function currentStage() {
  return ui.stages.querySelector(".stage.current");
}

function finishStage(item, outcome) {
  if (!item) return;
  item.classList.remove("current");
  item.classList.add(outcome);
  item.querySelector(".icon").replaceChildren(outcome === "done" ? "✓" : "✕");
  item.querySelector(".icon").setAttribute("aria-label", outcome === "done" ? "done" : "failed");
}

function addStage(message, elapsedMs, { source = "server", stage = null } = {}) {
  finishStage(currentStage(), "done");
  const item = h(
    "li",
    { class: `stage current ${source}`, dataset: { source, stage: stage || "" } },
    h("span", { class: "icon", role: "img", "aria-label": "in progress" }, spinner()),
    h("span", { class: "msg", text: message }),
    h("span", { class: "time", text: elapsedMs === null ? "" : `+${formatMs(elapsedMs)}` }),
  );
  ui.stages.append(item);
  return item;
}

function startTicker() {
  stopTicker();
  const started = performance.now();
  const seconds = watchdogMs / 1000;
  const tick = () => {
    ui.sub.textContent = `${formatMs(performance.now() - started)} elapsed · gives up after ${seconds} s without an answer`;
  };
  tick();
  elapsedTicker = setInterval(tick, 200);
}

function stopTicker() {
  if (elapsedTicker !== null) clearInterval(elapsedTicker);
  elapsedTicker = null;
}

// -- connecting ------------------------------------------------------------------------------------

function showOverlay(title) {
  ui.overlay.hidden = false;
  ui.title.textContent = title;
}

async function connect() {
  cancelBackoff();
  teardown();
  ui.stages.replaceChildren();
  ui.extra.replaceChildren();
  showOverlay(attempt > 0 ? `Reconnecting (attempt ${attempt})` : "Opening console");
  setState("connecting", "Connecting…", "busy");
  setConnected(false);
  setConnectButton(true);
  startTicker();
  addStage("Opening the console connection...", null, { source: "client" });
  const generation = ++connectGeneration;
  let ticket;
  try {
    ticket = await api("POST", `/api/vms/${encodeURIComponent(vmId)}/console-ticket`, undefined,
                       { timeoutMs: watchdogMs });
  } catch (exc) {
    if (generation !== connectGeneration) return;
    onFailure(ticketFailure(exc));
    return;
  }
  if (generation !== connectGeneration) return;
  const url = `${consoleUrl(vmId)}?ticket=${encodeURIComponent(ticket.ticket)}`;
  connection = new ConsoleConnection({ url, watchdogMs, onEvent: onConnectionEvent });
  connection.open();
}

/** Why no console ticket came: limen unreachable is CONNECTION_FAILED, as for the WebSocket itself. */
function ticketFailure(exc) {
  if (exc instanceof ApiError && exc.status === 0) {
    return {
      error: "Cannot connect to limen", code: "CONNECTION_FAILED", details: `console ticket: ${exc.details}`,
      message: "The console could not be opened. Check that limen runs and is reachable, then retry.",
      source: "client",
    };
  }
  if (exc instanceof ApiError) return { ...exc.body, source: "client" };
  return { error: "Cannot get a console ticket", code: "CLIENT_ERROR", details: String(exc), source: "client" };
}

function onConnectionEvent(event) {
  switch (event.kind) {
    case "opened": {
      const item = currentStage();
      if (item) item.querySelector(".time").textContent = `+${formatMs(event.elapsedMs)}`;
      finishStage(item, "done");
      setState("handshake", "Checking the VM…", "busy");
      break;
    }
    case "status":
      addStage(event.message, event.elapsedMs, { stage: event.stage });
      setState("handshake", event.message, "busy");
      if (event.stage === "get_port") refreshVm(); // after a start, the header's state is stale
      break;
    case "handoff":
      handOff(event.socket); // synchronously: the next frame is VNC and noVNC must be listening
      break;
    case "error":
      onFailure(event);
      break;
    case "ended":
      onEnded(event);
      break;
    default:
      break;
  }
}

function handOff(socket) {
  vncSocket = socket;
  socket.addEventListener("message", () => { vncMessages += 1; });
  rfb = new RFB(ui.screen, socket, { shared: true });
  rfb.scaleViewport = ui.scale.getAttribute("aria-pressed") === "true";
  rfb.clipViewport = false;
  rfb.focusOnClick = true;
  rfb.background = "#14171b";
  const session = rfb;
  rfb.addEventListener("connect", () => {
    if (session !== rfb) return;
    connection.markVncReady();
    attempt = 0;
    stopTicker();
    finishStage(currentStage(), "done");
    ui.overlay.hidden = true;
    setState("connected", "Connected", "ok");
    setConnected(true);
    rfb.focus({ preventScroll: true });
    refreshVm();
  });
  rfb.addEventListener("clipboard", (e) => {
    if (session !== rfb) return;
    showVmClipboard(String(e.detail && e.detail.text || ""));
  });
  rfb.addEventListener("securityfailure", (e) => {
    if (session !== rfb) return;
    const reason = e.detail && e.detail.reason ? e.detail.reason : `status ${e.detail && e.detail.status}`;
    connection.fail({
      error: "VNC security handshake failed", code: "VNC_SECURITY_FAILED", details: String(reason),
      message: "The VM's VNC server refused the connection. Check its VNC settings, then retry.",
      source: "client",
    });
  });
  rfb.addEventListener("credentialsrequired", () => {
    if (session !== rfb) return;
    connection.fail({
      error: "VNC password required", code: "VNC_AUTH_REQUIRED",
      details: "the VM's VNC server asks for credentials; limen's VMs use none",
      message: "Remove the password from the VM's VNC graphics, restart it, then retry.", source: "client",
    });
  });
  setState("handshake", "Starting the screen…", "busy");
}

function teardown() {
  stopTyping();
  vncSocket = null;
  if (rfb) {
    const old = rfb;
    rfb = null;
    try {
      old.disconnect();
    } catch {
      /* already disconnected */
    }
  }
}

function onFailure(err) {
  teardown();
  stopTicker();
  const item = currentStage();
  finishStage(item, "failed");
  for (const other of ui.stages.querySelectorAll(".stage.current")) finishStage(other, "failed");
  const full = describe(err);
  showOverlay(attempt > 0 ? "Reconnecting to the console" : "The console could not open");
  ui.sub.textContent = full.stage ? `Failed at: ${STAGE_NAMES[full.stage] || full.stage} (stage ${full.stage}).` : "";
  setState("failed", full.error, "bad");
  setConnected(false);
  setConnectButton(false);
  ui.extra.replaceChildren(errorBox(full, { actions: recoveryActions(full.code, "Retry") }));
  if (attempt > 0 && TRANSIENT_CODES.has(full.code)) scheduleReconnect();
  focusPanelAction();
}

function onEnded(event) {
  if (event.byUser) {
    teardown();
    stopTicker();
    showOverlay("Disconnected");
    ui.stages.replaceChildren();
    ui.sub.textContent = "You closed the console. The VM keeps running.";
    setState("ended", "Disconnected");
    setConnected(false);
    setConnectButton(false);
    ui.extra.replaceChildren(h("div", { class: "error-actions" }, primaryButton("Connect", connect)));
    focusPanelAction();
    return;
  }
  if (!event.vncReady) {
    // Closed after the hand-off but before the screen showed: a failure of the VNC handshake.
    const code = /^[A-Z][A-Z0-9_]+$/.test(event.reason) ? event.reason : "VNC_SESSION_FAILED";
    onFailure({
      code,
      error: code === "VNC_SESSION_FAILED" ? "VNC session failed" : null,
      message: code === "VNC_SESSION_FAILED" ? "The VNC session closed before the screen showed. Retry." : null,
      details: `WebSocket closed with code ${event.closeCode}${event.reason ? ` (${event.reason})` : ""} during the VNC handshake`,
      stage: "proxy",
    });
    return;
  }
  teardown();
  const code = /^[A-Z][A-Z0-9_]+$/.test(event.reason) ? event.reason
    : TRANSIENT_CLOSE_CODES.has(event.closeCode) ? "CONNECTION_LOST" : "SESSION_CLOSED";
  const fallback = code === "CONNECTION_LOST"
    ? { error: "Connection lost", message: "The connection to limen dropped. Reconnect." }
    : code === "SESSION_CLOSED" ? { error: "Console closed", message: "The console session ended. Reconnect." }
      : {};
  const full = describe({
    code,
    ...fallback,
    details: `WebSocket closed with code ${event.closeCode}${event.reason ? ` (${event.reason})` : ""}`,
  });
  showOverlay("Console session ended");
  ui.stages.replaceChildren();
  ui.sub.textContent = "";
  setState("ended", full.error, "bad");
  setConnected(false);
  setConnectButton(false);
  ui.extra.replaceChildren(
    errorBox(full, { actions: recoveryActions(code, "Reconnect"), extraClass: "ended" }),
  );
  refreshVm();
  if (TRANSIENT_CODES.has(code) || TRANSIENT_CLOSE_CODES.has(event.closeCode)) scheduleReconnect();
  focusPanelAction();
}

function primaryButton(label, onClick) {
  return h("button", { class: "btn primary", type: "button", onclick: onClick, text: label });
}

function recoveryActions(code, retryLabel) {
  const actions = [primaryButton(retryLabel, () => {
    attempt = 0;
    connect();
  })];
  if (code === "VM_NOT_RUNNING" || code === "VM_STOPPED") {
    actions.push(h("button", { class: "btn", type: "button", onclick: startAndConnect, text: "Start VM and connect" }));
  }
  actions.push(h("a", { class: "btn", href: "/", text: "Back to VMs" }));
  return actions;
}

function focusPanelAction() {
  const button = ui.extra.querySelector(".btn.primary");
  if (button) button.focus({ preventScroll: true });
}

async function startAndConnect(event) {
  const button = event.currentTarget;
  button.disabled = true;
  button.replaceChildren(spinner(), "Starting VM…");
  try {
    await api("POST", `/api/vms/${encodeURIComponent(vmId)}/start`);
  } catch (exc) {
    if (!(exc instanceof ApiError) || exc.code !== "VM_ALREADY_RUNNING") {
      const box = exc instanceof ApiError ? exc.body : { error: "Failed to start VM", code: "CLIENT_ERROR", details: String(exc) };
      ui.extra.replaceChildren(errorBox(box, { actions: recoveryActions("VM_NOT_RUNNING", "Retry") }));
      return;
    }
  }
  attempt = 0;
  connect();
}

// -- reconnecting with visible backoff -------------------------------------------------------------

function scheduleReconnect() {
  cancelBackoff();
  if (attempt >= BACKOFF_SECONDS.length) {
    ui.extra.append(h("p", { class: "backoff", text: `Gave up reconnecting after ${attempt} attempts.` }));
    return;
  }
  let remaining = BACKOFF_SECONDS[attempt];
  attempt += 1;
  const text = h("span", {});
  const line = h(
    "div",
    { class: "backoff", role: "status", "aria-live": "polite" },
    text,
    h("button", { class: "btn small", type: "button", onclick: () => connect(), text: "Reconnect now" }),
    h("button", { class: "btn small", type: "button", onclick: () => { cancelBackoff(); line.remove(); }, text: "Cancel" }),
  );
  const render = () => {
    text.textContent = `Reconnecting in ${remaining} s (attempt ${attempt} of ${BACKOFF_SECONDS.length})…`;
  };
  render();
  ui.extra.append(line);
  backoffTimer = setInterval(() => {
    remaining -= 1;
    if (remaining <= 0) {
      connect();
    } else {
      render();
    }
  }, 1000);
}

function cancelBackoff() {
  if (backoffTimer !== null) clearInterval(backoffTimer);
  backoffTimer = null;
}

// -- toolbar ---------------------------------------------------------------------------------------

function onConnectButton() {
  if (ui.connect.dataset.action === "disconnect") {
    cancelBackoff();
    if (connection) connection.close();
  } else {
    attempt = 0;
    connect();
  }
}

function toggleScale() {
  const on = ui.scale.getAttribute("aria-pressed") !== "true";
  ui.scale.setAttribute("aria-pressed", String(on));
  ui.screen.classList.toggle("native", !on);
  try {
    localStorage.setItem("limen.console.scale", on ? "1" : "0");
  } catch {
    /* storage may be off */
  }
  if (rfb) rfb.scaleViewport = on;
}

async function toggleFullscreen() {
  try {
    if (document.fullscreenElement) await document.exitFullscreen();
    else await ui.screenWrap.requestFullscreen();
  } catch (exc) {
    setState(ui.body.dataset.consoleState, `Fullscreen not available: ${exc.message || exc}`, "bad");
  }
}

function stopTyping() {
  if (typing !== null) typing.cancelled = true;
  typing = null;
}

/**
 * Types planned keys into the VM one character at a time (typing-pacer.js says why and how fast), with
 * Shift pressed and released around shifted characters. A newer paste or a disconnect stops it.
 */
async function typeText(keys) {
  stopTyping();
  const job = { cancelled: false };
  typing = job;
  const session = rfb;
  const socket = vncSocket;
  try {
    await typeKeys(keys, {
      send: (keysym, code, down) => session.sendKey(keysym, code, down),
      pending: () => (socket ? socket.bufferedAmount : 0),
      screenUpdates: () => vncMessages,
      sleep: (ms) => new Promise((resolve) => { setTimeout(resolve, ms); }),
      now: () => performance.now(),
      cancelled: () => job.cancelled || session !== rfb,
      onProgress: (done, total) => {
        if (done % 10 === 0 || done === total) {
          setState("connected", `Typing ${done} of ${total} characters…`, "busy");
        }
      },
    });
  } catch (exc) {
    if (exc instanceof TypingCancelled) return;
    if (session === rfb) setState("connected", `Typing stopped: ${exc.message || exc}`, "bad");
    return;
  } finally {
    if (typing === job) typing = null;
  }
  if (session !== rfb) return;
  setState("connected", `Connected · typed ${keys.length} characters`, "ok");
  ui.body.dataset.typed = String(Number(ui.body.dataset.typed || "0") + 1);
  rfb.focus({ preventScroll: true });
}

function onPasteSubmit(event) {
  event.preventDefault();
  const { keys, refused } = planTyping(ui.pasteText.value);
  if (refused.length > 0) {
    ui.pasteError.textContent = refusalMessage(refused);
    ui.pasteError.hidden = false;
    ui.pasteText.setAttribute("aria-invalid", "true");
    ui.pasteText.focus();
    return;
  }
  ui.pasteError.hidden = true;
  ui.pasteText.removeAttribute("aria-invalid");
  ui.pasteDialog.close();
  // Closing the dialog hands the focus back to "Paste as typing"; the keys the person presses next (while
  // the text is typed, and after) belong to the VM's screen.
  if (rfb) rfb.focus({ preventScroll: true });
  if (keys.length > 0 && rfb) typeText(keys);
}

// -- leaving the screen with the keyboard ----------------------------------------------------------

function screenHasFocus() {
  return ui.screen.contains(document.activeElement) && document.activeElement !== ui.screen;
}

/**
 * Leaves the screen: releases every key noVNC holds down in the VM, then moves the focus to the toolbar.
 * noVNC releases them on the window's blur event; the chord's own last key never reached it (this runs
 * in the capture phase, before noVNC's listener), so no modifier stays pressed in the guest.
 */
function leaveConsole() {
  window.dispatchEvent(new Event("blur"));
  if (rfb) rfb.blur();
  const target = ui.keys.disabled ? ui.scale : ui.keys;
  target.focus();
  setState("connected", "Left the screen · Tab to the screen to type into the VM", "ok");
}

function wireLeaveChord() {
  document.addEventListener("keydown", (event) => {
    if (!rfb || !screenHasFocus() || !isLeaveChord(event)) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    leaveConsole();
  }, true);
  // The screen itself is in the tab order; reaching it hands the focus to noVNC's canvas.
  ui.screen.addEventListener("focus", () => {
    if (rfb) rfb.focus({ preventScroll: true });
  });
}

// -- send keys menu --------------------------------------------------------------------------------

function menuItems() {
  return [...ui.keysMenu.querySelectorAll('[role="menuitem"]')];
}

function openKeysMenu() {
  ui.keysMenu.hidden = false;
  ui.keys.setAttribute("aria-expanded", "true");
  menuItems()[0].focus();
}

function closeKeysMenu(returnFocus = true) {
  if (ui.keysMenu.hidden) return;
  ui.keysMenu.hidden = true;
  ui.keys.setAttribute("aria-expanded", "false");
  if (returnFocus) ui.keys.focus();
}

function sendCombo(combo) {
  closeKeysMenu(false);
  if (!rfb) return;
  for (const [keysym, code, down] of comboEvents(combo)) rfb.sendKey(keysym, code, down);
  setState("connected", `Sent ${combo.label}`, "ok");
  rfb.focus({ preventScroll: true });
}

function wireKeysMenu() {
  ui.keysMenu.replaceChildren(...SEND_KEYS.map((combo) => h(
    "li",
    { role: "none" },
    h("button", {
      type: "button", role: "menuitem", tabindex: "-1", class: "menu-item", dataset: { combo: combo.id },
      text: combo.label, onclick: () => sendCombo(combo),
    }),
  )));
  ui.keys.addEventListener("click", () => {
    if (ui.keysMenu.hidden) openKeysMenu();
    else closeKeysMenu();
  });
  ui.keys.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" && ui.keysMenu.hidden) {
      event.preventDefault();
      openKeysMenu();
    }
  });
  ui.keysMenu.addEventListener("keydown", (event) => {
    const items = menuItems();
    const index = items.indexOf(document.activeElement);
    const moves = { ArrowDown: index + 1, ArrowUp: index - 1, Home: 0, End: items.length - 1 };
    if (event.key in moves) {
      event.preventDefault();
      items[(moves[event.key] + items.length) % items.length].focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      closeKeysMenu();
    } else if (event.key === "Tab") {
      closeKeysMenu(false);
    }
  });
  document.addEventListener("click", (event) => {
    if (!ui.keysMenu.hidden && !ui.keysMenu.parentElement.contains(event.target)) closeKeysMenu(false);
  });
}

// -- clipboard -------------------------------------------------------------------------------------

function showVmClipboard(text) {
  ui.clipFromVm.value = text;
  ui.clipCopy.disabled = text === "";
  ui.clipCopyStatus.textContent = "";
  ui.clipboard.classList.toggle("has-news", !ui.clipDialog.open && text !== "");
  ui.clipboard.textContent = ui.clipboard.classList.contains("has-news") ? "Clipboard •" : "Clipboard";
}

async function copyVmClipboard() {
  const text = ui.clipFromVm.value;
  try {
    await navigator.clipboard.writeText(text);
    ui.clipCopyStatus.textContent = "Copied.";
    return;
  } catch {
    /* no clipboard API (plain http) or refused: fall back to the selection */
  }
  ui.clipFromVm.focus();
  ui.clipFromVm.select();
  const copied = document.execCommand && document.execCommand("copy");
  ui.clipCopyStatus.textContent = copied ? "Copied." : "The browser refused: the text is selected, press Ctrl+C.";
}

function wireClipboard() {
  ui.clipboard.addEventListener("click", () => {
    ui.clipboard.classList.remove("has-news");
    ui.clipboard.textContent = "Clipboard";
    ui.clipSendStatus.textContent = "";
    ui.clipDialog.showModal();
    (ui.clipFromVm.value ? ui.clipCopy : ui.clipToVm).focus();
  });
  ui.clipCopy.addEventListener("click", copyVmClipboard);
  ui.clipSend.addEventListener("click", () => {
    if (!rfb) return;
    rfb.clipboardPasteFrom(ui.clipToVm.value);
    ui.clipSendStatus.textContent = `Sent ${[...ui.clipToVm.value].length} characters to the VM's clipboard.`;
  });
  ui.clipClose.addEventListener("click", () => ui.clipDialog.close());
}

/** Tells whether keys go to the VM: only while the screen has the focus. */
function wireFocusHint() {
  ui.screen.addEventListener("focusin", () => {
    ui.leaveHint.hidden = !rfb;
    if (ui.body.dataset.consoleState === "connected" && typing === null) {
      setState("connected", `Connected · keys go to the VM · ${LEAVE_CHORD_LABEL} leaves`, "ok");
    }
  });
  ui.screen.addEventListener("focusout", () => {
    ui.leaveHint.hidden = true;
    if (ui.body.dataset.consoleState === "connected" && typing === null) {
      setState("connected", "Connected · click or Tab to the screen to type", "ok");
    }
  });
}

function wireToolbar() {
  ui.connect.addEventListener("click", onConnectButton);
  ui.scale.addEventListener("click", toggleScale);
  ui.fullscreen.addEventListener("click", toggleFullscreen);
  document.addEventListener("fullscreenchange", () => {
    ui.fullscreen.setAttribute("aria-pressed", String(Boolean(document.fullscreenElement)));
  });
  ui.paste.addEventListener("click", () => {
    ui.pasteError.hidden = true;
    ui.pasteText.removeAttribute("aria-invalid");
    ui.pasteDialog.showModal();
    ui.pasteText.focus();
  });
  ui.pasteCancel.addEventListener("click", () => ui.pasteDialog.close());
  ui.pasteForm.addEventListener("submit", onPasteSubmit);
  wireKeysMenu();
  wireClipboard();
  wireLeaveChord();
  let savedScale = null;
  try {
    savedScale = localStorage.getItem("limen.console.scale");
  } catch {
    savedScale = null;
  }
  if (savedScale === "0") toggleScale();
  window.addEventListener("pagehide", () => {
    cancelBackoff();
    if (connection && connection.phase !== Phase.ENDED && connection.phase !== Phase.FAILED) connection.close();
  });
}

// -- the VM header ---------------------------------------------------------------------------------

async function refreshVm() {
  try {
    const vm = await api("GET", `/api/vms/${encodeURIComponent(vmId)}`, undefined, { timeoutMs: 8000 });
    vmName = vm.name;
    vmUuid = vm.uuid;
    ui.name.textContent = vm.name;
    ui.name.title = vm.name; // a long name is cut short in the bar
    ui.state.replaceChildren(stateBadge(vm.state));
    document.title = `${vm.name} — console — limen`;
  } catch {
    ui.name.textContent = vmName; // keep the last known state: the console panel tells what failed
  }
}

/** The badge follows the VM as libvirt reports it (a `virsh destroy` included), not the console's own
 * connection: "Connected" beside "Stopped" would contradict itself. */
function onVmEvent(change) {
  if (!vmUuid || change.uuid !== vmUuid) return;
  if (change.state) ui.state.replaceChildren(stateBadge(change.state));
  else refreshVm();
}

// -- start -----------------------------------------------------------------------------------------

function serialUi() {
  const byId = (id) => document.getElementById(id);
  return {
    tabScreen: byId("tab-screen"), tabSerial: byId("tab-serial"), screenWrap: ui.screenWrap,
    serialWrap: byId("serial-wrap"), term: byId("serial-term"), status: byId("serial-status"),
    copy: byId("serial-copy"), paste: byId("serial-paste"), reconnect: byId("serial-reconnect"),
  };
}

async function main() {
  ui.name.textContent = vmId || "Console";
  new SerialTab({ vmId, ui: serialUi() }).wire(); // the Serial tab works even without noVNC
  wireToolbar();
  wireFocusHint();
  // One read now, then the VM's changes as they happen (GET /api/events; polled only while it is down).
  refreshVm();
  new VmEvents({ reload: refreshVm, onEvent: onVmEvent }).start();
  const codes = loadErrorCodes();
  try {
    // Bounded like everything else: a script that never arrives must not leave the page "Loading…".
    const loaded = import(`${NOVNC}/core/rfb.js`);
    const late = new Promise((_, reject) => {
      setTimeout(() => reject(new Error(`not loaded within ${NOVNC_LOAD_MS / 1000} s`)), NOVNC_LOAD_MS);
    });
    const rfbModule = await Promise.race([loaded, late]);
    RFB = rfbModule.default;
  } catch (exc) {
    errorCodes = await codes;
    ui.stages.replaceChildren();
    onFailure({
      error: "noVNC is not installed",
      code: "NOVNC_MISSING",
      details: `loading ${NOVNC}/core/rfb.js failed: ${exc}`,
      message: "Run `make install` (it runs npm ci in web/) and restart limen, then reload this page.",
    });
    return;
  }
  errorCodes = await codes;
  connect();
}

main();

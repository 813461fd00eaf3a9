// The console page: the stage list while the console opens, noVNC once it is open, and a clear panel
// for every way it can fail or end. Query parameters: ?watchdog=SECONDS (default 10).
// Each connection first asks for a one-time console ticket (POST /api/vms/{id}/console-ticket) and opens
// the WebSocket with ?ticket=; the ticket is never shown or stored.

import { api, ApiError, goToLogin, loadConsoleStages, loadErrorCodes, whenSignInEnds } from "./api.js";
import { errorBox, formatMs, h, spinner, stateBadge, vmBadge } from "./dom.js";
import { clientError, formatNumber, localizedError, onLanguageChange, stageName, stageStatus, t } from "./i18n.js";
import { ConsoleConnection, consoleUrl, DEFAULT_WATCHDOG_MS } from "./console-client.js";
import { wireFullscreen } from "./console-fullscreen.js";
import {
  fitWindowToScreen, popoutFeatures, popoutSize, popoutUrl, popoutWindowName, screenSize, THIN_BAR_PX,
  watchScreenSize,
} from "./console-popout.js";
import { comboEvents, isLeaveChord, LEAVE_CHORD_LABEL, SEND_KEYS } from "./key-combos.js";
import { typeKeys, TypingCancelled } from "./typing-pacer.js";
import { FILLER, inputKeys, refills } from "./touch-keyboard.js";
import { describeChar, keyEvents, KEYSYM, planTyping, refusalMessage } from "./us-keyboard.js";
import { VmEvents } from "./vm-events.js";
import { SerialTab } from "./serial-console.js";
import {
  BACKOFF_SECONDS, backoffSeconds, closeOutcome, describeError, missingVmBadge, retriesByItself,
  stageLabels as stageLabelsOf, unansweringHostOf, VM_DOWN_CODES,
} from "./console-outcome.js";

// An address naming noVNC's content (cached for good), given by the page; the plain one otherwise.
// noVNC's module: one file joined by `make web` (limen-rfb.js), or noVNC's own core/rfb.js.
const NOVNC_MODULE = document.querySelector('meta[name="limen-novnc-module"]')?.content || "/static/novnc/core/rfb.js";
const NOVNC_LOAD_MS = 20000;
// The "keys go to the VM · Ctrl+Alt+Shift leaves" hint lies over the screen's bottom rows (a prompt there
// when the screen fills the window): shown when the screen takes the focus, gone after this long. The
// status line keeps saying it.
const LEAVE_HINT_MS = 5000;
// What one paste may type (≈ 10 minutes at the pacer's rate) and send to the VM's clipboard, in characters. A
// longer text is refused whole, saying so: the textareas' maxlength used to cut a paste silently.
const PASTE_MAX_CHARS = 10000;
const CLIPBOARD_MAX_CHARS = 100000;
// A request finds the sign-in ended (the account disabled, the token revoked): an open console ends moments
// later with the reason (ACCESS_REVOKED names who did it), which this page shows and the login page's notice
// cannot. The login page at once when no console is open, or when none has ended after this long.
const SIGN_IN_ENDED_WAIT_MS = 5000;
// The ends that say the access itself ended; their panel stays when the page's next request finds it so.
const ENDED_BY_ACCESS = new Set(["ACCESS_REVOKED", "UNAUTHORIZED", "SESSION_TERMINATED"]);
let signInEndedTimer = null;
let ticketPending = false;
// Stage name → what the page calls it ("Failed at: …"), from the server's stage table (GET /api/console-stages).
let stageLabels = {};

// What this script has written, each part by a function that writes it in the page's current language:
// the language menu changes this page's language in place (language-switch.js, the console kept), and
// each is written again then. Keyed by the part of the page, so only its latest writing is kept.
const writers = new Map();

function write(part, writer) {
  writers.delete(part); // written again in the order last written: the panel before its countdown
  writers.set(part, writer);
  writer();
}

/** `element`'s text as `say()` tells it (empty without it), said again when the language changes. */
function sayIn(part, element, say = () => "") {
  write(part, () => { element.textContent = say(); });
}

onLanguageChange(() => {
  for (const writer of writers.values()) writer();
  sayStagesAgain();
});

// The console lives at /vms/{id}/console (/console/{id}, its old address, redirects there); ?popout=1
// makes it the console's own window (console-popout.js).
const vmId = decodeURIComponent((window.location.pathname.match(/^\/vms\/([^/]+)\/console\/?$/) || [])[1] || "");
const params = new URLSearchParams(window.location.search);
const backLink = document.querySelector(".console-bar .back");
if (backLink && vmId) {
  backLink.href = `/vms/${encodeURIComponent(vmId)}`;
  write("back-link", () => {
    backLink.textContent = t("console.back_details");
    backLink.setAttribute("aria-label", t("console.back_details_label"));
  });
}
const watchdogMs = parseWatchdog(params.get("watchdog"));
const isPopout = params.get("popout") === "1";

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
  typingCut: document.getElementById("typing-cut"),
  stages: document.getElementById("stages"),
  extra: document.getElementById("panel-extra"),
  keys: document.getElementById("btn-keys"),
  keysMenu: document.getElementById("keys-menu"),
  clipboard: document.getElementById("btn-clipboard"),
  leaveHint: document.getElementById("leave-hint"),
  paste: document.getElementById("btn-paste"),
  keyboard: document.getElementById("btn-keyboard"),
  touchInput: document.getElementById("touch-input"),
  scale: document.getElementById("btn-scale"),
  fullscreen: document.getElementById("btn-fullscreen"),
  popout: document.getElementById("btn-popout"),
  bar: document.querySelector(".console-bar"),
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
let typing = null; // the paste being typed: { cancelled, sent, total }
let vncSocket = null; // the WebSocket noVNC speaks over: its bufferedAmount paces typing
// A console whose handshake ended before noVNC's module was ready (the page imports it only once its first
// socket is made, see main): its VNC frames are held in order and given to noVNC once it attaches.
// { socket, frames, hold }
let heldSocket = null;
let novncFailure = null; // why noVNC's module did not load: every connection fails with it
let vncMessages = 0; // messages from the VNC server so far: a screen change tells typing the guest keeps up
let vmName = vmId;
let vmUuid = null; // known once the VM has been read: events name VMs by UUID
let unansweringHost = null; // the VM's host while it does not answer (GET /api/vms/{id}: host_available false)
let connectGeneration = 0; // a newer connect() makes an older one's pending ticket request moot
// The first connection's ticket, asked for as the page starts, beside its other first requests: the POST's
// round trip then costs nothing on the way to the screen. Later connections ask when they start.
let earlyTicket = null;
let popoutWindow = null; // the console's own window, once this page opened it
let popoutWatch = null; // notices that window closing
let lastProblem = null; // the code the last failure or end showed, until the VM's own change answers it
// How the last live console ended (a failure to connect is no end: its VM_NOT_FOUND is as ambiguous as the
// API's); null while one runs. It tells a deleted VM (VM_NOT_FOUND) from one given away (ACCESS_REVOKED).
let lastEnd = null;
let serialTab = null; // the Serial tab (serial-console.js)
let serialConsole = null; // whether the VM has a serial console, once read

function parseWatchdog(value) {
  const seconds = Number.parseFloat(value ?? "");
  if (!Number.isFinite(seconds) || seconds <= 0) return DEFAULT_WATCHDOG_MS;
  return Math.min(Math.max(seconds, 0.5), 600) * 1000;
}

/** The status line: `text` a function saying it (said again in a new language), or a text as it is. */
function setState(state, text, tone = "") {
  ui.body.dataset.consoleState = state;
  ui.status.className = `conn-status ${tone}`.trim();
  write("status", () => {
    const said = typeof text === "function" ? text() : text;
    ui.status.replaceChildren(...(tone === "busy" ? [spinner(), said] : [said]));
    ui.status.title = said; // the bar may cut it short
  });
}

function setConnected(connected) {
  ui.keys.disabled = !connected;
  ui.paste.disabled = !connected;
  ui.keyboard.disabled = !connected;
  ui.clipboard.disabled = !connected;
  if (!connected) closeKeysMenu(false);
}

/** The toolbar's Disconnect / Connect; after the VM stopped it reads "Start VM and connect" as the panel's way
 * back does (connecting starts a stopped VM: a plain "Connect" started it unsaid). */
// Ends after which the screen's controls have nothing to act on: the VM is gone, or it has no screen.
const NOTHING_TO_SHOW = new Set(["VM_NOT_FOUND", "VNC_NOT_CONFIGURED"]);

function setConnectButton(open) {
  const start = !open && VM_DOWN_CODES.has(lastProblem);
  const nothing = !open && NOTHING_TO_SHOW.has(lastProblem);
  ui.connect.disabled = nothing; // it would only say the same again
  for (const control of [ui.scale, ui.fullscreen, ui.popout]) if (control) control.disabled = nothing;
  write("connect-button", () => {
    ui.connect.textContent = open ? t("console.disconnect") : t(start ? "console.start_and_connect" : "console.connect");
  });
  ui.connect.dataset.action = open ? "disconnect" : start ? "start" : "connect";
}

/** Title and message of a code the page names itself, in the page's language. */
function pageTexts(code) {
  const { error, message } = clientError(code, "");
  return { error, message };
}

/** The server's title and message for a code it named without them (close frames carry only the code). */
function describe(err) {
  return describeError(err, errorCodes, { error: t("error.SESSION_CLOSED.title"), message: t("console.reconnect_to_open") });
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
  const label = outcome === "done" ? "console.stage.done" : "console.stage.failed";
  item.querySelector(".icon").setAttribute("aria-label", t(label));
  item.querySelector(".icon").dataset.i18nAriaLabel = label;
}

/** The stage list in the page's new language: the server's stages by their stage (their frames' texts are
 * kept on them), the page's own by their catalogue key (data-i18n, as the static texts). */
function sayStagesAgain() {
  for (const item of ui.stages.querySelectorAll(".stage[data-stage]:not([data-stage=''])")) {
    item.querySelector(".msg").textContent = stageStatus(item.dataset.stage, item.dataset.message);
  }
}

/** A stage of the list: a server's stage by its `stage` and its frame's (English) `message`, or the page's
 * own by its catalogue key (`key`). */
function addStage({ stage = null, message = "", key = null }, elapsedMs, { source = "server" } = {}) {
  finishStage(currentStage(), "done");
  const item = h(
    "li",
    { class: `stage current ${source}`, dataset: { source, stage: stage || "", message } },
    h("span", { class: "icon", role: "img", "aria-label": t("console.stage.in_progress"),
                dataset: { i18nAriaLabel: "console.stage.in_progress" } }, spinner()),
    h("span", { class: "msg", text: key ? t(key) : stageStatus(stage, message), dataset: key ? { i18n: key } : {} }),
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
    showSub(() => t("console.elapsed", { elapsed: formatMs(performance.now() - started), seconds }));
  };
  tick();
  elapsedTicker = setInterval(tick, 200);
}

function stopTicker() {
  if (elapsedTicker !== null) clearInterval(elapsedTicker);
  elapsedTicker = null;
}

// -- connecting ------------------------------------------------------------------------------------

/** The panel over the screen, its title said by `title()` (again in a new language). */
function showOverlay(title) {
  ui.overlay.hidden = false;
  write("panel-title", () => { ui.title.textContent = title(); });
}

/** The panel's content under its stages, made by `render()` (again in a new language, keeping a
 * reconnect's countdown that follows it). */
function showExtra(render) {
  ui.extra.replaceChildren();
  write("panel-extra", () => ui.extra.replaceChildren(...render(), ...ui.extra.querySelectorAll(":scope > .backoff")));
}

/** The panel's line under its title, said by `text()`. */
function showSub(text) {
  write("panel-sub", () => { ui.sub.textContent = text(); });
}

async function connect() {
  stopWatchingPopout();
  cancelBackoff();
  teardown();
  ui.stages.replaceChildren();
  showExtra(() => []);
  const shownAttempt = attempt;
  showOverlay(() => (shownAttempt > 0 ? t("console.reconnecting_attempt", { attempt: shownAttempt }) : t("console.opening")));
  setState("connecting", () => t("console.state.connecting"), "busy");
  setConnected(false);
  setConnectButton(true);
  startTicker();
  addStage({ key: "console.stage.client_open" }, null, { source: "client" });
  const generation = ++connectGeneration;
  if (novncFailure) {
    onFailure(novncFailure);
    return;
  }
  const pending = earlyTicket || requestTicket();
  earlyTicket = null;
  let ticket;
  try {
    ticket = await pending;
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

async function requestTicket() {
  ticketPending = true;
  try {
    return await api("POST", `/api/vms/${encodeURIComponent(vmId)}/console-ticket`, undefined,
                     { timeoutMs: watchdogMs });
  } finally {
    ticketPending = false;
  }
}

/** Why no console ticket came: limen unreachable is CONNECTION_FAILED, as for the WebSocket itself. */
function ticketFailure(exc) {
  if (exc instanceof ApiError && exc.status === 0) {
    return clientError("CONNECTION_FAILED", `console ticket: ${exc.details}`, { source: "client" });
  }
  if (exc instanceof ApiError) return { ...exc.body, source: "client" };
  return clientError("CLIENT_ERROR", `console ticket: ${exc}`, { source: "client" });
}

function onConnectionEvent(event) {
  switch (event.kind) {
    case "opened": {
      const item = currentStage();
      if (item) item.querySelector(".time").textContent = `+${formatMs(event.elapsedMs)}`;
      finishStage(item, "done");
      setState("handshake", () => t("console.state.checking"), "busy");
      break;
    }
    case "status":
      // The frame's text is English (the seed's, byte for byte); the page shows it in its language.
      addStage({ stage: event.stage, message: event.message }, event.elapsedMs);
      setState("handshake", () => stageStatus(event.stage, event.message), "busy");
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
  setState("handshake", () => t("console.state.starting_screen"), "busy");
  if (RFB) {
    startRfb(socket, []);
    return;
  }
  const frames = [];
  const hold = (event) => { frames.push(event.data); };
  socket.addEventListener("message", hold);
  heldSocket = { socket, frames, hold };
  connection.holdForVncClient();
}

/** The held socket and its frames, no longer held (null if none is). */
function takeHeldSocket() {
  const held = heldSocket;
  heldSocket = null;
  held?.socket.removeEventListener("message", held.hold);
  return held;
}

/** noVNC's module has arrived: the socket held for it, if it is still open, goes to noVNC now. */
function releaseHeldSocket() {
  const held = takeHeldSocket();
  if (held?.socket.readyState !== WebSocket.OPEN) return; // none, or it ended meanwhile and the page said so
  connection.vncClientAttached();
  startRfb(held.socket, held.frames);
}

/** Forgets the held socket, closing it: what rfb.disconnect() does to a socket noVNC has. */
function dropHeldSocket() {
  const held = takeHeldSocket();
  if (held && held.socket.readyState <= WebSocket.OPEN) held.socket.close(1000, "USER_DISCONNECT");
}

function startRfb(socket, heldFrames) {
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
    setState("connected", () => t("console.state.connected"), "ok");
    setConnected(true);
    lastEnd = null;
    rfb.focus({ preventScroll: true });
    refreshVm();
    if (isPopout) fitPopout();
  });
  rfb.addEventListener("clipboard", (e) => {
    if (session !== rfb) return;
    showVmClipboard(String(e.detail && e.detail.text || ""));
  });
  rfb.addEventListener("securityfailure", (e) => {
    if (session !== rfb) return;
    const reason = e.detail && e.detail.reason ? e.detail.reason : `status ${e.detail && e.detail.status}`;
    connection.fail(clientError("VNC_SECURITY_FAILED", String(reason), { source: "client" }));
  });
  rfb.addEventListener("credentialsrequired", () => {
    if (session !== rfb) return;
    connection.fail(clientError("VNC_AUTH_REQUIRED", "the VM's VNC server asks for credentials; limen's VMs use none",
                                { source: "client" }));
  });
  // noVNC set the socket's onmessage as it attached: the frames held for it go there first, in order,
  // before any frame still to arrive (those wait for this task to end).
  for (const data of heldFrames) socket.dispatchEvent(new MessageEvent("message", { data }));
}

function teardown() {
  sayTypingCut(stopTyping()); // said on the panel the end shows: the paste did not finish
  dropHeldSocket();
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
  stopSignInEndedTimer();
  teardown();
  stopTicker();
  const item = currentStage();
  finishStage(item, "failed");
  for (const other of ui.stages.querySelectorAll(".stage.current")) finishStage(other, "failed");
  const full = describe(err);
  lastProblem = full.code;
  const reconnecting = attempt > 0;
  showOverlay(() => (reconnecting ? t("console.reconnecting_title") : t("console.failed_title")));
  showSub(() => full.stage ? t("console.failed_at", { stage_name: stageName(full.stage, stageLabels[full.stage]), stage: full.stage }) : "");
  setState("failed", () => localizedError(full).error, "bad");
  setConnected(false);
  setConnectButton(false);
  showExtra(() => [errorBox(namingTheHost(full), { actions: recoveryActions(full.code, t("console.retry")), localize: false })]);
  if (attempt > 0 && retriesByItself(full.code)) scheduleReconnect();
  focusPanelAction();
}

whenSignInEnds((wasSignedIn) => {
  const state = ui.body.dataset.consoleState;
  if (["ended", "failed"].includes(state) && ENDED_BY_ACCESS.has(lastProblem)) return; // its panel says why
  if (ticketPending || !["connecting", "handshake", "connected"].includes(state)) {
    goToLogin(wasSignedIn); // asked to connect (or nothing open to explain): sign in again
    return;
  }
  signInEndedTimer ??= setTimeout(() => goToLogin(wasSignedIn), SIGN_IN_ENDED_WAIT_MS);
});

/** The console ended or failed: its panel says why, and stays (a sign-in that ended waits for no timer). */
function stopSignInEndedTimer() {
  clearTimeout(signInEndedTimer);
  signInEndedTimer = null;
}

function onEnded(event) {
  stopSignInEndedTimer();
  if (event.byUser) {
    teardown();
    stopTicker();
    showOverlay(() => t("console.state.disconnected"));
    ui.stages.replaceChildren();
    showSub(() => t("console.closed_by_user"));
    setState("ended", () => t("console.state.disconnected"));
    setConnected(false);
    setConnectButton(false);
    showExtra(() => [h("div", { class: "error-actions" }, primaryButton(t("console.connect"), connect))]);
    focusPanelAction();
    return;
  }
  const { failure, ended: full, reconnect } = closeOutcome(event, errorCodes, pageTexts);
  if (failure) {
    // Closed after the hand-off but before the screen showed: a failure of the VNC handshake.
    onFailure(failure);
    return;
  }
  teardown();
  lastProblem = full.code;
  lastEnd = full.code;
  showOverlay(() => t("console.ended_title"));
  ui.stages.replaceChildren();
  showSub(() => "");
  setState("ended", () => localizedError(full).error, "bad");
  setConnected(false);
  setConnectButton(false);
  showExtra(() => [
    errorBox(namingTheHost(full), {
      actions: recoveryActions(full.code, t("console.reconnect")), extraClass: "ended", localize: false,
    }),
  ]);
  refreshVm();
  if (reconnect) scheduleReconnect();
  focusPanelAction();
}

function primaryButton(label, onClick) {
  return h("button", { class: "btn primary", type: "button", onclick: onClick, text: label });
}

function recoveryActions(code, retryLabel) {
  const back = h("a", { class: "btn", href: "/", text: t("console.back_to_vms") });
  // Deleted meanwhile: nothing to reconnect to.
  if (code === "VM_NOT_FOUND") return [h("a", { class: "btn primary", href: "/", text: t("console.back_to_vms") })];
  // No screen to retry: a VM without graphics is reached through its serial console, when it has one.
  if (code === "VNC_NOT_CONFIGURED") {
    return serialConsole === false ? [back]
      : [primaryButton(t("console.open_serial"), () => serialTab.show(true)), back];
  }
  // Connecting starts a stopped VM (the console's auto-start): the one way back says so, so that a VM
  // stopped on purpose is not started by a button that reads "Reconnect".
  if (VM_DOWN_CODES.has(code)) return [primaryButton(t("console.start_and_connect"), startAndConnect), back];
  return [primaryButton(retryLabel, () => {
    attempt = 0;
    connect();
  }), back];
}

function focusPanelAction() {
  const button = ui.extra.querySelector(".btn.primary");
  if (button) button.focus({ preventScroll: true });
}

async function startAndConnect(event) {
  const button = event.currentTarget;
  lastProblem = null; // started from here: its "running" event is not news to this page
  button.disabled = true;
  button.replaceChildren(spinner(), t("console.starting_vm"));
  try {
    await api("POST", `/api/vms/${encodeURIComponent(vmId)}/start`);
  } catch (exc) {
    if (!(exc instanceof ApiError) || exc.code !== "VM_ALREADY_RUNNING") {
      const box = exc instanceof ApiError ? exc.body : clientError("CLIENT_ERROR", `POST /api/vms/…/start: ${exc}`);
      lastProblem = "VM_NOT_RUNNING";
      setConnectButton(false);
      showExtra(() => [errorBox(box, { actions: recoveryActions("VM_NOT_RUNNING", t("console.retry")) })]);
      return;
    }
  }
  attempt = 0;
  connect();
}

// -- reconnecting with visible backoff -------------------------------------------------------------

function scheduleReconnect() {
  cancelBackoff();
  let remaining = backoffSeconds(attempt);
  if (remaining === null) {
    const gaveUp = h("p", { class: "backoff" });
    const attempts = attempt;
    ui.extra.append(gaveUp);
    write("backoff", () => { gaveUp.textContent = t("console.gave_up", { attempts }); });
    return;
  }
  attempt += 1;
  const text = h("span", {});
  const line = h(
    "div",
    { class: "backoff", role: "status", "aria-live": "polite" },
    text,
    h("button", { class: "btn small", type: "button", onclick: () => connect(), text: t("console.reconnect_now"),
                  dataset: { i18n: "console.reconnect_now" } }),
    h("button", { class: "btn small", type: "button", onclick: () => { cancelBackoff(); line.remove(); }, text: t("common.cancel"),
                  dataset: { i18n: "common.cancel" } }),
  );
  const render = () => {
    text.textContent = t("console.reconnecting_in", { seconds: remaining, attempt, total: BACKOFF_SECONDS.length });
  };
  ui.extra.append(line);
  write("backoff", render);
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

function onConnectButton(event) {
  if (ui.connect.dataset.action === "disconnect") {
    cancelBackoff();
    if (connection) connection.close();
  } else if (ui.connect.dataset.action === "start") {
    startAndConnect(event);
  } else if (popoutWindow && !popoutWindow.closed) {
    showHere(); // one console at a time: the pop-out closes
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

// -- the console in its own window -----------------------------------------------------------------

/** Opens the console in its own window, sized to the VM's screen; this page then offers to reopen it. */
function popOut() {
  if (popoutWindow && !popoutWindow.closed) { // already open: bring it forward rather than reload it
    popoutWindow.focus();
    showPoppedOut();
    return;
  }
  const size = popoutSize(screenSize(ui.screen), THIN_BAR_PX,
                          { width: window.screen.availWidth, height: window.screen.availHeight });
  const opened = window.open(popoutUrl(vmId), popoutWindowName(vmId), popoutFeatures(size));
  if (!opened) {
    setState(ui.body.dataset.consoleState, () => t("console.popout_blocked"), "bad");
    return;
  }
  popoutWindow = opened;
  showPoppedOut();
}

/** One console at a time: this page closes its own and says where the console went. */
function showPoppedOut() {
  connectGeneration += 1; // a ticket still on its way is moot
  cancelBackoff();
  connection?.close(); // a no-op once it has failed or ended
  teardown();
  stopTicker();
  showOverlay(() => t("console.popout_open_title"));
  ui.stages.replaceChildren();
  showSub(() => t("console.popout_open_sub"));
  setState("popped-out", () => t("console.popout_state"));
  setConnected(false);
  setConnectButton(false);
  showExtra(() => [h(
    "div",
    { class: "error-actions" },
    primaryButton(t("console.popout_reopen"), popOut),
    h("button", { class: "btn", type: "button", onclick: showHere, text: t("console.popout_show_here") }),
  )]);
  stopWatchingPopout();
  popoutWatch = setInterval(() => {
    if (popoutWindow && popoutWindow.closed) {
      stopWatchingPopout();
      // Said everywhere the page said "open in its own window": the panel's title, its text, the status.
      showOverlay(() => t("console.popout_closed_title"));
      showSub(() => t("console.popout_closed"));
      setState("popped-out", () => t("console.popout_closed_state"));
    }
  }, 500);
  focusPanelAction();
}

function stopWatchingPopout() {
  if (popoutWatch !== null) clearInterval(popoutWatch);
  popoutWatch = null;
}

/** Brings the console back into this page, closing the pop-out (one console at a time). */
function showHere() {
  if (popoutWindow && !popoutWindow.closed) popoutWindow.close();
  popoutWindow = null;
  attempt = 0;
  connect();
}

/** In the pop-out: the window follows the VM's screen size (at connect, and when the guest changes mode). */
function fitPopout() {
  const fitted = fitWindowToScreen(window, ui.screen, ui.bar);
  if (fitted) ui.body.dataset.fittedTo = `${fitted.width}x${fitted.height}`;
}

/** Stops the paste being typed, if any: ``{sent, total}`` of it then, else null. */
function stopTyping() {
  const job = typing;
  typing = null;
  if (job === null) return null;
  job.cancelled = true;
  showPasteButton();
  return { sent: job.sent, total: job.total };
}

/** The panel's line for a paste an end cut short (``cut`` from stopTyping), or none. */
function sayTypingCut(cut) {
  ui.typingCut.hidden = cut === null;
  sayIn("typing-cut", ui.typingCut, () => (cut === null ? "" : t("console.typing_cut", {
    done: formatNumber(cut.sent), total: formatNumber(cut.total) })));
}

/** While a paste is typed, the toolbar's "Paste as typing" is its Stop (a long paste ran its course, up to
 * an hour into a prompt that echoes nothing); its catalogue keys follow, for a language switch. */
function showPasteButton() {
  const stop = typing !== null;
  ui.paste.dataset.i18n = stop ? "console.paste_stop" : "console.paste";
  ui.paste.dataset.i18nTitle = stop ? "console.paste_stop_title" : "console.paste_title";
  ui.paste.textContent = t(ui.paste.dataset.i18n);
  ui.paste.title = t(ui.paste.dataset.i18nTitle);
  if (stop) ui.paste.removeAttribute("aria-haspopup");
  else ui.paste.setAttribute("aria-haspopup", "dialog");
}

/** Stops the paste being typed (its Stop button, a newer paste): what was typed stays; the status says how much. */
function onStopTyping() {
  const cut = stopTyping();
  if (cut !== null) {
    setState("connected", () => t("console.typing_cancelled", {
      done: formatNumber(cut.sent), total: formatNumber(cut.total) }), "ok");
  }
}

/**
 * Types planned keys into the VM one character at a time (typing-pacer.js says why and how fast), with
 * Shift pressed and released around shifted characters. Its Stop, a newer paste or a disconnect stops it,
 * saying after how many characters.
 */
async function typeText(keys) {
  onStopTyping();
  sayTypingCut(null);
  const job = { cancelled: false, sent: 0, total: keys.length };
  typing = job;
  showPasteButton();
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
      onSent: (sent) => { job.sent = sent; },
      // The guest's Caps Lock LED as QEMU reports it (noVNC 1.7's state; null: unknown, typed as off).
      capsLock: () => session._remoteCapsLock === true,
      onProgress: (done, total) => {
        if (done % 10 === 0 || done === total) {
          setState("connected", () => t("console.typing_progress", { done, total }), "busy");
        }
      },
    });
  } catch (exc) {
    if (exc instanceof TypingCancelled) return;
    const reason = Number.isFinite(exc.waitedMs) ? t("console.typing_no_send", { ms: exc.waitedMs }) : String(exc.message || exc);
    if (session === rfb) setState("connected", () => t("console.typing_stopped", { reason }), "bad");
    return;
  } finally {
    if (typing === job) {
      typing = null;
      showPasteButton();
    }
  }
  if (session !== rfb) return;
  // The keys the person presses next belong to the screen, unless they went to another control meanwhile
  // (the language menu, switching the page's language): that one keeps the focus. Focused first, so the
  // screen's "keys go to the VM" (wireFocusHint) does not replace what the paste did.
  const focus = document.activeElement;
  if (!focus || focus === document.body) rfb.focus({ preventScroll: true });
  setState("connected", () => t("console.typed", { count: keys.length }), "ok");
  ui.body.dataset.typed = String(Number(ui.body.dataset.typed || "0") + 1);
}

function onPasteSubmit(event) {
  event.preventDefault();
  const count = [...ui.pasteText.value].length;
  const { keys, refused } = planTyping(ui.pasteText.value);
  if (count > PASTE_MAX_CHARS || refused.length > 0) {
    sayIn("paste-error", ui.pasteError, () => (count > PASTE_MAX_CHARS
      ? t("paste.too_long", { count: formatNumber(count), max: formatNumber(PASTE_MAX_CHARS) })
      : refusalMessage(refused)));
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

/** Releases every key noVNC holds down in the VM (its listener for the window's blur event does it). */
function releaseHeldKeys() {
  window.dispatchEvent(new Event("blur"));
}

/**
 * Leaves the screen: releases every key noVNC holds down in the VM, then moves the focus to the toolbar.
 * noVNC releases them on the window's blur event; the chord's own last key never reached it (this runs
 * in the capture phase, before noVNC's listener), so no modifier stays pressed in the guest.
 */
function leaveConsole() {
  releaseHeldKeys();
  if (rfb) rfb.blur();
  const target = ui.keys.disabled ? ui.scale : ui.keys;
  target.focus();
  setState("connected", () => t("console.left_screen"), "ok");
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
  setState("connected", () => t("console.sent_combo", { combo: combo.label }), "ok");
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
  sayIn("clip-copy-status", ui.clipCopyStatus);
  ui.clipboard.classList.toggle("has-news", !ui.clipDialog.open && text !== "");
  write("clipboard-button", () => {
    ui.clipboard.textContent = ui.clipboard.classList.contains("has-news") ? t("console.clipboard_news") : t("console.clipboard");
  });
}

async function copyVmClipboard() {
  const text = ui.clipFromVm.value;
  try {
    await navigator.clipboard.writeText(text);
    sayIn("clip-copy-status", ui.clipCopyStatus, () => t("console.copied"));
    return;
  } catch {
    /* no clipboard API (plain http) or refused: fall back to the selection */
  }
  ui.clipFromVm.focus();
  ui.clipFromVm.select();
  const copied = document.execCommand && document.execCommand("copy");
  sayIn("clip-copy-status", ui.clipCopyStatus, () => (copied ? t("console.copied") : t("console.copy_refused")));
}

/**
 * Whether the VM's VNC server takes UTF-8 clipboard text (RFB's extended clipboard, text format, notify
 * action). Without it RFB's clipboard is ISO 8859-1 and noVNC sends "?" for every other character, so "한글"
 * arrived as "??" while the page said it was sent. Read from noVNC 1.7's own state (its pinned version).
 */
function clipboardTakesUnicode(session) {
  const formats = session._clipboardServerCapabilitiesFormats || {};
  const actions = session._clipboardServerCapabilitiesActions || {};
  return Boolean(formats[1] && actions[1 << 27]); // extendedClipboardFormatText, extendedClipboardActionNotify
}

function wireClipboard() {
  // Its text is the script's from the start (it says when the VM's clipboard has news): said again on a switch.
  write("clipboard-button", () => { ui.clipboard.textContent = t("console.clipboard"); });
  ui.clipboard.addEventListener("click", () => {
    ui.clipboard.classList.remove("has-news");
    write("clipboard-button", () => { ui.clipboard.textContent = t("console.clipboard"); });
    sayIn("clip-send-status", ui.clipSendStatus);
    ui.clipDialog.showModal();
    (ui.clipFromVm.value ? ui.clipCopy : ui.clipToVm).focus();
  });
  ui.clipCopy.addEventListener("click", copyVmClipboard);
  ui.clipSend.addEventListener("click", () => {
    if (!rfb) return;
    const count = [...ui.clipToVm.value].length;
    if (count > CLIPBOARD_MAX_CHARS) {
      ui.clipToVm.setAttribute("aria-invalid", "true");
      sayIn("clip-send-status", ui.clipSendStatus, () => t("console.clip_too_long", {
        count: formatNumber(count), max: formatNumber(CLIPBOARD_MAX_CHARS) }));
      return;
    }
    const lost = clipboardTakesUnicode(rfb) ? []
      : [...new Set([...ui.clipToVm.value].filter((char) => char.codePointAt(0) > 0xff))];
    if (lost.length) {
      ui.clipToVm.setAttribute("aria-invalid", "true");
      sayIn("clip-send-status", ui.clipSendStatus, () => t(lost.length === 1 ? "console.clip_latin1_one"
        : "console.clip_latin1", { count: formatNumber(lost.length), named: lost.slice(0, 12).map(describeChar).join(", ") }));
      return;
    }
    ui.clipToVm.removeAttribute("aria-invalid");
    rfb.clipboardPasteFrom(ui.clipToVm.value);
    sayIn("clip-send-status", ui.clipSendStatus, () => t("console.clip_sent", { count: formatNumber(count) }));
  });
  ui.clipClose.addEventListener("click", () => ui.clipDialog.close());
}

/**
 * On a touch device, the toolbar's Keyboard: tapping the screen focuses noVNC's canvas, which opens no
 * on-screen keyboard, so the button focuses a textarea whose input goes to the VM as keys (touch-keyboard.js).
 */
function wireTouchKeyboard() {
  if (!window.matchMedia("(any-pointer: coarse)").matches && !(navigator.maxTouchPoints > 0)) return;
  const input = ui.touchInput;
  let last = FILLER;
  const refill = () => {
    input.value = FILLER;
    last = FILLER;
    input.setSelectionRange(FILLER.length, FILLER.length);
  };
  ui.keyboard.hidden = false;
  input.hidden = false;
  ui.keyboard.addEventListener("click", () => {
    input.focus({ preventScroll: true });
    refill();
  });
  input.addEventListener("input", (event) => {
    const { backspaces, text } = inputKeys(last, input.value);
    last = input.value;
    if (!event.isComposing && refills(last)) refill();
    if (!rfb) return;
    for (let i = 0; i < backspaces; i += 1) {
      rfb.sendKey(KEYSYM.BackSpace, "Backspace", true);
      rfb.sendKey(KEYSYM.BackSpace, "Backspace", false);
    }
    const { keys, refused } = planTyping(text);
    const capsLock = rfb._remoteCapsLock === true;
    for (const key of keys) {
      for (const [keysym, code, down] of keyEvents(key, capsLock)) rfb.sendKey(keysym, code, down);
    }
    if (refused.length > 0) {
      setState("connected", () => t("console.keyboard_refused", { named: refused.map(describeChar).join(", ") }), "bad");
    }
  });
}

/** Tells whether keys go to the VM: only while the screen has the focus. */
function wireFocusHint() {
  let hintTimer = null;
  ui.screen.addEventListener("focusin", () => {
    ui.leaveHint.hidden = !rfb;
    clearTimeout(hintTimer);
    hintTimer = setTimeout(() => { ui.leaveHint.hidden = true; }, LEAVE_HINT_MS);
    if (ui.body.dataset.consoleState === "connected" && typing === null) {
      setState("connected", () => t("console.focused", { chord: LEAVE_CHORD_LABEL }), "ok");
    }
  });
  ui.screen.addEventListener("focusout", (event) => {
    // The focus went to the toolbar (a click, say) with a key held: noVNC releases keys only when the
    // window loses the focus, so the key stayed pressed in the VM (repeating, or Shift typing capitals).
    if (!ui.screen.contains(event.relatedTarget)) releaseHeldKeys();
    clearTimeout(hintTimer);
    ui.leaveHint.hidden = true;
    if (ui.body.dataset.consoleState === "connected" && typing === null) {
      setState("connected", () => t("console.unfocused"), "ok");
    }
  });
}

function wireToolbar() {
  ui.connect.addEventListener("click", onConnectButton);
  ui.scale.addEventListener("click", toggleScale);
  wireFullscreen({
    button: ui.fullscreen,
    body: ui.body,
    onError: (say) => setState(ui.body.dataset.consoleState, say, "bad"),
  });
  ui.popout.addEventListener("click", popOut);
  if (isPopout) {
    watchScreenSize(ui.screen, () => { if (rfb) fitPopout(); });
  }
  ui.paste.addEventListener("click", () => {
    if (typing !== null) {
      onStopTyping();
      return;
    }
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
    stopWatchingPopout();
    cancelBackoff();
    connection?.close(); // a no-op once it has failed or ended
  });
}

// -- the VM header ---------------------------------------------------------------------------------

// The header's badge for a VM the API no longer shows (missingVmBadge), in words.
const MISSING_VM_BADGES = {
  "not-found": "details.not_found", deleted: "details.deleted", "no-access": "details.no_access",
  unavailable: "details.unavailable",
};

async function refreshVm() {
  try {
    const vm = await api("GET", `/api/vms/${encodeURIComponent(vmId)}`, undefined, { timeoutMs: 8000 });
    vmName = vm.name;
    vmUuid = vm.uuid;
    ui.name.textContent = vm.name;
    ui.name.title = vm.name; // a long name is cut short in the bar
    // "Host unavailable" as the list and the details page say, not the state its host said last.
    write("vm-state", () => ui.state.replaceChildren(vmBadge(vm)));
    unansweringHost = vm.host_available === false ? vm.host : null;
    if (unansweringHost) sayTheHostInThePanel();
    write("window-title", () => { document.title = t("console.window_title", { name: vm.name }); });
    const firstRead = serialConsole === null;
    serialConsole = Boolean(vm.serial_console);
    // A VM without graphics: its serial console is its console (the Screen tab says why it is empty).
    if (firstRead && !vm.vnc && serialConsole) serialTab.show(true);
  } catch (exc) {
    ui.name.textContent = vmName; // keep the last known state: the console panel tells what failed
    if (exc instanceof ApiError && exc.code === "VM_NOT_FOUND") {  // gone: not "Running" as it last was
      // Deleted, or no longer this user's: the console's end tells which (it reads the VM again then).
      const badge = missingVmBadge(vmUuid !== null, lastEnd);
      write("vm-state", () => ui.state.replaceChildren(h("span", {
        class: `badge ${badge === "no-access" || badge === "unavailable" ? "unknown" : "crashed"}`,
        dataset: { state: badge }, text: t(MISSING_VM_BADGES[badge]),
      })));
    }
  }
}

/** The panel's error in the page's language; HYPERVISOR_UNAVAILABLE names the host that does not answer, the
 * one the error names, else the VM's host once GET /api/vms/{id} said it does not answer (the code's own advice
 * speaks of libvirtd on limen's machine). */
function namingTheHost(err) {
  const shown = localizedError(err);
  const host = unansweringHostOf(err, unansweringHost, document.body.dataset.ownHost);
  return host ? { ...shown, message: t("console.host_unavailable", { host }) } : shown;
}

/** The VM was read after its panel said HYPERVISOR_UNAVAILABLE: the message names the host, in place (the
 * panel's buttons, maybe focused, stay). */
function sayTheHostInThePanel() {
  const message = ui.extra.querySelector('.error-box[data-code="HYPERVISOR_UNAVAILABLE"] .error-message');
  if (message) message.textContent = t("console.host_unavailable", { host: unansweringHost });
}

/** The badge follows the VM as libvirt reports it (a `virsh destroy` included), not the console's own
 * connection: "Connected" beside "Stopped" would contradict itself. */
function onVmEvent(change) {
  if (!vmUuid || change.uuid !== vmUuid) return;
  if (change.state) write("vm-state", () => ui.state.replaceChildren(stateBadge(change.state)));
  else refreshVm();
  if (change.state === "running" && VM_DOWN_CODES.has(lastProblem)
      && ["failed", "ended"].includes(ui.body.dataset.consoleState)) {
    offerRunningAgain();
  }
}

/** The console ended because the VM stopped, and the VM runs again (started from another tab, by another
 * user, by virsh): "VM stopped… start it again" beside a Running badge would contradict itself. Not joined by
 * itself: whoever started it may be at its screen. */
function offerRunningAgain() {
  lastProblem = null;
  setConnectButton(false); // "Connect": started by other hands, it runs
  setState(ui.body.dataset.consoleState, () => t("console.running_again_title")); // not "VM stopped" in red any more
  showOverlay(() => t("console.running_again_title"));
  showSub(() => t("console.running_again"));
  showExtra(() => [h("div", { class: "error-actions" }, primaryButton(t("console.connect"), () => {
    attempt = 0;
    connect();
  }), h("a", { class: "btn", href: "/", text: t("console.back_to_vms") }))]);
  focusPanelAction();
}

// -- start -----------------------------------------------------------------------------------------

function serialUi() {
  const byId = (id) => document.getElementById(id);
  return {
    tabScreen: byId("tab-screen"), tabSerial: byId("tab-serial"), screenWrap: ui.screenWrap,
    serialWrap: byId("serial-wrap"), term: byId("serial-term"), status: byId("serial-status"),
    copy: byId("serial-copy"), paste: byId("serial-paste"), reconnect: byId("serial-reconnect"),
    back: byId("serial-back"),
  };
}

async function main() {
  // First of all requests: its CSRF look-up (GET /api/me) and POST are the longest chain before the socket.
  earlyTicket = requestTicket();
  earlyTicket.catch(() => {}); // connect() reports its failure; until then it is not unhandled
  ui.name.textContent = vmId || t("console.title");
  if (isPopout) ui.body.classList.add("popout", "thin-bar");
  serialTab = new SerialTab({ vmId, ui: serialUi() });
  serialTab.wire(); // the Serial tab works even without noVNC
  wireToolbar();
  wireFocusHint();
  wireTouchKeyboard();
  // One read now, then the VM's changes as they happen (GET /api/events; polled only while it is down).
  refreshVm();
  new VmEvents({ reload: refreshVm, onEvent: onVmEvent }).start();
  const codes = loadErrorCodes();
  const stages = loadConsoleStages().then((kinds) => {
    stageLabels = stageLabelsOf(kinds, "vnc");
  });
  errorCodes = await codes;
  await stages;
  // noVNC's module is evaluated once the socket is made, while limen's stages run: its evaluation (~40-70 ms
  // of this thread: compiling, a forced layout, a test H.264 decode) would otherwise hold up the ticket's
  // answer and the socket behind it. A hand-off that comes first is held for it (handOff).
  await connect();
  try {
    RFB = (await loadNovnc()).default;
  } catch (exc) {
    novncFailure = clientError("NOVNC_MISSING", `loading ${NOVNC_MODULE} failed: ${exc}`);
    connectGeneration += 1; // a ticket still on its way opens nothing
    connection?.close(); // a no-op once it has failed or ended
    ui.stages.replaceChildren();
    onFailure(novncFailure);
    return;
  }
  releaseHeldSocket();
}

/** noVNC's module, bounded like everything else: a script that never arrives must not leave the page
 * "Loading…". */
function loadNovnc() {
  const loaded = import(NOVNC_MODULE);
  const late = new Promise((_, reject) => {
    setTimeout(() => reject(new Error(`not loaded within ${NOVNC_LOAD_MS / 1000} s`)), NOVNC_LOAD_MS);
  });
  return Promise.race([loaded, late]);
}

main();

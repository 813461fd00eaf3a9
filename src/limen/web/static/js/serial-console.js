// The console page's Serial tab: the VM's serial console (GET /api/vms/{id}/serial) drawn with xterm.js.
// Opened the first time the tab is shown, beside the screen's own connection (each has its own ticket
// and WebSocket; neither disturbs the other). Text frames are JSON (status, then error); binary frames
// are the guest's output. What is typed goes out as text frames; the guest gets their UTF-8 bytes.
// Copy: select with the mouse, then Ctrl+Shift+C or the Copy button. Paste: Ctrl+Shift+V or the Paste
// button (the text goes in as if typed, bracketed when the guest asked for it).

import { api } from "./api.js";
import { backoffSeconds, retriesByItself, TRANSIENT_CLOSE_CODES, VM_DOWN_CODES } from "./console-outcome.js";
import { formatNumber, has, lang, localizedError, onLanguageChange, t } from "./i18n.js";
import { isLeaveChord } from "./key-combos.js";
import { markSelected, wireTabKeys } from "./tablist.js";

const XTERM = "/static/xterm";
const LOAD_MS = 20000;
// A guest at a prompt says nothing until a key comes (GRUB, a getty): a black terminal that long after
// "connected" gets a line saying so, so that it does not read as a console that hangs.
const QUIET_HINT_MS = 1500;

// A row of xterm.js's own height (the font's ascent and descent) cuts off the underscore of DejaVu Sans Mono,
// the usual `monospace`, at 14 px on a display of scale 1: `a_b` read as `a b`. A little more room per row
// shows it (tests/e2e/test_serial_ui.py compares a row with `_` and one with a space).
export const TERMINAL_OPTIONS = Object.freeze({
  convertEol: false, cursorBlink: true, scrollback: 5000, fontSize: 14, lineHeight: 1.15,
});

/** The serial console's WebSocket address (same host and scheme as the page). */
export function serialUrl(vmId, query, location = window.location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/api/vms/${encodeURIComponent(vmId)}/serial${query ? `?${query}` : ""}`;
}

/** What a text frame means for the status line: [text, tone, ended?]. */
export function describeFrame(frame) {
  if (frame.type === "status") {
    // The frame's English text is the contract; other languages show their own text for its stage.
    const key = `serial_stage_status.${frame.stage}`;
    const text = lang !== "en" && has(key) ? t(key) : frame.message;
    return [text, frame.stage === "proxy" ? "ok" : "", false];
  }
  if (frame.type === "error") {
    const shown = localizedError(frame);
    return [`${shown.error}: ${shown.message}`, "error", true];
  }
  // A notice says its values as fields (IDLE_WARNING: seconds_left), for the page's own words with them.
  const noticeKey = `console_notice.${frame.code}`;
  if (frame.type === "notice" && lang !== "en" && has(noticeKey) && Number.isFinite(frame.seconds_left)) {
    return [t(noticeKey, { seconds: formatNumber(frame.seconds_left) }), "", false];
  }
  return [frame.message || "", "", false];
}

/**
 * Whether showing the tab opens a session by itself, given the code that ended the last one (null before
 * the first, or when the end said none). The first showing does, and so does one after an end the page
 * would retry by itself (a lost connection, limen restarting). After an end that waits for the user it does
 * not: access revoked, the session ended by an administrator or taken over, idle, the VM stopped
 * (connecting would start it). What ended it stays on the tab, beside the button that connects again.
 */
export function opensOnShow(lastError) {
  return !lastError || retriesByItself(lastError);
}

/**
 * The way on that the tab offers after a session ended with `lastError`: "take_over" (another client holds
 * the port), "start_and_connect" (the VM went down: connecting starts it, so the button says so),
 * "back_to_vms" (the VM was deleted: nothing to connect to), else "reconnect".
 */
export function wayOnAfter(lastError) {
  if (lastError === "SERIAL_BUSY") return "take_over";
  if (VM_DOWN_CODES.has(lastError)) return "start_and_connect";
  if (lastError === "VM_NOT_FOUND") return "back_to_vms";
  return "reconnect";
}

const WAY_ON_TEXT = {
  take_over: "serial.take_over", start_and_connect: "console.start_and_connect", reconnect: "serial.reconnect",
};

/** How long to wait before connecting again by itself after the `attempt`-th end in a row with `lastError`
 * (0 for the first), in ms; null when the end waits for the user, or after the last wait. A session that
 * ended for a passing reason (limen restarting, the connection lost, a migration: the VM runs on its new host
 * by then) connects again by itself while the tab is shown, with the screen's own backoff. */
export function retryDelayMs(lastError, attempt) {
  const seconds = retriesByItself(lastError) ? backoffSeconds(attempt) : null;
  return seconds === null ? null : seconds * 1000;
}

function bounded(promise, what) {
  const late = new Promise((_, reject) => {
    setTimeout(() => reject(new Error(`${what} not loaded within ${LOAD_MS / 1000} s`)), LOAD_MS);
  });
  return Promise.race([promise, late]);
}

export class SerialTab {
  constructor({ vmId, ui }) {
    this.vmId = vmId;
    this.ui = ui; // { tabScreen, tabSerial, screenWrap, serialWrap, term, status, copy, paste, reconnect, back }
    this.term = null;
    this.fit = null;
    this.loading = null; // the terminal's loading, once begun (true once loaded)
    this.socket = null;
    this.connecting = false;
    this.lastError = null;
    this.retries = 0; // ends in a row that connected again by themselves
    this.heldInput = null; // while a paste waits for the clipboard: what was typed meanwhile
    this.quietTimer = null; // set from "connected" until the guest's first byte
    this.connectedText = () => ""; // says "connected" in the page's language
    this.statusText = () => ""; // says the status line in the page's language
    // The page changes its language in place (language-switch.js): the status line and the button say
    // themselves again.
    onLanguageChange(() => {
      this.ui.status.textContent = this.statusText();
      if (!this.ui.reconnect.hidden) this.sayReconnect();
    });
  }

  wire() {
    this.ui.tabScreen.addEventListener("click", () => this.show(false));
    this.ui.tabSerial.addEventListener("click", () => this.show(true));
    // Chosen with the arrow keys, the Serial tab keeps the focus (the next arrow goes back); clicked, the
    // terminal takes it, ready for typing.
    const tabs = [this.ui.tabScreen, this.ui.tabSerial];
    wireTabKeys(tabs, (tab) => this.show(tab === this.ui.tabSerial, { focusTerminal: false }));
    markSelected(tabs, this.ui.tabScreen);
    this.ui.copy.addEventListener("click", () => this.copy());
    this.ui.paste.addEventListener("click", () => this.pasteFromClipboard());
    this.ui.reconnect.addEventListener("click", () => {
      this.retries = 0; // asked for: the waits begin again
      this.connect(this.lastError === "SERIAL_BUSY");
    });
    window.addEventListener("resize", () => this.refit());
    if (new URLSearchParams(window.location.search).get("tab") === "serial") this.show(true);
  }

  async show(serial, { focusTerminal = true } = {}) {
    markSelected([this.ui.tabScreen, this.ui.tabSerial], serial ? this.ui.tabSerial : this.ui.tabScreen);
    this.ui.screenWrap.hidden = serial;
    this.ui.serialWrap.hidden = !serial;
    document.body.dataset.consoleTab = serial ? "serial" : "screen";
    if (!serial) return;
    // Shown twice at once (the page's ?tab=serial and a VM without graphics): one terminal, one session; a
    // second session would be refused as SERIAL_BUSY by the first.
    this.loading ??= this.load();
    if (!(await this.loading)) {
      this.loading = null; // failed: the next showing tries again
      return;
    }
    this.refit();
    if (focusTerminal) this.term.focus();
    if (!this.socket && !this.connecting && opensOnShow(this.lastError)) this.connect(false);
  }

  async load() {
    this.setStatus(() => t("serial.loading"));
    try {
      const [{ Terminal }, { FitAddon }] = await bounded(Promise.all([
        import(`${XTERM}/xterm/lib/xterm.mjs`), import(`${XTERM}/addon-fit/lib/addon-fit.mjs`),
      ]), "xterm.js");
      this.term = new Terminal(TERMINAL_OPTIONS);
      this.fit = new FitAddon();
      this.term.loadAddon(this.fit);
      this.term.open(this.ui.term);
      // Keys typed while a paste waits for the clipboard go after the pasted text, in the order typed.
      this.term.onData((data) => (this.heldInput ? this.heldInput.push(data) : this.send(data)));
      this.term.attachCustomKeyEventHandler((event) => this.onKey(event));
      new ResizeObserver(() => this.refit()).observe(this.ui.term);
      return true;
    } catch (exc) {
      this.setStatus(() => t("serial.xterm_missing", { reason: String(exc) }), "error");
      return false;
    }
  }

  refit() {
    if (this.term && !this.ui.serialWrap.hidden) {
      try {
        this.fit.fit();
      } catch {
        // not laid out yet: the next resize fits it
      }
    }
  }

  onKey(event) {
    // Ctrl+Alt+Shift leaves the terminal, as it leaves the screen: every other key is the guest's (Tab and
    // Esc included), so without it the keyboard was trapped here.
    if (event.type === "keydown" && isLeaveChord(event)) {
      event.preventDefault();
      this.ui.tabSerial.focus();
      return false;
    }
    if (event.type !== "keydown" || !event.ctrlKey || !event.shiftKey) return true;
    if (event.code !== "KeyC" && event.code !== "KeyV") return true;
    // Returning false only keeps xterm off the key; the browser still acted on it: Ctrl+Shift+V pasted as
    // plain text into xterm's textarea (the guest got the text twice, with the paste below), and
    // Ctrl+Shift+C opened desktop Chrome's element inspector.
    event.preventDefault();
    event.stopPropagation();
    if (event.code === "KeyC") this.copy();
    else this.pasteFromClipboard();
    return false;
  }

  async copy() {
    const text = this.term ? this.term.getSelection() : "";
    if (!text) return;
    try {
      await navigator.clipboard.writeText(text);
      return;
    } catch {
      // No Clipboard API (a page over plain http) or no permission: the browser's copy command, which the
      // focused terminal answers with its selection. Copy did nothing there, and said nothing.
    }
    this.term.focus();
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch {
      copied = false;
    }
    if (!copied) this.setStatus(() => t("serial.no_clipboard_copy"), "error");
  }

  async pasteFromClipboard() {
    if (!this.term) return;
    // Focus first, before the clipboard answers: an Enter pressed meanwhile must reach the terminal, not
    // the Paste button (where it would paste a second time).
    this.term.focus();
    if (this.heldInput) return; // a paste is on its way already
    this.heldInput = [];
    let text = "";
    try {
      text = await navigator.clipboard.readText();
    } catch {
      this.setStatus(() => t("serial.no_clipboard"), "error");
    }
    const held = this.heldInput;
    this.heldInput = null;
    if (text) this.term.paste(text);
    for (const data of held) this.send(data);
    this.term.focus();
  }

  send(data) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(data);
  }

  /** The status line: `text` a function saying it (said again in a new language), or a text as it is. */
  setStatus(text, tone = "") {
    this.statusText = typeof text === "function" ? text : () => text;
    this.ui.status.textContent = this.statusText();
    this.ui.status.dataset.tone = tone;
  }

  async connect(force) {
    if (this.socket) this.socket.close(1000, "reconnect");
    this.socket = null;
    this.lastError = null;
    this.ui.reconnect.hidden = true;
    this.ui.back.hidden = true;
    this.setStatus(() => t("serial.asking_ticket"));
    let ticket;
    this.connecting = true; // until the socket exists: showing the tab meanwhile opens no second one
    try {
      ticket = await api("POST", `/api/vms/${encodeURIComponent(this.vmId)}/console-ticket`, undefined,
        { timeoutMs: 8000 });
    } catch (exc) {
      const reason = () => (exc && exc.code ? localizedError(exc).error || exc.code : String(exc));
      if (exc && exc.status === 0) this.lastError = "CONNECTION_FAILED"; // limen unreachable, as for the screen
      this.ended(() => t("serial.no_ticket", { reason: reason() }));
      return;
    } finally {
      this.connecting = false;
    }
    const query = `ticket=${encodeURIComponent(ticket.ticket)}${force ? "&force=1" : ""}`;
    const socket = new WebSocket(serialUrl(this.vmId, query), ["binary"]);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.addEventListener("message", (event) => {
      if (socket !== this.socket) return;
      if (typeof event.data !== "string") {
        this.heard();
        this.term.write(new Uint8Array(event.data));
        return;
      }
      const frame = JSON.parse(event.data);
      const [, tone, isError] = describeFrame(frame);
      const text = () => describeFrame(frame)[0];
      if (isError) this.lastError = frame.code;
      this.setStatus(text, tone);
      this.ui.serialWrap.dataset.stage = frame.stage || "";
      if (frame.type === "status" && frame.stage === "proxy") {
        this.retries = 0;
        this.awaitOutput(text);
        this.ui.paste.disabled = false; // a session to paste into (Copy works on the scrollback any time)
      }
      if (isError) this.heard();
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      if (!this.lastError) {
        this.lastError = event.reason || (TRANSIENT_CLOSE_CODES.has(event.code) ? "CONNECTION_LOST" : null);
      }
      const why = this.ui.status.dataset.tone === "error" ? this.statusText
        : () => t(event.reason ? "serial.closed_because" : "serial.closed", { reason: event.reason });
      this.ended(why);
    });
  }

  /** After "connected" (`connectedText()` says it): the hint if the guest stays quiet, until its first byte. */
  awaitOutput(connectedText) {
    this.heard();
    this.connectedText = connectedText;
    this.quietTimer = setTimeout(() => {
      this.quietTimer = null;
      this.setStatus(() => t("serial.quiet_hint", { status: connectedText() }), "ok");
      this.ui.serialWrap.dataset.quiet = "true";
    }, QUIET_HINT_MS);
  }

  /** The guest said something (or the session ended): no hint any more. */
  heard() {
    if (this.quietTimer !== null) clearTimeout(this.quietTimer);
    this.quietTimer = null;
    if (this.ui.serialWrap.dataset.quiet === "true") {
      delete this.ui.serialWrap.dataset.quiet;
      if (this.ui.status.dataset.tone === "ok") this.setStatus(this.connectedText, "ok");
    }
  }

  ended(text) {
    this.heard();
    this.ui.paste.disabled = true;
    this.setStatus(text, "error");
    this.ui.serialWrap.dataset.stage = "ended";
    // Connecting starts a stopped VM (the console's auto-start): after the VM went down the button says so.
    this.sayReconnect();
    const gone = wayOnAfter(this.lastError) === "back_to_vms";
    this.ui.reconnect.hidden = gone;
    this.ui.back.hidden = !gone;
    // A passing end (limen restarting, a migration): a new session, while the tab is shown, after a wait.
    const delay = retryDelayMs(this.lastError, this.retries);
    if (delay !== null && !this.ui.serialWrap.hidden) {
      this.retries += 1;
      setTimeout(() => {
        if (!this.socket && !this.connecting && !this.ui.serialWrap.hidden) this.connect(false);
      }, delay);
    }
  }

  sayReconnect() {
    const way = wayOnAfter(this.lastError);
    if (way !== "back_to_vms") this.ui.reconnect.textContent = t(WAY_ON_TEXT[way]);
  }
}

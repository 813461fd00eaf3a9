// One console connection, from the WebSocket upgrade to the hand-off to noVNC, as a small state machine.
//
//   connecting --open--> handshake --status…--> handshake --last status--> proxy --noVNC ready--> (watchdog off)
//   (in proxy, while the page holds the socket for a VNC client still loading: no watchdog; see holdForVncClient)
//        \                    \--error frame / close / bad frame--> failed
//         \--close--> failed                                 proxy --close--> ended
//   any phase before "ended" --watchdog: no frame for watchdogMs--> failed (WATCHDOG_TIMEOUT)
//
// The page learns everything through onEvent({kind, ...}):
//   opened · status {message, stage, elapsedMs} · handoff {socket} · error {error, code, details, message,
//   stage, source, and host when the frame names one} · ended {closeCode, reason, byUser}
// "handoff" is emitted synchronously inside the handler of the last status frame: the page must give the
// socket to `new RFB(target, socket)` before returning, or the first VNC bytes would be lost.
// Handlers are added with addEventListener because noVNC replaces the socket's on* properties.

// The texts of the errors this page detects itself are the catalogue's, by code, in the page's language
// (i18n.js; English outside a page); the server's frames stay as the server sent them.
import { clientError } from "./i18n.js";

export const LAST_STATUS_MESSAGE = "VNC connection established, starting proxy...";
export const DEFAULT_WATCHDOG_MS = 10000;
const ERROR_CODE_PATTERN = /^[A-Z][A-Z0-9_]{2,63}$/;

export const Phase = Object.freeze({
  IDLE: "idle",
  CONNECTING: "connecting",
  HANDSHAKE: "handshake",
  PROXY: "proxy",
  FAILED: "failed",
  ENDED: "ended",
});

/** The console WebSocket address of a VM, on the page's own host. */
export function consoleUrl(vmId, location = window.location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/api/vms/${encodeURIComponent(vmId)}/console`;
}

/** What a close frame says when no error frame came before it. */
export function errorFromClose(closeCode, reason, phase) {
  const when = phase === Phase.CONNECTING ? "before the WebSocket opened"
    : phase === Phase.HANDSHAKE ? "before the console was ready" : "during the VNC handshake";
  const details = `WebSocket closed with code ${closeCode}${reason ? ` (${reason})` : ""} ${when}`;
  if (reason && ERROR_CODE_PATTERN.test(reason)) {
    return { error: null, code: reason, details, message: null };
  }
  return clientError(phase === Phase.CONNECTING ? "CONNECTION_FAILED" : "CONNECTION_LOST", details);
}

export class ConsoleConnection {
  constructor({
    url,
    onEvent,
    watchdogMs = DEFAULT_WATCHDOG_MS,
    createSocket = (address) => new WebSocket(address),
    now = () => performance.now(),
    setTimer = (fn, ms) => setTimeout(fn, ms),
    clearTimer = (id) => clearTimeout(id),
  }) {
    this.url = url;
    this.onEvent = onEvent;
    this.watchdogMs = watchdogMs;
    this.createSocket = createSocket;
    this.now = now;
    this.setTimer = setTimer;
    this.clearTimer = clearTimer;
    this.phase = Phase.IDLE;
    this.socket = null;
    this.startedAt = 0;
    this.openedAt = null;
    this.lastStatus = null;
    this.vncReady = false;
    this.vncClientPending = false; // handed off, but the page's VNC client is still loading
    this.closingByUser = false;
    this.watchdog = null;
  }

  open() {
    if (this.phase !== Phase.IDLE) throw new Error("a ConsoleConnection opens once");
    this.phase = Phase.CONNECTING;
    this.startedAt = this.now();
    this.armWatchdog();
    let socket;
    try {
      socket = this.createSocket(this.url);
    } catch (exc) {
      this.fail(clientError("CONNECTION_FAILED", `not a valid console address: ${exc}`, { source: "client" }));
      return;
    }
    this.socket = socket;
    // Before noVNC takes over it sets arraybuffer itself; set it now so no early frame becomes a Blob.
    socket.binaryType = "arraybuffer";
    socket.addEventListener("open", () => this.handleOpen());
    socket.addEventListener("message", (event) => this.handleMessage(event));
    socket.addEventListener("close", (event) => this.handleClose(event));
  }

  /** The page holds the handed-off socket until its VNC client (noVNC's module) has loaded: no watchdog
   * meanwhile, the page bounds that load itself. */
  holdForVncClient() {
    this.vncClientPending = true;
    this.disarmWatchdog();
  }

  /** The VNC client has the socket now: the watchdog times the VNC handshake from here. */
  vncClientAttached() {
    this.vncClientPending = false;
    if (this.phase === Phase.PROXY && !this.vncReady) this.armWatchdog();
  }

  /** noVNC finished the RFB handshake: the screen is live, the watchdog's job is done. */
  markVncReady() {
    this.vncReady = true;
    this.disarmWatchdog();
  }

  /** The user disconnects. */
  close() {
    if (this.phase === Phase.FAILED || this.phase === Phase.ENDED) return;
    this.closingByUser = true;
    this.disarmWatchdog();
    const wasProxy = this.phase === Phase.PROXY;
    this.phase = Phase.ENDED;
    if (this.socket && this.socket.readyState <= 1) this.socket.close(1000, "USER_DISCONNECT");
    this.emit({ kind: "ended", closeCode: 1000, reason: "USER_DISCONNECT", byUser: true, wasProxy });
  }

  elapsed() {
    return this.now() - this.startedAt;
  }

  // -- socket events ------------------------------------------------------------------------------

  handleOpen() {
    if (this.phase !== Phase.CONNECTING) return;
    this.phase = Phase.HANDSHAKE;
    this.openedAt = this.now();
    this.armWatchdog();
    this.emit({ kind: "opened", elapsedMs: this.elapsed() });
  }

  handleMessage(event) {
    if (this.phase === Phase.PROXY) {
      // VNC bytes are flowing; noVNC reads them itself (or the page holds them for it)
      if (!this.vncReady && !this.vncClientPending) this.armWatchdog();
      return;
    }
    if (this.phase !== Phase.HANDSHAKE) return;
    this.armWatchdog();
    if (typeof event.data !== "string") {
      this.fail(clientError("PROTOCOL_ERROR", "a binary frame arrived before the last status message",
                            { source: "client" }));
      return;
    }
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      frame = null;
    }
    if (!frame || typeof frame !== "object" || Array.isArray(frame)) {
      this.fail(clientError("PROTOCOL_ERROR", `not a JSON object: ${event.data.slice(0, 200)}`,
                            { source: "client" }));
      return;
    }
    if (frame.type === "status") {
      const message = String(frame.message ?? "");
      const stage = typeof frame.stage === "string" ? frame.stage : null;
      // The server counts from its side of the upgrade; the page shows one timeline from the connect, so the
      // opening's own time comes first (the stages read "+20 ms, +0 ms, +17 ms" otherwise).
      const elapsedMs = typeof frame.elapsed_ms === "number"
        ? this.openedAt - this.startedAt + frame.elapsed_ms : this.elapsed();
      this.lastStatus = message;
      this.emit({ kind: "status", message, stage, elapsedMs });
      if (message === LAST_STATUS_MESSAGE || stage === "proxy") {
        this.phase = Phase.PROXY;
        this.emit({ kind: "handoff", socket: this.socket });
      }
    } else if (frame.type === "error") {
      this.fail({
        error: frame.error != null ? String(frame.error) : null,
        code: frame.code != null ? String(frame.code) : "UNKNOWN_ERROR",
        details: frame.details != null ? String(frame.details) : "",
        message: frame.message != null ? String(frame.message) : null,
        stage: typeof frame.stage === "string" ? frame.stage : null,
        source: "server",
        // HYPERVISOR_UNAVAILABLE names the host that does not answer: the page says it without asking for the VM.
        ...(typeof frame.host === "string" && frame.host ? { host: frame.host } : {}),
        // QUOTA_EXCEEDED's numbers: the page says which limit and by how much in its language (the code's own
        // advice only points to the English details).
        ...(frame.quota && typeof frame.quota === "object" ? { quota: frame.quota } : {}),
      }, { closeSocket: false }); // the server closes with the matching close code
    }
    // Other frame types (future notices) are not ours to act on.
  }

  handleClose(event) {
    const phase = this.phase;
    if (phase === Phase.FAILED || phase === Phase.ENDED) return;
    this.disarmWatchdog();
    if (phase === Phase.PROXY) {
      this.phase = Phase.ENDED;
      this.emit({ kind: "ended", closeCode: event.code, reason: event.reason || "", byUser: false,
                  wasProxy: true, vncReady: this.vncReady });
      return;
    }
    this.fail({ ...errorFromClose(event.code, event.reason, phase), source: "close" }, { closeSocket: false });
  }

  // -- helpers ------------------------------------------------------------------------------------

  fail(error, { closeSocket = true } = {}) {
    const waitedFor = this.phase;
    this.phase = Phase.FAILED;
    this.disarmWatchdog();
    if (closeSocket && this.socket && this.socket.readyState <= 1) {
      try {
        this.socket.close(4000, "CLIENT_ABORT");
      } catch {
        this.socket.close();
      }
    }
    this.emit({ kind: "error", stage: null, waitedFor, ...error });
  }

  armWatchdog() {
    this.disarmWatchdog();
    this.watchdog = this.setTimer(() => this.watchdogFired(), this.watchdogMs);
  }

  disarmWatchdog() {
    if (this.watchdog !== null) {
      this.clearTimer(this.watchdog);
      this.watchdog = null;
    }
  }

  watchdogFired() {
    this.watchdog = null;
    if (this.phase === Phase.FAILED || this.phase === Phase.ENDED) return;
    const seconds = this.watchdogMs / 1000;
    const waiting = this.phase === Phase.CONNECTING ? "the WebSocket upgrade"
      : this.phase === Phase.HANDSHAKE ? `the next status after "${this.lastStatus ?? "(none yet)"}"`
        : "the VNC handshake through the proxy";
    this.fail(clientError("WATCHDOG_TIMEOUT", `nothing arrived for ${seconds} s while waiting for ${waiting}`,
                          { source: "watchdog" }));
  }

  emit(event) {
    try {
      this.onEvent(event);
    } catch (exc) {
      console.error("console page failed to handle", event.kind, exc);
    }
  }
}

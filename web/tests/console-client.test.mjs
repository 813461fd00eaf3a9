// The console page's connection state machine, driven with a fake socket and a hand-turned clock.
// Run: node --test web/tests/   (tests/unit/test_web_js.py runs it under pytest)

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ConsoleConnection,
  consoleUrl,
  errorFromClose,
  LAST_STATUS_MESSAGE,
  Phase,
} from "../../src/limen/web/static/js/console-client.js";

class FakeSocket extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.readyState = 0;
    this.binaryType = "blob";
    this.closedWith = null;
  }

  close(code, reason) {
    this.closedWith = { code, reason };
    this.readyState = 2;
  }

  // -- what the server does --
  serverOpens() {
    this.readyState = 1;
    this.dispatchEvent(new Event("open"));
  }

  serverSends(data) {
    this.dispatchEvent(Object.assign(new Event("message"), { data }));
  }

  serverStatus(message, extra = {}) {
    this.serverSends(JSON.stringify({ type: "status", message, ...extra }));
  }

  serverCloses(code, reason = "") {
    this.readyState = 3;
    this.dispatchEvent(Object.assign(new Event("close"), { code, reason, wasClean: code !== 1006 }));
  }
}

class Timers {
  constructor() {
    this.now = 0;
    this.pending = new Map();
    this.next = 1;
  }

  set = (fn, ms) => {
    const id = this.next++;
    this.pending.set(id, { fn, at: this.now + ms });
    return id;
  };

  clear = (id) => {
    this.pending.delete(id);
  };

  advance(ms) {
    this.now += ms;
    for (const [id, timer] of [...this.pending]) {
      if (timer.at <= this.now) {
        this.pending.delete(id);
        timer.fn();
      }
    }
  }
}

function connection({ watchdogMs = 10000 } = {}) {
  const timers = new Timers();
  const events = [];
  let socket = null;
  const conn = new ConsoleConnection({
    url: "ws://limen.test/api/vms/vm-1/console",
    watchdogMs,
    onEvent: (event) => events.push(event),
    createSocket: (url) => {
      socket = new FakeSocket(url);
      return socket;
    },
    now: () => timers.now,
    setTimer: timers.set,
    clearTimer: timers.clear,
  });
  conn.open();
  return { conn, timers, events, socket, kinds: () => events.map((e) => e.kind) };
}

const STATUSES = [
  ["Connected, checking VM status...", "check_vm"],
  ["Getting VNC port...", "get_port"],
  ["Connecting to VNC server on port 5900...", "connect"],
  [LAST_STATUS_MESSAGE, "proxy"],
];

/** A connection whose server sent every status: handed off, in the proxy phase. */
function handedOff(options) {
  const made = connection(options);
  made.socket.serverOpens();
  for (const [message, stage] of STATUSES) made.socket.serverStatus(message, { stage });
  return made;
}

test("the server's stage times follow the opening's on one timeline from the connect", () => {
  const { events, socket, timers } = connection();
  timers.advance(20); // the WebSocket took 20 ms to open
  socket.serverOpens();
  for (const [index, [message, stage]] of STATUSES.entries()) socket.serverStatus(message, { stage, elapsed_ms: index * 10 });
  assert.equal(events.find((e) => e.kind === "opened").elapsedMs, 20);
  assert.deepEqual(events.filter((e) => e.kind === "status").map((e) => e.elapsedMs), [20, 30, 40, 50]);
});

test("status frames, then the hand-off inside the last status frame's handler", () => {
  const { conn, events, socket, kinds } = connection();
  assert.equal(socket.binaryType, "arraybuffer");
  socket.serverOpens();
  let handedOffBeforeNextFrame = false;
  for (const [index, [message, stage]] of STATUSES.entries()) {
    socket.serverStatus(message, { stage, elapsed_ms: index * 10 });
    if (stage === "proxy") handedOffBeforeNextFrame = kinds().includes("handoff");
  }
  assert.ok(handedOffBeforeNextFrame);
  assert.deepEqual(kinds(), ["opened", "status", "status", "status", "status", "handoff"]);
  assert.deepEqual(events.filter((e) => e.kind === "status").map((e) => e.message), STATUSES.map(([m]) => m));
  assert.deepEqual(events.filter((e) => e.kind === "status").map((e) => e.elapsedMs), [0, 10, 20, 30]);
  assert.equal(events.at(-1).socket, socket);
  assert.equal(conn.phase, Phase.PROXY);
  socket.serverSends(new ArrayBuffer(12)); // VNC bytes are noVNC's business
  assert.equal(kinds().length, 6);
});

test("the last status is recognised by its stage too", () => {
  const { socket, kinds } = connection();
  socket.serverOpens();
  socket.serverStatus("Proxy ready", { stage: "proxy" });
  assert.deepEqual(kinds(), ["opened", "status", "handoff"]);
});

test("an error frame is reported once with the server's fields, and the close after it is ignored", () => {
  const { events, socket, kinds } = connection();
  socket.serverOpens();
  socket.serverStatus(STATUSES[0][0]);
  socket.serverSends(JSON.stringify({
    type: "error", error: "VM is not running", code: "VM_NOT_RUNNING", details: "VM 'a\"b' is shut off",
    message: "Start the VM, then try again.", stage: "check_vm",
  }));
  socket.serverCloses(4100, "VM_NOT_RUNNING");
  assert.deepEqual(kinds(), ["opened", "status", "error"]);
  const error = events.at(-1);
  assert.equal(error.code, "VM_NOT_RUNNING");
  assert.equal(error.error, "VM is not running");
  assert.equal(error.details, "VM 'a\"b' is shut off");
  assert.equal(error.stage, "check_vm");
  assert.equal(error.source, "server");
  assert.equal(socket.closedWith, null, "the server closes, not the page");
});

test("an error frame's host comes with the error when the frame names one", () => {
  const { events, socket } = connection();
  socket.serverOpens();
  socket.serverSends(JSON.stringify({
    type: "error", error: "Hypervisor unavailable", code: "HYPERVISOR_UNAVAILABLE", details: "no answer",
    message: "limen cannot reach libvirt.", host: "edge", stage: "check_vm",
  }));
  assert.equal(events.at(-1).host, "edge");
  const other = connection();
  other.socket.serverOpens();
  other.socket.serverSends(JSON.stringify({ type: "error", code: "VM_NOT_RUNNING", stage: "check_vm" }));
  assert.ok(!("host" in other.events.at(-1)));
});

test("an error frame's quota numbers come with the error, for the page to say them", () => {
  const { events, socket } = connection();
  socket.serverOpens();
  const quota = { scope: "user 'bob'", resource: "memory_mib", limit: 32, usage: 0, requested: 64, free: 32 };
  socket.serverSends(JSON.stringify({
    type: "error", error: "Quota exceeded", code: "QUOTA_EXCEEDED", details: "user 'bob' quota on memory (MiB)",
    message: "Free what the details name.", quota, stage: "start_vm",
  }));
  assert.deepEqual(events.at(-1).quota, quota);
  const other = connection();
  other.socket.serverOpens();
  other.socket.serverSends(JSON.stringify({ type: "error", code: "QUOTA_EXCEEDED", quota: "odd", stage: "start_vm" }));
  assert.ok(!("quota" in other.events.at(-1)));
});

test("a close with a code as reason and no error frame names that code", () => {
  const { events, socket } = connection();
  socket.serverOpens();
  socket.serverCloses(4402, "SERVER_SHUTDOWN");
  assert.equal(events.at(-1).kind, "error");
  assert.equal(events.at(-1).code, "SERVER_SHUTDOWN");
  assert.equal(events.at(-1).error, null); // the page fills title and message from /api/error-codes
});

test("a failed upgrade and a dropped handshake are told apart", () => {
  const refused = connection();
  refused.socket.serverCloses(1006);
  assert.equal(refused.events.at(-1).code, "CONNECTION_FAILED");
  const dropped = connection();
  dropped.socket.serverOpens();
  dropped.socket.serverCloses(1006);
  assert.equal(dropped.events.at(-1).code, "CONNECTION_LOST");
  assert.equal(errorFromClose(1011, "not a code", Phase.HANDSHAKE).code, "CONNECTION_LOST");
});

test("binary data or a non-JSON text before the last status is a protocol error", () => {
  for (const data of [new ArrayBuffer(4), "RFB 003.008\n", "[1, 2]", "null"]) {
    const { events, socket } = connection();
    socket.serverOpens();
    socket.serverSends(data);
    assert.equal(events.at(-1).kind, "error");
    assert.equal(events.at(-1).code, "PROTOCOL_ERROR", String(data));
    assert.deepEqual(socket.closedWith, { code: 4000, reason: "CLIENT_ABORT" });
  }
});

test("the watchdog trips when the upgrade never completes", () => {
  const { events, socket, timers, conn } = connection({ watchdogMs: 2000 });
  timers.advance(1999);
  assert.equal(events.length, 0);
  timers.advance(1);
  assert.equal(events.at(-1).code, "WATCHDOG_TIMEOUT");
  assert.equal(events.at(-1).waitedFor, Phase.CONNECTING);
  assert.match(events.at(-1).details, /WebSocket upgrade/);
  assert.equal(conn.phase, Phase.FAILED);
  assert.ok(socket.closedWith);
  socket.serverCloses(1006);
  assert.equal(events.length, 1, "the close after the watchdog adds nothing");
});

test("every frame rewinds the watchdog; silence between stages trips it", () => {
  const { events, socket, timers } = connection({ watchdogMs: 10000 });
  socket.serverOpens();
  for (const [message] of STATUSES.slice(0, 3)) {
    timers.advance(9000);
    socket.serverStatus(message);
  }
  assert.ok(!events.some((e) => e.kind === "error"));
  timers.advance(10000);
  assert.equal(events.at(-1).code, "WATCHDOG_TIMEOUT");
  assert.match(events.at(-1).details, /Connecting to VNC server on port 5900/);
});

test("after the hand-off the watchdog waits for noVNC, then stops", () => {
  const stuck = handedOff({ watchdogMs: 3000 });
  stuck.timers.advance(3000);
  assert.equal(stuck.events.at(-1).code, "WATCHDOG_TIMEOUT");
  assert.equal(stuck.events.at(-1).waitedFor, Phase.PROXY);

  const live = handedOff({ watchdogMs: 3000 });
  live.conn.markVncReady();
  live.timers.advance(60000);
  assert.ok(!live.events.some((e) => e.kind === "error"));
});

test("a socket held for a VNC client still loading has no watchdog; once attached, the handshake has one", () => {
  const held = handedOff({ watchdogMs: 3000 });
  held.conn.holdForVncClient();
  held.socket.serverSends(new ArrayBuffer(12)); // the VNC banner, held by the page
  held.timers.advance(60000);
  assert.ok(!held.events.some((e) => e.kind === "error"));
  held.conn.vncClientAttached();
  held.timers.advance(2999);
  assert.ok(!held.events.some((e) => e.kind === "error"));
  held.timers.advance(1);
  assert.equal(held.events.at(-1).code, "WATCHDOG_TIMEOUT");
  assert.equal(held.events.at(-1).waitedFor, Phase.PROXY);

  const closed = handedOff({ watchdogMs: 3000 });
  closed.conn.holdForVncClient();
  closed.socket.serverCloses(1011, "VM_STOPPED");
  assert.equal(closed.events.at(-1).kind, "ended");
  closed.conn.vncClientAttached(); // too late: nothing to time
  closed.timers.advance(60000);
  assert.equal(closed.events.at(-1).kind, "ended");
});

test("a session that ends after the hand-off reports the close code and reason", () => {
  const { events, socket, conn } = connection();
  socket.serverOpens();
  for (const [message, stage] of STATUSES) socket.serverStatus(message, { stage });
  conn.markVncReady();
  socket.serverCloses(4102, "VM_STOPPED");
  const ended = events.at(-1);
  assert.equal(ended.kind, "ended");
  assert.equal(ended.closeCode, 4102);
  assert.equal(ended.reason, "VM_STOPPED");
  assert.equal(ended.byUser, false);
  assert.equal(ended.vncReady, true);
});

test("the user's disconnect is reported once", () => {
  const { events, socket, conn } = connection();
  socket.serverOpens();
  conn.close();
  assert.deepEqual(socket.closedWith, { code: 1000, reason: "USER_DISCONNECT" });
  socket.serverCloses(1000, "USER_DISCONNECT");
  assert.deepEqual(events.map((e) => e.kind), ["opened", "ended"]);
  assert.equal(events.at(-1).byUser, true);
});

test("the console address follows the page's scheme and escapes the VM id", () => {
  assert.equal(consoleUrl("a b/c", { protocol: "https:", host: "limen.example:8443" }),
               "wss://limen.example:8443/api/vms/a%20b%2Fc/console");
  assert.equal(consoleUrl("web-1", { protocol: "http:", host: "127.0.0.1:8080" }),
               "ws://127.0.0.1:8080/api/vms/web-1/console");
});

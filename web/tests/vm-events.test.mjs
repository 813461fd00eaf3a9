// The pages' live-update logic: events when the stream is up, polling only while it is down.
// Run: node --test web/tests/   (tests/unit/test_web_js.py runs it under pytest)

import assert from "node:assert/strict";
import { test } from "node:test";

import { POLL_MS, REOPEN_MS, VmEvents } from "../../src/limen/web/static/js/vm-events.js";

class FakeEventSource extends EventTarget {
  static made = [];

  constructor(url, options) {
    super();
    this.url = url;
    this.options = options;
    this.readyState = 0;
    this.closed = false;
    FakeEventSource.made.push(this);
  }

  close() {
    this.closed = true;
    this.readyState = 2;
  }

  send(type, data = "{}") {
    const event = new Event(type);
    event.data = data;
    this.dispatchEvent(event);
  }

  fail(readyState) {
    this.readyState = readyState;
    this.dispatchEvent(new Event("error"));
  }
}

class FakeTimers {
  constructor() {
    this.now = 0;
    this.next = 1;
    this.pending = new Map(); // id → {at, fn, every}
  }

  setTimeout(fn, ms) { const id = this.next++; this.pending.set(id, { at: this.now + ms, fn, every: 0 }); return id; }
  setInterval(fn, ms) { const id = this.next++; this.pending.set(id, { at: this.now + ms, fn, every: ms }); return id; }
  clearTimeout(id) { this.pending.delete(id); }
  clearInterval(id) { this.pending.delete(id); }

  advance(ms) {
    const until = this.now + ms;
    for (;;) {
      const due = [...this.pending.entries()].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at);
      if (due.length === 0) break;
      const [id, timer] = due[0];
      this.now = timer.at;
      if (timer.every) timer.at += timer.every; else this.pending.delete(id);
      timer.fn();
    }
    this.now = until;
  }
}

function setup() {
  FakeEventSource.made = [];
  const timers = new FakeTimers();
  const calls = { reload: 0, events: [], status: [], ended: [] };
  const events = new VmEvents({
    reload: () => { calls.reload += 1; },
    onEvent: (change) => calls.events.push(change),
    onStatus: (live) => calls.status.push(live),
    onEnded: (error) => calls.ended.push(error),
    EventSourceImpl: FakeEventSource,
    timers,
  }).start();
  return { events, timers, calls, source: () => FakeEventSource.made.at(-1) };
}

test("polls until the stream is ready, then stops polling and reloads once", () => {
  const { timers, calls, source } = setup();
  assert.equal(source().url, "/api/events");
  timers.advance(POLL_MS * 2);
  assert.equal(calls.reload, 2);
  source().send("ready");
  assert.deepEqual(calls.status, [true]);
  assert.equal(calls.reload, 3);
  timers.advance(POLL_MS * 5);
  assert.equal(calls.reload, 3, "no polling while live");
});

test("vm events go to the page; resync and unreadable data reload", () => {
  const { calls, source } = setup();
  source().send("ready");
  source().send("vm", JSON.stringify({ type: "started", uuid: "u1", state: "running" }));
  assert.deepEqual(calls.events, [{ type: "started", uuid: "u1", state: "running" }]);
  source().send("resync");
  source().send("vm", "not json");
  assert.equal(calls.reload, 3);
});

test("a stream ended by a change of the sign-in tells the page why, which then reads who it is again", () => {
  const { calls, source } = setup();
  source().send("ready");
  source().send("ended", JSON.stringify({ code: "ACCESS_REVOKED", error: "Access revoked" }));
  assert.deepEqual(calls.ended, [{ code: "ACCESS_REVOKED", error: "Access revoked" }]);
  source().send("ended", "not json");
  assert.deepEqual(calls.ended.at(-1), {});
  assert.deepEqual(calls.events, [], "an end is no VM change");
});

test("a dropped stream polls while the browser reconnects, and stops when it is back", () => {
  const { timers, calls, source } = setup();
  const first = source();
  first.send("ready");
  first.fail(0); // CONNECTING: the browser retries itself
  assert.deepEqual(calls.status, [true, false]);
  timers.advance(POLL_MS);
  assert.equal(calls.reload, 2);
  assert.equal(FakeEventSource.made.length, 1, "the browser's own reconnection, not a new stream");
  first.send("ready");
  timers.advance(POLL_MS * 3);
  assert.equal(calls.reload, 3);
});

test("a stream the browser gave up on is opened again later, polling meanwhile", () => {
  const { timers, calls, source } = setup();
  const first = source();
  first.fail(2); // CLOSED, e.g. limen answered an error
  assert.ok(first.closed);
  timers.advance(REOPEN_MS);
  assert.equal(FakeEventSource.made.length, 2);
  assert.equal(calls.reload, REOPEN_MS / POLL_MS | 0);
  source().send("ready");
  assert.deepEqual(calls.status, [true]);
});

test("stop closes the stream and every timer", () => {
  const { events, timers, calls, source } = setup();
  source().send("ready");
  events.stop();
  assert.ok(source().closed);
  timers.advance(REOPEN_MS * 3);
  assert.equal(calls.reload, 1);
  assert.deepEqual(calls.status, [true, false]);
});

test("a poll waits for its reload's answer: a slow server is not asked again meanwhile", async () => {
  FakeEventSource.made = [];
  const timers = new FakeTimers();
  const answers = [];
  const events = new VmEvents({
    reload: () => new Promise((resolve) => { answers.push(resolve); }),
    EventSourceImpl: FakeEventSource,
    timers,
  }).start();
  timers.advance(POLL_MS * 5);
  assert.equal(answers.length, 1, "one read on its way: no second one");
  answers[0]();
  await Promise.resolve();
  timers.advance(POLL_MS);
  assert.equal(answers.length, 2, "the next poll comes POLL_MS after the answer");
  events.stop();
  answers[1]();
  await Promise.resolve();
  timers.advance(POLL_MS * 3);
  assert.equal(answers.length, 2, "stopped meanwhile: no poll after the answer");
});

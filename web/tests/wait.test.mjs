// The sign-in page's wait: its wording and its countdown, with a hand-turned clock.
// Run: node --test web/tests/   (tests/unit/test_web_js.py runs it under pytest)

import assert from "node:assert/strict";
import { test } from "node:test";

import { countDown, formatWait } from "../../src/limen/web/static/js/wait.js";

test("waits read as people say them", () => {
  assert.equal(formatWait(296), "4 min 56 s");
  assert.equal(formatWait(59.2), "1 min");
  assert.equal(formatWait(1), "1 s");
  assert.equal(formatWait(120), "2 min");
  assert.equal(formatWait(3600), "1 h");
  assert.equal(formatWait(3900), "1 h 5 min");
  assert.equal(formatWait(-3), "0 s");
  assert.equal(formatWait("nonsense"), "0 s");
});

function fakeTime() {
  const time = { now: 1_000_000, timers: [] };
  time.setTimer = (fn, ms) => { time.timers.push({ fn, at: time.now + ms }); return time.timers.length; };
  time.clearTimer = (id) => { time.timers[id - 1] = null; };
  time.advance = (ms) => {
    time.now += ms;
    for (let i = 0; i < time.timers.length; i += 1) {
      const timer = time.timers[i];
      if (timer && timer.at <= time.now) { time.timers[i] = null; timer.fn(); }
    }
  };
  return time;
}

test("counts down second by second from the deadline, then ends once", () => {
  const time = fakeTime();
  const ticks = [];
  let ended = 0;
  countDown(2.5, { onTick: (n) => ticks.push(n), onEnd: () => { ended += 1; }, now: () => time.now,
    setTimer: time.setTimer, clearTimer: time.clearTimer });
  assert.deepEqual(ticks, [3]);
  time.advance(500);
  assert.deepEqual(ticks, [3, 2]);
  time.advance(1000);
  time.advance(1000);
  assert.deepEqual(ticks, [3, 2, 1]);
  assert.equal(ended, 1);
  time.advance(5000);
  assert.equal(ended, 1);
});

test("a late timer skips numbers rather than drifting; stopping ends nothing", () => {
  const time = fakeTime();
  const ticks = [];
  let ended = false;
  const stop = countDown(10, { onTick: (n) => ticks.push(n), onEnd: () => { ended = true; },
    now: () => time.now, setTimer: time.setTimer, clearTimer: time.clearTimer });
  time.now += 3500; // the tab slept
  time.advance(0);
  assert.deepEqual(ticks, [10, 7]);
  stop();
  time.advance(20000);
  assert.equal(ended, false);
});

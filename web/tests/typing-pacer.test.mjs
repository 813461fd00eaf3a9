// Paste-as-typing's pacing: one key at a time, wait for the socket to drain, an adaptive gap.

import assert from "node:assert/strict";
import { test } from "node:test";

import { typeKeys, TypingCancelled } from "../../src/limen/web/static/js/typing-pacer.js";
import { planTyping } from "../../src/limen/web/static/js/us-keyboard.js";

const PACING = { baseGapMs: 10, maxGapMs: 80, drainPollMs: 5, slowDrainMs: 12, drainTimeoutMs: 100, returnGapMs: 50, echoWaitMs: 20 };

function fakeLink({ drainAfterPolls = () => 0, echoes = () => true } = {}) {
  const link = { sent: [], sleeps: [], buffered: 0, polls: 0, keyIndex: -1, clock: 0, updates: 0 };
  link.screenUpdates = () => link.updates;
  link.now = () => link.clock;
  link.send = (keysym, code, down) => {
    link.sent.push([keysym, code, down]);
    if (down && code !== "ShiftLeft") {
      link.keyIndex += 1;
      link.polls = drainAfterPolls(link.keyIndex);
      link.buffered = link.polls > 0 ? 10 : 0;
      if (echoes(link.keyIndex)) link.updates += 1;
    }
  };
  link.pending = () => link.buffered;
  link.sleep = async (ms) => {
    link.sleeps.push(ms);
    link.clock += ms;
    if (ms === PACING.drainPollMs && link.buffered > 0) {
      link.polls -= 1;
      if (link.polls <= 0) link.buffered = 0;
    }
  };
  return link;
}

test("keys go one at a time with the base gap between them, none after the last", async () => {
  const link = fakeLink();
  const progress = [];
  const { keys } = planTyping("Hi!");
  await typeKeys(keys, { ...link, pacing: PACING, onProgress: (done, total) => progress.push([done, total]) });
  assert.equal(link.sent.length, 4 + 2 + 4);
  assert.deepEqual(link.sleeps, [10, 10]);
  assert.deepEqual(progress, [[1, 3], [2, 3], [3, 3]]);
});

test("a key the guest does not echo waits for its screen up to echoWaitMs", async () => {
  const link = fakeLink({ echoes: (i) => i !== 1 });
  await typeKeys(planTyping("abc").keys, { ...link, pacing: PACING });
  assert.deepEqual(link.sleeps, [10, 5, 5, 5, 5, 10]);
});

test("after Return the pause is longer", async () => {
  const link = fakeLink();
  await typeKeys(planTyping("a\nb\n").keys, { ...link, pacing: PACING });
  assert.deepEqual(link.sleeps, [10, 50, 10]);
});

test("a short drain is normal and keeps the base gap", async () => {
  const link = fakeLink({ drainAfterPolls: () => 2 });
  await typeKeys(planTyping("abc").keys, { ...link, pacing: PACING });
  assert.deepEqual(link.sleeps.filter((ms) => ms !== PACING.drainPollMs), [10, 10]);
});

test("the gap doubles when the socket was slow to drain, and shrinks back while it keeps up", async () => {
  const link = fakeLink({ drainAfterPolls: (i) => (i === 0 || i === 1 ? 3 : 0) });
  const { keys } = planTyping("abcdef");
  const gap = await typeKeys(keys, { ...link, pacing: PACING });
  const gaps = link.sleeps.filter((ms) => ms !== PACING.drainPollMs);
  assert.deepEqual(gaps, [20, 40, 36, 32, 28]);
  assert.equal(gap, 25);
});

test("a socket that never drains fails the paste instead of hanging", async () => {
  const link = fakeLink({ drainAfterPolls: () => 1000 });
  await assert.rejects(typeKeys(planTyping("ab").keys, { ...link, pacing: PACING }), /did not send a key within 100 ms/);
  assert.equal(link.sent.length, 2);
});

test("cancelling stops before the next key", async () => {
  const link = fakeLink();
  let typed = 0;
  await assert.rejects(
    typeKeys(planTyping("abcd").keys, { ...link, pacing: PACING, onProgress: (done) => { typed = done; }, cancelled: () => typed >= 2 }),
    TypingCancelled,
  );
  assert.equal(link.sent.length, 4);
});

test("cancelled while a key drains, no progress is reported for it, but it counts as sent", async () => {
  // A stop says how many characters the guest got: the key on its way is one of them.
  const link = fakeLink({ drainAfterPolls: (index) => (index === 1 ? 3 : 0) });
  let cancelled = false;
  const progress = [];
  const sent = [];
  const drainSleep = link.sleep;
  link.sleep = async (ms) => {
    if (link.keyIndex === 1 && link.buffered > 0) cancelled = true; // the user disconnects mid-drain
    await drainSleep(ms);
  };
  await assert.rejects(
    typeKeys(planTyping("abcd").keys, { ...link, pacing: PACING, onProgress: (done) => progress.push(done),
      cancelled: () => cancelled, onSent: (count, total) => sent.push([count, total]) }),
    TypingCancelled,
  );
  assert.deepEqual(progress, [1]);
  assert.deepEqual(sent, [[1, 4], [2, 4]]);
});

test("each key follows the guest's Caps Lock as it is when the key goes", async () => {
  const link = fakeLink();
  let capsOn = true;
  const progress = (done) => { if (done === 1) capsOn = false; }; // the person turned it off after the first
  await typeKeys(planTyping("Ab").keys, { ...link, pacing: PACING, capsLock: () => capsOn, onProgress: progress });
  assert.deepEqual(link.sent, [[0x41, "KeyA", true], [0x41, "KeyA", false], [0x62, "KeyB", true], [0x62, "KeyB", false]]);
});

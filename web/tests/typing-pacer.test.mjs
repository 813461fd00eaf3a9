// Paste-as-typing's pacing: one key at a time, wait for the socket to drain, an adaptive gap.

import assert from "node:assert/strict";
import { test } from "node:test";

import { typeKeys, TypingCancelled } from "../../src/limen/web/static/js/typing-pacer.js";
import { planTyping } from "../../src/limen/web/static/js/us-keyboard.js";

const PACING = { baseGapMs: 10, maxGapMs: 80, drainPollMs: 5, drainTimeoutMs: 100 };

function fakeLink({ drainAfterPolls = () => 0 } = {}) {
  const link = { sent: [], sleeps: [], buffered: 0, polls: 0, keyIndex: -1 };
  link.send = (keysym, code, down) => {
    link.sent.push([keysym, code, down]);
    if (down && code !== "ShiftLeft") {
      link.keyIndex += 1;
      link.polls = drainAfterPolls(link.keyIndex);
      link.buffered = link.polls > 0 ? 10 : 0;
    }
  };
  link.pending = () => link.buffered;
  link.sleep = async (ms) => {
    link.sleeps.push(ms);
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

test("the gap doubles when the socket was slow to drain, and shrinks back while it keeps up", async () => {
  const link = fakeLink({ drainAfterPolls: (i) => (i === 0 || i === 1 ? 2 : 0) });
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

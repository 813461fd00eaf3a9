// Only the newest read is drawn: overlapping reads whose answers and errors come back in any order.
// Run: node --test web/tests/   (tests/unit/test_web_js.py runs it under pytest)

import assert from "node:assert/strict";
import { test } from "node:test";

import { latestRead, STALE } from "../../src/limen/web/static/js/latest-read.js";

/** A read whose calls the test answers (or fails) by hand, in any order: the calls' settle functions. */
function heldReads() {
  const calls = [];
  const read = (...args) => new Promise((resolve, reject) => calls.push({ args, resolve, reject }));
  return { read, calls };
}

/** What a call of the wrapper came to: {answer} or {error}. */
const outcome = (promise) => promise.then((answer) => ({ answer }), (error) => ({ error }));

/** Two calls of one wrapper, the second made before the first's read settled: their outcomes, and the
 * reads' settle functions (calls[0] the earlier's). */
function twoOverlapping() {
  const { read, calls } = heldReads();
  const latest = latestRead(read);
  return { calls, earlier: outcome(latest()), later: outcome(latest()) };
}

test("a single read gives its answer, and its arguments reach the read", async () => {
  const { read, calls } = heldReads();
  const latest = latestRead(read);
  const first = outcome(latest("/api/isos", 2));
  assert.deepEqual(calls[0].args, ["/api/isos", 2]);
  calls[0].resolve(["a.iso"]);
  assert.deepEqual(await first, { answer: ["a.iso"] });
});

test("an earlier read answered after a later one is stale", async () => {
  const { calls, earlier, later } = twoOverlapping();
  calls[1].resolve(["after the delete"]);
  assert.deepEqual(await later, { answer: ["after the delete"] });
  calls[0].resolve(["before the delete", "deleted.iso"]);
  assert.deepEqual(await earlier, { answer: STALE });
});

test("an earlier read answered first is stale too: the later one is on its way", async () => {
  const { calls, earlier, later } = twoOverlapping();
  calls[0].resolve(["before the delete"]);
  assert.deepEqual(await earlier, { answer: STALE });
  calls[1].resolve(["after the delete"]);
  assert.deepEqual(await later, { answer: ["after the delete"] });
});

test("an earlier read's error after a later answer is stale, not thrown", async () => {
  const { calls, earlier, later } = twoOverlapping();
  calls[1].resolve(["drawn"]);
  calls[0].reject(new Error("timed out"));
  assert.deepEqual(await earlier, { answer: STALE });
  assert.deepEqual(await later, { answer: ["drawn"] });
});

test("a later read's error after an earlier answer is thrown; the earlier answer is stale", async () => {
  const { calls, earlier, later } = twoOverlapping();
  const refused = new Error("HYPERVISOR_UNAVAILABLE");
  calls[0].resolve(["out of date"]);
  calls[1].reject(refused);
  assert.deepEqual(await earlier, { answer: STALE });
  assert.equal((await later).error, refused);
});

test("a read that throws at once counts as a call like any other", async () => {
  let failNext = true;
  const answers = [];
  const latest = latestRead(() => {
    if (failNext) throw new Error("no network");
    return new Promise((resolve) => answers.push(resolve));
  });
  await assert.rejects(latest(), /no network/);
  failNext = false;
  const earlier = outcome(latest());
  const later = outcome(latest());
  answers[1]("newest");
  answers[0]("older");
  assert.deepEqual(await later, { answer: "newest" });
  assert.deepEqual(await earlier, { answer: STALE });
});

test("once every read has settled, the next call is the latest again", async () => {
  const { read, calls } = heldReads();
  const latest = latestRead(read);
  const first = outcome(latest());
  const second = outcome(latest());
  calls[1].resolve(2);
  calls[0].resolve(1);
  await Promise.all([first, second]);
  const third = outcome(latest());
  calls[2].resolve(3);
  assert.deepEqual(await third, { answer: 3 });
});

test("each wrapper counts its own calls", async () => {
  const isos = heldReads();
  const volumes = heldReads();
  const latestIsos = latestRead(isos.read);
  const latestVolumes = latestRead(volumes.read);
  const images = outcome(latestIsos());
  const disks = outcome(latestVolumes());
  volumes.calls[0].resolve(["disk"]);
  isos.calls[0].resolve(["image"]);
  assert.deepEqual(await images, { answer: ["image"] });
  assert.deepEqual(await disks, { answer: ["disk"] });
});

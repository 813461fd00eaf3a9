// The ISO page's upload figures: rate over a sliding window, time left, the text under the bar.
// Run: node --test web/tests/   (tests/unit/test_web_js.py runs it under pytest)

import assert from "node:assert/strict";
import { test } from "node:test";

import { formatTimeLeft, RateMeter, uploadFigures } from "../../src/limen/web/static/js/upload-progress.js";

const MIB = 1024 * 1024;

test("the rate is unknown until two samples some time apart", () => {
  let now = 0;
  const meter = new RateMeter({ now: () => now });
  meter.sample(0);
  assert.equal(meter.rate, null);
  now = 100;
  meter.sample(MIB);
  assert.equal(meter.rate, null);
  now = 1000;
  meter.sample(2 * MIB);
  assert.equal(meter.rate, 2 * MIB);
});

test("the rate follows the last seconds, so a stall shows at once", () => {
  let now = 0;
  const meter = new RateMeter({ now: () => now, windowMs: 3000 });
  for (let second = 0; second <= 10; second += 1) {
    now = second * 1000;
    meter.sample(second * 10 * MIB);
  }
  assert.equal(meter.rate, 10 * MIB);
  for (let second = 11; second <= 14; second += 1) {
    now = second * 1000;
    meter.sample(100 * MIB); // nothing more sent
  }
  assert.ok(meter.rate < MIB, `rate ${meter.rate} should have dropped`);
});

test("time left reads as a person would say it", () => {
  assert.equal(formatTimeLeft(null), "—");
  assert.equal(formatTimeLeft(Infinity), "—");
  assert.equal(formatTimeLeft(4.2), "5 s");
  assert.equal(formatTimeLeft(185), "3 min 5 s");
  assert.equal(formatTimeLeft(3720), "1 h 2 min");
});

test("once the whole file is sent, the upload is past cancelling: the server may have kept it", () => {
  assert.equal(uploadFigures(12 * MIB - 1, 12 * MIB, MIB).sent, false);
  assert.equal(uploadFigures(12 * MIB, 12 * MIB, MIB).sent, true);
  assert.equal(uploadFigures(0, 0, null).sent, false); // nothing known yet
});

test("the figures under the bar: bytes, percent, rate, time left", () => {
  assert.deepEqual(uploadFigures(3 * MIB, 12 * MIB, 1.5 * MIB), {
    percent: 25, sent: false, text: "3 MiB of 12 MiB (25%) · 1.5 MiB/s · 6 s left",
  });
  assert.equal(uploadFigures(0, 12 * MIB, null).text, "0 B of 12 MiB (0%) · measuring… · time left unknown");
  assert.equal(uploadFigures(5, 0, null).percent, 0);
});

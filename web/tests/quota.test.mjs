// The create form's view of the quota: per resource, the tighter of the user's and the system-wide limit.
// Run: node --test web/tests/   (tests/unit/test_web_js.py runs it under pytest)

import assert from "node:assert/strict";
import { test } from "node:test";

import { headroom, quotaAmount } from "../../src/limen/web/static/js/quota.js";

const NONE = { vms: null, vcpus: null, memory_mib: null, disk_gib: null };

test("no limits: nothing to show or cap", () => {
  const room = headroom({ limits: NONE, usage: { vms: 4, vcpus: 0, memory_mib: 0, disk_gib: 0 },
    system: { limits: NONE, usage: NONE } });
  assert.deepEqual(room, { vms: null, vcpus: null, memory_mib: null, disk_gib: null });
});

test("the tighter limit wins, and what is left never goes below zero", () => {
  const room = headroom({
    limits: { vms: 3, vcpus: 4, memory_mib: null, disk_gib: 10 },
    usage: { vms: 3, vcpus: 1, memory_mib: 256, disk_gib: 2.5 },
    system: { limits: { vms: 100, vcpus: 2, memory_mib: null, disk_gib: null },
      usage: { vms: 120, vcpus: 2, memory_mib: 4096, disk_gib: 40 } },
  });
  assert.deepEqual(room.vms, { scope: "your", limit: 3, usage: 3, left: 0 });
  assert.deepEqual(room.vcpus, { scope: "the system-wide", limit: 2, usage: 2, left: 0 });
  assert.equal(room.memory_mib, null);
  assert.equal(room.disk_gib.left, 7.5);
});

test("figures are written as the page's language writes numbers, disks to a tenth", () => {
  assert.equal(quotaAmount(16384), "16,384"); // was "16384 MiB of 65536 MiB" beside "100,000" on the users page
  assert.equal(quotaAmount(2.5), "2.5");
  assert.equal(quotaAmount(0), "0");
});

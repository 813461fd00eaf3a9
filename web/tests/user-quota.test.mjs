// The users page's reading of a quota whose exact shape another branch decides: numeric limits at the
// top level or under "limits", null for none; the PUT body keeps the shape the GET answered.
// Run: node --test web/tests/   (tests/unit/test_web_js.py runs it under pytest)

import assert from "node:assert/strict";
import { test } from "node:test";

import { quotaBody, quotaLabel, quotaLimits, quotaSummary } from "../../src/limen/web/static/js/user-quota.js";

const form = (values) => ({ elements: { namedItem: (key) => (key in values ? { value: values[key] } : null) } });

test("limits are the numbers and nulls, at the top level or under limits", () => {
  assert.deepEqual(quotaLimits({ user: "bob", max_vms: 3, max_vcpus: null, note: "x" }),
    [["max_vms", 3], ["max_vcpus", null]]);
  assert.deepEqual(quotaLimits({ limits: { vms: 2 }, usage: { vms: 1 } }), [["vms", 2]]);
  assert.deepEqual(quotaLimits(null), []);
});

test("the summary names each limit, none as no limit", () => {
  assert.equal(quotaSummary({ max_vms: 3, max_memory_mib: null }), "VMs 3 · Memory (MiB) no limit");
  assert.equal(quotaSummary({}), "—");
  assert.equal(quotaLabel("max_gpus_per_vm"), "gpus per vm");
});

test("the body keeps the shape: empty is null, numbers are whole and not negative", () => {
  assert.deepEqual(quotaBody(form({ max_vms: " 5 ", max_vcpus: "" }), { max_vms: 3, max_vcpus: 4 }),
    { max_vms: 5, max_vcpus: null });
  assert.deepEqual(quotaBody(form({ vms: "0" }), { limits: { vms: 1 }, usage: { vms: 0 } }), { limits: { vms: 0 } });
  assert.throws(() => quotaBody(form({ vms: "2.5" }), { vms: 1 }), RangeError);
  assert.throws(() => quotaBody(form({ vms: "-1" }), { vms: 1 }), RangeError);
  assert.throws(() => quotaBody(form({ vms: "lots" }), { vms: 1 }), RangeError);
});

// The users page's reading of GET /api/users/{name}/quota ({limits, usage, override, …}) and the body
// it sends back (the overrides, flat, null for the default).
// Run: node --test web/tests/   (tests/unit/test_web_js.py runs it under pytest)

import assert from "node:assert/strict";
import { test } from "node:test";

import { useLanguage } from "../../src/limen/web/static/js/i18n.js";
import { quotaBody, quotaLabel, quotaOverrides, quotaRefusalText } from "../../src/limen/web/static/js/user-quota.js";
import { catalogue } from "./catalogue.mjs";

const QUOTA = {
  user: "bob",
  limits: { vms: 3, vcpus: null, memory_mib: 4096, disk_gib: 100 },
  usage: { vms: 1, vcpus: 2, memory_mib: 512, disk_gib: 10.5 },
  override: { vms: 3, vcpus: null, memory_mib: null, disk_gib: null },
  system: { limits: { vms: null }, usage: { vms: 7 } },
};
const form = (values) => ({ elements: { namedItem: (key) => (key in values ? { value: values[key] } : null) } });

test("the editable values are the overrides, null for the default", () => {
  assert.deepEqual(quotaOverrides(QUOTA), [["vms", 3], ["vcpus", null], ["memory_mib", null], ["disk_gib", null]]);
  assert.deepEqual(quotaOverrides(null), []);
});

test("a resource without a label of its own is named by its key", () => {
  assert.equal(quotaLabel("vcpus"), "vCPUs of running VMs");
  assert.equal(quotaLabel("gpus_per_vm"), "gpus per vm");
});

test("the body is flat, every resource: empty is null, numbers are whole and not negative", () => {
  assert.deepEqual(quotaBody(form({ vms: " 5 ", vcpus: "", memory_mib: "0", disk_gib: "" }), QUOTA),
    { vms: 5, vcpus: null, memory_mib: 0, disk_gib: null });
  assert.throws(() => quotaBody(form({ vms: "2.5" }), QUOTA), RangeError);
  assert.throws(() => quotaBody(form({ vms: "-1" }), QUOTA), RangeError);
  assert.throws(() => quotaBody(form({ vms: "lots" }), QUOTA), RangeError);
});

test("a refused quota names each field and what is wrong, in the page's language", () => {
  // The dialog said only "Invalid input: correct the fields named in the details", the details English and folded.
  const fields = [{ field: "vms", details: "Input should be less than or equal to 2147483647",
                    rule: { kind: "at_most", max: 2147483647 } }];
  assert.equal(quotaRefusalText(fields), "VMs: Input should be less than or equal to 2147483647");
  try {
    useLanguage("ko", catalogue("ko"));
    assert.equal(quotaRefusalText(fields), "가상 머신: 2,147,483,647 이하여야 합니다.");
  } finally {
    useLanguage("en", catalogue("en")); // the other test files share this process and expect English
  }
  assert.equal(quotaRefusalText([]), null);
  assert.equal(quotaRefusalText(undefined), null);
});

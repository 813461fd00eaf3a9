// A VM's uptime on the pages: known on limen's own machine, unknown (and said so) on other hosts.

import assert from "node:assert/strict";
import { test } from "node:test";

import { vmUptime } from "../../src/limen/web/static/js/dom.js";

test("a VM running on a host that does not report its uptime says it is unknown, and why", () => {
  // It showed "—", as for a stopped VM.
  const shown = vmUptime({ state: "running", uptime_seconds: null, host_available: true });
  assert.equal(shown.text, "Unknown");
  assert.match(shown.title, /qemu:\/\/\//);
});

test("a known uptime, a VM that does not run and a row not yet reloaded show as before", () => {
  assert.deepEqual(vmUptime({ state: "running", uptime_seconds: 75, host_available: true }),
    { text: "1 min", title: null });
  assert.deepEqual(vmUptime({ state: "stopped", uptime_seconds: null }), { text: "—", title: null });
  assert.deepEqual(vmUptime({ state: "running", uptime_seconds: undefined }), { text: "—", title: null });
  assert.deepEqual(vmUptime({ state: "running", uptime_seconds: null, host_available: false }),
    { text: "—", title: null });
});

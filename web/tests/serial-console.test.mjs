// The console page's Serial tab: its address and how it reads the server's text frames.
// Run: node --test web/tests/   (tests/unit/test_web_js.py runs it under pytest)

import assert from "node:assert/strict";
import { test } from "node:test";

import { describeFrame, serialUrl } from "../../src/limen/web/static/js/serial-console.js";

test("the serial console's address follows the page's scheme and host", () => {
  assert.equal(serialUrl("web 1", "ticket=t", { protocol: "https:", host: "limen.example:8443" }),
    "wss://limen.example:8443/api/vms/web%201/serial?ticket=t");
  assert.equal(serialUrl("web", "", { protocol: "http:", host: "127.0.0.1:8080" }),
    "ws://127.0.0.1:8080/api/vms/web/serial");
});

test("status frames inform, the last one is good news, an error frame ends", () => {
  assert.deepEqual(describeFrame({ type: "status", message: "Opening the serial port...", stage: "open_serial" }),
    ["Opening the serial port...", "", false]);
  assert.deepEqual(describeFrame({ type: "status", message: "Serial console connected", stage: "proxy" }),
    ["Serial console connected", "ok", false]);
  const [text, tone, ended] = describeFrame({
    type: "error", error: "Serial console in use", code: "SERIAL_BUSY", details: "x",
    message: "Another client holds this VM's serial console.", stage: "open_serial",
  });
  assert.equal(text, "Serial console in use: Another client holds this VM's serial console.");
  assert.deepEqual([tone, ended], ["error", true]);
});

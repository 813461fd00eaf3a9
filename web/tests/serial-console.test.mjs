// The console page's Serial tab: its address and how it reads the server's text frames.
// Run: node --test web/tests/   (tests/unit/test_web_js.py runs it under pytest)

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { test } from "node:test";

import { useLanguage } from "../../src/limen/web/static/js/i18n.js";

import {
  describeFrame, opensOnShow, retryDelayMs, serialUrl, wayOnAfter,
} from "../../src/limen/web/static/js/serial-console.js";

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

function catalogue(language) {
  const dir = new URL(`../../src/limen/i18n/catalogues/${language}/`, import.meta.url);
  const names = readdirSync(dir).filter((name) => name.endsWith(".json")).sort();
  return Object.assign({}, ...names.map((name) => JSON.parse(readFileSync(new URL(name, dir), "utf8"))));
}

test("the idle warning is said in the page's language, with the seconds left", () => {
  // A Korean page showed the server's English notice.
  const notice = {
    type: "notice", code: "IDLE_WARNING", seconds_left: 10,
    message: "No input for a while: the console closes in 10 s unless you use it.", stage: "proxy", elapsed_ms: 5,
  };
  assert.deepEqual(describeFrame(notice), [notice.message, "", false]);
  try {
    useLanguage("ko", catalogue("ko"));
    assert.deepEqual(describeFrame(notice), ["한동안 입력이 없었습니다. 10초 안에 입력하지 않으면 콘솔이 닫힙니다.", "", false]);
    // A notice the page has no words for (a newer server's) is shown as the server said it.
    assert.deepEqual(describeFrame({ ...notice, code: "DEFRAGMENTING" }), [notice.message, "", false]);
  } finally {
    useLanguage("en", catalogue("en")); // the other test files share this process and expect English
  }
});

test("showing the tab opens a session the first time and after a transient end, not after one that waits", () => {
  assert.equal(opensOnShow(null), true);
  for (const code of ["SERVER_SHUTDOWN", "CONNECTION_LOST", "HYPERVISOR_UNAVAILABLE", "VM_MIGRATED"]) {
    assert.equal(opensOnShow(code), true, code);
  }
  // The reason stays on the tab: a revoked user is not sent a ticket refusal instead, an administrator's
  // end is not undone by switching tabs, and a stopped VM is not started.
  for (const code of ["ACCESS_REVOKED", "SESSION_TERMINATED", "SESSION_TAKEN_OVER", "IDLE_TIMEOUT",
    "SERIAL_BUSY", "VM_STOPPED", "VM_NOT_RUNNING", "VM_REVERTED", "VM_NOT_FOUND"]) {
    assert.equal(opensOnShow(code), false, code);
  }
});

test("after an end the tab offers the way on its code calls for; a deleted VM's is back to the list", () => {
  assert.equal(wayOnAfter("SERIAL_BUSY"), "take_over");
  for (const code of ["VM_STOPPED", "VM_NOT_RUNNING", "VM_REVERTED"]) {
    assert.equal(wayOnAfter(code), "start_and_connect", code);
  }
  assert.equal(wayOnAfter("VM_NOT_FOUND"), "back_to_vms");
  for (const code of ["ACCESS_REVOKED", "SESSION_TERMINATED", "CONNECTION_LOST", null]) {
    assert.equal(wayOnAfter(code), "reconnect", code);
  }
});

test("a passing end connects again by itself after growing waits, then leaves it to the button", () => {
  // limen restarting: its consoles end with SERVER_SHUTDOWN, and limen is unreachable for a moment.
  assert.equal(retryDelayMs("SERVER_SHUTDOWN", 0), 1000);
  assert.equal(retryDelayMs("CONNECTION_FAILED", 1), 2000);
  assert.equal(retryDelayMs("CONNECTION_LOST", 4), 15000);
  assert.equal(retryDelayMs("VM_MIGRATED", 0), 1000);
  assert.equal(retryDelayMs("SERVER_SHUTDOWN", 6), null, "gave up");
  const waiting = ["ACCESS_REVOKED", "SESSION_TERMINATED", "SESSION_TAKEN_OVER", "VM_STOPPED", "VM_NOT_FOUND", null];
  for (const code of waiting) {
    assert.equal(retryDelayMs(code, 0), null, code);
  }
});

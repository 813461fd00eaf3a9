// The console page's stage labels (from GET /api/console-stages), its error texts, and what it makes of a
// WebSocket close. tests/unit/test_web_js.py passes the server's own stage table (GET /api/console-stages)
// as JSON in WEB_TESTS_CONSOLE_STAGES, so a label the page would show differently from the table fails here;
// run alone (node --test web/tests/), a small table of the same shape stands in.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  BACKOFF_SECONDS,
  backoffSeconds,
  closeOutcome,
  describeError,
  missingVmBadge,
  retriesByItself,
  stageLabels,
  unansweringHostOf,
} from "../../src/limen/web/static/js/console-outcome.js";
import { clientError, stageName, t } from "../../src/limen/web/static/js/i18n.js";

// What the console page passes for the codes it names itself: the catalogue's texts in its language.
const pageTexts = (code) => {
  const { error, message } = clientError(code, "");
  return { error, message };
};

const SMALL_TABLE = {
  vnc: { stages: [{ name: "check_vm", label: "checking VM" }, { name: "proxy", label: "proxying" }] },
  serial: { stages: [{ name: "open_serial", label: "opening the serial port" }] },
};
const TABLE = process.env.WEB_TESTS_CONSOLE_STAGES ? JSON.parse(process.env.WEB_TESTS_CONSOLE_STAGES) : SMALL_TABLE;

const CODES = {
  VM_STOPPED: { title: "VM stopped", message: "The VM was stopped. Start it and reconnect." },
  SLOW_CLIENT: { title: "Client too slow", message: "Reconnect." },
};

test("every stage of each kind is labelled as the table says, in its order", () => {
  for (const kind of ["vnc", "serial"]) {
    const stages = TABLE[kind].stages;
    assert.ok(stages.length > 0, kind);
    const labels = stageLabels(TABLE, kind);
    assert.deepEqual(Object.keys(labels), stages.map((stage) => stage.name));
    for (const stage of stages) {
      assert.equal(labels[stage.name], stage.label);
      // An English page's "Failed at: …" names the stage by the table's label.
      assert.equal(stageName(stage.name, labels[stage.name]), stage.label);
      assert.equal(
        t("console.failed_at", { stage_name: stageName(stage.name, labels[stage.name]), stage: stage.name }),
        `Failed at: ${stage.label} (stage ${stage.name}).`,
      );
    }
  }
});

test("without the table (its request failed) stages keep a name of the page's own", () => {
  assert.deepEqual(stageLabels({}, "vnc"), {});
  assert.deepEqual(stageLabels(null, "vnc"), {});
  assert.deepEqual(stageLabels({ vnc: {} }, "vnc"), {});
  assert.equal(stageName("check_vm", undefined), "checking the VM"); // the catalogue's
  assert.equal(stageName("a_new_stage", undefined), "a_new_stage");
});

test("an error named only by its code gets the server's title and message for it", () => {
  assert.deepEqual(describeError({ code: "VM_STOPPED", details: "d" }, CODES), {
    code: "VM_STOPPED", details: "d", error: "VM stopped", message: "The VM was stopped. Start it and reconnect.",
  });
  // Its own texts win over the table's; an unknown code, or no table, still gets a title and a message.
  const own = describeError({ code: "VM_STOPPED", error: "Own", message: "Own message" }, CODES);
  assert.equal(own.error, "Own");
  assert.equal(own.message, "Own message");
  const generic = { error: "Console closed", message: "Reconnect to open the console again." };
  const unknown = describeError({ code: "SOMETHING_NEW" }, {}, generic);
  assert.equal(unknown.error, "Console closed");
  assert.equal(unknown.message, "Reconnect to open the console again.");
  assert.equal(describeError({ code: "VM_STOPPED" }, undefined, generic).error, "Console closed");
});

test("a close before the screen showed is a failure of the VNC handshake at stage proxy", () => {
  const named = closeOutcome({ closeCode: 4104, reason: "VM_STOPPED", vncReady: false }, CODES);
  assert.deepEqual(named, {
    failure: {
      code: "VM_STOPPED", error: null, message: null, stage: "proxy",
      details: "WebSocket closed with code 4104 (VM_STOPPED) during the VNC handshake",
    },
  });
  // The page completes it from the codes table like any failure.
  assert.equal(describeError(named.failure, CODES).error, "VM stopped");
  for (const reason of ["", undefined, "some words", "lower_case"]) {
    const { failure } = closeOutcome({ closeCode: 1006, reason, vncReady: false }, CODES, pageTexts);
    assert.equal(failure.code, "VNC_SESSION_FAILED");
    assert.equal(failure.error, t("error.VNC_SESSION_FAILED.title"));
    assert.equal(failure.message, t("error.VNC_SESSION_FAILED.message"));
    assert.ok(failure.error && failure.message);
    assert.equal(failure.stage, "proxy");
  }
  assert.equal(
    closeOutcome({ closeCode: 1006, reason: "", vncReady: false }).failure.details,
    "WebSocket closed with code 1006 during the VNC handshake",
  );
});

test("a close after the screen showed ends the session with its code, reconnecting only when transient", () => {
  const stopped = closeOutcome({ closeCode: 4104, reason: "VM_STOPPED", vncReady: true }, CODES);
  assert.deepEqual(stopped, {
    ended: {
      code: "VM_STOPPED", details: "WebSocket closed with code 4104 (VM_STOPPED)",
      error: "VM stopped", message: "The VM was stopped. Start it and reconnect.",
    },
    reconnect: false,
  });
  const slow = closeOutcome({ closeCode: 4000, reason: "SLOW_CLIENT", vncReady: true }, CODES);
  assert.equal(slow.ended.code, "SLOW_CLIENT");
  assert.equal(slow.ended.error, "Client too slow");
  assert.equal(slow.reconnect, true);

  const dropped = closeOutcome({ closeCode: 1006, reason: "", vncReady: true }, CODES, pageTexts);
  assert.equal(dropped.ended.code, "CONNECTION_LOST");
  assert.equal(dropped.ended.error, t("error.CONNECTION_LOST.title"));
  assert.equal(dropped.ended.message, t("error.CONNECTION_LOST.message"));
  assert.equal(dropped.reconnect, true);

  const closed = closeOutcome({ closeCode: 1000, reason: "bye", vncReady: true }, CODES, pageTexts);
  assert.equal(closed.ended.code, "SESSION_CLOSED");
  assert.equal(closed.ended.error, t("error.SESSION_CLOSED.title"));
  // A code the server did not describe falls back to the page's own SESSION_CLOSED texts.
  const unnamed = closeOutcome({ closeCode: 4999, reason: "SOMETHING_NEW", vncReady: true }, {}, pageTexts);
  assert.equal(unnamed.ended.error, t("error.SESSION_CLOSED.title"));
  assert.equal(closed.ended.details, "WebSocket closed with code 1000 (bye)");
  assert.equal(closed.reconnect, false);

  // A dropping close code reconnects even when the reason named a lasting code.
  assert.equal(closeOutcome({ closeCode: 1012, reason: "VM_STOPPED", vncReady: true }, CODES).reconnect, true);
});

test("only transient failures are retried by the page itself", () => {
  for (const code of ["SERVER_SHUTDOWN", "SLOW_CLIENT", "HYPERVISOR_UNAVAILABLE", "CONNECTION_LOST",
    "CONNECTION_FAILED", "WATCHDOG_TIMEOUT", "VM_MIGRATED"]) assert.ok(retriesByItself(code), code);
  for (const code of ["VM_STOPPED", "VM_NOT_RUNNING", "ACCESS_REVOKED", "SESSION_TAKEN_OVER", "IDLE_TIMEOUT"]) {
    assert.ok(!retriesByItself(code), code);
  }
});

test("the reconnects by themselves wait longer each time, then leave it to the user", () => {
  // The screen and the Serial tab both wait these (README: 1, 2, 4, 8, 15, 30 s).
  assert.deepEqual(BACKOFF_SECONDS, [1, 2, 4, 8, 15, 30]);
  assert.deepEqual([0, 1, 2, 3, 4, 5].map(backoffSeconds), [1, 2, 4, 8, 15, 30]);
  assert.equal(backoffSeconds(6), null, "gave up");
  assert.throws(() => { BACKOFF_SECONDS[0] = 0; }, TypeError, "one table for both pages: no page changes it");
});

test("a reconnect that meets the database or Redis down keeps trying", () => {
  // A replica killed while Redis (or PostgreSQL) restarted: the page's reconnect through the other replica got
  // REDIS_UNAVAILABLE and stopped there, under a "Reconnecting" title, though Redis answered seconds later.
  for (const [code, closeCode] of [["DATABASE_UNAVAILABLE", 4305], ["REDIS_UNAVAILABLE", 4523]]) {
    assert.ok(retriesByItself(code), code);
    assert.equal(closeOutcome({ closeCode, reason: code, vncReady: true }, CODES).reconnect, true, code);
  }
});

test("HYPERVISOR_UNAVAILABLE names the host its error names, else the VM's host known not to answer", () => {
  const failed = { code: "HYPERVISOR_UNAVAILABLE", details: "list: no answer", host: "edge" };
  assert.equal(unansweringHostOf(failed), "edge"); // no need to ask for the VM first
  assert.equal(unansweringHostOf(failed, "older"), "edge");
  assert.equal(unansweringHostOf({ code: "HYPERVISOR_UNAVAILABLE", details: "" }, "edge"), "edge");
  assert.equal(unansweringHostOf({ code: "HYPERVISOR_UNAVAILABLE", details: "" }), null);
  assert.equal(unansweringHostOf({ code: "VM_STOPPED", host: "edge" }, "edge"), null); // only this code
  // limen's own machine: the code's own advice (libvirtd on limen's machine) stands
  assert.equal(unansweringHostOf({ code: "HYPERVISOR_UNAVAILABLE", details: "", host: "local" }, null, "local"), null);
  assert.equal(unansweringHostOf({ code: "HYPERVISOR_UNAVAILABLE", details: "" }, "local", "local"), null);
  assert.equal(unansweringHostOf(failed, null, "local"), "edge");
});

test("a VM the API no longer shows is called deleted only when its console's end said so", () => {
  // The API answers VM_NOT_FOUND alike for a deleted VM and one given to another user: "Deleted" alarmed a
  // user whose VM had only changed owner.
  assert.equal(missingVmBadge(true, "ACCESS_REVOKED"), "no-access");
  assert.equal(missingVmBadge(true, "VM_NOT_FOUND"), "deleted");
  for (const end of [null, "VM_STOPPED", "SESSION_TERMINATED"]) assert.equal(missingVmBadge(true, end), "unavailable");
  assert.equal(missingVmBadge(false, null), "not-found"); // never seen: it may never have existed
});

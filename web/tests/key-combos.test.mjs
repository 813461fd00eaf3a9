// The send-keys menu and the chord that leaves the console.

import assert from "node:assert/strict";
import { test } from "node:test";

import { comboEvents, isLeaveChord, SEND_KEYS } from "../../src/limen/web/static/js/key-combos.js";

test("the menu holds the keys the issue lists", () => {
  const labels = SEND_KEYS.map((c) => c.label);
  for (const label of ["Ctrl+Alt+Del", "Ctrl+Alt+Backspace", "Esc", "Tab", "PrintScreen", "Super"]) {
    assert.ok(labels.includes(label), label);
  }
  for (let n = 1; n <= 12; n += 1) assert.ok(labels.includes(`Ctrl+Alt+F${n}`));
  assert.equal(new Set(SEND_KEYS.map((c) => c.id)).size, SEND_KEYS.length);
});

test("a combination presses in order and releases in reverse", () => {
  const cad = SEND_KEYS.find((c) => c.id === "ctrl-alt-del");
  assert.deepEqual(comboEvents(cad), [
    [0xffe3, "ControlLeft", true], [0xffe9, "AltLeft", true], [0xffff, "Delete", true],
    [0xffff, "Delete", false], [0xffe9, "AltLeft", false], [0xffe3, "ControlLeft", false],
  ]);
  const f12 = SEND_KEYS.find((c) => c.id === "ctrl-alt-f12");
  assert.deepEqual(comboEvents(f12)[2], [0xffc9, "F12", true]);
  assert.deepEqual(comboEvents(SEND_KEYS.find((c) => c.id === "super")), [[0xffeb, "MetaLeft", true], [0xffeb, "MetaLeft", false]]);
});

test("the leave chord is Ctrl, Alt and Shift together, pressed in any order", () => {
  const held = { ctrlKey: true, altKey: true, shiftKey: true, metaKey: false };
  assert.ok(isLeaveChord({ key: "Shift", ...held }));
  assert.ok(isLeaveChord({ key: "Control", ...held }));
  assert.ok(isLeaveChord({ key: "Alt", ...held }));
  assert.ok(!isLeaveChord({ key: "T", ...held }));
  assert.ok(!isLeaveChord({ key: "Shift", ...held, altKey: false }));
  assert.ok(!isLeaveChord({ key: "Shift", ...held, metaKey: true }));
});

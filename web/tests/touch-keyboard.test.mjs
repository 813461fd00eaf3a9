// The on-screen keyboard's textarea: what each input typed, as Backspaces and text.
// Run: node --test web/tests/   (tests/unit/test_web_js.py runs it under pytest)

import assert from "node:assert/strict";
import { test } from "node:test";

import { FILLER, inputKeys, refills } from "../../src/limen/web/static/js/touch-keyboard.js";

test("a character typed after the filler is that character", () => {
  assert.deepEqual(inputKeys(FILLER, `${FILLER}H`), { backspaces: 0, text: "H" });
  assert.deepEqual(inputKeys(FILLER, `${FILLER}\n`), { backspaces: 0, text: "\n" });
});

test("a Backspace deletes from the filler, so it is seen", () => {
  assert.deepEqual(inputKeys(FILLER, FILLER.slice(1)), { backspaces: 1, text: "" });
});

test("a corrected word is Backspaces and the word again; emoji count as one character", () => {
  assert.deepEqual(inputKeys(`${FILLER}helo`, `${FILLER}hello `), { backspaces: 1, text: "lo " });
  assert.deepEqual(inputKeys(`${FILLER}😀`, FILLER), { backspaces: 1, text: "" });
});

test("the filler comes back after Enter, when mostly deleted, or after a long text", () => {
  assert.equal(refills(`${FILLER}ls`), false);
  assert.equal(refills(`${FILLER}ls\n`), true);
  assert.equal(refills(FILLER.slice(9)), true);
  assert.equal(refills(`${FILLER}${"x".repeat(201)}`), true);
});

// The console's Screen/Serial tabs move with the keyboard as WAI-ARIA's tabs pattern says.
// Run: node --test web/tests/

import assert from "node:assert/strict";
import { test } from "node:test";

import { tabKeyTarget } from "../../src/limen/web/static/js/tablist.js";

test("Left and Right go to the previous and next tab, round the ends", () => {
  assert.equal(tabKeyTarget("ArrowRight", 0, 2), 1);
  assert.equal(tabKeyTarget("ArrowRight", 1, 2), 0);
  assert.equal(tabKeyTarget("ArrowLeft", 0, 2), 1);
  assert.equal(tabKeyTarget("ArrowLeft", 2, 3), 1);
});

test("Home and End go to the first and last tab; other keys are left alone", () => {
  assert.equal(tabKeyTarget("Home", 2, 3), 0);
  assert.equal(tabKeyTarget("End", 0, 3), 2);
  for (const key of ["Tab", "Enter", " ", "ArrowUp", "ArrowDown", "a"]) assert.equal(tabKeyTarget(key, 0, 2), null);
});

// The snapshot tree of the VM details page: parents before children, as the API lists them.
// Run: node --test web/tests/   (tests/unit/test_web_js.py runs it under pytest)

import assert from "node:assert/strict";
import { test } from "node:test";

import { snapshotTree } from "../../src/limen/web/static/js/vm-snapshots.js";

const snap = (name, parent) => ({ name, parent });
const shape = (nodes) => nodes.map((n) => [n.snapshot.name, shape(n.children)]);

test("children hang under their parent, siblings keep the API's order", () => {
  const tree = snapshotTree([snap("a", null), snap("b", "a"), snap("c", "a"), snap("d", "c"), snap("e", null)]);
  assert.deepEqual(shape(tree), [["a", [["b", []], ["c", [["d", []]]]]], ["e", []]]);
});

test("a snapshot whose parent is not listed is a root", () => {
  assert.deepEqual(shape(snapshotTree([snap("x", "gone")])), [["x", []]]);
  assert.deepEqual(snapshotTree([]), []);
});

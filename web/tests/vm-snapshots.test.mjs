// The snapshot tree of the VM details page: parents before children, as the API lists them.
// Run: node --test web/tests/   (tests/unit/test_web_js.py runs it under pytest)

import assert from "node:assert/strict";
import { test } from "node:test";

import { drawnTree, snapshotTree } from "../../src/limen/web/static/js/vm-snapshots.js";

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

const drawn = (items) => items.map((i) => [i.snapshot.name, i.follows, drawn(i.branches)]);

test("a chain is drawn in one list; only a branch nests", () => {
  // a → b → c (a chain), c → d and c → e (a branch), e → f (a chain inside the branch)
  const tree = snapshotTree([snap("a", null), snap("b", "a"), snap("c", "b"), snap("d", "c"), snap("e", "c"),
                             snap("f", "e")]);
  assert.deepEqual(drawn(drawnTree(tree)), [
    ["a", false, []], ["b", true, []], ["c", true, [["d", false, []], ["e", false, []], ["f", true, []]]],
  ]);
  const chain = snapshotTree(Array.from({ length: 13 }, (_, i) => snap(`s${i}`, i ? `s${i - 1}` : null)));
  assert.ok(drawnTree(chain).every((item) => item.branches.length === 0)); // thirteen in a row, none nested
});

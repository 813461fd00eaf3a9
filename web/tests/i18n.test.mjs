// The page's words for what the server sends as identifiers: a VM action of the audit trail. Outside a page
// the English catalogue is read from the package (i18n.js).

import assert from "node:assert/strict";
import { test } from "node:test";

import { actionName } from "../../src/limen/web/static/js/i18n.js";

test("a VM action is shown by its name in the page's language", () => {
  assert.equal(actionName("start"), "Start");
  assert.equal(actionName("finish-install"), "Finish install");
  assert.equal(actionName("snapshot-delete"), "Delete snapshot");
});

test("an action the catalogue does not know (a newer server's) is shown as it came", () => {
  assert.equal(actionName("defragment"), "defragment");
});

// The delete dialogs' disk box: a plain user's delete goes with its disks (the server refuses one that keeps
// them: DISKS_MUST_BE_DELETED), so the box is ticked and locked for them, saying why.

import assert from "node:assert/strict";
import { test } from "node:test";

import { t } from "../../src/limen/web/static/js/i18n.js";
import { showDiskChoice } from "../../src/limen/web/static/js/vm-delete-disks.js";

const ADMIN = { name: "root", role: "admin" };
const PLAIN = { name: "alice", role: "user" };

function dialog() {  // the box and the reason as a dialog left them last time (another VM, another choice)
  return { box: { checked: true, disabled: true }, reason: { hidden: false, textContent: "stale" } };
}

test("a plain user's box is ticked and locked, saying why, so the delete sent is the allowed one", () => {
  const parts = dialog();
  parts.box.checked = false;
  showDiskChoice(parts, PLAIN, 1);
  assert.deepEqual(parts.box, { checked: true, disabled: true });
  assert.deepEqual(parts.reason, { hidden: false, textContent: t("vm.delete_disks_required") });
  assert.match(parts.reason.textContent, /administrator/);
});

test("an administrator may keep the disks: the box starts unticked and free", () => {
  const parts = dialog();
  showDiskChoice(parts, ADMIN, 2);
  assert.deepEqual(parts.box, { checked: false, disabled: false });
  assert.deepEqual(parts.reason, { hidden: true, textContent: "" });
});

test("a VM without disks has nothing to keep: no reason; a user not known is left to the server", () => {
  const plain = dialog();
  showDiskChoice(plain, PLAIN, 0);
  assert.equal(plain.box.disabled, true);
  assert.deepEqual(plain.reason, { hidden: true, textContent: "" });
  const unknown = dialog();
  showDiskChoice(unknown, null, 1);
  assert.deepEqual(unknown.box, { checked: false, disabled: false });
});

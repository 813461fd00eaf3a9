// The delete dialogs' "Also delete its disk volumes" box (the VM list's and the details page's). Only an
// administrator may keep a deleted VM's disks (the server refuses anyone else's delete without them:
// DISKS_MUST_BE_DELETED), so for a plain user the box is ticked and locked, saying why, and the delete the
// dialog sends is the one allowed.

import { t } from "./i18n.js";

/**
 * Sets `box` (the checkbox) and `reason` (the element saying why it is locked) as the dialog opens, for
 * `user` (GET /api/me; null when unknown) and a VM with `diskCount` disk volumes. An administrator's box
 * starts unticked, as does one whose user is not known: a wrong guess there would delete disks, while the
 * server's refusal of a plain user's delete loses nothing.
 */
export function showDiskChoice({ box, reason }, user, diskCount) {
  const required = Boolean(user) && user.role !== "admin";
  box.checked = required;
  box.disabled = required || diskCount === 0;
  // A VM without disks has nothing to keep: the dialog already says it has none.
  reason.hidden = !required || diskCount === 0;
  reason.textContent = reason.hidden ? "" : t("vm.delete_disks_required");
}

// Stop asks the guest to shut down (ACPI); a guest may ignore it (the GRUB demo does). The list and the
// details page look again this long after a Stop and, if the VM still runs, offer Force stop. A test
// shortens the wait with ?stop_follow_up=<seconds> in the page's address (not a server setting).

import { t } from "./i18n.js";

const DEFAULT_SECONDS = 30;
const MAX_SECONDS = 3600;

function followUpSeconds() {
  const asked = Number(new URLSearchParams(window.location.search).get("stop_follow_up"));
  return Number.isFinite(asked) && asked > 0 ? Math.min(asked, MAX_SECONDS) : DEFAULT_SECONDS;
}

export const STOP_FOLLOW_UP_MS = followUpSeconds() * 1000;

/** "Still running after 30 s — force stop?" */
export function stillRunningText(ms = STOP_FOLLOW_UP_MS) {
  return t("list.still_running", { seconds: Math.round(ms / 1000) });
}

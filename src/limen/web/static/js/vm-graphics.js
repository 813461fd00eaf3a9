// A VM defined without VNC graphics (GET /api/vms/{id} answers vnc: null) has no screen to open: its
// Console links open its serial console instead (the console page's Serial tab) when it has one, and are
// disabled with the reason when it has neither; its screen shows a placeholder that says so instead of
// waiting for a picture that never comes.

import { t } from "./i18n.js";

export const NO_CONSOLE_REASON = t("list.no_console_reason");
export const NO_CONSOLE_PLACEHOLDER = t("list.no_console");
export const SERIAL_ONLY = t("list.serial_only");

/** Points ``link`` (an <a class="btn">) at ``href`` (the console page), at its Serial tab for a VM with a
 * serial console only, or disables it with the reason when ``vm`` has neither (an <a> without href is
 * neither followed nor focused). */
export function showConsoleLink(link, vm, href) {
  if (vm.vnc || vm.serial_console) {
    link.href = vm.vnc ? href : `${href}?tab=serial`;
    link.removeAttribute("aria-disabled");
    if (vm.vnc && [NO_CONSOLE_REASON, SERIAL_ONLY].includes(link.title)) link.removeAttribute("title");
    if (!vm.vnc) link.title = SERIAL_ONLY;
  } else {
    link.removeAttribute("href");
    link.setAttribute("aria-disabled", "true");
    link.title = NO_CONSOLE_REASON;
  }
}

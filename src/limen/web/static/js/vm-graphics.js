// A VM defined without VNC graphics (GET /api/vms/{id} answers vnc: null) has no console to open: its
// Console links are disabled with the reason, and its screen shows a placeholder that says so instead of
// waiting for a picture that never comes.

import { t } from "./i18n.js";

export const NO_CONSOLE_REASON = t("list.no_console_reason");
export const NO_CONSOLE_PLACEHOLDER = t("list.no_console");

/** Points ``link`` (an <a class="btn">) at ``href``, or disables it with the reason when ``vm`` has no
 * graphics (an <a> without href is neither followed nor focused). */
export function showConsoleLink(link, vm, href) {
  if (vm.vnc) {
    link.href = href;
    link.removeAttribute("aria-disabled");
    if (link.title === NO_CONSOLE_REASON) link.removeAttribute("title");
  } else {
    link.removeAttribute("href");
    link.setAttribute("aria-disabled", "true");
    link.title = NO_CONSOLE_REASON;
  }
}

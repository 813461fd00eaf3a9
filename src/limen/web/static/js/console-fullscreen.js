// Fullscreen for the console page. The whole page goes fullscreen (not the screen alone), so the thin
// toolbar stays above the VM's screen and its menus and dialogs keep working; `body.thin-bar` (see
// limen.css) shrinks the bar to one row: send keys, paste, clipboard and "Exit fullscreen". The browser's
// own way out (Esc) and the console's keyboard way out (Ctrl+Alt+Shift to the toolbar) keep working.

import { onLanguageChange, t } from "./i18n.js";

/** Whether the page shows fullscreen now. */
export function isFullscreen(doc = document) {
  return Boolean(doc.fullscreenElement);
}

/**
 * Wires the fullscreen button. `onError(say)` hears that the browser refused: `say()` tells why in the page's
 * language of the moment (it may change in place); `onChange(on)` hears every change, whoever made it (the
 * button, Esc, the browser's own controls).
 */
export function wireFullscreen({ button, body, onError = () => {}, onChange = () => {} }) {
  const doc = body.ownerDocument;
  const label = () => {
    const on = isFullscreen(doc);
    button.textContent = on ? t("console.fullscreen_exit") : t("console.fullscreen");
    button.title = on ? t("console.fullscreen_exit_title") : t("console.fullscreen_title");
  };
  const show = () => {
    const on = isFullscreen(doc);
    body.classList.toggle("thin-bar", on || body.classList.contains("popout"));
    body.dataset.fullscreen = on ? "on" : "off";
    button.setAttribute("aria-pressed", String(on));
    label();
    onChange(on);
  };
  button.addEventListener("click", async () => {
    try {
      if (isFullscreen(doc)) await doc.exitFullscreen();
      else await doc.documentElement.requestFullscreen({ navigationUI: "hide" });
    } catch (exc) {
      const reason = exc && exc.message ? exc.message : exc;
      onError(() => t("console.fullscreen_unavailable", { reason }));
    }
  });
  doc.addEventListener("fullscreenchange", show);
  onLanguageChange(label); // the page changed its language in place: the button says itself again
  show();
}

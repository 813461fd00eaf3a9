// The language menu on every page (한국어 / English). Signed in, the choice is kept on the user
// (PATCH /api/me, which also sets this browser's limen_lang cookie), so every browser they sign in from
// follows it; signed out (the sign-in page), only this browser's cookie. Either way the page reloads in
// the chosen language (the server renders pages in it), but for a page that keeps something live (the
// console): that one changes its texts in place (language-switch.js), reloading only if it cannot.

import { api } from "./api.js";
import { switchesInPlace, switchInPlace } from "./language-switch.js";

export const LANGUAGE_COOKIE = "limen_lang";
const YEAR_SECONDS = 365 * 24 * 3600;

/** Sets this browser's language cookie (what the server renders pages in). */
export function rememberInBrowser(language) {
  const secure = window.location.protocol === "https:" ? "; Secure" : "";
  document.cookie = `${LANGUAGE_COOKIE}=${encodeURIComponent(language)}; Path=/; Max-Age=${YEAR_SECONDS}; SameSite=Lax${secure}`;
}

/** Makes `language` the user's and the page's; resolves once the page is in it without a reload. */
async function choose(language) {
  const signedOut = window.location.pathname.startsWith("/login");
  if (!signedOut) {
    try {
      await api("PATCH", "/api/me", { language });
    } catch {
      /* not signed in after all, or limen unreachable: this browser remembers it at least */
    }
  }
  rememberInBrowser(language);
  if (switchesInPlace()) {
    try {
      await switchInPlace(language);
      return;
    } catch (exc) {
      console.warn("limen: the language could not change in place, reloading", exc);
    }
  }
  window.location.reload();
  await new Promise(() => {}); // the page goes
}

// A closed menu changes its value on an arrow key or a typed letter, and "change" fires at once: passing
// through the header with the keyboard switched the page's (and the user's) language, and the reload lost
// the focus. So a choice made with those keys waits for Enter; leaving the menu without it puts the page's
// language back. A choice made in the open list (by mouse, or Enter there) applies at once, as before.
const STEPPING_KEYS = new Set(["ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight", "Home", "End", "PageUp", "PageDown"]);
const FOCUS_AFTER_RELOAD = "limen-focus-language-menu";

const menu = document.getElementById("language-menu");
if (menu) {
  // The page's language, not the menu's value: a choice made before this script ran had no listener, and
  // read as the page's own it was lost and the menu stayed wrong (it is applied below).
  let shown = document.documentElement.lang;
  let stepped = false; // the value moved by a key on the closed menu, not yet confirmed
  const apply = () => {
    if (menu.value === shown) return;
    menu.disabled = true;
    sessionStorage.setItem(FOCUS_AFTER_RELOAD, "1");
    choose(menu.value).then(() => {
      sessionStorage.removeItem(FOCUS_AFTER_RELOAD);
      shown = menu.value;
      menu.disabled = false;
      menu.focus({ preventScroll: true });
    });
  };
  menu.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      stepped = false;
      apply();
    } else if (event.key === " " || event.key === "F4" || (event.altKey && event.key.startsWith("Arrow"))) {
      stepped = false; // the list opens: what is chosen in it applies
    } else if (STEPPING_KEYS.has(event.key) || event.key.length === 1) {
      stepped = true;
    }
  });
  menu.addEventListener("pointerdown", () => {
    stepped = false;
  });
  menu.addEventListener("change", () => {
    if (!stepped) apply();
  });
  menu.addEventListener("blur", () => {
    if (stepped) menu.value = shown;
    stepped = false;
  });
  if (sessionStorage.getItem(FOCUS_AFTER_RELOAD)) {
    sessionStorage.removeItem(FOCUS_AFTER_RELOAD);
    menu.focus({ preventScroll: true });
  }
  apply(); // a choice made before this script ran
}

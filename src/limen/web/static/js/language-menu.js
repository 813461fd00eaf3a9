// The language menu on every page (한국어 / English). Signed in, the choice is kept on the user
// (PATCH /api/me, which also sets this browser's limen_lang cookie), so every browser they sign in from
// follows it; signed out (the sign-in page), only this browser's cookie. Either way the page reloads in
// the chosen language: the server renders pages in it.

import { api } from "./api.js";

export const LANGUAGE_COOKIE = "limen_lang";
const YEAR_SECONDS = 365 * 24 * 3600;

/** Sets this browser's language cookie (what the server renders pages in). */
export function rememberInBrowser(language) {
  const secure = window.location.protocol === "https:" ? "; Secure" : "";
  document.cookie = `${LANGUAGE_COOKIE}=${encodeURIComponent(language)}; Path=/; Max-Age=${YEAR_SECONDS}; SameSite=Lax${secure}`;
}

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
  window.location.reload();
}

const menu = document.getElementById("language-menu");
if (menu) {
  menu.addEventListener("change", () => {
    menu.disabled = true;
    choose(menu.value);
  });
}

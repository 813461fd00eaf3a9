// Who is signed in, shown in the top bar of every page ("admin · administrator"), with a link to the API
// docs and "Sign out".

import { api, ApiError, asBox, currentUser, forgetUser, rereadUser } from "./api.js";
import { errorBox, h } from "./dom.js";
import { lang, t } from "./i18n.js";
import { rememberInBrowser } from "./language-menu.js";

/** Ends the browser session and goes to the sign-in page. */
export async function signOut() {
  try {
    await api("POST", "/api/logout");
  } catch {
    /* signed out already, or limen is gone: the sign-in page says which */
  }
  forgetUser();
  window.location.assign("/login");
}

const ROLE_NAMES = { admin: t("role.admin"), user: t("role.user") };

/** The role in words, as the header shows it. */
export function roleName(role) {
  return Object.hasOwn(ROLE_NAMES, role) ? ROLE_NAMES[role] : String(role);
}

/** Fills #user-menu with the user's name and role, the API docs link and a sign-out button; resolves to
 * the user, or to null when nobody is signed in (the page is on its way to /login) or limen cannot be
 * reached. ``reread``: asks who is signed in anew rather than as the page knew it (:func:`remountUserMenu`).
 * ``needed``: the page can do nothing without the user (its controls wait for it), so when limen cannot be
 * reached the page says so at its top, with Retry, and turns its forms off: it stood at "Loading…" with its
 * form holding every press. */
export async function mountUserMenu({ reread = false, needed = false } = {}) {
  let user;
  try {
    user = await (reread ? rereadUser() : currentUser());
  } catch (exc) {
    const leaving = exc instanceof ApiError && exc.status === 401; // on its way to the sign-in page
    const main = document.querySelector("main");
    if (needed && !leaving && main) {
      // Its forms are wired only once the user is known: a press would be held (early-submits.js) and go
      // nowhere, so they are off, and look it, until Retry loads the page anew.
      for (const control of main.querySelectorAll("form :is(button, input, select, textarea)")) control.disabled = true;
      main.prepend(errorBox(asBox(exc), {
        extraClass: "notice error page-cannot-start",
        actions: [h("button", { class: "btn small", type: "button", text: t("console.retry"),
                                onclick: () => window.location.reload() })],
      }));
    }
    return null;
  }
  followUserLanguage(user);
  const slot = document.getElementById("user-menu");
  if (slot) {
    slot.replaceChildren(
      // A long name is cut short on screen; the title shows it whole on hover, screen readers read it whole.
      h("span", { class: "user-who", id: "user-who", title: `${user.name} · ${roleName(user.role)}` },
        h("span", { class: "user-name", id: "user-name", title: user.name, text: user.name }),
        h("span", { class: "user-role", text: ` · ${roleName(user.role)}` })),
      h("a", { class: "user-link", href: "/api/docs", text: t("menu.api_docs") }),
      h("button", { class: "btn small", type: "button", id: "sign-out", onclick: signOut, text: t("menu.sign_out") }),
    );
  }
  // Users are for administrators: others would only find a page saying so behind the link.
  // So are the storage pool's disks.
  for (const link of document.querySelectorAll('nav a[href="/users"], nav a[href="/volumes"]')) {
    link.hidden = user.role !== "admin";
  }
  return user;
}

/** Reads who is signed in again and fills #user-menu anew (as mountUserMenu, which it resolves like): after
 * the VM changes' stream ended because the sign-in changed, the header, the Users link and what a page offers
 * by role follow a role that changed; a sign-in that ended is found by what the person does next. */
export function remountUserMenu() {
  return mountUserMenu({ reread: true });
}

/** The user's language wins over this browser's: a page that came in another language (the cookie was
 * cleared, or the choice was made in another browser) reloads in the user's. Once per page load: a browser
 * that refuses cookies would otherwise reload for ever. */
function followUserLanguage(user) {
  if (!user.language || user.language === lang) return;
  const key = `limen-language-followed:${window.location.pathname}`;
  if (window.sessionStorage.getItem(key) === user.language) return;
  window.sessionStorage.setItem(key, user.language);
  rememberInBrowser(user.language);
  window.location.reload();
}

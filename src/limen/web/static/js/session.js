// Who is signed in, shown in the top bar of every page, with "Sign out".

import { api, currentUser, forgetUser } from "./api.js";
import { h } from "./dom.js";

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

/** Fills #user-menu with the user's name, role and a sign-out button; resolves to the user, or to null
 * when nobody is signed in (the page is on its way to /login) or limen cannot be reached. */
export async function mountUserMenu() {
  let user;
  try {
    user = await currentUser();
  } catch {
    return null;
  }
  const slot = document.getElementById("user-menu");
  if (slot) {
    slot.replaceChildren(
      h("span", { class: "user-name", id: "user-name", title: user.name, text: user.name }),
      h("span", { class: "user-role", text: user.role }),
      h("button", { class: "btn small", type: "button", id: "sign-out", onclick: signOut, text: "Sign out" }),
    );
  }
  return user;
}

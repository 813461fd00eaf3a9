// The sign-in page: name and password → POST /api/login (sets the session cookie) → back to ?next=.
// When sign-in is throttled (429 TOO_MANY_ATTEMPTS), the page shows the server's real wait, counts it
// down, and keeps the button off until it has passed.

import { api, ApiError, forgetUser } from "./api.js";
import { errorBox, spinner } from "./dom.js";
import { countDown, formatWait } from "./wait.js";

const form = document.getElementById("login-form");
const nameInput = document.getElementById("login-name");
const passwordInput = document.getElementById("login-password");
const submit = document.getElementById("login-submit");
const errorSlot = document.getElementById("login-error");
let waiting = null; // stops the running countdown, while there is one

/** Only a path of this site: never another origin ("//host", "https://…"). */
export function safeNext(value) {
  if (typeof value !== "string" || !value.startsWith("/") || value.startsWith("//") || value.startsWith("/\\")) {
    return "/";
  }
  return value.startsWith("/login") ? "/" : value;
}

/** Shows the wait under the box's title ("Too many sign-in attempts"), counting down; the button is off
 * until it has passed. */
function waitOut(box, seconds) {
  const line = document.createElement("p");
  line.id = "login-wait";
  line.className = "error-message";
  line.setAttribute("aria-live", "off"); // the alert is read once, not every second
  box.querySelector(".error-message")?.replaceWith(line);
  if (!line.isConnected) box.querySelector(".error-title").after(line);
  submit.disabled = true;
  waiting = countDown(seconds, {
    onTick: (left) => { line.textContent = `Try again in ${formatWait(left)}.`; },
    onEnd: () => {
      waiting = null;
      submit.disabled = false;
      errorSlot.replaceChildren();
      nameInput.focus();
    },
  });
}

async function onSubmit(event) {
  event.preventDefault();
  if (waiting) return;
  errorSlot.replaceChildren();
  submit.disabled = true;
  submit.replaceChildren(spinner(), "Signing in…");
  let wait = null;
  try {
    await api("POST", "/api/login", { name: nameInput.value, password: passwordInput.value });
    forgetUser();
    window.location.assign(safeNext(new URLSearchParams(window.location.search).get("next")));
    return;
  } catch (exc) {
    const box = errorBox(exc instanceof ApiError ? exc.body
      : { error: "Sign-in failed", code: "CLIENT_ERROR", details: String(exc), message: "Retry." });
    errorSlot.replaceChildren(box);
    if (exc instanceof ApiError && exc.code === "TOO_MANY_ATTEMPTS" && exc.retryAfter) {
      wait = () => waitOut(box, exc.retryAfter);
    }
    passwordInput.value = "";
    passwordInput.focus();
  } finally {
    submit.disabled = false;
    submit.textContent = "Sign in";
  }
  if (wait) wait();
}

if (form) {
  form.addEventListener("submit", onSubmit);
  nameInput.focus();
}

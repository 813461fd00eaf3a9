// The sign-in page: name and password → POST /api/login (sets the session cookie) → back to ?next=.

import { api, ApiError, forgetUser } from "./api.js";
import { errorBox, spinner } from "./dom.js";

const form = document.getElementById("login-form");
const nameInput = document.getElementById("login-name");
const passwordInput = document.getElementById("login-password");
const submit = document.getElementById("login-submit");
const errorSlot = document.getElementById("login-error");

/** Only a path of this site: never another origin ("//host", "https://…"). */
export function safeNext(value) {
  if (typeof value !== "string" || !value.startsWith("/") || value.startsWith("//") || value.startsWith("/\\")) {
    return "/";
  }
  return value.startsWith("/login") ? "/" : value;
}

async function onSubmit(event) {
  event.preventDefault();
  errorSlot.replaceChildren();
  submit.disabled = true;
  submit.replaceChildren(spinner(), "Signing in…");
  try {
    await api("POST", "/api/login", { name: nameInput.value, password: passwordInput.value });
    forgetUser();
    window.location.assign(safeNext(new URLSearchParams(window.location.search).get("next")));
    return;
  } catch (exc) {
    const box = exc instanceof ApiError ? exc.body
      : { error: "Sign-in failed", code: "CLIENT_ERROR", details: String(exc), message: "Retry." };
    errorSlot.replaceChildren(errorBox(box));
    passwordInput.value = "";
    passwordInput.focus();
  } finally {
    submit.disabled = false;
    submit.textContent = "Sign in";
  }
}

if (form) {
  form.addEventListener("submit", onSubmit);
  nameInput.focus();
}

// The sign-in page: name and password → POST /api/login (sets the session cookie) → back to ?next=.
// When sign-in is throttled (429 TOO_MANY_ATTEMPTS), the page shows the server's real wait, counts it
// down, and keeps the button off until it has passed. When self-registration is on (GET /api/registration),
// "Create an account" opens a second form (POST /api/register); with approval, it says the account waits
// for an administrator, and signing in before that shows ACCOUNT_PENDING's message.

import { api, ApiError, forgetUser } from "./api.js";
import { errorBox, h, spinner, takeForm } from "./dom.js";
import { safeNext } from "./next-path.js";
import { countDown, formatWait } from "./wait.js";
import { clientError, fieldErrorText, localizedError, t } from "./i18n.js";

const form = document.getElementById("login-form");
const nameInput = document.getElementById("login-name");
const passwordInput = document.getElementById("login-password");
const submit = document.getElementById("login-submit");
const errorSlot = document.getElementById("login-error");
let waiting = null; // stops the running countdown, while there is one

// Sent here by a page whose sign-in ended while it was open (api.js loginUrl's `ended`): said above the
// form, or the page a user was on turned into a bare sign-in form without a word.
if (new URLSearchParams(window.location.search).get("ended") === "1") {
  errorSlot.replaceChildren(h("div", { class: "notice info", id: "login-ended", text: t("login.ended") }));
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
    onTick: (left) => { line.textContent = t("login.try_again_in", { wait: formatWait(left) }); },
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
  submit.replaceChildren(spinner(), t("login.signing_in"));
  let wait = null;
  let leaving = false;
  try {
    await api("POST", "/api/login", { name: nameInput.value, password: passwordInput.value });
    forgetUser();
    leaving = true; // the button stays off: a second press while the page leaves opened a second session
    window.location.assign(safeNext(new URLSearchParams(window.location.search).get("next"), window.location.origin));
    return;
  } catch (exc) {
    const box = errorBox(exc instanceof ApiError ? exc.body
      : clientError("CLIENT_ERROR", `signing in: ${exc}`));
    errorSlot.replaceChildren(box);
    if (exc instanceof ApiError && exc.code === "TOO_MANY_ATTEMPTS" && exc.retryAfter) {
      wait = () => waitOut(box, exc.retryAfter);
    }
    passwordInput.value = "";
    passwordInput.focus();
  } finally {
    if (!leaving) readyForAnother();
  }
  if (wait) wait();
}

function readyForAnother() {
  submit.disabled = false;
  submit.textContent = t("login.submit");
}

// -- signing up -------------------------------------------------------------------------------------

const signupForm = document.getElementById("signup-form");
const signupOffer = document.getElementById("signup-offer");
const signupError = document.getElementById("signup-error");
const signupSubmit = document.getElementById("signup-submit");
let registrationMode = "off";

function showSignup(show) {
  signupForm.hidden = !show;
  form.hidden = show;
  (show ? document.getElementById("signup-name") : nameInput).focus();
}

const SIGNUP_FIELDS = ["name", "password"];

/** A refusal that names a field (a name rule, a short password) is said under that field, in the page's
 * language (the box above says the rest). */
function showSignupFieldError(exc) {
  const field = exc instanceof ApiError && SIGNUP_FIELDS.includes(exc.field) ? exc.field
    : exc instanceof ApiError && exc.code === "USER_ALREADY_EXISTS" ? "name" : null;
  if (!field) return;
  const slot = document.getElementById(`signup-${field}-error`);
  slot.textContent = exc.code === "VALIDATION_ERROR" ? fieldErrorText(exc, field) : localizedError(exc.body).message;
  slot.hidden = false;
  const control = document.getElementById(`signup-${field}`);
  control.setAttribute("aria-invalid", "true");
  control.focus();
}

function clearSignupErrors() {
  signupError.replaceChildren();
  for (const field of SIGNUP_FIELDS) {
    const slot = document.getElementById(`signup-${field}-error`);
    slot.hidden = true;
    slot.textContent = "";
    document.getElementById(`signup-${field}`).removeAttribute("aria-invalid");
  }
}

async function onSignup(event) {
  event.preventDefault();
  clearSignupErrors();
  signupSubmit.disabled = true;
  signupSubmit.replaceChildren(spinner(), t("common.creating"));
  const name = document.getElementById("signup-name").value;
  try {
    const made = await api("POST", "/api/register", { name, password: document.getElementById("signup-password").value });
    showSignup(false);
    nameInput.value = made.name;
    errorSlot.replaceChildren(h("div", { class: "notice ok", role: "status", id: "signup-done" }, made.approved
      ? t("login.created", { name: made.name })
      : t("login.created_pending", { name: made.name })));
    passwordInput.focus();
  } catch (exc) {
    signupError.replaceChildren(h("div", { class: "notice error" }, errorBox(exc instanceof ApiError ? exc.body
      : clientError("CLIENT_ERROR", `signing up: ${exc}`))));
    showSignupFieldError(exc);
  } finally {
    signupSubmit.disabled = false;
    signupSubmit.textContent = t("login.create_account");
  }
}

async function offerSignup() {
  try {
    registrationMode = (await api("GET", "/api/registration", undefined, { timeoutMs: 10000 })).mode;
  } catch {
    return; // no offer: signing in still works
  }
  if (registrationMode === "off") return;
  document.getElementById("signup-mode").textContent = registrationMode === "approval"
    ? t("login.mode_approval") : t("login.mode_open");
  signupOffer.hidden = false;
  document.getElementById("signup-link").addEventListener("click", (event) => {
    event.preventDefault();
    showSignup(true);
  });
  document.getElementById("signin-link").addEventListener("click", (event) => {
    event.preventDefault();
    showSignup(false);
  });
  takeForm(signupForm, onSignup);
  if (window.location.hash === "#signup") showSignup(true);
}

if (form) {
  // Back to this page from the one signing in went to: the browser's back-forward cache kept it as it was
  // left, the button off for good.
  window.addEventListener("pageshow", (event) => {
    if (event.persisted && !waiting) readyForAnother();
  });
  takeForm(form, onSubmit);
  nameInput.focus();
  offerSignup();
}

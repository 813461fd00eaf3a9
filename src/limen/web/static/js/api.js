// The REST API as the pages use it: JSON in, JSON out, and every failure as an ApiError with the
// server's fields (error, code, details, message, field) — or limen-side ones when there is no answer.
//
// Access: the browser signs in with the limen_session cookie (HttpOnly, sent by the browser itself).
// Every state-changing request carries the session's CSRF token in X-CSRF-Token — added here, and only
// here. A 401 anywhere but the sign-in itself sends the page to /login?next=<this page>.
//
// The token is kept for the tab (sessionStorage) once GET /api/me has told it, so the next page's first
// write need not wait for that round trip (the console's ticket is the first request of its page). A kept
// token the server refuses (CSRF_FAILED: the session changed, e.g. signed out and in elsewhere) is dropped
// and the write sent once more with the session's token as /api/me tells it now; CSRF_FAILED means the
// server did nothing with the first one.

import { t } from "./i18n.js";

const DEFAULT_TIMEOUT_MS = 30000;
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
export const CSRF_HEADER = "X-CSRF-Token";
const LOGIN_PATH = "/api/login";
// Asked by people not signed in: no CSRF token (there is no session), and a 401 is theirs to show.
const ANONYMOUS_PATHS = new Set([LOGIN_PATH, "/api/register"]);

let me = null; // GET /api/me, once per page: {name, role, auth, csrf_token}
const KEPT_CSRF = "limen.csrf_token"; // sessionStorage: this tab's session's CSRF token, as /api/me said

function keptCsrf() {
  try {
    return globalThis.sessionStorage?.getItem(KEPT_CSRF) || null;
  } catch {
    return null; // storage disabled: every page asks /api/me
  }
}

function keepCsrf(token) {
  try {
    if (token) globalThis.sessionStorage?.setItem(KEPT_CSRF, token);
    else globalThis.sessionStorage?.removeItem(KEPT_CSRF);
  } catch {
    // storage disabled or full: nothing kept
  }
}

/** The sign-in page, sending the user back to this page (if it is one of ours); `ended`: it says why a
 * signed-in page came there (signed out in another tab, expired or revoked), not a bare sign-in form. */
export function loginUrl(location = window.location, { ended = false } = {}) {
  const next = `${location.pathname}${location.search}`;
  const query = next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/login")
    ? [`next=${encodeURIComponent(next)}`] : [];
  if (ended) query.push("ended=1");
  return query.length ? `/login?${query.join("&")}` : "/login";
}

function toLogin(ended) {
  window.location.assign(loginUrl(window.location, { ended }));
}

// What a 401 does on this page: the login page, unless the page said otherwise (whenSignInEnds).
let signInEnded = toLogin;

/**
 * ``handler(wasSignedIn)`` runs instead of going to the login page when a request finds the sign-in ended:
 * the console page first lets its open console say why it ended (ACCESS_REVOKED names who disabled the
 * account), which the login page's notice cannot.
 */
export function whenSignInEnds(handler) {
  signInEnded = handler;
}

/** The login page now, saying the sign-in ended when the page knew its user. */
export function goToLogin(ended) {
  toLogin(ended);
}

/** Who is signed in (cached for the page). Goes to /login when nobody is. */
export async function currentUser() {
  if (me === null) {
    me = await api("GET", "/api/me");
    keepCsrf(me && me.csrf_token);
  }
  return me;
}

/** Reads who is signed in anew, as the sign-in may have changed (a role taken away): a read in the background.
 * A sign-in that ended (401) does not leave the page, whose form may hold what someone is typing: the user
 * known till now stays known, and what they do next finds the sign-in ended (the login page says so). */
export async function rereadUser() {
  const fresh = await api("GET", "/api/me", undefined, { keepPage: true });
  me = fresh;
  keepCsrf(fresh && fresh.csrf_token);
  return fresh;
}

/** Forgets the cached user and the tab's CSRF token (after signing in or out). */
export function forgetUser() {
  me = null;
  keepCsrf(null);
}

/** The CSRF header of a request, and whether its token is the tab's kept one (not yet confirmed here). */
async function csrfHeaders(method, path) {
  if (SAFE_METHODS.has(method) || ANONYMOUS_PATHS.has(path)) return { headers: {}, kept: false };
  const kept = me === null ? keptCsrf() : null;
  const token = kept || (await currentUser())?.csrf_token;
  return { headers: token ? { [CSRF_HEADER]: token } : {}, kept: Boolean(kept) };
}

export class ApiError extends Error {
  constructor(status, body) {
    super(`${body.code}: ${body.details || body.error}`);
    this.status = status;
    this.error = body.error;
    this.code = body.code;
    this.details = body.details || "";
    this.userMessage = body.message || "";
    this.field = body.field || null;
    // HYPERVISOR_UNAVAILABLE: the libvirt host that does not answer, as the hosts API names it.
    this.host = typeof body.host === "string" && body.host ? body.host : null;
    // ISO_IN_USE: the VMs whose drive holds the image, and the snapshots ({vm, snapshot}) that keep it.
    this.vms = Array.isArray(body.vms) ? body.vms : null;
    this.snapshots = Array.isArray(body.snapshots) ? body.snapshots : null;
    // VALIDATION_ERROR of limen's own rules: the rule broken, for the page to word (i18n.js ruleText).
    this.rule = body.rule && typeof body.rule === "object" ? body.rule : null;
    // VALIDATION_ERROR: every field refused ({field, details, rule}), the first being `field`.
    const fields = Array.isArray(body.fields)
      ? body.fields.filter((entry) => entry && typeof entry.field === "string") : [];
    this.fields = fields.length || !this.field ? fields
      : [{ field: this.field, details: this.details, rule: this.rule }];
    // TOO_MANY_ATTEMPTS: seconds until the server takes another attempt (also its Retry-After header).
    this.retryAfter = Number.isFinite(body.retry_after) ? body.retry_after : null;
    // QUOTA_EXCEEDED: {scope, resource, limit, usage, requested, free}
    this.quota = body.quota && typeof body.quota === "object" ? body.quota : null;
  }

  /** The seed's fields, for errorBox() (and a quota refusal's numbers, which errorBox words). */
  get body() {
    const seed = { error: this.error, code: this.code, details: this.details, message: this.userMessage };
    return this.quota ? { ...seed, quota: this.quota } : seed;
  }
}

/** What errorBox() shows for a failed call: an ApiError's fields, else (a bug of the page, say) CLIENT_ERROR
 * with the exception in its details. */
export function asBox(exc) {
  return exc instanceof ApiError ? exc.body : { error: t("error.CLIENT_ERROR.title"), code: "CLIENT_ERROR", details: String(exc) };
}

/** onResponse(response): called with the fetch Response of a successful answer (to read its headers). */
export async function api(method, path, body = undefined, options = {}) {
  const csrf = await csrfHeaders(method, path);
  try {
    return await send(method, path, body, csrf.headers, options);
  } catch (exc) {
    if (!(csrf.kept && exc instanceof ApiError && exc.code === "CSRF_FAILED")) throw exc;
    forgetUser(); // the kept token was another session's: ask /api/me, once
    return send(method, path, body, (await csrfHeaders(method, path)).headers, options);
  }
}

// Options: timeoutMs; onResponse(response); keepPage: a 401 to this request does not leave the page (a read in
// the background, e.g. the New VM form's quota after a VM changed elsewhere: the person typing there would
// lose what they typed; what they do next finds the sign-in ended).
async function send(method, path, body, csrf, { timeoutMs = DEFAULT_TIMEOUT_MS, onResponse = null,
                                               keepPage = false } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  let response;
  let text;
  try {
    response = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: body === undefined ? { Accept: "application/json", ...csrf }
        : { Accept: "application/json", "Content-Type": "application/json", ...csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller.signal,
    });
    text = await response.text();
  } catch (exc) {
    const timedOut = controller.signal.aborted;
    throw new ApiError(0, {
      error: t(timedOut ? "api.no_answer_title" : "error.NETWORK_ERROR.title"),
      code: timedOut ? "REQUEST_TIMEOUT" : "NETWORK_ERROR",
      details: timedOut ? `${method} ${path}: no answer within ${timeoutMs / 1000} s` : `${method} ${path}: ${exc}`,
      message: t("error.NETWORK_ERROR.message"),
    });
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401 && !ANONYMOUS_PATHS.has(path) && !keepPage) {
      const wasSignedIn = me !== null; // a 401 to a page that knew its user: the sign-in ended meanwhile
      forgetUser();
      signInEnded(wasSignedIn);
    }
    if (data && typeof data === "object" && data.code) throw new ApiError(response.status, data);
    throw new ApiError(response.status, {
      error: t("api.http_status_title", { status: response.status }),
      code: `HTTP_${response.status}`,
      details: `${method} ${path}: ${(text || "").slice(0, 500)}`,
      message: t("api.http_status_message"),
    });
  }
  if (onResponse) onResponse(response);
  return data;
}

/** The tables the console page carries in itself (<script id="limen-console-tables">: the error codes and
 * the stage table, as GET /api/error-codes and GET /api/console-stages answer): its socket waits for no
 * request of theirs. null on other pages, which fetch them. */
function pageTables() {
  const element = typeof document === "undefined" ? null : document.getElementById("limen-console-tables");
  if (!element) return null;
  try {
    return JSON.parse(element.textContent);
  } catch {
    return null;
  }
}

let errorCodes = null;

/** The server's table of error codes (title, message, close_code), read once; {} when unavailable. */
export async function loadErrorCodes() {
  if (errorCodes === null) errorCodes = pageTables()?.error_codes ?? null;
  if (errorCodes === null) {
    try {
      errorCodes = await api("GET", "/api/error-codes", undefined, { timeoutMs: 5000 });
    } catch {
      return {};
    }
  }
  return errorCodes;
}

let consoleStages = null;

/** The server's console stage table (GET /api/console-stages: each kind's stages in order, with their
 * labels, status texts, deadlines and codes), read once; {} when unavailable. */
export async function loadConsoleStages() {
  if (consoleStages === null) consoleStages = pageTables()?.console_stages ?? null;
  if (consoleStages === null) {
    try {
      consoleStages = await api("GET", "/api/console-stages", undefined, { timeoutMs: 5000 });
    } catch {
      return {};
    }
  }
  return consoleStages;
}

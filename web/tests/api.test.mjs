// The pages' REST client: CSRF only on state-changing requests, every failure an ApiError in the one
// error schema (the server's, or limen-side ones for no answer), and a 401 sending the page to /login.
// A fake fetch and window stand in for the browser. Run: node --test web/tests/

import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { api, ApiError, asBox, CSRF_HEADER, forgetUser, loginUrl } from "../../src/limen/web/static/js/api.js";

const calls = [];
let answers = {};

function json(status, body) {
  return { ok: status >= 200 && status < 300, status, text: async () => JSON.stringify(body) };
}

// The tab's sessionStorage: what one page of the tab keeps, the next page of it reads.
const stored = new Map();
globalThis.sessionStorage = {
  getItem: (key) => (stored.has(key) ? stored.get(key) : null),
  setItem: (key, value) => stored.set(key, String(value)),
  removeItem: (key) => stored.delete(key),
};

/** api.js as another page of the same tab loads it: a module of its own (no user asked yet), same storage. */
let pages = 0;
async function nextPage() {
  pages += 1;
  return import(`../../src/limen/web/static/js/api.js?page=${pages}`);
}

globalThis.window = {
  location: { pathname: "/vms/web01", search: "?tab=disks", assigned: [], assign(url) { this.assigned.push(url); } },
};
globalThis.fetch = async (path, init) => {
  calls.push({ path, init });
  const answer = answers[`${init.method} ${path}`];
  if (answer === undefined) throw new Error(`unexpected ${init.method} ${path}`);
  return typeof answer === "function" ? answer(init) : answer;
};

// One describe: its beforeEach stays with these tests when web/tests/all.mjs runs every file in one process.
describe("api.js", () => {
  beforeEach(() => {
    calls.length = 0;
    answers = { "GET /api/me": json(200, { name: "Ωμ", role: "user", csrf_token: "csrf-1" }) };
    window.location.assigned = [];
    forgetUser();
  });

  test("loginUrl sends the user back only to a page of this site", () => {
    assert.equal(loginUrl({ pathname: "/vms/a b", search: "?x=1&y=2" }), "/login?next=%2Fvms%2Fa%20b%3Fx%3D1%26y%3D2");
    assert.equal(loginUrl({ pathname: "//evil.example/", search: "" }), "/login");
    assert.equal(loginUrl({ pathname: "/login", search: "?next=/" }), "/login");
  });

  test("reads carry no CSRF token; writes carry the session's, asking /api/me once", async () => {
    answers["GET /api/vms"] = json(200, [{ id: "web01" }]);
    answers["POST /api/vms/web01/start"] = json(202, { state: "running" });
    assert.deepEqual(await api("GET", "/api/vms"), [{ id: "web01" }]);
    assert.equal(calls[0].init.headers[CSRF_HEADER], undefined);
    await api("POST", "/api/vms/web01/start");
    await api("POST", "/api/vms/web01/start", { force: true });
    const writes = calls.filter((call) => call.init.method === "POST");
    assert.deepEqual(writes.map((call) => call.init.headers[CSRF_HEADER]), ["csrf-1", "csrf-1"]);
    assert.equal(writes[1].init.body, JSON.stringify({ force: true }));
    assert.equal(calls.filter((call) => call.path === "/api/me").length, 1);
  });

  test("signing in needs no CSRF token (there is no session yet)", async () => {
    answers["POST /api/login"] = json(200, { csrf_token: "new" });
    await api("POST", "/api/login", { name: "a", password: "b" });
    assert.deepEqual(calls.map((call) => call.path), ["/api/login"]);
  });

  test("a JSON error becomes an ApiError with every field of the schema", async () => {
    answers["DELETE /api/isos/x.iso"] = json(409, {
      error: "ISO in use", code: "ISO_IN_USE", details: "held by web01", message: "Eject it first.", vms: ["web01"],
      snapshots: [{ vm: "web02", snapshot: "before" }],
    });
    answers["POST /api/login"] = json(429, { error: "Too many", code: "TOO_MANY_ATTEMPTS", details: "", retry_after: 7 });
    const inUse = await api("DELETE", "/api/isos/x.iso").catch((exc) => exc);
    assert.ok(inUse instanceof ApiError);
    assert.deepEqual([inUse.status, inUse.code, inUse.details, inUse.userMessage, inUse.vms, inUse.snapshots],
      [409, "ISO_IN_USE", "held by web01", "Eject it first.", ["web01"], [{ vm: "web02", snapshot: "before" }]]);
    assert.deepEqual(inUse.body, { error: "ISO in use", code: "ISO_IN_USE", details: "held by web01", message: "Eject it first." });
    const throttled = await api("POST", "/api/login", {}).catch((exc) => exc);
    assert.equal(throttled.retryAfter, 7);
    assert.deepEqual(window.location.assigned, []);
  });

  test("a page shows a failed call's fields in its error box, and a bug of its own as CLIENT_ERROR", () => {
    const refused = new ApiError(404, { error: "Not found", code: "VM_NOT_FOUND", details: "web01", message: "Gone." });
    assert.deepEqual(asBox(refused), refused.body);
    assert.deepEqual(asBox(new TypeError("x is undefined")),
      { error: "Request failed", code: "CLIENT_ERROR", details: "TypeError: x is undefined" });
  });

  test("an answer that is not limen's JSON is still an ApiError, with the body's start in its details", async () => {
    answers["GET /api/vms"] = { ok: false, status: 502, text: async () => `<html>${"x".repeat(2000)}</html>` };
    const error = await api("GET", "/api/vms").catch((exc) => exc);
    assert.equal(error.code, "HTTP_502");
    assert.ok(error.details.startsWith("GET /api/vms: <html>xxx"));
    assert.ok(error.details.length <= "GET /api/vms: ".length + 500);
  });

  test("no answer is NETWORK_ERROR, a slow one REQUEST_TIMEOUT", async () => {
    answers["GET /api/vms"] = () => { throw new TypeError("Failed to fetch"); };
    const unreachable = await api("GET", "/api/vms").catch((exc) => exc);
    assert.deepEqual([unreachable.status, unreachable.code], [0, "NETWORK_ERROR"]);
    assert.match(unreachable.details, /Failed to fetch/);
    answers["GET /api/vms"] = (init) => new Promise((_resolve, reject) => {
      init.signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
    });
    const slow = await api("GET", "/api/vms", undefined, { timeoutMs: 20 }).catch((exc) => exc);
    assert.deepEqual([slow.status, slow.code], [0, "REQUEST_TIMEOUT"]);
    assert.match(slow.details, /no answer within 0.02 s/);
  });

  test("a 401 sends the page to /login and back, and forgets the user; a failed sign-in does not", async () => {
    answers["GET /api/vms"] = json(401, { error: "Sign in", code: "UNAUTHORIZED", details: "" });
    answers["POST /api/vms"] = json(201, {});
    await api("POST", "/api/vms", {}); // caches the user
    const error = await api("GET", "/api/vms").catch((exc) => exc);
    assert.equal(error.code, "UNAUTHORIZED");
    // The page knew its user: the sign-in ended meanwhile, and the sign-in page is told so.
    assert.deepEqual(window.location.assigned, ["/login?next=%2Fvms%2Fweb01%3Ftab%3Ddisks&ended=1"]);
    await api("POST", "/api/vms", {});
    assert.equal(calls.filter((call) => call.path === "/api/me").length, 2);
    answers["POST /api/login"] = json(401, { error: "Wrong", code: "INVALID_CREDENTIALS", details: "" });
    await api("POST", "/api/login", {}).catch(() => {});
    assert.equal(window.location.assigned.length, 1);
  });

  test("a page that never knew its user goes to a bare sign-in (nothing ended: nobody was signed in)", async () => {
    answers["GET /api/me"] = json(401, { error: "Sign in", code: "UNAUTHORIZED", details: "" });
    await api("GET", "/api/me").catch(() => {});
    assert.deepEqual(window.location.assigned, ["/login?next=%2Fvms%2Fweb01%3Ftab%3Ddisks"]);
  });

  test("the next page of the tab writes with the kept CSRF token, without asking /api/me first", async () => {
    answers["POST /api/vms/web01/start"] = json(202, {});
    answers["POST /api/vms/web01/console-ticket"] = json(200, { ticket: "t" });
    await api("POST", "/api/vms/web01/start"); // this page asks /api/me once and keeps its token
    const console_ = await nextPage();
    calls.length = 0;
    assert.deepEqual(await console_.api("POST", "/api/vms/web01/console-ticket"), { ticket: "t" });
    assert.deepEqual(calls.map((call) => [call.path, call.init.headers[CSRF_HEADER]]),
      [["/api/vms/web01/console-ticket", "csrf-1"]]);
  });

  test("a kept token the server refuses is dropped, and the write sent once more with the session's", async () => {
    stored.set("limen.csrf_token", "csrf-of-a-session-signed-out");
    answers["POST /api/vms/web01/console-ticket"] = (init) => (init.headers[CSRF_HEADER] === "csrf-1"
      ? json(200, { ticket: "t" }) : json(403, { error: "CSRF", code: "CSRF_FAILED", details: "" }));
    const page = await nextPage();
    assert.deepEqual(await page.api("POST", "/api/vms/web01/console-ticket"), { ticket: "t" });
    assert.deepEqual(calls.map((call) => [call.path, call.init.headers[CSRF_HEADER]]), [
      ["/api/vms/web01/console-ticket", "csrf-of-a-session-signed-out"],
      ["/api/me", undefined],
      ["/api/vms/web01/console-ticket", "csrf-1"],
    ]);
    assert.equal(stored.get("limen.csrf_token"), "csrf-1");
  });

  test("a refusal of the token /api/me gave is not sent again, and other refusals of a kept one neither", async () => {
    answers["POST /api/vms/web01/start"] = json(403, { error: "CSRF", code: "CSRF_FAILED", details: "" });
    const first = await api("POST", "/api/vms/web01/start").catch((exc) => exc);
    assert.equal(first.code, "CSRF_FAILED");
    assert.equal(calls.filter((call) => call.path === "/api/vms/web01/start").length, 1);
    answers["POST /api/vms/web01/start"] = json(403, { error: "No", code: "FORBIDDEN", details: "" });
    const page = await nextPage();
    calls.length = 0;
    const refused = await page.api("POST", "/api/vms/web01/start").catch((exc) => exc);
    assert.equal(refused.code, "FORBIDDEN");
    assert.deepEqual(calls.map((call) => call.path), ["/api/vms/web01/start"]);
  });

  test("signing in or out forgets the kept token", async () => {
    answers["POST /api/vms/web01/start"] = json(202, {});
    await api("POST", "/api/vms/web01/start");
    assert.equal(stored.get("limen.csrf_token"), "csrf-1");
    forgetUser();
    assert.equal(stored.has("limen.csrf_token"), false);
  });

  test("the console page's own tables are read from it, other pages fetch theirs once", async () => {
    const codes = { VM_STOPPED: { title: "VM stopped", message: "…", http_status: 409, close_code: 4102 } };
    const stages = { vnc: { stages: [{ name: "check_vm", label: "checking the VM" }], worst_case_seconds: 20 } };
    const tables = JSON.stringify({ error_codes: codes, console_stages: stages });
    globalThis.document = { getElementById: (id) => (id === "limen-console-tables" ? { textContent: tables } : null) };
    try {
      const consolePage = await nextPage();
      assert.deepEqual(await consolePage.loadErrorCodes(), codes);
      assert.deepEqual(await consolePage.loadConsoleStages(), stages);
      assert.deepEqual(calls, []);
    } finally {
      delete globalThis.document;
    }
    answers["GET /api/error-codes"] = json(200, codes);
    answers["GET /api/console-stages"] = json(200, stages);
    const otherPage = await nextPage();
    for (let i = 0; i < 2; i += 1) {
      assert.deepEqual(await otherPage.loadErrorCodes(), codes);
      assert.deepEqual(await otherPage.loadConsoleStages(), stages);
    }
    assert.deepEqual(calls.map((call) => call.path), ["/api/error-codes", "/api/console-stages"]);
  });
});

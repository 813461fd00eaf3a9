// The sign-in page's `next`: a page of this site, never another origin however it is spelled.
// Run: node --test web/tests/   (tests/unit/test_web_js.py runs it under pytest)

import assert from "node:assert/strict";
import { test } from "node:test";

import { safeNext } from "../../src/limen/web/static/js/next-path.js";

const ORIGIN = "http://127.0.0.1:8765";

test("a page of this site is kept, with its query and fragment", () => {
  assert.equal(safeNext("/vms/web-1/console", ORIGIN), "/vms/web-1/console");
  assert.equal(safeNext("/audit?vm=a%20b#latest", ORIGIN), "/audit?vm=a%20b#latest");
  assert.equal(safeNext("/vms/%EC%9B%B9/console", ORIGIN), "/vms/%EC%9B%B9/console");
});

test("anything that leaves the site goes to the VM list", () => {
  for (const value of ["//evil.example", "/\\evil.example", "/\t/evil.example", "/\n/evil.example",
                       "/\r/evil.example", "\t//evil.example", "https://evil.example/", "javascript:alert(1)",
                       "/%09/evil.example/../..", " /vms", "", null, undefined, 42]) {
    const next = safeNext(value, ORIGIN);
    assert.ok(next === "/" || new URL(next, ORIGIN).origin === ORIGIN, `${JSON.stringify(value)} → ${next}`);
    assert.ok(!next.startsWith("//"), `${JSON.stringify(value)} → ${next}`);
  }
  assert.equal(safeNext("/\t/evil.example", ORIGIN), "/");
  assert.equal(safeNext("//evil.example", ORIGIN), "/");
});

test("the sign-in page itself is not a next page", () => {
  assert.equal(safeNext("/login?next=/x", ORIGIN), "/");
  assert.equal(safeNext("/login", ORIGIN), "/");
});

// Every web/tests/*.test.mjs in one node process: `node --test web/tests` starts a process per file (~0.15 s of
// CPU each, ~2.4 s in all against ~0.3 s here). tests/unit/test_web_js.py runs this; either way works by hand.
// Run: node --test-reporter=tap web/tests/all.mjs

import { readdirSync } from "node:fs";

const here = new URL(".", import.meta.url);
for (const name of readdirSync(here).filter((file) => file.endsWith(".test.mjs")).sort()) {
  await import(new URL(name, here));
}

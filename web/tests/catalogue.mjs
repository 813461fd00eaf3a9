// A language's whole catalogue read from the package, for the tests that switch a page's language
// (useLanguage): outside a page i18n.js reads only the English one.

import { readFileSync, readdirSync } from "node:fs";

export function catalogue(language) {
  const dir = new URL(`../../src/limen/i18n/catalogues/${language}/`, import.meta.url);
  const names = readdirSync(dir).filter((name) => name.endsWith(".json")).sort();
  return Object.assign({}, ...names.map((name) => JSON.parse(readFileSync(new URL(name, dir), "utf8"))));
}

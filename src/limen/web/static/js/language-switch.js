// Changing a page's language without reloading it, for a page that keeps something a reload would drop
// (the console: its live connection, a paste being typed). The page opts in with <body data-language-switch>;
// other pages reload, rendered by the server in the new language.
//
// The new catalogue is the one the server embeds in this same page rendered in the new language (the
// language cookie is already set): no second source of the words. The page's server-rendered texts name
// their catalogue keys (data-i18n for the text, data-i18n-title / data-i18n-aria-label for attributes) and
// are said again from it; what the page's script wrote it says again itself (i18n.js onLanguageChange).

import { t, useLanguage } from "./i18n.js";

const TRANSLATED_ATTRIBUTES = ["title", "aria-label"];

/** Whether this page changes its language in place rather than by a reload. */
export function switchesInPlace() {
  return document.body.hasAttribute("data-language-switch");
}

/** Makes `language` the page's, in place; throws (the page keeps its language) when the page cannot be read. */
export async function switchInPlace(language) {
  const response = await fetch(window.location.href, { headers: { Accept: "text/html" }, cache: "no-store" });
  if (!response.ok) throw new Error(`the page in ${language}: HTTP ${response.status}`);
  const rendered = new DOMParser().parseFromString(await response.text(), "text/html");
  if (rendered.documentElement.lang !== language) throw new Error(`the page came in ${rendered.documentElement.lang}`);
  const catalogue = JSON.parse(rendered.getElementById("limen-i18n")?.textContent || "{}");
  document.documentElement.lang = language;
  useLanguage(language, catalogue);
  translateMarked(document, t);
}

/** Says each marked element's text and attributes under `root` again with `translate(key)`. */
export function translateMarked(root, translate) {
  for (const element of root.querySelectorAll("[data-i18n]")) element.textContent = translate(element.dataset.i18n);
  for (const attribute of TRANSLATED_ATTRIBUTES) {
    for (const element of root.querySelectorAll(`[data-i18n-${attribute}]`)) {
      element.setAttribute(attribute, translate(element.getAttribute(`data-i18n-${attribute}`)));
    }
  }
}

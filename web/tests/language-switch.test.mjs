// A page changing its language in place (the console, its connection kept): the catalogue, the language and
// the formats change at once, what the page registered is said again, and its marked texts are said anew.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { test } from "node:test";

import { formatNumber, lang, onLanguageChange, t, useLanguage } from "../../src/limen/web/static/js/i18n.js";
import { translateMarked } from "../../src/limen/web/static/js/language-switch.js";
import { SerialTab } from "../../src/limen/web/static/js/serial-console.js";

const KOREAN = { "console.paste": "입력으로 붙여넣기", "console.paste_title": "텍스트를 키 입력으로 보냅니다" };

function englishCatalogue() {
  const dir = new URL("../../src/limen/i18n/catalogues/en/", import.meta.url);
  const names = readdirSync(dir).filter((name) => name.endsWith(".json")).sort();
  return Object.assign({}, ...names.map((name) => JSON.parse(readFileSync(new URL(name, dir), "utf8"))));
}

function element(data) {
  const attributes = new Map(Object.entries(data).map(([name, value]) => [`data-${name}`, value]));
  return {
    textContent: "",
    dataset: { i18n: attributes.get("data-i18n") },
    getAttribute: (name) => attributes.get(name) ?? null,
    setAttribute: (name, value) => attributes.set(name, value),
    attribute: (name) => attributes.get(name),
  };
}

test("useLanguage swaps the words, the language and the formats, then tells the page", () => {
  const english = englishCatalogue();
  let told = 0;
  const stop = onLanguageChange(() => { told += 1; });
  try {
    useLanguage("ko", KOREAN);
    assert.equal(lang, "ko"); // a live binding: importers see the new language
    assert.equal(t("console.paste"), "입력으로 붙여넣기");
    assert.equal(formatNumber(1234.5), new Intl.NumberFormat("ko").format(1234.5));
    assert.equal(told, 1);
  } finally {
    useLanguage("en", english); // the other test files share this process and expect English
    stop();
  }
  assert.equal(lang, "en");
  assert.equal(t("console.paste"), english["console.paste"]);
  assert.equal(told, 2);
});

test("translateMarked says each marked text and attribute with the catalogue's key", () => {
  const text = element({ i18n: "console.paste" });
  const titled = element({ "i18n-title": "console.paste_title" });
  const labelled = element({ "i18n-aria-label": "console.paste" });
  const root = {
    querySelectorAll: (selector) => ({
      "[data-i18n]": [text], "[data-i18n-title]": [titled], "[data-i18n-aria-label]": [labelled],
    })[selector] ?? [],
  };
  translateMarked(root, (key) => KOREAN[key]);
  assert.equal(text.textContent, "입력으로 붙여넣기");
  assert.equal(titled.attribute("title"), "텍스트를 키 입력으로 보냅니다");
  assert.equal(labelled.attribute("aria-label"), "입력으로 붙여넣기");
});

test("the serial tab says its status line and its button again in the new language", () => {
  const english = englishCatalogue();
  const korean = { ...english, "serial.no_ticket": "시리얼 콘솔을 열 수 없습니다: {reason}", "serial.take_over": "넘겨받기" };
  const ui = { status: { textContent: "", dataset: {} }, reconnect: { textContent: "", hidden: true },
               back: { hidden: true }, paste: {}, serialWrap: { dataset: {} } };
  const tab = new SerialTab({ vmId: "web", ui });
  tab.lastError = "SERIAL_BUSY";
  tab.ended(() => t("serial.no_ticket", { reason: "busy" }));
  assert.equal(ui.status.textContent, english["serial.no_ticket"].replace("{reason}", "busy"));
  assert.equal(ui.reconnect.textContent, english["serial.take_over"]);
  try {
    useLanguage("ko", korean);
    assert.equal(ui.status.textContent, "시리얼 콘솔을 열 수 없습니다: busy");
    assert.equal(ui.reconnect.textContent, "넘겨받기");
  } finally {
    useLanguage("en", english);
  }
});

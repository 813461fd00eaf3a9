// Paste-as-typing's plan: each character as a US key with Shift where needed; what no key types is refused.
// Run: node --test web/tests/   (tests/unit/test_web_js.py runs it under pytest)

import assert from "node:assert/strict";
import { test } from "node:test";

import { describeChar, keyEvents, KEYSYM, planTyping, refusalMessage, US_LAYOUT } from "../../src/limen/web/static/js/us-keyboard.js";

const SHIFT_DOWN = [KEYSYM.Shift_L, "ShiftLeft", true];
const SHIFT_UP = [KEYSYM.Shift_L, "ShiftLeft", false];

test("echo Hi! is typed with Shift around H and !", () => {
  const { keys, refused } = planTyping("echo Hi!");
  assert.deepEqual(refused, []);
  assert.deepEqual(keys.map((k) => [k.code, k.shift]), [
    ["KeyE", false], ["KeyC", false], ["KeyH", false], ["KeyO", false], ["Space", false],
    ["KeyH", true], ["KeyI", false], ["Digit1", true],
  ]);
  assert.deepEqual(keyEvents(keys[5]), [SHIFT_DOWN, [0x48, "KeyH", true], [0x48, "KeyH", false], SHIFT_UP]);
  assert.deepEqual(keyEvents(keys[7]), [SHIFT_DOWN, [0x21, "Digit1", true], [0x21, "Digit1", false], SHIFT_UP]);
  assert.deepEqual(keyEvents(keys[0]), [[0x65, "KeyE", true], [0x65, "KeyE", false]]);
});

test("every printable ASCII character has a key, its keysym is its code point", () => {
  for (let point = 0x20; point < 0x7f; point += 1) {
    const char = String.fromCharCode(point);
    const key = US_LAYOUT.get(char);
    assert.ok(key, `no key for ${char}`);
    assert.equal(key.keysym, point);
  }
  assert.equal(US_LAYOUT.size, 95 + 2);
});

test("the shifted symbols sit on the US keys", () => {
  const expected = {
    "!": "Digit1", "@": "Digit2", "#": "Digit3", $: "Digit4", "%": "Digit5", "^": "Digit6", "&": "Digit7",
    "*": "Digit8", "(": "Digit9", ")": "Digit0", _: "Minus", "+": "Equal", "{": "BracketLeft",
    "}": "BracketRight", "|": "Backslash", ":": "Semicolon", '"': "Quote", "<": "Comma", ">": "Period",
    "?": "Slash", "~": "Backquote",
  };
  for (const [char, code] of Object.entries(expected)) {
    assert.deepEqual([US_LAYOUT.get(char).code, US_LAYOUT.get(char).shift], [code, true], char);
  }
  for (const char of "`-=[]\\;',./0123456789abcxyz") assert.equal(US_LAYOUT.get(char).shift, false, char);
});

test("newlines become Return, CR LF and lone CR too; Tab is Tab", () => {
  const { keys } = planTyping("a\r\nb\rc\nd\te");
  assert.deepEqual(keys.map((k) => k.code), ["KeyA", "Enter", "KeyB", "Enter", "KeyC", "Enter", "KeyD", "Tab", "KeyE"]);
  assert.equal(keys[1].keysym, KEYSYM.Return);
});

test("characters no US key produces are refused, each once, in order", () => {
  const { refused } = planTyping("echo 한글 ok é 한 😀\u0007");
  assert.deepEqual(refused, ["한", "글", "é", "😀", "\u0007"]);
  const message = refusalMessage(refused);
  assert.match(message, /^Nothing was typed: 5 characters cannot be typed on a US keyboard: /);
  assert.match(message, /한 \(U\+D55C\), 글 \(U\+AE00\), é \(U\+00E9\), 😀 \(U\+1F600\), U\+0007/);
  assert.equal(describeChar("\u00a0"), "U+00A0");
});

test("a long list of refused characters is cut, saying how many more", () => {
  const refused = [..."абвгдежзийклмнопрст"];
  const message = refusalMessage(refused, 3);
  assert.match(message, /а \(U\+0430\), б \(U\+0431\), в \(U\+0432\) and 16 more\./);
  assert.match(refusalMessage(["é"]), /1 character cannot/);
});

test("with the guest's Caps Lock on, letters take Shift the other way round; other keys do not", () => {
  // The guest applies its Caps Lock to the keys it gets: "Hi!" typed as Shift+H, i, Shift+1 came out "hI!".
  const { keys } = planTyping("Hi!1");
  assert.deepEqual(keyEvents(keys[0], true), [[0x48, "KeyH", true], [0x48, "KeyH", false]]);
  assert.deepEqual(keyEvents(keys[1], true), [SHIFT_DOWN, [0x69, "KeyI", true], [0x69, "KeyI", false], SHIFT_UP]);
  assert.deepEqual(keyEvents(keys[2], true), [SHIFT_DOWN, [0x21, "Digit1", true], [0x21, "Digit1", false], SHIFT_UP]);
  assert.deepEqual(keyEvents(keys[3], true), [[0x31, "Digit1", true], [0x31, "Digit1", false]]);
  assert.deepEqual(keyEvents(keys[1], false), keyEvents(keys[1]));
});

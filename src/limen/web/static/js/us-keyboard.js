// What a US keyboard types: each character as the key (a KeyboardEvent.code), the keysym noVNC would send
// for it and whether Shift is held. Paste-as-typing sends these as QEMU extended key events, so the guest
// gets the scancode of that key on a US layout (GRUB, firmware and most installers assume US), with Shift
// pressed and released around shifted characters. A character no key produces (é, 한, emoji, control
// characters) is refused: typing it would silently drop it or type something else.
// Pure: no DOM, no noVNC; tested with node --test (web/tests/us-keyboard.test.mjs).

import { t } from "./i18n.js";

export const KEYSYM = Object.freeze({
  BackSpace: 0xff08, Tab: 0xff09, Return: 0xff0d, Escape: 0xff1b, Delete: 0xffff, Print: 0xff61,
  F1: 0xffbe, Shift_L: 0xffe1, Control_L: 0xffe3, Alt_L: 0xffe9, Super_L: 0xffeb,
});

// Keys whose unshifted and shifted characters are not a letter or a digit: [code, plain, shifted].
const PUNCTUATION = [
  ["Backquote", "`", "~"], ["Minus", "-", "_"], ["Equal", "=", "+"], ["BracketLeft", "[", "{"],
  ["BracketRight", "]", "}"], ["Backslash", "\\", "|"], ["Semicolon", ";", ":"], ["Quote", "'", '"'],
  ["Comma", ",", "<"], ["Period", ".", ">"], ["Slash", "/", "?"],
];
const SHIFTED_DIGITS = ")!@#$%^&*("; // Shift + Digit0 … Digit9

function buildLayout() {
  const layout = new Map();
  const add = (char, code, shift, keysym = char.codePointAt(0)) => layout.set(char, { char, code, keysym, shift });
  for (let i = 0; i < 26; i += 1) {
    const lower = String.fromCharCode(0x61 + i);
    const code = `Key${lower.toUpperCase()}`;
    add(lower, code, false);
    add(lower.toUpperCase(), code, true);
  }
  for (let digit = 0; digit < 10; digit += 1) {
    add(String(digit), `Digit${digit}`, false);
    add(SHIFTED_DIGITS[digit], `Digit${digit}`, true);
  }
  for (const [code, plain, shifted] of PUNCTUATION) {
    add(plain, code, false);
    add(shifted, code, true);
  }
  add(" ", "Space", false);
  add("\n", "Enter", false, KEYSYM.Return);
  add("\t", "Tab", false, KEYSYM.Tab);
  return layout;
}

export const US_LAYOUT = buildLayout();

/** How a character is named in a refusal: itself when visible, else its code point (U+0007). */
export function describeChar(char) {
  const point = char.codePointAt(0);
  const hex = `U+${point.toString(16).toUpperCase().padStart(4, "0")}`;
  return point < 0x20 || point === 0x7f || (point >= 0x80 && point < 0xa0) || /\s/u.test(char) ? hex : `${char} (${hex})`;
}

/**
 * Plans typing ``text`` on a US keyboard: ``{keys, refused}``. ``keys`` has one entry per character
 * (CR LF and lone CR become one Return); ``refused`` lists each character no key produces, once, in
 * order of appearance. Type nothing when ``refused`` is not empty.
 */
export function planTyping(text) {
  const keys = [];
  const refused = [];
  for (const char of String(text).replace(/\r\n?/g, "\n")) {
    const key = US_LAYOUT.get(char);
    if (key) keys.push(key);
    else if (!refused.includes(char)) refused.push(char);
  }
  return { keys, refused };
}

/** The message that refuses a paste, naming (up to ``limit`` of) the characters no key produces. */
export function refusalMessage(refused, limit = 12) {
  const named = refused.slice(0, limit).map(describeChar).join(", ");
  const more = refused.length > limit ? t("paste.refused_more", { count: refused.length - limit }) : "";
  return t(refused.length === 1 ? "paste.refused_one" : "paste.refused", { count: refused.length, named, more });
}

/**
 * The key events for one planned key: ``[keysym, code, down]`` each, Shift around a shifted key. With the
 * guest's Caps Lock on (``capsLock``), a letter's Shift is the other way round: the guest applies its own
 * Caps Lock to the key, so "Hi" planned as Shift+H, i arrived as "hI".
 */
export function keyEvents(key, capsLock = false) {
  const press = [[key.keysym, key.code, true], [key.keysym, key.code, false]];
  const letter = /^[a-z]$/i.test(key.char);
  if (key.shift === (capsLock && letter)) return press;
  return [[KEYSYM.Shift_L, "ShiftLeft", true], ...press, [KEYSYM.Shift_L, "ShiftLeft", false]];
}

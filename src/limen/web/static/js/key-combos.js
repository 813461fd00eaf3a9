// The send-keys menu's combinations and the chord that leaves the console. Pure; tested in
// web/tests/key-combos.test.mjs.

import { KEYSYM } from "./us-keyboard.js";

const CTRL = [KEYSYM.Control_L, "ControlLeft"];
const ALT = [KEYSYM.Alt_L, "AltLeft"];

function fKey(n) {
  return [KEYSYM.F1 + n - 1, `F${n}`];
}

/** The send-keys menu: a label and the keys held in order (released in reverse). */
export const SEND_KEYS = Object.freeze([
  { id: "ctrl-alt-del", label: "Ctrl+Alt+Del", keys: [CTRL, ALT, [KEYSYM.Delete, "Delete"]] },
  { id: "ctrl-alt-backspace", label: "Ctrl+Alt+Backspace", keys: [CTRL, ALT, [KEYSYM.BackSpace, "Backspace"]] },
  ...Array.from({ length: 12 }, (_, i) => (
    { id: `ctrl-alt-f${i + 1}`, label: `Ctrl+Alt+F${i + 1}`, keys: [CTRL, ALT, fKey(i + 1)] })),
  { id: "esc", label: "Esc", keys: [[KEYSYM.Escape, "Escape"]] },
  { id: "tab", label: "Tab", keys: [[KEYSYM.Tab, "Tab"]] },
  { id: "print-screen", label: "PrintScreen", keys: [[KEYSYM.Print, "PrintScreen"]] },
  { id: "super", label: "Super", keys: [[KEYSYM.Super_L, "MetaLeft"]] },
]);

/** The events of a combination: each key pressed in order, then released in reverse. */
export function comboEvents(combo) {
  const downs = combo.keys.map(([keysym, code]) => [keysym, code, true]);
  const ups = [...combo.keys].reverse().map(([keysym, code]) => [keysym, code, false]);
  return [...downs, ...ups];
}

export const LEAVE_CHORD_LABEL = "Ctrl+Alt+Shift";
const MODIFIER_KEYS = new Set(["Control", "Alt", "Shift"]);

/**
 * Whether a keydown completes the chord that leaves the console: Ctrl, Alt and Shift held together,
 * in any order (the event of the last of the three). No other key: Ctrl+Alt+Shift+T stays the guest's.
 */
export function isLeaveChord(event) {
  return MODIFIER_KEYS.has(event.key) && event.ctrlKey && event.altKey && event.shiftKey && !event.metaKey;
}

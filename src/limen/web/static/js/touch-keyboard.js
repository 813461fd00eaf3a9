// The console's on-screen keyboard for touch devices. Tapping the VM's screen focuses noVNC's canvas, which
// opens no on-screen keyboard: the toolbar's Keyboard button focuses a textarea instead, and what the
// keyboard writes there goes to the VM as key presses. The textarea starts with a filler the caret sits
// after, so a Backspace has something to delete (an empty one sends no input event for it); after each input
// the page compares the value with the one before and sends the difference, so a keyboard that composes a
// word as it is typed (Android's) or corrects it sends Backspaces and the word again. The filler is put back
// after Enter, when it was mostly deleted, or when the text grew long, never in the middle of a composition.
// Pure: no DOM, no noVNC; tested with node --test (web/tests/touch-keyboard.test.mjs).

export const FILLER = " ".repeat(16);

/**
 * What turned the textarea's value ``before`` into ``after``, as typed at its end: ``{backspaces, text}``
 * (the characters after the first difference were deleted, then ``text`` was typed).
 */
export function inputKeys(before, after) {
  const old = [...before];
  const now = [...after];
  let same = 0;
  while (same < old.length && same < now.length && old[same] === now[same]) same += 1;
  return { backspaces: old.length - same, text: now.slice(same).join("") };
}

/** Whether the textarea's value (``value``, after an input outside a composition) goes back to the filler. */
export function refills(value) {
  const length = [...value].length;
  return value.endsWith("\n") || length < FILLER.length / 2 || length > FILLER.length + 200;
}

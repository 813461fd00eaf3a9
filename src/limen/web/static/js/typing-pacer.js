// Paces paste-as-typing so the guest keeps up. What loses characters is the guest, not the network: a
// BIOS guest such as GRUB reads keys from the firmware's 15-key buffer, and keys that arrive while it is
// full are dropped without a trace. So keys go one character at a time: send its events, wait until the
// WebSocket has written them (bufferedAmount 0: they have left the browser), then wait a gap before the
// next. The gap adapts: it grows when the socket was slow to drain (a slow link bunches keys up on the
// far side) and shrinks back towards the base gap while the socket keeps up.
// Pure: the socket, the clock and the key sender are injected; tested in web/tests/typing-pacer.test.mjs.

import { keyEvents } from "./us-keyboard.js";

export const PACING = Object.freeze({
  baseGapMs: 30, // measured: GRUB under TCG keeps up at this gap (see README, "Paste as typing")
  maxGapMs: 400,
  drainPollMs: 5,
  drainTimeoutMs: 15000,
});

export class TypingCancelled extends Error {}

/**
 * Types planned ``keys`` (from planTyping) with ``send(keysym, code, down)``; ``pending()`` tells the
 * bytes the socket has not written yet; ``sleep(ms)`` waits. ``onProgress(done, total)`` after each key;
 * ``cancelled()`` stops before the next key (throws TypingCancelled). Resolves with the gap it ended at.
 */
export async function typeKeys(keys, { send, pending, sleep, onProgress = () => {}, cancelled = () => false,
  pacing = PACING }) {
  let gap = pacing.baseGapMs;
  for (let index = 0; index < keys.length; index += 1) {
    if (cancelled()) throw new TypingCancelled(`cancelled after ${index} of ${keys.length} keys`);
    for (const [keysym, code, down] of keyEvents(keys[index])) send(keysym, code, down);
    let waited = 0;
    while (pending() > 0) {
      if (waited >= pacing.drainTimeoutMs) throw new Error(`the connection did not send a key within ${waited} ms`);
      await sleep(pacing.drainPollMs);
      waited += pacing.drainPollMs;
    }
    gap = waited > 0 ? Math.min(pacing.maxGapMs, gap * 2) : Math.max(pacing.baseGapMs, Math.floor(gap * 0.9));
    onProgress(index + 1, keys.length);
    if (index + 1 < keys.length) await sleep(gap);
  }
  return gap;
}

// Paces paste-as-typing so the guest keeps up. What loses characters is the guest, not the network: a
// BIOS guest such as GRUB reads keys from the firmware's 15-key buffer, and keys that arrive while it is
// full are dropped without a trace. So keys go one character at a time: send its events, wait until the
// WebSocket has written them (bufferedAmount back to 0: they have left the browser), then wait a gap
// before the next. The gap adapts to the link: when the socket took longer than ``slowDrainMs`` to drain
// (a congested link delivers keys in bunches, which overflows the guest's buffer) it doubles, and while
// the socket keeps up it shrinks back towards the base gap. (A socket always holds a just-sent frame for
// a moment: a short drain is normal and changes nothing.) After Return the pause is longer: the guest
// runs the line (GRUB's echo prints and scrolls the screen) and reads no keys meanwhile.
// Measured on GRUB under TCG (2 shared cores): a fixed 30-40 ms gap loses keys whenever GRUB stalls,
// above all when the command line wraps at the screen's edge and GRUB redraws and scrolls: Shift's
// release is lost with the rest and the next letters come out upper case. So the pace also follows the
// guest: after each key it waits until the screen changed (the guest echoed it: a message arrived from
// the VNC server) or ``echoWaitMs`` passed, which lets a stalled guest drain its buffer first. A guest
// that echoes nothing (a password prompt) is typed at one key per ``echoWaitMs`` + gap.
// Pure: the socket, the clock and the key sender are injected; tested in web/tests/typing-pacer.test.mjs.

import { keyEvents } from "./us-keyboard.js";

export const PACING = Object.freeze({
  baseGapMs: 15,
  echoWaitMs: 300,
  returnGapMs: 500, // after Return the guest runs the line and scrolls: keys sent meanwhile pile up
  maxGapMs: 400,
  drainPollMs: 5,
  slowDrainMs: 150,
  drainTimeoutMs: 15000,
});

export class TypingCancelled extends Error {}

/**
 * Types planned ``keys`` (from planTyping) with ``send(keysym, code, down)``; ``pending()`` tells the
 * bytes the socket has not written yet; ``screenUpdates()`` counts the messages the VNC server sent so far;
 * ``sleep(ms)`` waits; ``now()`` reads a clock in milliseconds.
 * ``capsLock()`` tells whether the guest's Caps Lock is on now (asked before each key: the person may
 * toggle it meanwhile); ``onSent(sent, total)`` as soon as a key's events are sent (the count a stop says:
 * the key is the guest's from then on); ``onProgress(done, total)`` after each key;
 * ``cancelled()`` stops before the next key and before reporting a key sent while it became true (throws
 * TypingCancelled). Resolves with the gap it ended at.
 */
export async function typeKeys(keys, { send, pending, screenUpdates, sleep, now, onProgress = () => {},
  cancelled = () => false, capsLock = () => false, onSent = () => {}, pacing = PACING }) {
  let gap = pacing.baseGapMs;
  for (let index = 0; index < keys.length; index += 1) {
    if (cancelled()) throw new TypingCancelled(`cancelled after ${index} of ${keys.length} keys`);
    const updatesBefore = screenUpdates();
    for (const [keysym, code, down] of keyEvents(keys[index], capsLock())) send(keysym, code, down);
    onSent(index + 1, keys.length);
    const sent = now();
    while (pending() > 0) {
      const waited = now() - sent;
      if (waited >= pacing.drainTimeoutMs) {
        // English for logs and tests; the page shows its own words with waitedMs.
        throw Object.assign(new Error(`the connection did not send a key within ${waited} ms`), { waitedMs: waited });
      }
      await sleep(pacing.drainPollMs);
    }
    const slow = now() - sent > pacing.slowDrainMs;
    while (screenUpdates() === updatesBefore && now() - sent < pacing.echoWaitMs) await sleep(pacing.drainPollMs);
    gap = slow ? Math.min(pacing.maxGapMs, gap * 2) : Math.max(pacing.baseGapMs, Math.floor(gap * 0.9));
    // Cancelled while this key drained or echoed (the user disconnected, say): no progress is reported for a
    // typing that has ended, which the page would show over whatever it shows now.
    if (cancelled()) throw new TypingCancelled(`cancelled after ${index + 1} of ${keys.length} keys`);
    onProgress(index + 1, keys.length);
    if (index + 1 < keys.length) await sleep(keys[index].code === "Enter" ? Math.max(gap, pacing.returnGapMs) : gap);
  }
  return gap;
}

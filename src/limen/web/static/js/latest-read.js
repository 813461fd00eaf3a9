// Only the newest read is drawn: a list page reads its list again after each change (and some on a timer),
// those reads overlap, and their answers come back in any order. A read asked before a delete and answered
// after the delete's own read drew the deleted row again. No DOM here: node's test runner drives it
// (web/tests/latest-read.test.mjs).

/** What a call of a latestRead() wrapper gives when a later call was made before its read settled. */
export const STALE = Symbol("stale read");

/**
 * Wraps the async function `read` so that of overlapping calls only the latest one's outcome comes
 * through: its answer, or its error thrown. A call overtaken by a later one before its read settled
 * resolves to STALE, whatever its read gave (answer or error); the caller draws nothing then, the latest
 * call will. Arguments are passed to `read` as given.
 *
 * Not "the newest answer so far": an older read whose answer came before the newer one's would be drawn in
 * between, a view already out of date (a row just deleted, with its button on again). The price: calls that
 * keep coming faster than the reads are answered draw nothing, so a page's timer is set after each answer,
 * never with setInterval (on a server slower than the period every read would be overtaken).
 */
export function latestRead(read) {
  let calls = 0;
  return async (...args) => {
    const call = ++calls;
    let answer;
    try {
      answer = await read(...args);
    } catch (error) {
      if (call !== calls) return STALE;
      throw error;
    }
    return call === calls ? answer : STALE;
  };
}

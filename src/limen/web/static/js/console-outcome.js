// What the console page makes of the server's tables and of how a session ended: the stage labels of
// GET /api/console-stages, an error completed from GET /api/error-codes, and a WebSocket close turned into a
// failure or an end (with whether the page reconnects by itself). Pure: no DOM, no fetch; tested with
// node --test (web/tests/console-outcome.test.mjs).

// Session ends worth reconnecting to by themselves; others (VM stopped, user, idle) wait for the user.
// The database and Redis come back by themselves too (a restart, a fail-over): a console that was dropped
// meanwhile reconnects once they answer again, within the backoff, instead of waiting for a click.
export const TRANSIENT_CODES = new Set([
  "SERVER_SHUTDOWN", "SLOW_CLIENT", "HYPERVISOR_UNAVAILABLE", "CONNECTION_LOST", "CONNECTION_FAILED",
  "WATCHDOG_TIMEOUT", "VM_MIGRATED", "DATABASE_UNAVAILABLE", "REDIS_UNAVAILABLE",
]);
export const TRANSIENT_CLOSE_CODES = new Set([1001, 1006, 1011, 1012, 1013]);
// Ends that say the VM does not run (any more): connecting again would start it (the console's auto-start),
// and a VM that runs again answers them. A revert to a running VM's snapshot stops it and starts it again.
export const VM_DOWN_CODES = new Set(["VM_STOPPED", "VM_NOT_RUNNING", "VM_REVERTED"]);
// The waits, in seconds, before each of the reconnects in a row that a console makes by itself (the screen
// and the Serial tab alike); after the last one it waits for the user.
export const BACKOFF_SECONDS = Object.freeze([1, 2, 4, 8, 15, 30]);
const ERROR_CODE = /^[A-Z][A-Z0-9_]+$/;

/** Stage name → label of one console kind ("vnc", "serial") of the stage table; {} without one. */
export function stageLabels(table, kind) {
  const stages = ((table || {})[kind] || {}).stages || [];
  return Object.fromEntries(stages.map((stage) => [stage.name, stage.label]));
}

/** `err` with the server's title and message for its code where it came without them (close frames carry
 * only the code), else `generic` ones (the page's, in its language): the panel never shows an empty title. */
export function describeError(err, errorCodes, generic = {}) {
  const known = (errorCodes || {})[err.code] || {};
  return {
    ...err,
    error: err.error || known.title || generic.error || null,
    message: err.message || known.message || generic.message || null,
  };
}

/** The host a HYPERVISOR_UNAVAILABLE failure is about: the one the error names itself (`host`, in the error
 * frame and the REST answer alike), else `unanswering` (the VM's host that GET /api/vms/{id} said does not
 * answer), else null; null for any other code, and for `ownHost` (limen's own machine: the code's own advice,
 * libvirtd on limen's machine, says it better than a host name a single-host install never shows). */
export function unansweringHostOf(err, unanswering = null, ownHost = null) {
  if (!err || err.code !== "HYPERVISOR_UNAVAILABLE") return null;
  const host = (typeof err.host === "string" && err.host) || unanswering || null;
  return host === ownHost ? null : host;
}

/**
 * What the VM header's badge says once GET /api/vms/{id} answers VM_NOT_FOUND: "not-found" for a VM this page
 * never saw; else what the end of its last live console (`lastEndCode`; not a failure to connect) tells:
 * "deleted" (VM_NOT_FOUND), "no-access" (ACCESS_REVOKED: given to another user, a role lowered), or
 * "unavailable" without one that tells, since the API answers alike for a deleted VM and one this user may
 * no longer see ("Deleted" alarmed a user whose VM had only been given to someone else).
 */
export function missingVmBadge(seen, lastEndCode) {
  if (!seen) return "not-found";
  if (lastEndCode === "VM_NOT_FOUND") return "deleted";
  if (lastEndCode === "ACCESS_REVOKED") return "no-access";
  return "unavailable";
}

/** Whether a failure with this code is retried by the page itself (after the first attempt). */
export function retriesByItself(code) {
  return TRANSIENT_CODES.has(code);
}

/** The wait in seconds before the `attempt`-th reconnect in a row by itself (0 for the first); null after the
 * last one: then the user decides. */
export function backoffSeconds(attempt) {
  return attempt < BACKOFF_SECONDS.length ? BACKOFF_SECONDS[attempt] : null;
}

/**
 * A close of the WebSocket after the hand-off to noVNC ({closeCode, reason, vncReady}):
 * - before the screen showed, `{failure}`: a failure of the VNC handshake at stage "proxy", its code the
 *   close reason when that is an error code, else VNC_SESSION_FAILED;
 * - after, `{ended, reconnect}`: the end's error (its code the reason's, else CONNECTION_LOST for a close
 *   code of a dropped connection, else SESSION_CLOSED) and whether the page reconnects by itself.
 * `pageTexts(code)` gives `{error, message}` of the codes the page names itself (VNC_SESSION_FAILED,
 * CONNECTION_LOST, SESSION_CLOSED) in the page's language; this module holds no language of its own.
 */
export function closeOutcome(event, errorCodes, pageTexts = () => ({})) {
  const named = ERROR_CODE.test(event.reason || "") ? event.reason : null;
  const how = `WebSocket closed with code ${event.closeCode}${event.reason ? ` (${event.reason})` : ""}`;
  if (!event.vncReady) {
    const code = named || "VNC_SESSION_FAILED";
    const own = code === "VNC_SESSION_FAILED" ? pageTexts(code) || {} : {};
    return {
      failure: {
        code, error: own.error || null, message: own.message || null,
        details: `${how} during the VNC handshake`, stage: "proxy",
      },
    };
  }
  const code = named || (TRANSIENT_CLOSE_CODES.has(event.closeCode) ? "CONNECTION_LOST" : "SESSION_CLOSED");
  const own = named ? {} : pageTexts(code) || {};
  return {
    ended: describeError({ code, ...own, details: how }, errorCodes, pageTexts("SESSION_CLOSED") || {}),
    reconnect: TRANSIENT_CODES.has(code) || TRANSIENT_CLOSE_CODES.has(event.closeCode),
  };
}

// Live VM changes pushed by limen (GET /api/events, Server-Sent Events), and polling only while that
// stream is down. Pages say what to do with a change; this module decides when they must reload:
//
//   stream opening or down   → reload() POLL_MS after the last one's answer (the fallback)
//   "ready"                  → live: polling stops, one reload() covers what changed before the stream
//   "vm" {type, uuid, name, state, owner, at} → onEvent(change)
//   "resync"                 → reload() (the server could not replay what this page missed)
//   "ended" {code, …}        → onEnded(error): the stream's credential no longer signs in the same user with
//                              the same role (a role changed, the account disabled, the sign-in ended); the
//                              page reads who is signed in again. The browser then opens a new stream by itself.
//   error                    → not live: polling resumes; the browser reconnects by itself with
//                              Last-Event-ID, or, when it gave up (e.g. 401), a new stream in REOPEN_MS.
//
// EventSource and the timers are injectable, for node's test runner (web/tests/vm-events.test.mjs).

export const POLL_MS = 2000;
export const REOPEN_MS = 5000;
const CLOSED = 2;

export class VmEvents {
  constructor({ reload, onEvent = () => {}, onStatus = () => {}, onEnded = () => {}, url = "/api/events",
                EventSourceImpl = globalThis.EventSource, timers = globalThis } = {}) {
    this.reload = reload;
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.onEnded = onEnded;
    this.url = url;
    this.EventSourceImpl = EventSourceImpl;
    this.timers = timers;
    this.source = null;
    this.live = false;
    this.pollTimer = null;
    this.reopenTimer = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.startPolling();
    this.open();
    return this;
  }

  stop() {
    this.stopped = true;
    this.stopPolling();
    this.timers.clearTimeout(this.reopenTimer);
    this.reopenTimer = null;
    if (this.source) this.source.close();
    this.source = null;
    this.setLive(false);
  }

  open() {
    if (this.stopped || !this.EventSourceImpl) return;
    const source = new this.EventSourceImpl(this.url, { withCredentials: true });
    this.source = source;
    source.addEventListener("ready", () => {
      if (source !== this.source) return;
      this.stopPolling();
      this.setLive(true);
      this.reload();
    });
    source.addEventListener("resync", () => {
      if (source === this.source) this.reload();
    });
    source.addEventListener("ended", (message) => {
      if (source !== this.source) return;
      let error = {};
      try {
        error = JSON.parse(message.data);
      } catch {
        // said without its error: it ended all the same
      }
      this.onEnded(error);
    });
    source.addEventListener("vm", (message) => {
      if (source !== this.source) return;
      let change;
      try {
        change = JSON.parse(message.data);
      } catch {
        this.reload();
        return;
      }
      this.onEvent(change);
    });
    source.addEventListener("error", () => {
      if (source !== this.source || this.stopped) return;
      this.setLive(false);
      this.startPolling();
      if (source.readyState === CLOSED) {
        source.close();
        this.source = null;
        this.timers.clearTimeout(this.reopenTimer);
        this.reopenTimer = this.timers.setTimeout(() => this.open(), REOPEN_MS);
      }
    });
  }

  setLive(live) {
    if (this.live === live) return;
    this.live = live;
    this.onStatus(live);
  }

  startPolling() {
    if (this.pollTimer === null && !this.stopped) {
      this.pollTimer = this.timers.setTimeout(() => this.poll(), POLL_MS);
    }
  }

  // The next poll is set once this one's reload has its answer, not every POLL_MS whatever happens: a page
  // draws only its newest read (latest-read.js), so on a server slower than POLL_MS every read would be
  // overtaken by the next and nothing drawn, while the reads piled up on the server.
  poll() {
    const round = this.pollTimer;
    const next = () => {
      // Still this round's: stopPolling() (and so stop()) cleared it, a new start made another.
      if (this.pollTimer === round) this.pollTimer = this.timers.setTimeout(() => this.poll(), POLL_MS);
    };
    let answer;
    try {
      answer = this.reload();
    } catch {
      answer = undefined; // the page shows its own errors; polling goes on
    }
    if (answer && typeof answer.then === "function") answer.then(next, next);
    else next();
  }

  stopPolling() {
    if (this.pollTimer !== null) this.timers.clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }
}

// What an upload's progress bar says: bytes sent, the rate over the last few seconds, the time left.
// Pure: the clock is passed in, so node's test runner can drive it (web/tests/upload-progress.test.mjs).

import { formatBytes } from "./dom.js";
import { t } from "./i18n.js";

const WINDOW_MS = 3000;

/** The rate of a transfer over a sliding window of (time, bytes) samples, so a pause shows at once. */
export class RateMeter {
  constructor({ now = () => performance.now(), windowMs = WINDOW_MS } = {}) {
    this.now = now;
    this.windowMs = windowMs;
    this.samples = [];
  }

  /** Records that `loaded` bytes have gone so far. */
  sample(loaded) {
    const at = this.now();
    this.samples.push({ at, loaded });
    while (this.samples.length > 2 && at - this.samples[1].at >= this.windowMs) this.samples.shift();
  }

  /** Bytes per second, or null until there are two samples some time apart. */
  get rate() {
    if (this.samples.length < 2) return null;
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    const seconds = (last.at - first.at) / 1000;
    return seconds > 0.2 ? (last.loaded - first.loaded) / seconds : null;
  }
}

/** Seconds as "42 s", "3 min 5 s", "1 h 2 min"; "—" when unknown. */
export function formatTimeLeft(seconds) {
  if (seconds === null || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return t("duration.s", { s });
  const m = Math.floor(s / 60);
  if (m < 60) return t("duration.min_s", { m, s: s % 60 });
  return t("duration.h_min", { h: Math.floor(m / 60), m: m % 60 });
}

/** {percent, text, sent} of an upload: "12 MiB of 40 MiB · 5.1 MiB/s · 6 s left". ``sent``: the whole file has
 * left the browser, so the server may be keeping it already and cancelling would not undo the upload. */
export function uploadFigures(loaded, total, rate) {
  const percent = total > 0 ? Math.min(100, (loaded / total) * 100) : 0;
  const left = rate && rate > 0 ? (total - loaded) / rate : null;
  const speed = rate === null ? t("upload.measuring") : `${formatBytes(rate)}/s`;
  return {
    percent,
    sent: total > 0 && loaded >= total,
    text: t("upload.figures", { loaded: formatBytes(loaded), total: formatBytes(total), percent: Math.floor(percent),
                                speed, left: left === null ? t("upload.left_unknown")
                                  : t("upload.left", { time: formatTimeLeft(left) }) }),
  };
}

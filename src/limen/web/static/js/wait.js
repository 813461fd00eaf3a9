// A wait the server asked for (a 429's retry_after), shown as "4 min 56 s" and counted down to zero.
// No DOM here: the sign-in page draws what onTick/onEnd tell it; tests turn the clock by hand.

import { t } from "./i18n.js";

/** Whole seconds as people read them: "56 s", "4 min 56 s", "1 h 5 min". */
export function formatWait(totalSeconds) {
  const seconds = Math.max(0, Math.ceil(Number(totalSeconds) || 0));
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const rest = seconds % 60;
  if (hours) return minutes ? t("duration.h_min", { h: hours, m: minutes }) : t("duration.h", { h: hours });
  if (minutes) return rest ? t("duration.min_s", { m: minutes, s: rest }) : t("duration.min", { m: minutes });
  return t("duration.s", { s: rest });
}

/**
 * Counts `seconds` down: onTick(remaining whole seconds) now and at each second's turn, then onEnd() once.
 * The deadline is fixed at the start, so a slow or throttled timer skips numbers instead of drifting.
 * Returns a function that stops the count (onEnd is then not called).
 */
export function countDown(seconds, { onTick, onEnd, now = () => Date.now(), setTimer = setTimeout,
  clearTimer = clearTimeout }) {
  const deadline = now() + Math.max(0, Number(seconds) || 0) * 1000;
  let timer = null;
  const step = () => {
    const left = deadline - now();
    if (left <= 0) {
      timer = null;
      onEnd();
      return;
    }
    onTick(Math.ceil(left / 1000));
    timer = setTimer(step, left % 1000 || 1000);
  };
  step();
  return () => {
    if (timer !== null) clearTimer(timer);
    timer = null;
  };
}

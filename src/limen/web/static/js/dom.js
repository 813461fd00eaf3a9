// DOM helpers. Everything the server sends is inserted as text (text nodes, textContent), never as HTML.

import { lang, localizedError, t } from "./i18n.js";
import { formatSize } from "./stats-series.js";

/**
 * Builds an element. props: class, text, dataset, on<event> handlers, other keys as attributes
 * (true → empty attribute; false/null/undefined → left out). Children: nodes or strings (as text).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/**
 * Wires `form`'s submit to `onSubmit` and marks the form as the page's. A submit pressed before that was held
 * by early-submits.js (the browser never sends a form here); it is sent now, as the button pressed asked.
 */
export function takeForm(form, onSubmit) {
  form.addEventListener("submit", onSubmit);
  form.dataset.taken = "true";
  if (!("heldSubmit" in form.dataset)) return;
  const submitter = form.dataset.heldSubmit ? document.getElementById(form.dataset.heldSubmit) : null;
  delete form.dataset.heldSubmit;
  if (submitter && submitter.form === form) form.requestSubmit(submitter);
  else form.requestSubmit();
}

export function spinner(label) {
  return h("span", { class: "spinner", role: label ? "img" : null, "aria-label": label || null,
                     "aria-hidden": label ? null : "true" });
}

const STATES = ["running", "stopped", "paused", "shutting_down", "crashed", "suspended", "unknown"];
/** Each VM state in words, in the page's language. */
export const STATE_LABELS = Object.fromEntries(STATES.map((state) => [state, t(`state.${state}`)]));

// A VM whose host does not answer: what its host said last is kept, but the badge says why it is stale.
export function vmBadge(vm) {
  if (vm.host_available === false) {
    return h("span", { class: "badge unknown", dataset: { state: "host_unavailable" }, text: t("host.unavailable"),
                       title: t("host.unavailable_title", { host: vm.host, state: vm.state }) });
  }
  return stateBadge(vm.state);
}

export function stateBadge(state) {
  const known = STATES.includes(state) ? state : "unknown";
  // Said from the catalogue when made, not from STATE_LABELS: a page changing its language in place makes
  // its badges again.
  return h("span", { class: `badge ${known}`, dataset: { state: known }, text: t(`state.${known}`) });
}

/** Bytes in binary units (formatSize's rule: "1 GiB", "1.5 GiB", "512 MiB"), the number in the page's language. */
export function formatBytes(bytes) {
  return formatSize(bytes, lang);
}

/** A VM's memory, given in MiB, in the same words as every other size. */
export function formatMemory(mib) {
  return formatBytes(mib * 2 ** 20);
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.floor(seconds);
  if (s < 60) return t("duration.s", { s });
  const m = Math.floor(s / 60);
  if (m < 60) return t("duration.min", { m });
  const hours = Math.floor(m / 60);
  if (hours < 48) return t("duration.h_min", { h: hours, m: m % 60 });
  return t("duration.d_h", { d: Math.floor(hours / 24), h: hours % 24 });
}

/**
 * A VM's uptime as shown, and why when it is unknown: libvirt reports no uptime, and limen reads it only for
 * VMs on its own machine (a qemu:/// host), so a VM the server says runs with uptime null runs on another host
 * (not "—", as if stopped). undefined: not read yet (a row changed by an event, until it is reloaded).
 */
export function vmUptime(vm) {
  const unknown = vm.state === "running" && vm.host_available !== false && vm.uptime_seconds === null;
  return unknown ? { text: t("uptime.unknown"), title: t("uptime.unknown_why") }
    : { text: formatDuration(vm.uptime_seconds), title: null };
}

export function formatMs(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
}

/**
 * A box showing an error the way every page does: title, what to do, the code, details collapsed.
 * err: {error, message, code, details}, its title and message shown in the page's language (by code).
 * actions: buttons (nodes) to put under it.
 */
export function errorBox(shown, { actions = [], extraClass = "", localize = true } = {}) {
  // By its code: the server's texts are English. localize: false for texts the caller translated itself.
  const err = localize ? localizedError(shown) : shown;
  const details = err.details ? String(err.details) : "";
  return h(
    "div",
    { class: `error-box ${extraClass}`.trim(), role: "alert", dataset: { code: err.code || "" } },
    h("div", { class: "error-title", text: err.error || t("error.box.fallback_title") }),
    err.message ? h("p", { class: "error-message", text: err.message }) : null,
    h("div", { class: "error-code" }, t("error.box.code"), h("code", { text: err.code || "UNKNOWN" })),
    details
      ? h("details", {}, h("summary", { text: t("error.box.details") }), h("pre", { text: details }))
      : null,
    actions.length ? h("div", { class: "error-actions" }, ...actions) : null,
  );
}

/**
 * Where the keyboard was when a confirmed action began from a list's row (rows carry `data-<key>`): that
 * row, then the others nearest first (after, before, two after…), and the control's `data-action`. A delete
 * removes the row and a redraw replaces the control, and the focus then fell to <body>, the top of the page
 * for a keyboard user. All rows, not only the neighbours: a neighbour may have nothing left to focus (a
 * revoked token), and the focus then went to the page's heading although other rows had controls.
 */
export function placeOf(control, key) {
  const row = control && control.closest ? control.closest(`[data-${key}]`) : null;
  if (!row) return null;
  const nearestFirst = [row];
  let after = row.nextElementSibling;
  let before = row.previousElementSibling;
  while (after || before) {
    if (after) nearestFirst.push(after);
    if (before) nearestFirst.push(before);
    after = after && after.nextElementSibling;
    before = before && before.previousElementSibling;
  }
  const rowKey = (element) => (element.dataset[key] !== undefined ? element.dataset[key] : null);
  const rows = nearestFirst.map(rowKey).filter((k) => k !== null);
  return { key, rows, action: control.dataset.action || null };
}

/**
 * After the list in `container` is drawn anew: the same control in the same row, else that row's first
 * control, else the same in the nearest row that has one, else `fallback`. Only when the focus was lost (a
 * user who moved on meanwhile keeps their place).
 */
export function returnToPlace(place, container, fallback) {
  const active = document.activeElement;
  if (active && active !== document.body && active.isConnected) return;
  const usable = ":not([disabled]):not([hidden])";
  for (const value of place ? place.rows : []) {
    const row = [...container.querySelectorAll(`[data-${place.key}]`)].find((r) => r.dataset[place.key] === value);
    if (!row) continue;
    const candidates = [
      place.action && row.querySelector(`[data-action="${place.action}"]${usable}`),
      ...row.querySelectorAll(`:is(button, select, input, summary)${usable}, a[href]`),
    ];
    // A control that cannot take the focus (in a closed menu, not laid out) is passed over.
    for (const target of candidates) {
      if (!target) continue;
      target.focus();
      if (document.activeElement === target) return;
    }
  }
  if (fallback) {
    if (!fallback.matches("button, select, input, a[href], [tabindex]")) fallback.setAttribute("tabindex", "-1");
    fallback.focus();
  }
}

/**
 * Turns off the controls of the row of `container` whose `data-<key>` is `value` while a change asked from it
 * runs. A Delete or Revoke left on re-opened its dialog, and a second request was refused (NOT_FOUND) after the
 * first had done it. Returns the row (null when it is not shown) and `release()`, which turns back on what it
 * turned off: call it once the list was asked for again, as the list drawn anew replaced the row, but a list
 * that could not be read left it, and its buttons would have stayed off until the page was reloaded.
 */
export function disableRow(container, key, value) {
  const row = [...container.children].find((child) => child.dataset[key] === value) || null;
  const turnedOff = row ? [...row.querySelectorAll("button, select")].filter((control) => !control.disabled) : [];
  for (const control of turnedOff) control.disabled = true;
  return { row, release: () => { for (const control of turnedOff) control.disabled = false; } };
}

/**
 * Draws a list anew (`draw`) without losing the keyboard's place in it: a live update or a timer that
 * redraws the rows (a snapshot event, an ISO's checksum arriving) dropped the focus to <body>.
 */
export function redrawKeepingPlace(container, key, draw, fallback = null) {
  const active = document.activeElement;
  const place = active && container.contains(active) ? placeOf(active, key) : null;
  draw();
  if (place) returnToPlace(place, container, fallback);
}

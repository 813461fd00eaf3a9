// The page's language and its words. The server renders each page in one language (<html lang>) and
// embeds that language's catalogue as <script id="limen-i18n" type="application/json"> (the catalogues are
// src/limen/i18n/catalogues/<lang>/*.json). Scripts translate with t(key, {placeholders}).
//
// What the server says stays as it says it: the API's error/message fields and the console WebSocket's
// frames are English (clients parse them). The page translates them by their stable code and stage.
// Outside a page (node --test) the English catalogue files are read from the package instead.
//
// A page that keeps something live (the console) changes its language in place (language-switch.js):
// useLanguage() swaps the catalogue, and what the page says again in the new language it registers with
// onLanguageChange(); `lang` is a live binding, so importers read the new language.

async function readCatalogue() {
  if (typeof document === "undefined") return typeof process === "undefined" ? {} : englishFromFiles();
  const element = document.getElementById("limen-i18n");
  if (!element) return {};
  try {
    return JSON.parse(element.textContent || "{}");
  } catch {
    return {};
  }
}

async function englishFromFiles() {
  const { readdirSync, readFileSync } = await import("node:fs");
  const dir = new URL("../../../i18n/catalogues/en/", import.meta.url);
  const merged = {};
  for (const name of readdirSync(dir).filter((file) => file.endsWith(".json")).sort()) {
    Object.assign(merged, JSON.parse(readFileSync(new URL(name, dir), "utf8")));
  }
  return merged;
}

let texts = await readCatalogue();

/** The page's language: "ko" or "en". */
export let lang = typeof document !== "undefined" && document.documentElement.lang ? document.documentElement.lang : "en";

const languageListeners = new Set();

/** Calls `listener()` after each in-place language change (useLanguage); returns what stops that. */
export function onLanguageChange(listener) {
  languageListeners.add(listener);
  return () => languageListeners.delete(listener);
}

/** Makes `language` with its `catalogue` (a page's #limen-i18n) the page's, then tells the listeners. */
export function useLanguage(language, catalogue) {
  lang = language;
  texts = catalogue;
  makeFormats();
  for (const listener of [...languageListeners]) listener();
}

/** Whether the catalogue has `key`. */
export function has(key) {
  return Object.hasOwn(texts, key);
}

const PLACEHOLDER = /\{([a-z_]+)\}/g;

function filled(text, params) {
  return text.replace(PLACEHOLDER, (whole, name) => (Object.hasOwn(params, name) ? String(params[name]) : whole));
}

/** The text of `key` with its {placeholders} filled from `params`; the key itself when it is missing. */
export function t(key, params = {}) {
  return filled(has(key) ? texts[key] : key, params);
}

/**
 * The text of `key` as an element's children: each {placeholder} named in `nodes` is that node (a name in
 * bold, say), the rest text filled from `params`. Each language puts the names where its sentence has them
 * (Korean: "{name} 가상 머신을 삭제할까요?"), so a particle follows a noun rather than the name.
 */
export function tWith(key, nodes, params = {}) {
  const text = has(key) ? texts[key] : key;
  const parts = [];
  let from = 0;
  for (const match of text.matchAll(PLACEHOLDER)) {
    if (!Object.hasOwn(nodes, match[1])) continue;
    parts.push(filled(text.slice(from, match.index), params), nodes[match[1]]);
    from = match.index + match[0].length;
  }
  parts.push(filled(text.slice(from), params));
  return parts.filter((part) => part !== "");
}

/**
 * An error ({error, code, details, message}) with its title and message in the page's language, found by
 * its code. English pages show the server's own texts, unchanged; details stay as they came (technical).
 * QUOTA_EXCEEDED with its `quota` numbers says them in the message, in either language: the code's own
 * advice points to the details, which are English and folded away.
 */
export function localizedError(err) {
  if (!err || !err.code) return err;
  const quota = err.code === "QUOTA_EXCEEDED" ? quotaText(err.quota) : null;
  if (lang === "en") return quota ? { ...err, message: quota } : err;
  const title = `error.${err.code}.title`;
  const message = `error.${err.code}.message`;
  return {
    ...err,
    error: has(title) ? t(title) : err.error,
    message: quota || (has(message) ? t(message) : err.message),
  };
}

/** A refusal's quota numbers ({scope, resource, limit, usage, requested, free}) in words, or null. */
export function quotaText(quota) {
  if (!quota || typeof quota !== "object" || !has(`quota.resource.${quota.resource}`)) return null;
  const number = (value) => (Number.isFinite(value) ? formatNumber(value) : "?");
  const values = {
    // A user's own quota binds only the user themselves (an administrator acting on another's VM is held to
    // the system-wide limits only: quota/ledger.py owner_limited).
    scope: quota.scope === "system-wide" ? t("quota.scope_system") : t("quota.scope_your"),
    resource: t(`quota.resource.${quota.resource}`),
    limit: number(quota.limit), usage: number(quota.usage), requested: number(quota.requested),
    free: number(quota.free), how: t(`quota.free.${quota.resource}`),
  };
  // Asking for more than the whole limit: nothing freed would make it fit.
  return t(quota.requested > quota.limit ? "quota.exceeded_never" : "quota.exceeded", values);
}

/**
 * An error the page itself detects ({error, code, details, message}), its title and message the
 * catalogue's for `code` in the page's language (`error.<CODE>.title`/`.message`); `details` stay as given
 * (technical, for a bug report). `extra` adds fields such as `source`.
 */
export function clientError(code, details, extra = {}) {
  return { error: t(`error.${code}.title`), code, details, message: t(`error.${code}.message`), ...extra };
}

/** A console stage's name (the frames' `stage`), e.g. "checking the VM". */
export function stageName(stage, label) {
  // English pages show the stage table's own label (GET /api/console-stages) when the page has it.
  if (label && lang === "en") return label;
  return has(`stage.${stage}`) ? t(`stage.${stage}`) : label || stage;
}

/** A status frame's text in the page's language: the frame's own (English) text on English pages. */
export function stageStatus(stage, message) {
  const key = `stage_status.${stage}`;
  if (lang === "en" || !has(key)) return message;
  const port = /port (\d+)/.exec(message || "");
  return t(key, { port: port ? port[1] : "?" });
}

/** A VM's button or error title, "Start web-1" ("web-1 시작"): its action's label (a dialog's "…" dropped) and the
 * VM's name, in the page's language's order. */
export function actionOnVm(label, name) {
  return t("list.action_label", { action: label.replace("…", ""), name });
}

/** A VM action of the audit trail (its `action`, e.g. "finish-install") in the page's language; an action
 * the catalogue does not know (a newer server's) as it came. */
export function actionName(action) {
  const key = `audit.action.${action}`;
  return has(key) ? t(key) : action;
}

/** How a console session ended (its `end_code`: "OK" or an error code) in the page's language: a normal end in
 * words, an error by its title; null for a code the catalogue does not know (a newer server's). */
export function sessionEndText(code) {
  if (code === "OK") return t("audit.end_ok");
  return has(`error.${code}.title`) ? t(`error.${code}.title`) : null;
}

/**
 * A validation error's broken rule (the JSON error's `rule`, e.g. {kind: "range", min, max, unit, limit},
 * {kind: "length", min, max}, {kind: "vm_name"}; limen.errors.Rule) in the page's language, for the field it
 * names; null on English pages (the server's own details say it) or for a rule the catalogue does not know.
 */
export function ruleText(rule) {
  if (!rule || typeof rule !== "object" || lang === "en") return null;
  const key = rule.limit ? `rule.${rule.kind}.${rule.limit}` : `rule.${rule.kind}`;
  if (!has(key)) return null;
  const params = {};
  for (const [name, value] of Object.entries(rule)) {
    params[name] = typeof value === "number" ? formatNumber(value)
      : Array.isArray(value) ? value.join(", ") : String(value);
  }
  params.unit = rule.unit ? ` ${rule.unit}` : "";
  return t(key, params);
}

/**
 * What a form says under a field the server refused ({details, field, rule, error} of a VALIDATION_ERROR): the
 * rule broken, in the page's language; else (English pages, or a rule without words) the server's words for
 * that field, without the field's name and the request id (those are for a bug report, in the box's details).
 */
export function fieldErrorText(error, field = error && error.field) {
  const rule = ruleText(error && error.rule);
  if (rule) return rule;
  const parts = String((error && error.details) || "").replace(/\s*\[request_id=[^\]]*\]$/, "").split("; ");
  const mine = (field && parts.find((part) => part.startsWith(`${field}: `) || part.startsWith(`${field}.`)))
    || parts[0] || "";
  return mine.replace(/^[\w.]+: /, "") || (error && error.error) || "";
}

/** One entry of a VALIDATION_ERROR's `fields` ({field, details, rule}) as a form says it under its field. */
export function refusalText(refusal) {
  return ruleText(refusal.rule) || String(refusal.details || "");
}

let dateTimeFormat, timeFormat, numberFormat, clockFormat;
function makeFormats() {
  dateTimeFormat = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "medium" });
  timeFormat = new Intl.DateTimeFormat(lang, { timeStyle: "medium" });
  numberFormat = new Intl.NumberFormat(lang);
  clockFormat = new Intl.DateTimeFormat(lang, { hour: "numeric", minute: "2-digit" });
}
makeFormats();

/** A moment (Date, ISO text or milliseconds) as the page's language writes it; "—" for none. */
export function formatDateTime(value) {
  if (value === null || value === undefined || value === "") return "—";
  const date = value instanceof Date ? value : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : dateTimeFormat.format(date);
}

/** A moment's time of day only. */
export function formatTime(value) {
  const date = value instanceof Date ? value : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : timeFormat.format(date);
}

/** Hours and minutes only (graph axes): "1:05 PM", "오후 1:05". */
export function formatClock(value) {
  return clockFormat.format(value instanceof Date ? value : new Date(value));
}

/** A number with the page's language's digit grouping. */
export function formatNumber(value, options = undefined) {
  return options ? new Intl.NumberFormat(lang, options).format(value) : numberFormat.format(value);
}

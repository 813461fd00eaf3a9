// A VM action's details (a row of GET /api/vm-actions: "forced", "given to bob", "vcpus 1 → 2 (pending
// restart)") in the page's language. The server sends its English words and, when it knows them, the same
// read back as phrases ({kind, values}: limen.action_details.phrases); a page in another language words each
// phrase from its catalogue (action_detail.<kind>), and shows the English when one has no words here.

import { has, lang, t } from "./i18n.js";
import { formatSize } from "./stats-series.js";

/** What the page shows in an action's Details column. */
export function actionDetailsText(action) {
  return inPageWords(action && action.details, action && action.details_phrases);
}

/** Why a console session ended (its end_details), worded as an action's details are: a lost server's, and
 * limen's own errors' words (the VM stopped or deleted, access revoked, idle...). */
export function sessionEndDetailsText(session) {
  return inPageWords(session && session.end_details, session && session.end_details_phrases);
}

function inPageWords(details, phrases) {
  const english = String(details || "");
  if (lang === "en" || !Array.isArray(phrases)) return english;
  return wordPhrases(phrases, { translate: t, known: has, locale: lang }) ?? english;
}

/**
 * ``phrases`` in words, joined as the server joins its parts; null when one of them (or a field it names) has
 * no words in the catalogue. ``translate(key, params)`` and ``known(key)`` read the catalogue.
 */
export function wordPhrases(phrases, { translate, known, locale }) {
  const parts = [];
  for (const phrase of phrases) {
    const worded = wordPhrase(phrase, translate, known, locale);
    if (worded === null) return null;
    parts.push(worded);
  }
  return parts.join("; ");
}

function wordPhrase(phrase, translate, known, locale) {
  if (!phrase || typeof phrase.kind !== "string") return null;
  const values = { ...phrase };
  // A console ended by its VM's end, as libvirt's lifecycle event told it: " (libvirt lifecycle event)".
  values.lifecycle = phrase.lifecycle === "true" ? translate("action_detail.lifecycle") : "";
  let key = `action_detail.${phrase.kind}`;
  if (phrase.kind === "change") {
    const field = `action_detail.field.${phrase.field}`;
    if (!known(field)) return null;
    values.field = translate(field);
    values.new = changedValue(phrase.field, phrase.new, translate, known, locale);
    values.old = changedValue(phrase.field, phrase.old, translate, known, locale);
    values.pending = phrase.pending === "true" ? translate("action_detail.pending") : "";
    values.forced = phrase.forced === "true" ? translate("action_detail.forced_after") : "";
    key = phrase.old === undefined ? "action_detail.change_asked" : "action_detail.change";
  } else if (phrase.kind === "from_console") {
    const kind = `action_detail.console.${phrase.console}`;
    if (known(kind)) values.console = translate(kind);
  } else if (phrase.kind === "quota") {
    const resource = `action_detail.quota_resource.${phrase.resource}`;
    if (!known(resource)) return null;
    values.resource = translate(resource);
    for (const name of ["needed", "limit"]) values[name] = new Intl.NumberFormat(locale).format(Number(phrase[name]));
    if (phrase.system_wide === "true") key = "action_detail.quota_system";
  } else if (phrase.kind === "resized" || phrase.kind === "resize_asked" || phrase.kind === "volume_deleted") {
    for (const name of ["old", "new", "bytes"]) {
      if (phrase[name] !== undefined) values[name] = formatSize(Number(phrase[name]), locale);
    }
  }
  return known(key) ? translate(key, values) : null;
}

// A changed setting's value as the page says it: a boot order by its devices' names, a number in the page's
// way, "ejected"/"empty" and on/off in words; a name or an ISO as it is.
function changedValue(field, value, translate, known, locale) {
  if (value === undefined) return "";
  const word = `action_detail.value.${field}.${value}`;
  if (known(word)) return translate(word);
  if (field === "boot_order") {
    const order = `boot.${value.replaceAll(",", "_")}`;
    return known(order) ? translate(order) : value;
  }
  if ((field === "vcpus" || field === "memory_mib") && /^\d+$/.test(value)) {
    return new Intl.NumberFormat(locale).format(Number(value));
  }
  return value;
}


/**
 * An action's result as the page says it: its error's title in the page's language (the code on hover, as
 * the API gives it), "OK" and "in progress" in words; a code the catalogue does not know as it came.
 */
export function actionResultText(code) {
  if (code === "OK") return t("action_result.ok");
  if (code === "STARTED") return t("action_result.started");
  return has(`error.${code}.title`) ? t(`error.${code}.title`) : code;
}

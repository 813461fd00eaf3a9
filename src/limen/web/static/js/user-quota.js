// A user's quota as the users page edits it (GET/PUT /api/users/{name}/quota, administrators). The GET
// answers {limits, usage, override, …}: per resource (vms, vcpus, memory_mib, disk_gib) the limit that
// applies, what the user's VMs use, and the administrator's override (null: the default applies). The
// form edits the overrides, an empty field meaning "the default"; the PUT sends them flat, every one.
// Resources the server adds later appear by themselves (any number-or-null key of "override").

import { h } from "./dom.js";
import { refusalText, t } from "./i18n.js";
import { quotaAmount } from "./quota.js";

// Catalogue keys, said when asked: in the language the page has then.
const LABELS = {
  vms: "quota.vms",
  vcpus: "userquota.vcpus",
  memory_mib: "userquota.memory",
  disk_gib: "field.disk_gib",
};

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function part(quota, key) {
  return isObject(quota) && isObject(quota[key]) ? quota[key] : {};
}

export function quotaLabel(key) {
  return LABELS[key] ? t(LABELS[key]) : key.replaceAll("_", " ");
}

/** A refused PUT's `fields` (a VALIDATION_ERROR's), each named by its label with what is wrong, in the page's
 * language where limen's rule has words (a limit past what the database holds: "at most 2,147,483,647"); the
 * error's own advice only points to its details, English and folded away. Null when it names no field. */
export function quotaRefusalText(fields) {
  if (!Array.isArray(fields) || fields.length === 0) return null;
  return fields.map((refusal) => `${quotaLabel(String(refusal.field))}: ${refusalText(refusal)}`).join(" ");
}

function amount(value) {
  if (value === null || value === undefined) return t("userquota.no_limit");
  return quotaAmount(value); // "100,000", as the page's language writes it
}

/** [key, override] of every resource an administrator can set: a number, or null for the default. */
export function quotaOverrides(quota) {
  const source = isObject(quota) && isObject(quota.override) ? quota.override : part(quota, "limits");
  return Object.entries(source).filter(([, value]) => value === null || typeof value === "number");
}

/** The form's fields (inputs named by resource), with what applies now and what is in use. */
export function quotaFields(quota) {
  const limits = part(quota, "limits");
  const usage = part(quota, "usage");
  return quotaOverrides(quota).map(([key, value]) => {
    const id = `quota-${key}`;
    const facts = [t("userquota.applies", { amount: amount(limits[key]) })];
    if (typeof usage[key] === "number") facts.push(t("userquota.in_use", { amount: amount(usage[key]) }));
    return h(
      "div", { class: "field" },
      h("label", { for: id, text: quotaLabel(key) }),
      h("input", { id, name: key, type: "number", min: "0", step: "1", inputmode: "numeric",
                   value: value === null ? "" : String(value), placeholder: t("userquota.default_placeholder"),
                   "aria-describedby": `${id}-hint` }),
      h("div", { class: "hint", id: `${id}-hint`, text: facts.join(" ") }),
    );
  });
}

/** The PUT body from the form; throws a RangeError naming the field whose value is not a whole number. */
export function quotaBody(form, quota) {
  const body = {};
  for (const [key] of quotaOverrides(quota)) {
    const input = form.elements.namedItem(key);
    const text = input ? input.value.trim() : "";
    // Text the browser cannot read as a number ("3e") reads as "": it removed the limit instead of refusing.
    if (input && input.validity && input.validity.badInput) {
      throw new RangeError(t("userquota.invalid", { label: quotaLabel(key) }));
    }
    if (text === "") {
      body[key] = null;
      continue;
    }
    const number = Number(text);
    if (!Number.isInteger(number) || number < 0) throw new RangeError(t("userquota.invalid", { label: quotaLabel(key) }));
    body[key] = number;
  }
  return body;
}

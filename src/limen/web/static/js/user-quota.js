// A user's quota as the users page edits it, read from whatever GET /api/users/{name}/quota answers:
// its numeric limits (top level, or under "limits") become fields, null or empty meaning "no limit";
// what is in use (under "usage" or "used", same keys) is shown beside each. The page feature-detects the
// route, so this module assumes no more of the quota's shape than that.

import { h } from "./dom.js";

const LABELS = {
  vms: "VMs", max_vms: "VMs",
  vcpus: "vCPUs", max_vcpus: "vCPUs",
  memory_mib: "Memory (MiB)", max_memory_mib: "Memory (MiB)",
  disk_gib: "Disk (GiB)", max_disk_gib: "Disk (GiB)",
  running_vms: "Running VMs", max_running_vms: "Running VMs",
};

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** The object holding the limits, and whether it sits under "limits". */
function limitsOf(quota) {
  return isObject(quota) && isObject(quota.limits) ? { limits: quota.limits, nested: true }
    : { limits: isObject(quota) ? quota : {}, nested: false };
}

function usageOf(quota) {
  if (!isObject(quota)) return {};
  if (isObject(quota.usage)) return quota.usage;
  return isObject(quota.used) ? quota.used : {};
}

export function quotaLabel(key) {
  return LABELS[key] || key.replace(/^max_/, "").replaceAll("_", " ");
}

/** [key, limit] of every limit: numbers, or null for none. */
export function quotaLimits(quota) {
  return Object.entries(limitsOf(quota).limits).filter(([, value]) => value === null || typeof value === "number");
}

/** One line for a table cell: "VMs 3 · vCPUs no limit". */
export function quotaSummary(quota) {
  const limits = quotaLimits(quota);
  if (!limits.length) return "—";
  return limits.map(([key, value]) => `${quotaLabel(key)} ${value === null ? "no limit" : value}`).join(" · ");
}

/** The form's fields (inputs named by key). */
export function quotaFields(quota) {
  const usage = usageOf(quota);
  return quotaLimits(quota).map(([key, value]) => {
    const id = `quota-${key}`;
    const used = usage[key];
    return h(
      "div", { class: "field" },
      h("label", { for: id, text: quotaLabel(key) }),
      h("input", { id, name: key, type: "number", min: "0", step: "1", inputmode: "numeric",
                   value: value === null ? "" : String(value), placeholder: "no limit",
                   "aria-describedby": `${id}-hint` }),
      h("div", { class: "hint", id: `${id}-hint`,
                 text: `Empty: no limit.${typeof used === "number" ? ` In use: ${used}.` : ""}` }),
    );
  });
}

/** The PUT body from the form, in the shape the GET answered; throws on a value that is not a whole number. */
export function quotaBody(form, quota) {
  const values = {};
  for (const [key] of quotaLimits(quota)) {
    const input = form.elements.namedItem(key);
    const text = input ? input.value.trim() : "";
    if (text === "") {
      values[key] = null;
      continue;
    }
    const number = Number(text);
    if (!Number.isInteger(number) || number < 0) throw new RangeError(`${quotaLabel(key)}: a whole number ≥ 0, or empty`);
    values[key] = number;
  }
  return limitsOf(quota).nested ? { limits: values } : values;
}

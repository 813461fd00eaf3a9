// Quota on the pages: usage bars (VM list, create form) and what the create form may still offer.
// GET /api/quota answers {user, limits, usage, system: {limits, usage}}; a null limit is no limit.

import { h } from "./dom.js";
import { formatNumber, t } from "./i18n.js";

export const RESOURCES = [
  { key: "vms", label: t("quota.vms"), unit: "" },
  { key: "vcpus", label: t("quota.vcpus"), unit: "" },
  { key: "memory_mib", label: t("quota.memory"), unit: " MiB" },
  { key: "disk_gib", label: t("quota.disk"), unit: " GiB" },
];

/** A quota figure as the page's language writes it: "16,384", "2.5" (disks are measured to a tenth of a GiB). */
export function quotaAmount(value) {
  return formatNumber(value, { maximumFractionDigits: 1 });
}

/** "your" / "the system-wide" (headroom's scopes) in the page's language. */
export function scopeName(scope) {
  return scope === "your" ? t("quota.scope_your") : t("quota.scope_system");
}

/** Per resource, the tighter of the user's and the system-wide limit, with what is left under it. */
export function headroom(quota) {
  const result = {};
  for (const { key } of RESOURCES) {
    const candidates = [];
    if (quota.limits[key] !== null && quota.limits[key] !== undefined) {
      candidates.push({ scope: "your", limit: quota.limits[key], usage: quota.usage[key] });
    }
    if (quota.system && quota.system.limits[key] !== null && quota.system.limits[key] !== undefined) {
      candidates.push({ scope: "the system-wide", limit: quota.system.limits[key], usage: quota.system.usage[key] });
    }
    let tightest = null;
    for (const candidate of candidates) {
      candidate.left = Math.max(0, candidate.limit - candidate.usage);
      if (tightest === null || candidate.left < tightest.left) tightest = candidate;
    }
    result[key] = tightest; // null: no limit
  }
  return result;
}

/** Bars for the resources that have a limit; an empty list when none has. */
export function quotaBars(quota) {
  const room = headroom(quota);
  const bars = [];
  for (const { key, label, unit } of RESOURCES) {
    const entry = room[key];
    if (!entry) continue;
    const share = entry.limit > 0 ? Math.min(1, entry.usage / entry.limit) : 1;
    const level = share >= 1 ? "full" : share >= 0.8 ? "high" : "ok";
    const text = t("quota.of", { usage: `${quotaAmount(entry.usage)}${unit}`, limit: `${quotaAmount(entry.limit)}${unit}` });
    bars.push(h("div", { class: `quota-bar ${level}`, "data-resource": key },
      h("div", { class: "quota-label" }, h("span", { text: label }), h("span", { class: "quota-value", text })),
      h("div", {
        class: "quota-track", role: "meter", "aria-label": `${label}: ${text}${entry.scope === "your" ? ""
          : t("quota.system_wide_suffix")}`, "aria-valuemin": "0", "aria-valuemax": String(entry.limit),
        "aria-valuenow": String(entry.usage),
      }, h("div", { class: "quota-fill", style: `width: ${Math.round(share * 100)}%` }))));
  }
  return bars;
}

/** Fills ``container`` with the bars (hidden when no resource is limited). */
export function showQuota(container, quota) {
  const bars = quotaBars(quota);
  container.replaceChildren(...bars);
  container.hidden = bars.length === 0;
}

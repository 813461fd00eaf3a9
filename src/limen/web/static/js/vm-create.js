// The create form: the API validates; its 4xx answers are shown next to the field they name.
// The user's quota (GET /api/quota) shows as bars; choices beyond it are capped or disabled, saying why,
// and a QUOTA_EXCEEDED answer (the quota changed meanwhile) is shown at the resource's field.

import { api, ApiError } from "./api.js";
import { errorBox, formatBytes, h, spinner, takeForm } from "./dom.js";
import { headroom, quotaAmount, scopeName, showQuota } from "./quota.js";
import { mountUserMenu, remountUserMenu } from "./session.js";
import { VmEvents } from "./vm-events.js";
import { clientError, fieldErrorText, formatNumber, lang, localizedError, quotaText, refusalText, t } from "./i18n.js";

const FIELDS = ["name", "vcpus", "memory_mib", "disk_gib", "iso", "boot_order"];
// The number fields the quota caps (capField), with the unit of their cap.
const CAPPED = { vcpus: "", memory_mib: " MiB", disk_gib: " GiB" };
// Errors that name no field but belong to one.
const FIELD_OF_CODE = { VM_ALREADY_EXISTS: "name", ISO_NOT_FOUND: "iso" };

const form = document.getElementById("create-form");
const submit = document.getElementById("submit");
const formError = document.getElementById("form-error");
const formStatus = document.getElementById("form-status");
const isoSelect = document.getElementById("iso");

function input(field) {
  return document.getElementById(field);
}

function clearErrors() {
  formError.replaceChildren();
  for (const field of FIELDS) {
    input(field).removeAttribute("aria-invalid");
    const slot = document.getElementById(`${field}-error`);
    slot.hidden = true;
    slot.textContent = "";
    delete slot.dataset.cause;
  }
}

/** A number when the text is one, else the text itself, so the API names the mistake. */
function numberOrText(value) {
  const trimmed = value.trim();
  if (trimmed === "") return undefined;
  const number = Number(trimmed);
  return Number.isInteger(number) ? number : trimmed;
}

function body() {
  const result = { name: input("name").value.trim() };
  for (const field of ["vcpus", "memory_mib"]) {
    const value = numberOrText(input(field).value);
    if (value !== undefined) result[field] = value;
  }
  const disk = numberOrText(input("disk_gib").value);
  result.disk_gib = disk === undefined ? null : disk;
  result.iso = isoSelect.value || null;
  const boot = input("boot_order").value;
  result.boot_order = boot ? boot.split(",") : [];
  return result;
}

/** The fields an answer refuses, each with what to say under it: [{root, text}], in the form's order. */
function refusedFields(exc) {
  if (!(exc instanceof ApiError)) return [];
  if (exc.quota && exc.quota.resource !== "vms") {
    const text = quotaText(exc.quota) || exc.details.replace(/\s*\[request_id=[^\]]*\]$/, "");
    return [{ root: exc.quota.resource, text }];
  }
  const byRoot = new Map();
  for (const refusal of exc.fields) {
    const root = refusal.field.split(".")[0];
    if (FIELDS.includes(root)) byRoot.set(root, [...(byRoot.get(root) || []), refusalText(refusal)]);
  }
  if (!byRoot.size && FIELD_OF_CODE[exc.code]) {
    const root = FIELD_OF_CODE[exc.code];
    // Said in the page's language (the details, English, showed under the field on Korean pages).
    const said = exc.code === "VM_ALREADY_EXISTS" ? t("new.name_taken", { name: input("name").value.trim() })
      : lang === "en" ? fieldErrorText(exc, root) : localizedError(exc.body).message;
    byRoot.set(root, [said]);
  }
  return FIELDS.filter((root) => byRoot.has(root)).map((root) => ({ root, text: byRoot.get(root).join("; ") }));
}

/** Each refused field marked with what is wrong with it (all at once), the first focused; the error above. */
function showError(exc) {
  const body = exc instanceof ApiError ? exc.body
    : clientError("CLIENT_ERROR", `creating the VM: ${exc}`);
  formError.replaceChildren(h("div", { class: "notice error" }, errorBox(body)));
  const refused = refusedFields(exc);
  for (const { root, text } of refused) {
    const slot = document.getElementById(`${root}-error`);
    slot.textContent = text;
    slot.hidden = false;
    delete slot.dataset.cause; // a refusal's words: a quota read anew must not put the cap's over them
    input(root).setAttribute("aria-invalid", "true");
  }
  if (refused.length) input(refused[0].root).focus();
  else formError.scrollIntoView({ block: "nearest" });
}

/** Number fields holding text the browser cannot read as a number ("2e", "1-"): their value reads as empty,
 * which created the VM with the default vCPUs or without the disk asked for. Marked here; nothing is sent. */
function markUnreadableNumbers() {
  const unreadable = ["vcpus", "memory_mib", "disk_gib"].filter((field) => input(field).validity.badInput);
  for (const field of unreadable) {
    const slot = document.getElementById(`${field}-error`);
    slot.textContent = t("rule.whole_number");
    slot.hidden = false;
    input(field).setAttribute("aria-invalid", "true");
  }
  if (unreadable.length) input(unreadable[0]).focus();
  return unreadable.length > 0;
}

async function onSubmit(event) {
  event.preventDefault();
  clearErrors();
  if (markUnreadableNumbers()) {
    formStatus.textContent = t("new.not_created");
    return;
  }
  submitting = true;
  submit.disabled = true;
  submit.replaceChildren(spinner(), t("common.creating"));
  formStatus.textContent = "";
  let leaving = false;
  try {
    // A Create pressed before the image list came (or held from before this script) sent "no image": the
    // select held only "Loading images…", and the demo image the form preselects was skipped.
    await firstIsoList;
    const vm = await api("POST", "/api/vms", body());
    formStatus.textContent = t("new.created", { name: vm.name });
    leaving = true; // the button stays off: a second press while the page leaves made a second POST
    window.location.assign(`/vms/${encodeURIComponent(vm.uuid)}`);
  } catch (exc) {
    showError(exc);
    formStatus.textContent = t("new.not_created");
    // The bars as they are now; the refused value stays in its field, as the message at it names it.
    if (exc instanceof ApiError && exc.code === "QUOTA_EXCEEDED") loadQuota({ keepValues: true });
    // An image deleted while the form was open: the list as the library is now (the refusal stays shown).
    if (exc instanceof ApiError && (exc.fields || []).some((refusal) => refusal.field === "iso")) loadIsos();
  } finally {
    if (!leaving) readyForAnother();
  }
}

function readyForAnother() {
  submitting = false;
  submit.disabled = vmsFull;
  submit.replaceChildren(t("new.create"));
}

let vmsFull = false; // no VM may be made: the quota's VM count is reached
let submitting = false;
// The capped fields the person has typed in: what they typed is never changed, only flagged (flagOverCap).
// (The first quota read brought a typed 8 vCPUs down to a cap of 4 without a word.)
const typedFields = new Set();

function capField(field, max, reason, keepValue) {
  const control = input(field);
  const note = document.getElementById(`${field}-quota`);
  if (max === null) {
    control.removeAttribute("max");
    control.disabled = false;
    note.hidden = true;
    return;
  }
  note.textContent = reason;
  note.hidden = false;
  if (max < Number(control.min || 1)) {
    control.value = "";
    control.disabled = true;
  } else {
    control.disabled = false;
    control.max = String(max);
    // A value unlike the page's own was typed, also before this script ran (no "input" was heard then).
    const typed = typedFields.has(field) || control.value !== control.defaultValue;
    if (!keepValue && !typed && Number(control.value) > max) control.value = String(max);
  }
}

/** A value above its field's cap is marked at the field as it is typed, or as a quota read anew lowers the
 * cap under it, before any submit (the server still decides: the quota may change meanwhile). A mark of
 * this kind goes once the value fits again; a refusal's stays until the next submit. */
function flagOverCap(field) {
  const control = input(field);
  const slot = document.getElementById(`${field}-error`);
  const text = control.value.trim();
  const cap = control.hasAttribute("max") ? Number(control.max) : null;
  const over = !control.disabled && cap !== null && text !== "" && Number(text) > cap;
  if (over && (slot.hidden || slot.dataset.cause === "cap")) { // a refusal's words, more precise, stay
    slot.textContent = t("new.over_cap", { max: `${formatNumber(cap)}${CAPPED[field]}` });
    slot.hidden = false;
    slot.dataset.cause = "cap";
    control.setAttribute("aria-invalid", "true");
  } else if (!over && slot.dataset.cause === "cap") {
    slot.textContent = "";
    slot.hidden = true;
    delete slot.dataset.cause;
    control.removeAttribute("aria-invalid");
  }
}

/** Caps and disables what the quota cannot give; a VM's vCPUs and memory must fit the limit of running
 * ones (else it could never start), its disk what is left. The form's own value above its cap is lowered to
 * it; a typed one stays, flagged, and so does every value with ``keepValues`` (a refusal's, a quota read
 * anew), so the field still shows what the message at it speaks of. */
export function applyQuota(quota, { keepValues = false } = {}) {
  showQuota(document.getElementById("quota"), quota);
  const room = headroom(quota);
  // The hints' figures as the page writes numbers; the caps themselves stay numbers.
  const figures = (entry) => ({ scope: scopeName(entry.scope), limit: quotaAmount(entry.limit),
    usage: quotaAmount(entry.usage) });
  const vcpus = room.vcpus;
  capField("vcpus", vcpus ? vcpus.limit : null, vcpus ? t("new.cap_vcpus", figures(vcpus)) : "", keepValues);
  const memory = room.memory_mib;
  capField("memory_mib", memory ? memory.limit : null, memory ? t("new.cap_memory", figures(memory)) : "",
    keepValues);
  const disk = room.disk_gib;
  const diskLeft = disk ? Math.floor(disk.left) : null;
  capField("disk_gib", diskLeft, !disk ? "" : diskLeft >= 1
    ? t("new.cap_disk", { ...figures(disk), left: quotaAmount(diskLeft) })
    : t("new.no_disk_left", figures(disk)),
    keepValues);
  const vms = room.vms;
  vmsFull = Boolean(vms && vms.left < 1);
  const note = document.getElementById("quota-note");
  note.hidden = !vmsFull;
  note.textContent = vmsFull ? t("new.vms_full", figures(vms)) : "";
  submit.disabled = vmsFull || submitting; // a quota read while a create is under way leaves it disabled
  for (const field of Object.keys(CAPPED)) flagOverCap(field);
}

async function loadQuota(options = {}) {
  try {
    applyQuota(await api("GET", "/api/quota", undefined, { timeoutMs: 10000, keepPage: options.background }),
               options);
  } catch {
    // without it the form still works: the API checks the quota anyway
  }
}

/** The ISO select as the library is now; a choice made already stays while its image is there. */
async function loadIsos() {
  const chosen = isosLoaded ? isoSelect.value : null;
  try {
    const isos = await api("GET", "/api/isos", undefined, { timeoutMs: 10000, keepPage: isosLoaded });
    const options = [h("option", { value: "", text: t("new.iso_none") })];
    for (const iso of isos) {
      options.push(h("option", { value: iso.name, text: `${iso.name} (${formatBytes(iso.size_bytes)})` }));
    }
    isoSelect.replaceChildren(...options);
    const demo = isos.find((iso) => iso.name === "limen-grub-demo.iso");
    if (chosen !== null) isoSelect.value = isos.some((iso) => iso.name === chosen) ? chosen : "";
    else if (demo) isoSelect.value = demo.name;
    isosLoaded = true;
    document.getElementById("iso-error").hidden = true; // a failure said before is over
  } catch (exc) {
    // A list read before stays, with the image chosen from it: a failed re-read (on coming back to the tab)
    // replaced it with "no image", and Create then made a VM without the chosen one.
    if (!isosLoaded) isoSelect.replaceChildren(h("option", { value: "", text: t("new.iso_unavailable") }));
    const slot = document.getElementById("iso-error");
    slot.textContent = exc instanceof ApiError
      ? t("new.iso_list_failed", { reason: `${localizedError(exc.body).error} — ${localizedError(exc.body).message} (${exc.code})` })
      : t("new.iso_list_failed", { reason: String(exc) });
    slot.hidden = false;
  }
}

let isosLoaded = false;
let quotaTimer = null;

/** The quota again, soon: VMs made, deleted, started or stopped anywhere change what the form may offer (a
 * form opened at the VM limit stayed disabled after a VM was deleted elsewhere). Typed values stay. */
function refreshQuota() {
  clearTimeout(quotaTimer);
  quotaTimer = setTimeout(() => loadQuota({ keepValues: true, background: true }), 300);
}

// Before takeForm: a submit held from before this script is sent at once, and waits for this list.
const firstIsoList = loadIsos(); // never rejects: a failed list is said at the field, and the form goes on
takeForm(form, onSubmit);
for (const field of Object.keys(CAPPED)) {
  input(field).addEventListener("input", () => {
    typedFields.add(field);
    flagOverCap(field);
  });
}
mountUserMenu();
loadQuota();
new VmEvents({ reload: refreshQuota, onEvent: refreshQuota, onEnded: remountUserMenu }).start();
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  refreshQuota();
  loadIsos(); // images uploaded or deleted in another tab
});
// Back to this page from the VM it made: the browser's back-forward cache kept it as it was left, the button
// off for good.
window.addEventListener("pageshow", (event) => {
  if (event.persisted) readyForAnother();
});
input("name").focus();

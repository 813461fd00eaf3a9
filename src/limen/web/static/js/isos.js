// The ISO library page: the images with size, date and SHA-256; admins upload (XMLHttpRequest, for its
// upload progress: bytes, rate, time left, Cancel) and delete. Every value from the server is shown as text.

import { api, ApiError, asBox, CSRF_HEADER, loginUrl } from "./api.js";
import { disableRow, errorBox, formatBytes, h, placeOf, redrawKeepingPlace, returnToPlace, takeForm } from "./dom.js";
import { latestRead, STALE } from "./latest-read.js";
import { mountUserMenu } from "./session.js";
import { RateMeter, uploadFigures } from "./upload-progress.js";
import { fieldErrorText, formatDateTime, formatNumber, localizedError, t, tWith } from "./i18n.js";

const PENDING_CHECKSUM_REFRESH_MS = 4000;
const MAX_HEADER = "X-Limen-Max-Iso-Bytes";

const $ = (id) => document.getElementById(id);
const ui = {
  note: $("iso-note"),
  error: $("iso-error"),
  toast: $("iso-toast"),
  rows: $("iso-rows"),
  empty: $("iso-empty"),
  actionsHead: $("iso-actions-head"),
  form: $("upload-form"),
  file: $("upload-file"),
  limit: $("upload-limit"),
  name: $("upload-name"),
  nameError: $("upload-name-error"),
  progress: $("upload-progress"),
  bar: $("upload-bar"),
  figures: $("upload-figures"),
  result: $("upload-result"),
  start: $("upload-start"),
  cancel: $("upload-cancel"),
  dialog: $("iso-delete-dialog"),
  dialogText: $("iso-delete-text"),
  dialogCancel: $("iso-delete-cancel"),
};

let user = null;
let isos = [];
let maxBytes = null;
let upload = null; // {xhr, meter, name, total, sent} while one runs
let refreshTimer = null;
let deleting = null;
// The images whose delete is on its way: a list that was being read meanwhile (the checksum's timer) is drawn
// with their Delete off, or a second press re-opened the dialog and was refused (ISO_NOT_FOUND).
const deletingNow = new Set();
let deletePlace = null; // where the keyboard was: the row goes, the focus must not fall to <body>

function isAdmin() {
  return user !== null && user.role === "admin";
}

/** An error the way this page shows it; ISO_IN_USE names the VMs and snapshots holding the image in plain
 * sight, not only in the details. localize: false for errors this page wrote in the page's language already. */
function problem(error, { localize = true } = {}) {
  const shown = localize ? localizedError(error) : error;
  let { message } = shown;
  if (Array.isArray(error.vms) && error.vms.length) message = t("isos.in_use_by", { message, vms: error.vms.join(", ") });
  if (Array.isArray(error.snapshots) && error.snapshots.length) {
    const snapshots = error.snapshots.map((held) => `${held.vm} / ${held.snapshot}`).join(", ");
    message = t("isos.kept_by_snapshots", { message, snapshots });
  }
  return errorBox({ ...shown, message }, { extraClass: "notice error", localize: false });
}

// -- the list ---------------------------------------------------------------------------------------

function isoRow(iso) {
  const checksum = iso.sha256
    ? h("code", { class: "sha", text: iso.sha256 })
    : h("span", { class: "refresh-note", text: t("isos.computing") });
  const actions = isAdmin()
    ? h("td", { class: "cell-actions" }, h("button", {
      class: "btn small danger", type: "button", dataset: { action: "delete" }, disabled: deletingNow.has(iso.name),
      "aria-label": t("list.action_label", { action: t("users.delete_verb"), name: iso.name }), onclick: () => askDelete(iso),
      text: t("action.delete.label"), // "Delete…": it asks first, as every delete's button says
    }))
    : null;
  return h(
    "tr", { dataset: { iso: iso.name } },
    h("td", { class: "vm-name iso-name", text: iso.name }),
    h("td", { class: "num", "data-label": t("col.size"), text: formatBytes(iso.size_bytes),
              title: t("isos.bytes", { count: formatNumber(iso.size_bytes) }) }),
    h("td", { "data-label": t("col.modified"), text: formatDateTime(iso.modified) }),
    h("td", { class: "cell-sha", "data-label": "SHA-256" }, checksum),
    actions,
  );
}

// Only the latest read's answer is shown: the checksum timer's read, asked before a delete and answered after
// the delete's own read, drew the deleted image again.
const readImages = latestRead(async () => {
  let limit = null;
  const images = await api("GET", "/api/isos", undefined, {
    onResponse: (response) => {
      limit = Number(response.headers.get(MAX_HEADER));
    },
  });
  return { images, limit: Number.isFinite(limit) && limit > 0 ? limit : null };
});

async function refresh() {
  clearTimeout(refreshTimer);
  let answer;
  try {
    answer = await readImages();
  } catch (exc) {
    ui.error.replaceChildren(problem(asBox(exc)));
    return;
  }
  if (answer === STALE) return; // the latest read, still on its way, draws and sets the timer
  isos = answer.images;
  maxBytes = answer.limit;
  redrawKeepingPlace(ui.rows, "iso", () => ui.rows.replaceChildren(...isos.map(isoRow)),
                     document.querySelector("main h1"));
  ui.empty.hidden = isos.length > 0;
  const total = isos.reduce((sum, iso) => sum + iso.size_bytes, 0);
  ui.note.textContent = t(isos.length === 1 ? "isos.note_one" : "isos.note", { count: isos.length, size: formatBytes(total) });
  if (maxBytes !== null) ui.limit.textContent = t("isos.at_most", { size: formatBytes(maxBytes) });
  if (isos.some((iso) => !iso.sha256)) refreshTimer = setTimeout(refresh, PENDING_CHECKSUM_REFRESH_MS);
}

// -- deleting ---------------------------------------------------------------------------------------

function askDelete(iso) {
  deleting = iso.name;
  deletePlace = placeOf(document.activeElement, "iso");
  ui.dialogText.replaceChildren(...tWith("isos.delete_q", { name: h("strong", { text: iso.name }) }), t("isos.delete_effect"));
  ui.dialog.returnValue = "";
  ui.dialog.showModal();
  ui.dialogCancel.focus();
}

async function deleteIso(name) {
  ui.error.replaceChildren();
  clearTimeout(refreshTimer); // a checksum's redraw meanwhile gave the row its button back; refreshed after
  const { release } = disableRow(ui.rows, "iso", name);
  deletingNow.add(name);
  try {
    await api("DELETE", `/api/isos/${encodeURIComponent(name)}`);
    ui.toast.textContent = t("isos.deleted_toast", { name });
    ui.result.replaceChildren(h("div", { class: "notice ok", text: t("isos.deleted_toast", { name }) }));
  } catch (exc) {
    const holders = exc instanceof ApiError ? { vms: exc.vms, snapshots: exc.snapshots } : {};
    ui.error.replaceChildren(problem({ ...asBox(exc), ...holders }));
    ui.error.scrollIntoView({ block: "nearest" });
  }
  deletingNow.delete(name);
  await refresh();
  release();
  returnToPlace(deletePlace, ui.rows, document.querySelector("main h1"));
}

// -- uploading --------------------------------------------------------------------------------------

function setUploading(running) {
  ui.file.disabled = running;
  ui.name.disabled = running;
  ui.start.disabled = running;
  ui.cancel.hidden = !running;
  ui.progress.hidden = !running;
}

function showNameError(text) {
  ui.nameError.textContent = text || "";
  ui.nameError.hidden = !text;
  if (text) ui.name.setAttribute("aria-invalid", "true");
  else ui.name.removeAttribute("aria-invalid");
}

function showProgress(loaded, total) {
  upload.meter.sample(loaded);
  const figures = uploadFigures(loaded, total, upload.meter.rate);
  ui.bar.value = figures.percent;
  ui.figures.textContent = figures.sent ? t("isos.saving", { size: formatBytes(total) }) : figures.text;
  if (figures.sent) bodySent();
}

/** The whole file has left the browser: the server is saving it and may have kept it already, so Cancel, which
 * said nothing would be kept, goes. */
function bodySent() {
  upload.sent = true;
  ui.cancel.hidden = true;
}

/** An upload aborted after its body was sent (Cancel pressed as it went): the list says whether it was kept. */
async function cancelledAfterSending(name) {
  await refresh();
  const kept = isos.some((iso) => iso.name === name);
  ui.result.replaceChildren(h("div", {
    class: "notice info", role: "status", text: t(kept ? "isos.cancelled_kept" : "isos.cancelled", { name }),
  }));
}

function finish(status, text) {
  const done = upload;
  upload = null;
  setUploading(false);
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (status === 201 && body) {
    ui.result.replaceChildren(h("div", { class: "notice ok", role: "status" },
      h("div", {}, ...tWith("isos.uploaded", { name: h("strong", { text: body.name }) },
                            { size: formatBytes(body.size_bytes) })),
      h("div", { class: "sha-line" }, "SHA-256: ", h("code", { class: "sha", text: body.sha256 }))));
    ui.form.reset();
    refresh();
    return;
  }
  if (status === 401) {
    window.location.assign(loginUrl(window.location, { ended: true }));
    return;
  }
  const error = body && body.code ? body : {
    error: status ? `HTTP ${status}` : t("isos.interrupted"),
    code: status ? `HTTP_${status}` : "NETWORK_ERROR",
    details: `POST /api/isos?name=${done.name}: ${(text || "no answer").slice(0, 300)}`,
    message: t("isos.check_limen"),
  };
  ui.result.replaceChildren(problem(error));
  if (error.code === "VALIDATION_ERROR" && error.field === "name") {
    showNameError(fieldErrorText(error, "name"));
    ui.name.focus(); // it was disabled during the upload: the focus had fallen to <body>
  }
}

function startUpload(file, name) {
  const xhr = new XMLHttpRequest();
  upload = { xhr, meter: new RateMeter(), name, total: file.size, sent: false };
  xhr.open("POST", `/api/isos?name=${encodeURIComponent(name)}`);
  xhr.setRequestHeader("Accept", "application/json");
  xhr.setRequestHeader("Content-Type", "application/octet-stream");
  if (user.csrf_token) xhr.setRequestHeader(CSRF_HEADER, user.csrf_token);
  xhr.upload.addEventListener("progress", (event) => showProgress(event.loaded, event.total || file.size));
  xhr.addEventListener("load", () => finish(xhr.status, xhr.responseText));
  xhr.addEventListener("error", () => finish(0, ""));
  xhr.upload.addEventListener("load", () => upload && upload.xhr === xhr && bodySent());
  xhr.addEventListener("abort", () => {
    const sent = upload !== null && upload.sent;
    upload = null;
    setUploading(false);
    if (sent) {
      cancelledAfterSending(name);
      return;
    }
    ui.result.replaceChildren(h("div", {
      class: "notice info", role: "status", text: t("isos.cancelled", { name }),
    }));
  });
  ui.result.replaceChildren();
  setUploading(true);
  showProgress(0, file.size);
  xhr.send(file);
}

function onSubmit(event) {
  event.preventDefault();
  if (upload) return;
  showNameError("");
  ui.result.replaceChildren(); // what an earlier attempt said is not about this one
  const file = ui.file.files[0];
  if (!file) {
    ui.result.replaceChildren(problem({ error: t("isos.no_file"), code: "VALIDATION_ERROR",
                                        message: t("isos.choose_file"), details: "" }, { localize: false }));
    return;
  }
  const name = ui.name.value.trim() || file.name;
  if (isos.some((iso) => iso.name === name)) {
    showNameError(t("isos.name_taken", { name }));
    ui.name.focus();
    return;
  }
  if (file.size === 0) { // the server refuses it too, as INVALID_REQUEST whose advice is the API docs
    ui.result.replaceChildren(problem({
      error: t("isos.empty_file"), code: "INVALID_REQUEST", message: t("isos.empty_file_message", { name: file.name }),
      details: `${file.name}: 0 bytes`,
    }, { localize: false }));
    return;
  }
  if (maxBytes !== null && file.size > maxBytes) {
    ui.result.replaceChildren(problem({
      error: t("isos.too_large"), code: "PAYLOAD_TOO_LARGE",
      message: t("isos.too_large_message", { size: formatBytes(maxBytes) }),
      details: `${file.name}: ${file.size} bytes`,
    }, { localize: false }));
    return;
  }
  startUpload(file, name);
}

async function main() {
  user = await mountUserMenu({ needed: true });
  if (user === null) return;
  ui.form.hidden = !isAdmin();
  ui.actionsHead.hidden = !isAdmin();
  takeForm(ui.form, onSubmit);
  const nameAfterFile = () => {
    const file = ui.file.files[0];
    if (file) ui.name.value = file.name;
    showNameError("");
  };
  ui.file.addEventListener("change", nameAfterFile);
  if (ui.file.files[0] && !ui.name.value) nameAfterFile(); // chosen before this script was ready
  ui.cancel.addEventListener("click", () => upload && upload.xhr.abort());
  ui.dialogCancel.addEventListener("click", () => ui.dialog.close("cancel"));
  ui.dialog.addEventListener("close", () => {
    if (ui.dialog.returnValue === "delete" && deleting) deleteIso(deleting);
    deleting = null;
  });
  window.addEventListener("beforeunload", (event) => {
    if (upload) event.preventDefault(); // leaving would cancel the upload
  });
  await refresh();
}

main();

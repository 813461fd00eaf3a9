// The storage pool's disks (admins): the volumes no VM uses, each with a Delete behind the confirm dialog,
// then the ones VMs use, each linked to its VM. Every value from the server is shown as text.

import { api, asBox } from "./api.js";
import { disableRow, errorBox, formatBytes, h, placeOf, redrawKeepingPlace, returnToPlace } from "./dom.js";
import { latestRead, STALE } from "./latest-read.js";
import { mountUserMenu } from "./session.js";
import { formatNumber, t, tWith } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const ui = {
  note: $("volumes-note"),
  error: $("volumes-error"),
  toast: $("volumes-toast"),
  admin: $("volumes-admin"),
  unused: $("unused-rows"),
  empty: $("unused-empty"),
  used: $("used-rows"),
  usedEmpty: $("used-empty"),
  dialog: $("volume-delete-dialog"),
  dialogText: $("volume-delete-text"),
  dialogCancel: $("volume-delete-cancel"),
};

let deleting = null;
// The disks whose delete is on its way: a list read meanwhile (another delete's) is drawn with their Delete
// off, or a second press re-opened the dialog and was refused (VOLUME_NOT_FOUND) after the first did it.
const deletingNow = new Set();
let deletePlace = null; // where the keyboard was: the row goes, the focus must not fall to <body>

const key = (volume) => `${volume.host}/${volume.name}`;

function nameCell(volume) {
  return h("td", { class: "vm-name volume-name", title: volume.path }, h("span", { text: volume.name }));
}

function sizeCell(bytes, label) {
  return h("td", { class: "num", "data-label": label, text: formatBytes(bytes),
                   title: t("isos.bytes", { count: formatNumber(bytes) }) });
}

function unusedRow(volume) {
  return h(
    "tr", { dataset: { volume: key(volume) } },
    nameCell(volume),
    h("td", { "data-label": t("volumes.col_host"), text: volume.host }),
    sizeCell(volume.capacity_bytes, t("col.size")),
    sizeCell(volume.allocation_bytes, t("volumes.col_allocated")),
    h("td", { class: "cell-actions" }, h("button", {
      class: "btn small danger", type: "button", dataset: { action: "delete" }, disabled: deletingNow.has(key(volume)),
      "aria-label": t("list.action_label", { action: t("users.delete_verb"), name: volume.name }),
      onclick: () => askDelete(volume), text: t("action.delete.label"), // "Delete…": it asks first
    })),
  );
}

function usedRow(volume) {
  const users = volume.used_by.flatMap((vm, index) => [
    ...(index ? [", "] : []), h("a", { href: `/vms/${encodeURIComponent(vm.uuid)}`, text: vm.name }),
  ]);
  const backs = volume.backing_for.map((name) => t("volumes.backs", { volume: name }));
  return h(
    "tr", { dataset: { volume: key(volume) } },
    nameCell(volume),
    h("td", { "data-label": t("volumes.col_host"), text: volume.host }),
    sizeCell(volume.capacity_bytes, t("col.size")),
    h("td", { class: "volume-users", "data-label": t("volumes.col_used_by") }, ...users,
      ...(backs.length ? [(users.length ? ", " : "") + backs.join(", ")] : [])),
  );
}

// Only the latest read's answer is shown: with two deletes on their way, the first one's read, answered after
// the second one's, drew the second disk again, its Delete on.
const readVolumes = latestRead(() => api("GET", "/api/volumes"));

async function refresh() {
  let volumes;
  try {
    volumes = await readVolumes();
  } catch (exc) {
    ui.error.replaceChildren(errorBox(asBox(exc), { extraClass: "notice error" }));
    ui.note.textContent = "";
    return;
  }
  if (volumes === STALE) return;
  const unused = volumes.filter((volume) => !volume.in_use);
  redrawKeepingPlace(ui.unused, "volume", () => ui.unused.replaceChildren(...unused.map(unusedRow)),
                     document.querySelector("main h1"));
  const used = volumes.filter((volume) => volume.in_use);
  ui.used.replaceChildren(...used.map(usedRow));
  ui.empty.hidden = unused.length > 0;
  // An empty pool: "every disk volume belongs to a VM" would read as if there were some.
  ui.empty.firstElementChild.textContent = t(volumes.length ? "volumes.empty" : "volumes.pool_empty");
  ui.usedEmpty.hidden = used.length > 0;
  const size = unused.reduce((sum, volume) => sum + volume.allocation_bytes, 0);
  ui.note.textContent = t("volumes.note", { count: formatNumber(unused.length), size: formatBytes(size) });
}

function askDelete(volume) {
  deleting = volume;
  deletePlace = placeOf(document.activeElement, "volume");
  ui.dialogText.replaceChildren(
    ...tWith("volumes.delete_q", { name: h("strong", { class: "volume-name-whole", text: volume.name }) },
             { host: volume.host }),
    t("volumes.delete_effect"));
  ui.dialog.returnValue = "";
  ui.dialog.showModal();
  ui.dialogCancel.focus();
}

async function deleteVolume(volume) {
  ui.error.replaceChildren();
  const { release } = disableRow(ui.unused, "volume", key(volume));
  deletingNow.add(key(volume));
  try {
    await api("DELETE", `/api/volumes/${encodeURIComponent(volume.name)}?host=${encodeURIComponent(volume.host)}`);
    ui.toast.textContent = t("volumes.deleted_toast", { name: volume.name });
  } catch (exc) {
    ui.error.replaceChildren(errorBox(asBox(exc), { extraClass: "notice error" }));
    ui.error.scrollIntoView({ block: "nearest" });
  }
  deletingNow.delete(key(volume));
  await refresh();
  release();
  returnToPlace(deletePlace, ui.unused, document.querySelector("main h1"));
}

async function main() {
  const user = await mountUserMenu({ needed: true });
  if (user === null) return;
  if (user.role !== "admin") {
    ui.note.textContent = t("volumes.admins_only");
    return;
  }
  ui.admin.hidden = false;
  ui.dialogCancel.addEventListener("click", () => ui.dialog.close("cancel"));
  ui.dialog.addEventListener("close", () => {
    if (ui.dialog.returnValue === "delete" && deleting) deleteVolume(deleting);
    deleting = null;
  });
  await refresh();
}

main();

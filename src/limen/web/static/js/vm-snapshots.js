// The Snapshots section of a VM's details page: the VM's snapshots as a tree (each under the one it was taken
// after), taking one (name, description; progress while it runs), reverting to one and deleting one, both
// after a confirmation naming the snapshot and the VM.
//
// Taking a snapshot answers at once with an operation (POST /api/vms/{id}/snapshots → 202); the section then
// follows it through GET /api/operations/{id} every OPERATION_POLL_MS and through the page's event stream
// (snapshot_progress / snapshot_done events handed to onEvent), whichever comes first.
//
// mountSnapshots() returns { show(vm), onEvent(change), count() }: the page calls show() with every fresh VM
// and onEvent() with every event of it; count() is how many snapshots the VM has (the delete confirmation
// says they go with it).

import { api, ApiError } from "./api.js";
import { errorBox, h, spinner } from "./dom.js";

const OPERATION_POLL_MS = 500;
const RESULT_SHOWN_MS = 5000;
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** Parents before children: [{snapshot, children}] roots, siblings oldest first (as the API orders them). */
export function snapshotTree(snapshots) {
  const nodes = new Map(snapshots.map((s) => [s.name, { snapshot: s, children: [] }]));
  const roots = [];
  for (const node of nodes.values()) {
    const parent = node.snapshot.parent !== null ? nodes.get(node.snapshot.parent) : undefined;
    (parent ? parent.children : roots).push(node);
  }
  return roots;
}

export function mountSnapshots() {
  const $ = (id) => document.getElementById(id);
  const ui = {
    section: $("snapshots"), form: $("snapshot-form"), name: $("snapshot-name"), nameError: $("snapshot-name-error"),
    description: $("snapshot-description"), create: $("snapshot-create"), status: $("snapshot-status"),
    tree: $("snapshot-tree"), none: $("no-snapshots"), dialog: $("snapshot-dialog"),
    dialogTitle: $("snapshot-dialog-title"), dialogText: $("snapshot-dialog-text"), dialogOk: $("snapshot-dialog-ok"),
    dialogCancel: $("snapshot-dialog-cancel"),
  };
  let vm = null;
  let snapshots = [];
  let operation = null; // the snapshot being taken from this page
  let pollTimer = null;
  let busy = false;
  let confirmed = null;
  let loadedFor = null;

  const path = (suffix = "") => `/api/vms/${encodeURIComponent(vm.uuid)}/snapshots${suffix}`;

  function showStatus(kind, ...children) {
    clearTimeout(ui.status.resultTimer);
    ui.status.className = `row-status ${kind || ""}`.trim();
    ui.status.replaceChildren(...children);
    if (kind === "ok") ui.status.resultTimer = setTimeout(() => ui.status.replaceChildren(), RESULT_SHOWN_MS);
  }

  function showError(body, what) {
    const dismiss = h("button", { class: "btn small dismiss", type: "button", text: "Dismiss",
                                  onclick: () => ui.status.replaceChildren() });
    showStatus("", errorBox({ ...body, error: `${what}: ${body.error}` }, { actions: [dismiss] }));
  }

  const bodyOf = (exc, what) => (exc instanceof ApiError ? exc.body
    : { error: `${what} failed`, code: "CLIENT_ERROR", details: String(exc), message: "Reload the page." });

  function applyEnabled() {
    const blocked = busy || operation !== null || !vm;
    ui.create.disabled = blocked;
    for (const button of ui.tree.querySelectorAll("button")) button.disabled = blocked;
  }

  // -- the tree --------------------------------------------------------------------------------------

  function nodeElement({ snapshot: s, children }) {
    const kind = s.with_memory ? "with memory" : s.vm_state === "shutoff" ? "disks, VM stopped" : `disks, ${s.vm_state}`;
    return h("li", { dataset: { snapshot: s.name }, class: s.current ? "current" : "" },
      h("div", { class: "snapshot-node" },
        h("div", { class: "snapshot-text" },
          h("strong", { class: "snapshot-name", text: s.name }),
          h("span", { class: `snapshot-kind${s.with_memory ? " memory" : ""}`, text: kind }),
          s.current ? h("span", { class: "snapshot-current", text: "current", title: "The VM came from this snapshot" })
            : null,
          h("span", { class: "refresh-note", text: new Date(s.created_at).toLocaleString() }),
          s.description ? h("div", { class: "snapshot-description", text: s.description }) : null),
        h("div", { class: "snapshot-actions" },
          h("button", { class: "btn small", type: "button", text: "Revert…", dataset: { action: "revert" },
                        "aria-label": `Revert ${vm.name} to snapshot ${s.name}`, onclick: () => askRevert(s) }),
          h("button", { class: "btn small danger", type: "button", text: "Delete…", dataset: { action: "delete" },
                        "aria-label": `Delete snapshot ${s.name}`, onclick: () => askDelete(s) }))),
      children.length ? h("ul", {}, ...children.map(nodeElement)) : null);
  }

  function renderTree() {
    ui.none.hidden = snapshots.length > 0;
    ui.tree.hidden = snapshots.length === 0;
    ui.tree.replaceChildren(...snapshotTree(snapshots).map(nodeElement));
    ui.section.dataset.count = String(snapshots.length);
    applyEnabled();
  }

  async function load() {
    if (!vm) return;
    try {
      snapshots = await api("GET", path());
      renderTree();
    } catch (exc) {
      showError(bodyOf(exc, "Load snapshots"), "Cannot load the snapshots");
    }
  }

  // -- taking one ------------------------------------------------------------------------------------

  function showProgress(op) {
    const figure = op.progress === null || op.progress === undefined ? "" : ` ${op.progress}%`;
    const bar = h("progress", { max: "100", "aria-label": `Snapshot ${op.subject}` });
    if (op.progress !== null && op.progress !== undefined) bar.value = op.progress;
    showStatus("", spinner(), `Taking snapshot ${op.subject}…${figure}`, bar);
  }

  function followed(op) {
    if (!operation || op.id !== operation.id) return;
    if (op.state === "running") {
      operation = op;
      showProgress(op);
      return;
    }
    clearTimeout(pollTimer);
    operation = null;
    ui.section.dataset.operation = op.state;
    if (op.state === "done") {
      showStatus("ok", `✓ Snapshot ${op.subject} taken`);
      ui.name.value = "";
      ui.description.value = "";
    } else {
      showError(op.error || { error: "Failed", code: "INTERNAL_ERROR", details: "", message: "" },
                `Snapshot ${op.subject}`);
    }
    load();
  }

  async function poll() {
    if (!operation) return;
    try {
      followed(await api("GET", `/api/operations/${encodeURIComponent(operation.id)}`));
    } catch (exc) {
      // An operation this server no longer knows (restarted): the list says what became of it.
      if (exc instanceof ApiError && exc.code === "OPERATION_NOT_FOUND") {
        operation = null;
        showStatus("", "The server lost track of the snapshot; the list shows whether it was taken.");
        load();
        return;
      }
    }
    if (operation) pollTimer = setTimeout(poll, OPERATION_POLL_MS);
  }

  async function take(event) {
    event.preventDefault();
    const name = ui.name.value.trim();
    if (!NAME_PATTERN.test(name)) {
      ui.name.setAttribute("aria-invalid", "true");
      ui.nameError.textContent = "1–63 letters, digits, '_', '.', '-', starting with a letter or digit.";
      ui.name.focus();
      return;
    }
    ui.name.removeAttribute("aria-invalid");
    ui.nameError.textContent = "";
    busy = true;
    applyEnabled();
    showStatus("", spinner(), `Starting snapshot ${name}…`);
    try {
      operation = await api("POST", path(), { name, description: ui.description.value });
      ui.section.dataset.operation = "running";
      showProgress(operation);
      pollTimer = setTimeout(poll, OPERATION_POLL_MS);
    } catch (exc) {
      const body = bodyOf(exc, "Take snapshot");
      if (body.field === "name") {
        ui.name.setAttribute("aria-invalid", "true");
        ui.nameError.textContent = body.details;
      }
      showError(body, `Snapshot ${name}`);
    } finally {
      busy = false;
      applyEnabled();
    }
  }

  // -- revert and delete, after a confirmation -------------------------------------------------------

  function ask(title, verb, text, action) {
    confirmed = action;
    ui.dialogTitle.textContent = title;
    ui.dialogText.replaceChildren(...text);
    ui.dialogOk.textContent = verb;
    ui.dialog.returnValue = "";
    ui.dialog.showModal();
    ui.dialogCancel.focus();
  }

  function askRevert(s) {
    const after = s.with_memory ? "It will be running from that moment, as it was then."
      : "Its disks will be as they were, and the VM stopped.";
    ask("Revert to snapshot?", "Revert", [
      "Revert ", h("strong", { class: "vm-ref", text: vm.name }), " to snapshot ",
      h("strong", { class: "snapshot-ref", text: s.name }), "? ", after,
      " What it did since is lost, unless another snapshot holds it."], () => act(
      "POST", path(`/${encodeURIComponent(s.name)}/revert`), `Reverting to ${s.name}…`, `✓ Reverted to ${s.name}`,
      `Revert to ${s.name}`));
  }

  function askDelete(s) {
    ask("Delete snapshot?", "Delete snapshot", [
      "Delete snapshot ", h("strong", { class: "snapshot-ref", text: s.name }), " of ",
      h("strong", { class: "vm-ref", text: vm.name }), "? The VM stays as it is; snapshots taken after this one stay.",
      " This cannot be undone."], () => act(
      "DELETE", path(`/${encodeURIComponent(s.name)}`), `Deleting ${s.name}…`, `✓ Snapshot ${s.name} deleted`,
      `Delete ${s.name}`));
  }

  async function act(method, url, busyText, doneText, what) {
    busy = true;
    applyEnabled();
    showStatus("", spinner(), busyText);
    try {
      await api(method, url, undefined, { timeoutMs: 330000 });
      showStatus("ok", doneText);
    } catch (exc) {
      showError(bodyOf(exc, what), what);
    } finally {
      busy = false;
      await load();
    }
  }

  ui.form.addEventListener("submit", take);
  ui.dialogCancel.addEventListener("click", () => ui.dialog.close("cancel"));
  ui.dialog.addEventListener("close", () => {
    const action = confirmed;
    confirmed = null;
    if (action && ui.dialog.returnValue === "confirm") action();
  });

  return {
    show(current) {
      vm = current;
      if (loadedFor !== vm.uuid) {
        loadedFor = vm.uuid;
        load();
      }
      applyEnabled();
    },
    onEvent(change) {
      if (!vm || change.uuid !== vm.uuid) return;
      if (change.operation && operation) followed(change.operation);
      else if (change.type === "snapshot_done" || change.type === "snapshots_changed") load();
    },
    count: () => snapshots.length,
  };
}

// The Snapshots section of a VM's details page: the VM's snapshots as a tree (each under the one it was taken
// after), taking one (name, description; progress while it runs), reverting to one and deleting one, both
// after a confirmation naming the snapshot and the VM.
//
// Taking a snapshot answers at once with an operation (POST /api/vms/{id}/snapshots → 202); the section then
// follows it through GET /api/operations/{id} every OPERATION_POLL_MS and through the page's event stream
// (snapshot_progress / snapshot_done events handed to onEvent), whichever comes first.
//
// mountSnapshots() returns { show(vm), onEvent(change), count(), vmGone() }: the page calls show() with every
// fresh VM, onEvent() with every event of it and vmGone() once it is deleted; count() is how many snapshots the
// VM has (the delete confirmation says they go with it).

import { api, ApiError } from "./api.js";
import { errorBox, h, placeOf, redrawKeepingPlace, returnToPlace, spinner, takeForm } from "./dom.js";
import { formatDateTime, refusalText, t, tWith } from "./i18n.js";
import { latestRead, STALE } from "./latest-read.js";

const OPERATION_POLL_MS = 500;
const RESULT_SHOWN_MS = 5000;
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

// The page's word for the VM state libvirt saved with a snapshot ("paused" and "disk-snapshot" showed as
// they came, in English, on the Korean page).
const SNAPSHOT_VM_STATES = { running: "running", blocked: "running", paused: "paused", shutdown: "shutting_down",
                             crashed: "crashed", pmsuspended: "suspended" };

/** What a snapshot holds, in the page's language: memory too, or its disks and the state the VM was in. */
export function snapshotKind(s) {
  if (s.with_memory) return t("snapshots.with_memory");
  if (s.vm_state === "shutoff") return t("snapshots.disks_stopped");
  if (s.vm_state === "disk-snapshot") return t("snapshots.disks_only");
  const known = SNAPSHOT_VM_STATES[s.vm_state];
  return t("snapshots.disks_state", { state: known ? t(`snapshots.vm_state.${known}`) : s.vm_state });
}

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

/** The tree as drawn: a list only nests where it branches. A snapshot that is its parent's only child is
 * drawn right after it in the same list ({follows: true}): a snapshot before every upgrade makes a long chain,
 * which indented a level each took a phone's whole width by the eighth. Each item: {snapshot, follows,
 * branches} (branches: the lists of a parent with several children, drawn nested). */
export function drawnTree(roots, follows = false) {
  return roots.flatMap((node) => {
    const item = { snapshot: node.snapshot, follows, branches: [] };
    if (node.children.length === 1) return [item, ...drawnTree(node.children, true)];
    item.branches = node.children.length ? drawnTree(node.children) : [];
    return [item];
  });
}

export function mountSnapshots() {
  const $ = (id) => document.getElementById(id);
  const ui = {
    section: $("snapshots"), form: $("snapshot-form"), name: $("snapshot-name"), nameError: $("snapshot-name-error"),
    description: $("snapshot-description"), descriptionError: $("snapshot-description-error"), create: $("snapshot-create"), status: $("snapshot-status"),
    tree: $("snapshot-tree"), none: $("no-snapshots"), dialog: $("snapshot-dialog"),
    dialogTitle: $("snapshot-dialog-title"), dialogText: $("snapshot-dialog-text"), dialogOk: $("snapshot-dialog-ok"),
    dialogCancel: $("snapshot-dialog-cancel"), hint: $("snapshot-hint"),
  };
  let vm = null;
  let snapshots = [];
  let operation = null; // the snapshot being taken from this page
  let pollTimer = null;
  let busy = false;
  let gone = false; // the VM was deleted: nothing here acts on it any more
  let confirmed = null;
  let place = null; // where the keyboard was when a revert or delete was asked (the list is drawn anew)
  let loadedFor = null;

  const path = (suffix = "") => `/api/vms/${encodeURIComponent(vm.uuid)}/snapshots${suffix}`;

  function showStatus(kind, ...children) {
    clearTimeout(ui.status.resultTimer);
    ui.status.className = `row-status ${kind || ""}`.trim();
    ui.status.replaceChildren(...children);
    if (kind === "ok") ui.status.resultTimer = setTimeout(() => ui.status.replaceChildren(), RESULT_SHOWN_MS);
  }

  function showError(body, what) {
    const dismiss = h("button", { class: "btn small dismiss", type: "button", text: t("list.dismiss"),
                                  onclick: () => ui.status.replaceChildren() });
    showStatus("", errorBox({ ...body, error: `${what}: ${body.error}` }, { actions: [dismiss] }));
  }

  const bodyOf = (exc, what) => (exc instanceof ApiError ? exc.body
    : { error: t("details.failed", { what }), code: "CLIENT_ERROR", details: String(exc), message: t("details.reload") });

  function applyEnabled() {
    const blocked = busy || gone || operation !== null || !vm;
    ui.create.disabled = blocked;
    for (const button of ui.tree.querySelectorAll("button")) button.disabled = blocked;
  }

  // -- the tree --------------------------------------------------------------------------------------

  function nodeElement({ snapshot: s, follows, branches }) {
    const kind = snapshotKind(s);
    return h("li", { dataset: { snapshot: s.name }, class: [s.current ? "current" : "", follows ? "follows" : ""].join(" ").trim() },
      h("div", { class: "snapshot-node" },
        h("div", { class: "snapshot-text" },
          h("strong", { class: "snapshot-name", text: s.name }),
          h("span", { class: `snapshot-kind${s.with_memory ? " memory" : ""}`, text: kind }),
          s.current ? h("span", { class: "snapshot-current", text: t("snapshots.current"), title: t("snapshots.current_title") })
            : null,
          h("span", { class: "refresh-note", text: formatDateTime(s.created_at) }),
          s.description ? h("div", { class: "snapshot-description", text: s.description }) : null),
        h("div", { class: "snapshot-actions" },
          h("button", { class: "btn small", type: "button", text: t("snapshots.revert_button"), dataset: { action: "revert" },
                        "aria-label": t("snapshots.revert_label", { vm: vm.name, snapshot: s.name }), onclick: () => askRevert(s) }),
          h("button", { class: "btn small danger", type: "button", text: t("action.delete.label"), dataset: { action: "delete" },
                        "aria-label": t("snapshots.delete_label", { snapshot: s.name }), onclick: () => askDelete(s) }))),
      branches.length ? h("ul", {}, ...branches.map(nodeElement)) : null);
  }

  function renderTree() {
    ui.none.hidden = snapshots.length > 0;
    ui.tree.hidden = snapshots.length === 0;
    redrawKeepingPlace(ui.tree, "snapshot",
                       () => ui.tree.replaceChildren(...drawnTree(snapshotTree(snapshots)).map(nodeElement)),
                       $("snapshots-title"));
    ui.section.dataset.count = String(snapshots.length);
    applyEnabled();
  }

  // Only the latest read of the list is drawn: it is read again after each change and on each of the VM's
  // snapshot events, and a read asked before a delete, answered after the delete's own read, drew the deleted
  // snapshot again with its buttons on.
  const readSnapshots = latestRead(() => api("GET", path()));
  let latestLoad = null;

  /** Reads the list and draws it; resolves once the list as drawn is at least as new as this call's read
   * (an overtaken load waits for the one that overtook it): a change's end puts the keyboard back on the
   * list then, not on the list from before it, whose buttons were still off. */
  function load() {
    latestLoad = loadOnce();
    return latestLoad;
  }

  async function loadOnce() {
    if (!vm) return;
    let answer;
    try {
      answer = await readSnapshots();
    } catch (exc) {
      showError(bodyOf(exc, t("snapshots.load")), t("snapshots.cannot_load"));
      return;
    }
    if (answer === STALE) {
      await latestLoad; // the latest read, still on its way, draws
      return;
    }
    snapshots = answer;
    renderTree();
  }

  // -- taking one ------------------------------------------------------------------------------------

  function showProgress(op) {
    const figure = op.progress === null || op.progress === undefined ? "" : ` ${op.progress}%`;
    const bar = h("progress", { max: "100", "aria-label": t("snapshots.progress_label", { name: op.subject }) });
    if (op.progress !== null && op.progress !== undefined) bar.value = op.progress;
    showStatus("", spinner(), t("snapshots.taking", { name: op.subject, figure }), bar);
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
      showStatus("ok", t("snapshots.taken", { name: op.subject }));
      ui.name.value = "";
      ui.description.value = "";
    } else {
      showError(op.error || { error: t("error.INTERNAL_ERROR.title"), code: "INTERNAL_ERROR", details: "", message: "" },
                t("snapshots.subject", { name: op.subject }));
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
        showStatus("", t("snapshots.lost_track"));
        load();
        return;
      }
    }
    if (operation) pollTimer = setTimeout(poll, OPERATION_POLL_MS);
  }

  async function take(event) {
    event.preventDefault();
    if (!vm) return; // the form is disabled until show() brings the VM: no snapshot of nothing
    const name = ui.name.value.trim();
    if (!NAME_PATTERN.test(name)) {
      ui.name.setAttribute("aria-invalid", "true");
      ui.nameError.textContent = t("snapshots.name_rule");
      ui.name.focus();
      return;
    }
    for (const [field, error] of [[ui.name, ui.nameError], [ui.description, ui.descriptionError]]) {
      field.removeAttribute("aria-invalid");
      error.textContent = "";
    }
    busy = true;
    applyEnabled();
    showStatus("", spinner(), t("snapshots.starting", { name }));
    try {
      operation = await api("POST", path(), { name, description: ui.description.value });
      ui.section.dataset.operation = "running";
      showProgress(operation);
      pollTimer = setTimeout(poll, OPERATION_POLL_MS);
    } catch (exc) {
      const body = bodyOf(exc, t("snapshots.take"));
      const taken = exc instanceof ApiError && exc.code === "SNAPSHOT_ALREADY_EXISTS";
      if (taken) {
        ui.name.setAttribute("aria-invalid", "true");
        ui.nameError.textContent = t("snapshots.name_taken", { name });
      }
      // Every field refused (a too long description too: it used to be cut silently as it was typed).
      const fieldOf = { name: [ui.name, ui.nameError], description: [ui.description, ui.descriptionError] };
      for (const refusal of (exc instanceof ApiError && exc.fields) || []) {
        const [field, error] = fieldOf[refusal.field] || [];
        if (!field) continue;
        field.setAttribute("aria-invalid", "true");
        error.textContent = refusalText(refusal);
      }
      showError(body, t("snapshots.subject", { name }));
    } finally {
      busy = false;
      applyEnabled();
      // Disabled during the request, the form lost the focus: back to the first refused field.
      const refused = [ui.name, ui.description].find((field) => field.getAttribute("aria-invalid") === "true");
      if (refused) refused.focus();
    }
  }

  // -- revert and delete, after a confirmation -------------------------------------------------------

  function ask(title, verb, text, action) {
    confirmed = action;
    place = placeOf(document.activeElement, "snapshot");
    ui.dialogTitle.textContent = title;
    ui.dialogText.replaceChildren(...text);
    ui.dialogOk.textContent = verb;
    ui.dialog.returnValue = "";
    ui.dialog.showModal();
    ui.dialogCancel.focus();
  }

  /** The VM's and the snapshot's names in bold, for a question that names both. */
  function names(s) {
    return { vm: h("strong", { class: "vm-ref", text: vm.name }), snapshot: h("strong", { class: "snapshot-ref", text: s.name }) };
  }

  function askRevert(s) {
    const after = s.with_memory ? t("snapshots.after_memory") : t("snapshots.after_disks");
    ask(t("snapshots.revert_title"), t("snapshots.revert"), [
      ...tWith("snapshots.revert_text", names(s)), after, t("snapshots.revert_loses")], () => act(
      "POST", path(`/${encodeURIComponent(s.name)}/revert`), t("snapshots.reverting", { name: s.name }),
      t("snapshots.reverted", { name: s.name }), t("snapshots.revert_what", { name: s.name })));
  }

  function askDelete(s) {
    ask(t("snapshots.delete_title"), t("snapshots.delete"), tWith("snapshots.delete_text", names(s)), () => act(
      "DELETE", path(`/${encodeURIComponent(s.name)}`), t("snapshots.deleting", { name: s.name }),
      t("snapshots.deleted", { name: s.name }), t("snapshots.delete_what", { name: s.name })));
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
      returnToPlace(place, ui.tree, $("snapshots-title"));
    }
  }

  applyEnabled(); // as the markup has it: nothing to take a snapshot of until show() brings the VM
  takeForm(ui.form, take);
  ui.dialogCancel.addEventListener("click", () => ui.dialog.close("cancel"));
  ui.dialog.addEventListener("close", () => {
    const action = confirmed;
    confirmed = null;
    if (action && ui.dialog.returnValue === "confirm") action();
  });

  return {
    show(current) {
      vm = current;
      // Without a disk there is nothing to keep a snapshot in: the form would only earn SNAPSHOT_UNSUPPORTED,
      // whose advice is about converting raw disks. The tree stays (a disk removed outside limen).
      const diskless = !(vm.disks || []).some((disk) => disk.device === "disk");
      ui.form.hidden = diskless;
      ui.hint.textContent = diskless ? t("snapshots.no_disk") : t("snapshots.hint");
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
    /** The VM was deleted: its buttons stay disabled, whatever answer comes after (one on its way would
     * enable them again). */
    vmGone() {
      gone = true;
      applyEnabled();
    },
  };
}

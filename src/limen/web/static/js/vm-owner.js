// The "Owner" control of a VM's details page, for administrators: a select of the users (or none) and
// Save, which calls PUT /api/vms/{id}/owner. Others see the owner only as a fact. Self-contained: the
// page gives it a slot, tells it the signed-in user once and every VM it shows; it reports the VM the
// server answers after a change.

import { api, ApiError } from "./api.js";
import { errorBox, h, spinner } from "./dom.js";
import { t } from "./i18n.js";

const NONE = "";
const RESULT_SHOWN_MS = 5000;

/** A user as the owner select lists them: the name, and whether they are an administrator or disabled, in the
 * page's language (the notes were English on the Korean page). */
export function ownerOptionText(user) {
  const notes = [user.role === "admin" ? t("role.admin") : "", user.disabled ? t("owner.note_disabled") : ""]
    .filter(Boolean);
  return notes.length ? t("owner.option_notes", { name: user.name, notes: notes.join(", ") }) : user.name;
}

export class OwnerControl {
  /** slot: the element to fill; onChanged(vm): called with the VM after its owner changed. */
  constructor(slot, { onChanged = () => {} } = {}) {
    this.slot = slot;
    this.onChanged = onChanged;
    this.vm = null;
    this.users = null;
    this.saving = false;
    this.gone = false; // the VM was deleted: nothing here acts on it any more
    // Both disabled until the users are known: an empty select read as "no owner", and Save then removed the
    // VM's owner.
    this.select = h("select", { id: "owner-select", "aria-describedby": "owner-status", disabled: true });
    this.save = h("button", { class: "btn", type: "button", id: "owner-save", text: t("owner.set"), disabled: true,
                              onclick: () => this.apply() });
    this.status = h("div", { class: "row-status", id: "owner-status", "aria-live": "polite" });
    this.select.addEventListener("change", () => this.updateButton());
  }

  /** Shows the control if ``user`` is an administrator (it loads the users then). */
  async mount(user) {
    if (!this.slot) return;
    if (!user || user.role !== "admin") {
      this.slot.hidden = true; // an administrator no more (the role changed while the page was open)
      return;
    }
    this.slot.replaceChildren(
      h("div", { class: "field owner-field" },
        h("label", { for: "owner-select", text: t("owner.change") }),
        h("div", { class: "inline-controls" }, this.select, this.save)),
      this.status,
    );
    this.slot.hidden = false;
    try {
      this.users = await api("GET", "/api/users");
    } catch (exc) {
      this.users = [];
      this.showError(exc, t("owner.loading_users"));
    }
    this.fill();
  }

  /** The VM the page shows now; the select follows it unless the administrator is choosing. */
  show(vm) {
    const choosing = this.vm !== null && this.select.value !== this.current();
    this.vm = vm;
    if (choosing) this.updateButton();
    else this.fill();
  }

  /** The VM was deleted: the select and Save stay disabled, whatever answer comes after (a save on its way
   * fails with VM_NOT_FOUND and must not enable them again). */
  vmGone() {
    this.gone = true;
    this.select.disabled = true;
    this.updateButton();
  }

  current() {
    return this.vm && this.vm.owner ? this.vm.owner : NONE;
  }

  fill() {
    if (!this.vm || this.users === null || this.saving) return;
    const names = this.users.map((user) => user.name);
    const owner = this.current();
    const options = [h("option", { value: NONE, text: t("owner.none") })];
    // An owner that is no longer a user (deleted) stays choosable, and says so.
    if (owner !== NONE && !names.includes(owner)) {
      options.push(h("option", { value: owner, text: t("owner.no_such_user", { owner }) }));
    }
    for (const user of this.users) options.push(h("option", { value: user.name, text: ownerOptionText(user) }));
    this.select.replaceChildren(...options);
    this.select.value = owner;
    this.select.disabled = this.gone;
    this.updateButton();
  }

  updateButton() {
    this.save.disabled = this.gone || this.saving || !this.vm || this.users === null
      || this.select.value === this.current();
  }

  showError(exc, what) {
    const body = exc instanceof ApiError ? exc.body
      : { error: t("details.failed", { what }), code: "CLIENT_ERROR", details: String(exc), message: t("details.reload") };
    clearTimeout(this.statusTimer);
    this.status.className = "row-status";
    this.status.replaceChildren(errorBox({ ...body, error: `${what}: ${body.error}` }));
  }

  async apply() {
    if (!this.vm || this.users === null) return;
    const chosen = this.select.value;
    this.saving = true;
    this.updateButton();
    this.select.disabled = true;
    clearTimeout(this.statusTimer);
    this.status.className = "row-status";
    this.status.replaceChildren(spinner(), t("owner.setting"));
    try {
      const vm = await api("PUT", `/api/vms/${encodeURIComponent(this.vm.uuid)}/owner`,
        { owner: chosen === NONE ? null : chosen });
      this.saving = false;
      this.vm = vm;
      this.status.className = "row-status ok";
      this.status.textContent = vm.owner ? t("owner.owns_now", { owner: vm.owner }) : t("owner.none_now");
      this.statusTimer = setTimeout(() => this.status.replaceChildren(), RESULT_SHOWN_MS);
      this.fill();
      this.onChanged(vm);
    } catch (exc) {
      this.saving = false;
      this.showError(exc, t("owner.setting_what"));
    } finally {
      this.select.disabled = this.gone;
      this.updateButton();
    }
  }
}

"""REST routes for VMs: list, create, show, change, delete, and the lifecycle actions.

Every route needs a signed-in user. Admins see and act on every VM; users only on the VMs they own
(the owner is kept in the VM's libvirt metadata). Every action is recorded with who did it.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Query, Request

from limen import end_details
from limen.action_details import delete_details, edit_details, migrate_details, power_details
from limen.api.body_rules import body_rules
from limen.api.deps import (
    AccessDep,
    AccessibleVm,
    AdminUser,
    CurrentUser,
    HypervisorDep,
    RecoveryDep,
    ServicesDep,
)
from limen.api.operations import refuse_busy_vm
from limen.api.quota import QuotaDep, new_vm_footprint, quota_for_edit, quota_for_start
from limen.api.schemas import ErrorBody, VmCreate, VmDeleted, VmMigrate, VmOut, VmPatch
from limen.api.services import services_of
from limen.api.strict_json import StrictJsonRoute
from limen.auth.revocation import Revocation
from limen.deleted_owners import release_if_owner_gone
from limen.errors import ErrorCode, LimenError
from limen.hypervisor import VmSpec
from limen.hypervisor.editing import VmEdit, check_edit, edit_vm
from limen.hypervisor.operations import VM_DELETION, VM_MIGRATION
from limen.hypervisor.vm_feed import VmEventType

log = logging.getLogger("limen.api")

router = APIRouter(route_class=StrictJsonRoute, prefix="/api/vms", tags=["vms"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 422, 503)
}
VM_ID_DOC = "The VM's UUID or name"


@router.get("", response_model=list[VmOut], responses=_ERRORS)
async def list_vms(principal: CurrentUser, hypervisor: HypervisorDep) -> list[VmOut]:
    """Admins: every VM. Users: the VMs they own."""
    return [VmOut.of(vm) for vm in await hypervisor.list_vms() if principal.may_access(vm.owner)]


def _spec(body: VmCreate, *, owner: str) -> VmSpec:
    return VmSpec(name=body.name, vcpus=body.vcpus, memory_mib=body.memory_mib, disk_gib=body.disk_gib,
                  iso=body.iso, boot_order=tuple(body.boot_order or ()), owner=owner, host=body.host)


@body_rules(VmCreate)
async def _create_rules(request: Request, body: VmCreate, failed: frozenset[str]) -> None:
    """The create's rules and this host's limits (validate_spec), beside the body's type errors."""
    await services_of(request).hypervisor.validate_spec(_spec(body, owner=""), unchecked=failed)


@body_rules(VmPatch)
async def _patch_rules(request: Request, body: VmPatch, _failed: frozenset[str]) -> None:
    """The change's rules (check_edit) against the VM's host, beside the body's type errors; a field that failed
    is None: unchecked."""
    hypervisor = services_of(request).hypervisor
    host = await hypervisor.hosts.find(request.path_params["vm_id"]) if hypervisor.hosts.several else None
    await check_edit(hypervisor, _edit(body), host=host)


def _edit(body: VmPatch) -> VmEdit:
    return VmEdit(
        name=body.name, vcpus=body.vcpus, memory_mib=body.memory_mib,
        boot_order=tuple(body.boot_order) if body.boot_order is not None else None, autostart=body.autostart,
    )


@router.post("", response_model=VmOut, status_code=201, responses=_ERRORS)
async def create_vm(
    body: VmCreate, principal: CurrentUser, hypervisor: HypervisorDep, recovery: RecoveryDep, quota: QuotaDep,
    services: ServicesDep, access: AccessDep,
) -> VmOut:
    """The new VM is owned by the user who creates it. Its audit row is written before any libvirt work,
    so that a create lost with its server is undone later (or on a retry of the name).

    Checked against the creator's quota and the system-wide one first, atomically (QUOTA_EXCEEDED)."""
    spec = _spec(body, owner=principal.name)
    footprint = new_vm_footprint(spec.name, principal.name, vcpus=spec.vcpus, memory_mib=spec.memory_mib,
                                 disk_gib=spec.disk_gib)
    # The hosts as the registry says now, not as this replica last read it (every few seconds): a host
    # drained through another replica a moment ago takes no new VM here either.
    await services.host_sync.sync_once()
    # Inside the create's record: the spec is validated first, and a refusal is recorded as its outcome.
    async with (recovery.creating(principal.name, spec) as intent,
                quota.reserving(footprint, hypervisor.list_vms, must_fit_alone=True)):
        vm = await hypervisor.create_vm(spec, create_token=intent.token, volume_name=intent.volume)
        intent.vm_uuid = vm.uuid
    if await release_if_owner_gone(access.users, hypervisor, access.audit, principal.name, actor=principal.name):
        vm = await hypervisor.get_vm(vm.uuid)  # its creator was deleted as it was made: it has no owner
    log.info("VM created", extra={"event": "vm_create", "vm_uuid": vm.uuid, "vm_name": vm.name,
                                  "user": principal.name})
    return VmOut.of(vm)


@router.get("/{vm_id}", response_model=VmOut, responses=_ERRORS)
async def get_vm(vm: AccessibleVm) -> VmOut:
    return VmOut.of(vm)


# How long a deletion waits for this instance's consoles of the VM to end before it destroys the VM.
CONSOLES_END_WAIT = 1.0


@router.patch("/{vm_id}", response_model=VmOut, responses=_ERRORS, dependencies=[refuse_busy_vm("edit")])
async def patch_vm(
    body: VmPatch, vm: AccessibleVm, principal: CurrentUser, access: AccessDep, hypervisor: HypervisorDep,
    quota: QuotaDep,
) -> VmOut:
    """Change any of name, vcpus, memory_mib, boot_order, autostart.

    On a running VM, vcpus, memory_mib and boot_order go into its definition and apply at its next start:
    the answer shows them under ``pending`` with ``pending_restart: true``. A rename needs a stopped VM
    (VM_MUST_BE_STOPPED). ``autostart`` applies at once. More vCPUs or memory are checked against the
    quota (QUOTA_EXCEEDED): a running VM's count at once, a stopped VM's must fit on their own.
    """
    edit = _edit(body)
    async with access.audit.recording(principal.name, "edit", vm.name, vm_uuid=vm.uuid,
                                      details=edit_details(body.model_dump(exclude_unset=True))) as target:
        await check_edit(hypervisor, edit, host=vm.host)  # every field refused at once, sane numbers before the quota
        async with quota_for_edit(quota, hypervisor, principal, vm, vcpus=body.vcpus, memory_mib=body.memory_mib,
                                  autostart=body.autostart):
            edited = await edit_vm(hypervisor, vm.uuid, edit)
        target.details = edited.summary
    if edited.vm.autostart != vm.autostart:  # libvirt announces no autostart change: other pages heard nothing
        await hypervisor.announce(vm.uuid, VmEventType.CHANGED)
    log.info("VM changed", extra={"event": "vm_edit", "vm_uuid": vm.uuid, "vm_name": edited.vm.name,
                                  "changes": list(edited.changes), "user": principal.name})
    return VmOut.of(edited.vm)


@router.delete("/{vm_id}", response_model=VmDeleted, responses=_ERRORS, dependencies=[refuse_busy_vm("delete")])
async def delete_vm(
    vm_id: str,
    request: Request,
    vm: AccessibleVm,
    principal: CurrentUser,
    access: AccessDep,
    hypervisor: HypervisorDep,
    delete_disks: bool = Query(False, description=(
        "Also delete the VM's disk volumes (never its ISO). Only an administrator may keep them: a plain user's "
        "delete without it is refused (DISKS_MUST_BE_DELETED)")),
) -> VmDeleted:
    """Its disk volumes go too with ``delete_disks``. A kept volume counts toward no quota and its owner could
    neither attach nor delete it, so only administrators keep disks: anyone else's delete without
    ``delete_disks`` is refused (DISKS_MUST_BE_DELETED) and deletes nothing."""
    if not delete_disks and not principal.is_admin:
        raise LimenError(ErrorCode.DISKS_MUST_BE_DELETED,
                         f"VM {vm.name!r}: a plain user deletes a VM with its disks (delete_disks=true)")
    # An operation of the VM throughout: a snapshot started between its snapshots' deletion and the undefine
    # would stay in a kept disk, listed nowhere; it waits for the deletion instead, and finds the VM gone.
    async with (access.audit.recording(principal.name, "delete", vm.name, vm_uuid=vm.uuid,
                                       details=delete_details(delete_disks)),
                hypervisor.operations.running(kind=VM_DELETION, vm_uuid=vm.uuid, vm_name=vm.name,
                                              vm_owner=vm.owner, user=principal.name, subject=vm.name,
                                              busy=ErrorCode.SNAPSHOT_IN_PROGRESS)):
        # Its consoles end with ACCESS_REVOKED, saying why, before the VM goes (not VM_STOPPED after).
        await access.revocations.publish(
            Revocation.vm_deleted(vm.uuid, end_details.vm_deleted(vm.name, principal.name)))
        await services_of(request).console_sessions.wait_ended(vm.uuid, CONSOLES_END_WAIT)
        volumes = await hypervisor.delete_vm(vm.uuid, delete_disks=delete_disks)
    log.info("VM deleted", extra={"event": "vm_delete", "vm_uuid": vm.uuid, "vm_name": vm.name,
                                  "volumes": volumes, "user": principal.name})
    return VmDeleted(deleted=vm_id, deleted_volumes=volumes)


@router.post("/{vm_id}/start", response_model=VmOut, responses=_ERRORS, dependencies=[refuse_busy_vm("start")])
async def start_vm(
    vm: AccessibleVm, principal: CurrentUser, access: AccessDep, hypervisor: HypervisorDep, quota: QuotaDep
) -> VmOut:
    """Checked against the quota on running vCPUs and memory first (QUOTA_EXCEEDED)."""
    async with (access.audit.recording(principal.name, "start", vm.name, vm_uuid=vm.uuid),
                quota_for_start(quota, hypervisor, principal, vm)):
        vm = await hypervisor.start_vm(vm.uuid)
    log.info("VM started", extra={"event": "vm_start", "vm_uuid": vm.uuid, "vm_name": vm.name,
                                  "user": principal.name})
    return VmOut.of(vm)


@router.post("/{vm_id}/stop", response_model=VmOut, responses=_ERRORS)
async def stop_vm(
    vm: AccessibleVm,
    principal: CurrentUser,
    access: AccessDep,
    hypervisor: HypervisorDep,
    force: bool = Query(False, description="Power off at once instead of an ACPI shutdown request"),
) -> VmOut:
    async with access.audit.recording(principal.name, "stop", vm.name, vm_uuid=vm.uuid,
                                      details=power_details(force)):
        vm = await hypervisor.stop_vm(vm.uuid, force=force)
    log.info("VM stopped", extra={"event": "vm_stop", "vm_uuid": vm.uuid, "vm_name": vm.name, "force": force,
                                  "user": principal.name})
    return VmOut.of(vm)


@router.post("/{vm_id}/reboot", response_model=VmOut, responses=_ERRORS)
async def reboot_vm(
    vm: AccessibleVm,
    principal: CurrentUser,
    access: AccessDep,
    hypervisor: HypervisorDep,
    force: bool = Query(False, description="Hardware reset instead of an ACPI reboot request"),
) -> VmOut:
    async with access.audit.recording(principal.name, "reboot", vm.name, vm_uuid=vm.uuid,
                                      details=power_details(force)):
        vm = await hypervisor.reboot_vm(vm.uuid, force=force)
    log.info("VM rebooted", extra={"event": "vm_reboot", "vm_uuid": vm.uuid, "vm_name": vm.name, "force": force,
                                   "user": principal.name})
    return VmOut.of(vm)


@router.post("/{vm_id}/migrate", response_model=VmOut, responses=_ERRORS,
             dependencies=[refuse_busy_vm("migrate")])
async def migrate_vm(
    body: VmMigrate, vm: AccessibleVm, admin: AdminUser, access: AccessDep, hypervisor: HypervisorDep,
    services: ServicesDep,
) -> VmOut:
    """Admins: moves the VM to another host. A running VM moves live (libvirt migration, its disks copied
    while it runs); a stopped one cold (its disks streamed through limen, then defined there). Refused
    (VM_HAS_SNAPSHOTS) for a VM with snapshots, which do not move."""
    await services.host_sync.sync_once()  # the registry's hosts now (a target drained elsewhere just now)
    # An operation of the VM throughout: a start, an edit, a snapshot or a deletion meanwhile is refused
    # (VM_MOVING). A cold move started, deleted or snapshotted by other means (virsh, another limen) fails
    # instead (limen.hypervisor.migration.check_unchanged).
    async with (access.audit.recording(admin.name, "migrate", vm.name, vm_uuid=vm.uuid,
                                       details=migrate_details(vm.host, body.host)),
                hypervisor.operations.running(kind=VM_MIGRATION, vm_uuid=vm.uuid, vm_name=vm.name,
                                              vm_owner=vm.owner, user=admin.name, subject=body.host,
                                              busy=ErrorCode.SNAPSHOT_IN_PROGRESS)):
        moved = await hypervisor.migrate_vm(vm.uuid, body.host)
    await hypervisor.announce(moved.uuid, VmEventType.CHANGED)
    log.info("VM migrated", extra={"event": "vm_migrate", "vm_uuid": vm.uuid, "vm_name": vm.name,
                                   "host": moved.host, "from_host": vm.host, "user": admin.name})
    return VmOut.of(moved)

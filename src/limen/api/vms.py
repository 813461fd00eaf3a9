"""REST routes for VMs: list, create, show, delete, and the lifecycle actions.

Every route needs a signed-in user. Admins see and act on every VM; users only on the VMs they own
(the owner is kept in the VM's libvirt metadata). Every action is recorded with who did it.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Query

from limen.api.deps import HypervisorDep, RecoveryDep
from limen.api.schemas import ErrorBody, VmCreate, VmDeleted, VmOut
from limen.auth.deps import AccessDep, AccessibleVm, CurrentUser
from limen.hypervisor import VmSpec

log = logging.getLogger("limen.api")

router = APIRouter(prefix="/api/vms", tags=["vms"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 422, 503)
}
VM_ID_DOC = "The VM's UUID or name"


@router.get("", response_model=list[VmOut], responses=_ERRORS)
async def list_vms(principal: CurrentUser, hypervisor: HypervisorDep) -> list[VmOut]:
    """Admins: every VM. Users: the VMs they own."""
    return [VmOut.of(vm) for vm in await hypervisor.list_vms() if principal.may_access(vm.owner)]


@router.post("", response_model=VmOut, status_code=201, responses=_ERRORS)
async def create_vm(
    body: VmCreate, principal: CurrentUser, hypervisor: HypervisorDep, recovery: RecoveryDep
) -> VmOut:
    """The new VM is owned by the user who creates it. Its audit row is written before any libvirt work,
    so that a create lost with its server is undone later (or on a retry of the name)."""
    spec = VmSpec(
        name=body.name,
        vcpus=body.vcpus,
        memory_mib=body.memory_mib,
        disk_gib=body.disk_gib,
        iso=body.iso,
        boot_order=tuple(body.boot_order),
        owner=principal.name,
    )
    async with recovery.creating(principal.name, spec) as intent:
        vm = await hypervisor.create_vm(spec, create_token=intent.token)
        intent.vm_uuid = vm.uuid
    log.info("VM created", extra={"event": "vm_create", "vm_uuid": vm.uuid, "vm_name": vm.name,
                                  "user": principal.name})
    return VmOut.of(vm)


@router.get("/{vm_id}", response_model=VmOut, responses=_ERRORS)
async def get_vm(vm: AccessibleVm) -> VmOut:
    return VmOut.of(vm)


@router.delete("/{vm_id}", response_model=VmDeleted, responses=_ERRORS)
async def delete_vm(
    vm_id: str,
    vm: AccessibleVm,
    principal: CurrentUser,
    access: AccessDep,
    hypervisor: HypervisorDep,
    delete_disks: bool = Query(False, description="Also delete the VM's disk volumes (never its ISO)"),
) -> VmDeleted:
    async with access.audit.recording(principal.name, "delete", vm.name) as target:
        target.vm_uuid, target.details = vm.uuid, f"delete_disks={delete_disks}"
        volumes = await hypervisor.delete_vm(vm.uuid, delete_disks=delete_disks)
    log.info("VM deleted", extra={"event": "vm_delete", "vm_uuid": vm.uuid, "vm_name": vm.name,
                                  "volumes": volumes, "user": principal.name})
    return VmDeleted(deleted=vm_id, deleted_volumes=volumes)


@router.post("/{vm_id}/start", response_model=VmOut, responses=_ERRORS)
async def start_vm(vm: AccessibleVm, principal: CurrentUser, access: AccessDep, hypervisor: HypervisorDep) -> VmOut:
    async with access.audit.recording(principal.name, "start", vm.name) as target:
        target.vm_uuid = vm.uuid
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
    async with access.audit.recording(principal.name, "stop", vm.name) as target:
        target.vm_uuid, target.details = vm.uuid, f"force={force}"
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
    async with access.audit.recording(principal.name, "reboot", vm.name) as target:
        target.vm_uuid, target.details = vm.uuid, f"force={force}"
        vm = await hypervisor.reboot_vm(vm.uuid, force=force)
    log.info("VM rebooted", extra={"event": "vm_reboot", "vm_uuid": vm.uuid, "vm_name": vm.name, "force": force,
                                   "user": principal.name})
    return VmOut.of(vm)

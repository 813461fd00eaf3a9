"""REST routes for VMs: list, create, show, delete, and the lifecycle actions."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Query

from limen.api.deps import HypervisorDep
from limen.api.schemas import ErrorBody, VmCreate, VmDeleted, VmOut
from limen.hypervisor import VmSpec

log = logging.getLogger("limen.api")

router = APIRouter(prefix="/api/vms", tags=["vms"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 404, 409, 422, 503)
}
VM_ID_DOC = "The VM's UUID or name"


@router.get("", response_model=list[VmOut], responses=_ERRORS)
async def list_vms(hypervisor: HypervisorDep) -> list[VmOut]:
    return [VmOut.of(vm) for vm in await hypervisor.list_vms()]


@router.post("", response_model=VmOut, status_code=201, responses=_ERRORS)
async def create_vm(body: VmCreate, hypervisor: HypervisorDep) -> VmOut:
    spec = VmSpec(
        name=body.name,
        vcpus=body.vcpus,
        memory_mib=body.memory_mib,
        disk_gib=body.disk_gib,
        iso=body.iso,
        boot_order=tuple(body.boot_order),
    )
    vm = await hypervisor.create_vm(spec)
    log.info("VM created", extra={"event": "vm_create", "vm_uuid": vm.uuid, "vm_name": vm.name})
    return VmOut.of(vm)


@router.get("/{vm_id}", response_model=VmOut, responses=_ERRORS)
async def get_vm(vm_id: str, hypervisor: HypervisorDep) -> VmOut:
    return VmOut.of(await hypervisor.get_vm(vm_id))


@router.delete("/{vm_id}", response_model=VmDeleted, responses=_ERRORS)
async def delete_vm(
    vm_id: str,
    hypervisor: HypervisorDep,
    delete_disks: bool = Query(False, description="Also delete the VM's disk volumes (never its ISO)"),
) -> VmDeleted:
    volumes = await hypervisor.delete_vm(vm_id, delete_disks=delete_disks)
    log.info("VM deleted", extra={"event": "vm_delete", "vm_id": vm_id, "volumes": volumes})
    return VmDeleted(deleted=vm_id, deleted_volumes=volumes)


@router.post("/{vm_id}/start", response_model=VmOut, responses=_ERRORS)
async def start_vm(vm_id: str, hypervisor: HypervisorDep) -> VmOut:
    vm = await hypervisor.start_vm(vm_id)
    log.info("VM started", extra={"event": "vm_start", "vm_uuid": vm.uuid, "vm_name": vm.name})
    return VmOut.of(vm)


@router.post("/{vm_id}/stop", response_model=VmOut, responses=_ERRORS)
async def stop_vm(
    vm_id: str,
    hypervisor: HypervisorDep,
    force: bool = Query(False, description="Power off at once instead of an ACPI shutdown request"),
) -> VmOut:
    vm = await hypervisor.stop_vm(vm_id, force=force)
    log.info("VM stopped", extra={"event": "vm_stop", "vm_uuid": vm.uuid, "vm_name": vm.name, "force": force})
    return VmOut.of(vm)


@router.post("/{vm_id}/reboot", response_model=VmOut, responses=_ERRORS)
async def reboot_vm(
    vm_id: str,
    hypervisor: HypervisorDep,
    force: bool = Query(False, description="Hardware reset instead of an ACPI reboot request"),
) -> VmOut:
    vm = await hypervisor.reboot_vm(vm_id, force=force)
    log.info("VM rebooted", extra={"event": "vm_reboot", "vm_uuid": vm.uuid, "vm_name": vm.name, "force": force})
    return VmOut.of(vm)

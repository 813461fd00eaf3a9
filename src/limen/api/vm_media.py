"""REST routes for a VM's CD: what is in the drive, changing it, and finishing an installation.

Authorised as every VM route (owners and admins, ``AccessibleVm``) and recorded in the audit trail.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Query, Request

from limen.action_details import media_details, power_details
from limen.api.body_rules import body_rules
from limen.api.deps import AccessDep, AccessibleVm, CurrentUser, HypervisorDep
from limen.api.operations import refuse_busy_vm
from limen.api.schemas import ErrorBody, MediaIn, MediaOut, VmOut
from limen.api.services import services_of
from limen.api.strict_json import StrictJsonRoute
from limen.hypervisor.editing import change_media, finish_install
from limen.hypervisor.vm_feed import VmEventType
from limen.isos import resolve_iso

log = logging.getLogger("limen.api")

router = APIRouter(route_class=StrictJsonRoute, prefix="/api/vms", tags=["vms"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 422, 503)
}


@body_rules(MediaIn)
async def _media_rules(request: Request, body: MediaIn, _failed: frozenset[str]) -> None:
    """The ISO name's rules and its presence in the library (a create's), beside the body's type errors."""
    if body.iso is not None:
        resolve_iso(services_of(request).hypervisor.settings.iso_dir, body.iso)


@router.get("/{vm_id}/media", response_model=MediaOut, responses=_ERRORS)
async def get_media(vm: AccessibleVm) -> MediaOut:
    """The CD-ROM drive and the ISO in it (``target`` null: the VM has no drive)."""
    return MediaOut.of(vm)


@router.put("/{vm_id}/media", response_model=MediaOut, responses=_ERRORS,
            dependencies=[refuse_busy_vm("media")])
async def put_media(
    body: MediaIn, vm: AccessibleVm, principal: CurrentUser, access: AccessDep, hypervisor: HypervisorDep
) -> MediaOut:
    """Insert or change the CD (``{"iso": "name.iso"}``) or eject it (``{"iso": null}``), running or stopped.

    A running VM's disc changes at once (no restart). A VM without a CD-ROM drive gets one while
    stopped (VM_MUST_BE_STOPPED while running). An ISO name that is not a file name in the ISO library, or no
    image there, is VALIDATION_ERROR (field ``iso``, as a create's); MEDIA_LOCKED when the
    guest has locked its tray (eject it inside the guest, or send ``"force": true``).
    """
    async with access.audit.recording(principal.name, "media", vm.name, vm_uuid=vm.uuid,
                                      details=media_details(body.iso, body.force)) as target:
        edited = await change_media(hypervisor, vm.uuid, body.iso, force=body.force)
        target.details = edited.summary
    # libvirt announces no change of a stopped VM's CD: the event stream hears of it from here.
    await hypervisor.announce(vm.uuid, VmEventType.MEDIA_CHANGED)
    log.info("VM media changed", extra={"event": "vm_media", "vm_uuid": vm.uuid, "vm_name": vm.name,
                                        "changes": list(edited.changes), "user": principal.name})
    return MediaOut.of(edited.vm)


@router.post("/{vm_id}/finish-install", response_model=VmOut, responses=_ERRORS,
             dependencies=[refuse_busy_vm("finish-install")])
async def post_finish_install(
    vm: AccessibleVm,
    principal: CurrentUser,
    access: AccessDep,
    hypervisor: HypervisorDep,
    force: bool = Query(False, description="Open the tray even when the guest has locked it"),
) -> VmOut:
    """Eject the CD and boot from disk (``boot_order: ["hd"]``), in one action.

    On a running VM the CD leaves at once and the boot order applies at the next start (``pending``).
    DISK_NOT_FOUND when the VM has no disk to boot from.
    """
    async with access.audit.recording(principal.name, "finish-install", vm.name, vm_uuid=vm.uuid,
                                      details=power_details(force)) as target:
        edited = await finish_install(hypervisor, vm.uuid, force=force)
        target.details = edited.summary
    await hypervisor.announce(vm.uuid, VmEventType.MEDIA_CHANGED)
    log.info("VM installation finished", extra={"event": "vm_finish_install", "vm_uuid": vm.uuid,
                                                "vm_name": vm.name, "changes": list(edited.changes),
                                                "user": principal.name})
    return VmOut.of(edited.vm)

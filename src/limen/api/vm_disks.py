"""REST routes for a VM's disks: growing one.

Authorised as every VM route (owners and admins, ``AccessibleVm``) and recorded in the audit trail.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request

from limen.action_details import resize_details, resized_details
from limen.api.body_rules import body_rules
from limen.api.deps import AccessDep, AccessibleVm, CurrentUser, HypervisorDep
from limen.api.operations import refuse_busy_vm
from limen.api.quota import QuotaDep, quota_for_disk_growth
from limen.api.schemas import DiskResize, ErrorBody, VmOut
from limen.api.strict_json import StrictJsonRoute
from limen.errors import Refusals
from limen.hypervisor.editing import check_disk_size, resize_disk
from limen.hypervisor.vm_feed import VmEventType

log = logging.getLogger("limen.api")

router = APIRouter(route_class=StrictJsonRoute, prefix="/api/vms", tags=["vms"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 422, 503)
}


@body_rules(DiskResize)
async def _resize_rules(_request: Request, body: DiskResize, _failed: frozenset[str]) -> None:
    """The size's rules (the resize's), on the size field that passed, beside the other's type error."""
    refusals = Refusals()
    with refusals.check():
        if body.size_gib is not None:
            check_disk_size(body.size_gib * 2**30, "size_gib")
    with refusals.check():
        if body.size_bytes is not None:
            check_disk_size(body.size_bytes, "size_bytes")
    refusals.raise_any()


@router.post("/{vm_id}/disks/{target}/resize", response_model=VmOut, responses=_ERRORS,
             dependencies=[refuse_busy_vm("resize-disk")])
async def post_resize_disk(
    target: str, body: DiskResize, vm: AccessibleVm, principal: CurrentUser, access: AccessDep,
    hypervisor: HypervisorDep, quota: QuotaDep,
) -> VmOut:
    """Grow the disk ``target`` (e.g. vda) to ``size_gib`` or ``size_bytes``, running or stopped.

    Disks never shrink: a size not larger than the current capacity is DISK_SHRINK_REFUSED. A running
    guest sees the new size at once (its partitions and file systems are its own to grow). The growth is
    checked against the disk quota first (QUOTA_EXCEEDED).
    """
    async with access.audit.recording(principal.name, "resize-disk", vm.name, vm_uuid=vm.uuid,
                                      details=resize_details(target, body.bytes)) as target_row:
        check_disk_size(body.bytes, body.field)  # named after the field sent
        async with quota_for_disk_growth(quota, hypervisor, principal, vm, target=target, new_bytes=body.bytes):
            resized = await resize_disk(hypervisor, vm.uuid, target, body.bytes)
        target_row.details = resized_details(resized.target, resized.old_bytes, resized.new_bytes)
    await hypervisor.announce(vm.uuid, VmEventType.CHANGED)  # a volume's new size is no domain event
    log.info("VM disk resized", extra={"event": "vm_resize_disk", "vm_uuid": vm.uuid, "vm_name": vm.name,
                                       "disk": resized.target, "old_bytes": resized.old_bytes,
                                       "new_bytes": resized.new_bytes, "user": principal.name})
    return VmOut.of(resized.vm)

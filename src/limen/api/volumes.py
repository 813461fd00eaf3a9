"""REST routes of the storage pool's volumes: list, and delete one no VM uses (admins).

A VM deleted with its disks kept leaves them in the pool; these routes show them with the VM that uses
each (none, for such a disk) and delete them (:mod:`limen.hypervisor.volumes`). A deletion is recorded in
the audit trail as the VM actions are (``delete-volume``, the volume's name in place of a VM's).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from fastapi import APIRouter, Query

from limen.action_details import volume_details
from limen.api.deps import AccessDep, AdminUser, HypervisorDep
from limen.api.schemas import ErrorBody, VolumeDeleted, VolumeOut
from limen.api.strict_json import StrictJsonRoute
from limen.hypervisor.hosts import DEFAULT_HOST
from limen.hypervisor.volumes import delete_volume, list_volumes
from limen.volume_claims import refuse_claimed

log = logging.getLogger("limen.api")

router = APIRouter(route_class=StrictJsonRoute, prefix="/api/volumes", tags=["volumes"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 503)
}


@router.get("", response_model=list[VolumeOut], responses=_ERRORS)
async def get_volumes(
    _admin: AdminUser, hypervisor: HypervisorDep,
    host: str | None = Query(None, description="Only this host's (default: every host's)"),
) -> list[VolumeOut]:
    """Admins: the volumes of the storage pool (LIMEN_STORAGE_POOL) on each host, with the VMs that use each;
    ``used_by`` empty and ``in_use`` false for a disk no VM uses (one kept when its VM was deleted). ISO library
    images are never listed. A host that does not answer is HYPERVISOR_UNAVAILABLE (ask for the others by
    ``host``)."""
    return [VolumeOut.of(volume) for volume in await list_volumes(hypervisor, host)]


@router.delete("/{name}", response_model=VolumeDeleted, responses=_ERRORS)
async def remove_volume(
    name: str, admin: AdminUser, access: AccessDep, hypervisor: HypervisorDep,
    host: str = Query(DEFAULT_HOST, description="The host whose pool holds it"),
) -> VolumeDeleted:
    """Admins: delete a volume no VM uses. VOLUME_IN_USE while a VM uses it (its disk, in its definition or
    one of its snapshots'), a create about to use it or a move to its host is under way; VOLUME_NOT_FOUND
    when the pool has none of that name."""
    hypervisor.hosts.get(host)  # HOST_NOT_FOUND before the row: no such host, nothing asked
    async with access.audit.recording(admin.name, "delete-volume", name, details=volume_details(host)) as target:
        deleted = await delete_volume(hypervisor, name, host=host,
                                      check_claims=functools.partial(refuse_claimed, access.audit))
        target.details = volume_details(host, deleted.capacity_bytes)
    log.info("volume deleted", extra={"event": "volume_delete", "volume": name, "host": host,
                                      "path": deleted.path, "user": admin.name})
    return VolumeDeleted(deleted=name, host=host, capacity_bytes=deleted.capacity_bytes)

"""What becomes of a deleted user's VMs: they pass to no owner, so only administrators reach them (the UI
says "no owner") until an administrator gives them to someone. They must not keep the deleted name: a user
made later with that name (any case) would own them.

Both the API (``DELETE /api/users/{name}``) and ``limen user delete`` call :func:`release_vms_of` after the
user's deletion was found allowed and before the user goes; each VM gets an audit row (``set_owner``,
"no owner (alice deleted)") by whoever deletes the user.
"""

from __future__ import annotations

from limen.action_details import owner_deleted_details
from limen.audit import AuditLog
from limen.auth.names import name_key
from limen.errors import ErrorCode, LimenError
from limen.hypervisor import Hypervisor, Vm
from limen.hypervisor.ownership import set_owner


async def release_vms_of(hypervisor: Hypervisor, audit: AuditLog, owner: str, *, actor: str) -> list[Vm]:
    """Takes ``owner`` (any case) off every VM they own; returns those VMs as they are now. A libvirt that
    cannot be reached raises HYPERVISOR_UNAVAILABLE (the caller then deletes nobody)."""
    key = name_key(owner)
    released = []
    for vm in await hypervisor.list_vms():
        if vm.owner is None or name_key(vm.owner) != key:
            continue
        try:
            async with audit.recording(actor, "set_owner", vm.name, vm_uuid=vm.uuid,
                                       details=owner_deleted_details(vm.owner)):
                released.append(await set_owner(hypervisor, vm.uuid, None))
        except LimenError as exc:
            # Deleted since the list was read (its row says VM_NOT_FOUND): nothing of it is left to release.
            # Raising would stop the user's deletion half-way: some VMs released, the user still there.
            if exc.code is not ErrorCode.VM_NOT_FOUND:
                raise
    return released

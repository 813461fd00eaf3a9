"""What becomes of a deleted user's VMs: they pass to no owner, so only administrators reach them (the UI
says "no owner") until an administrator gives them to someone. They must not keep the deleted name: a user
made later with that name (any case) would own them.

Both the API (``DELETE /api/users/{name}``) and ``limen user delete`` call :func:`release_vms_of` after the
user's deletion was found allowed and before the user goes, and again once the user is gone; each VM gets an
audit row (``set_owner``, "no owner (alice deleted)") by whoever deletes the user.

A VM given to the user at the same moment (an owner change, or a create by that user, which found the user
before the deletion) is not left with the name: one whose name was written before the user went is released
by the second pass, and one written after finds the user gone (:func:`release_if_owner_gone`, which each of
those calls once its write is done).
"""

from __future__ import annotations

from limen.action_details import owner_deleted_details
from limen.audit import AuditLog
from limen.auth.names import name_key
from limen.auth.users import Users
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


async def release_if_owner_gone(users: Users, hypervisor: Hypervisor, audit: AuditLog, owner: str, *,
                                actor: str) -> bool:
    """Called once a VM was given to ``owner`` (its owner set, or created for them): whether ``owner`` was
    deleted meanwhile, in which case their VMs, that one with them, have passed to no owner now."""
    try:
        await users.get(owner)
        return False
    except LimenError as exc:
        if exc.code is not ErrorCode.USER_NOT_FOUND:
            raise
    await release_vms_of(hypervisor, audit, owner, actor=actor)
    return True

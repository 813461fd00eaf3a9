"""Users (admins only) and VM ownership.

An owner is kept in the VM's libvirt metadata; ``PUT /api/vms/{id}/owner`` changes it. Every change that
can take away the right to a console (a user disabled, deleted or demoted, a VM given to someone else) is
published as a revocation once made, and live consoles that lost their right end (ACCESS_REVOKED).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress, StrictBool

from limen import end_details
from limen.action_details import owner_details
from limen.api.body_rules import body_rules
from limen.api.deps import AccessDep, AdminUser, HypervisorDep
from limen.api.schemas import ErrorBody, VmOut
from limen.api.strict_json import StrictJsonRoute
from limen.auth.revocation import Revocation
from limen.auth.users import UserInfo, check_name_and_password, find_user_by_key
from limen.db.models import Role
from limen.deleted_owners import release_if_owner_gone, release_vms_of
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.ownership import set_owner

log = logging.getLogger("limen.auth")

router = APIRouter(route_class=StrictJsonRoute, tags=["access"])
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody} for status in (401, 403, 404, 409, 422)}


class UserOut(BaseModel):
    name: str
    role: Role
    created_at: datetime
    disabled: bool
    approved: bool = Field(description="False while a self-registered account waits for an administrator")

    @classmethod
    def of(cls, user: UserInfo) -> UserOut:
        return cls(name=user.name, role=user.role, created_at=user.created_at, disabled=user.disabled,
                   approved=user.approved)


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Any text of 1–64 characters, without control characters")
    password: str = Field(description="At least 8 characters", json_schema_extra={"format": "password"})
    role: Role = Role.USER


@body_rules(UserCreate)
async def _user_create_rules(_request: Request, body: UserCreate, _failed: frozenset[str]) -> None:
    """A new user's name and password rules (the create's), beside the body's type errors."""
    check_name_and_password(body.name, body.password)


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


class DisabledChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disabled: StrictBool


class ApprovedChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approved: StrictBool


class UnlockOut(BaseModel):
    name: str
    cleared: int = Field(description="Throttle keys forgotten: one per address the user name failed from")


class AddressUnlockOut(BaseModel):
    address: str = Field(description="What is throttled as one: the address, or an IPv6 address's /64")
    cleared: int = Field(description="Throttle keys forgotten: the address's own and one per user name tried there")


class OwnerChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: str | None = Field(description="A user's name; null for no owner (only admins then see the VM)")


@router.get("/api/users", response_model=list[UserOut], responses=_ERRORS)
async def list_users(_admin: AdminUser, access: AccessDep) -> list[UserOut]:
    return [UserOut.of(user) for user in await access.users.list_all()]


@router.post("/api/users", response_model=UserOut, status_code=201, responses=_ERRORS)
async def create_user(body: UserCreate, admin: AdminUser, access: AccessDep) -> UserOut:
    user = await access.users.create(body.name, body.password, body.role)
    log.info("user created", extra={"event": "user_create", "user": admin.name, "new_user": user.name,
                                    "role": user.role.value})
    return UserOut.of(user)


@router.put("/api/users/{name:path}/role", response_model=UserOut, responses=_ERRORS)
async def set_role(name: str, body: RoleChange, admin: AdminUser, access: AccessDep) -> UserOut:
    name = (await access.users.get(name)).name  # any case finds the user; the checks below use its name
    user = await access.users.set_role(name, body.role)
    if body.role is not Role.ADMIN:
        await access.revocations.publish(Revocation.user_changed(
            user.name, end_details.no_longer_admin(user.name, admin.name)))
    log.info("role changed", extra={"event": "user_role", "user": admin.name, "target": name, "role": body.role.value})
    return UserOut.of(user)


@router.put("/api/users/{name:path}/disabled", response_model=UserOut, responses=_ERRORS)
async def set_disabled(name: str, body: DisabledChange, admin: AdminUser, access: AccessDep) -> UserOut:
    """A disabled user cannot sign in; their sessions and tokens stop working at once."""
    name = (await access.users.get(name)).name  # any case finds the user; the checks below use its name
    user = await access.users.set_disabled(name, body.disabled)
    if body.disabled:
        await access.sessions.end_all_of(name)
        await access.revocations.publish(Revocation.user_changed(
            user.name, end_details.user_disabled(user.name, admin.name)))
    log.info("user disabled" if body.disabled else "user enabled",
             extra={"event": "user_disabled", "user": admin.name, "target": name, "disabled": body.disabled})
    return UserOut.of(user)


@router.put("/api/users/{name:path}/approved", response_model=UserOut, responses=_ERRORS)
async def set_approved(name: str, body: ApprovedChange, admin: AdminUser, access: AccessDep) -> UserOut:
    """Approves a self-registered account (it can sign in from then on), or withdraws the approval: then
    the account's sign-ins end, its tokens stop working and its consoles end, as when disabled."""
    name = (await access.users.get(name)).name
    user = await access.users.set_approved(name, body.approved)
    if not body.approved:
        await access.sessions.end_all_of(name)
        await access.revocations.publish(Revocation.user_changed(
            user.name, end_details.approval_withdrawn(user.name, admin.name)))
    log.info("user approved" if body.approved else "user approval withdrawn",
             extra={"event": "user_approved", "user": admin.name, "target": name, "approved": body.approved})
    return UserOut.of(user)


@router.post("/api/users/{name:path}/unlock", response_model=UnlockOut, responses=_ERRORS)
async def unlock_user(name: str, admin: AdminUser, access: AccessDep) -> UnlockOut:
    """Lifts every sign-in block of the user (at every address) and forgets their failed attempts."""
    user = await access.db.run(lambda session: find_user_by_key(session, name))
    if user is None:
        raise LimenError(ErrorCode.USER_NOT_FOUND, f"no user named {name!r}")
    cleared = await access.login_limiter.unlock(user.name)
    log.info("user unlocked", extra={"event": "user_unlock", "user": admin.name, "target": user.name,
                                     "cleared": cleared})
    return UnlockOut(name=user.name, cleared=cleared)


@router.post("/api/addresses/{address}/unlock", response_model=AddressUnlockOut, responses=_ERRORS)
async def unlock_address(address: IPvAnyAddress, admin: AdminUser, access: AccessDep) -> AddressUnlockOut:
    """Lifts the sign-in blocks of a client address: its own (an address guessing many names is blocked as a
    whole) and each user name's there, and forgets their failed attempts. An IPv6 address stands for its /64."""
    where, cleared = await access.login_limiter.unlock_address(str(address))
    log.info("address unlocked", extra={"event": "address_unlock", "user": admin.name, "address": where,
                                        "cleared": cleared})
    return AddressUnlockOut(address=where, cleared=cleared)


@router.delete("/api/users/{name:path}", response_model=UserOut, responses=_ERRORS)
async def delete_user(name: str, admin: AdminUser, access: AccessDep, hypervisor: HypervisorDep) -> UserOut:
    """Deletes a user, their API tokens and sign-ins; their live consoles end (ACCESS_REVOKED). Audit rows
    keep their name. Deleting yourself (FORBIDDEN) or the last enabled administrator (LAST_ADMINISTRATOR) is
    refused. VMs they owned pass to no owner first (administrators only, an audit row each); if libvirt cannot
    be reached (HYPERVISOR_UNAVAILABLE) nobody is deleted."""
    kept = await access.users.check_deletable(name, by=admin.name)
    because = end_details.user_deleted(kept.name, admin.name)
    # Their consoles end now, within the promised second, not after libvirt has changed their VMs' owner;
    # and once more after the deletion, for a console opened in between.
    await access.revocations.publish(Revocation.user_changed(kept.name, because))
    released = await release_vms_of(hypervisor, access.audit, kept.name, actor=admin.name)
    user = await access.users.delete(name, by=admin.name)
    await access.revocations.publish(Revocation.user_changed(user.name, because))
    try:  # again: a VM given to them (owner change, create) after that pass and before they went
        released += await release_vms_of(hypervisor, access.audit, user.name, actor=admin.name)
    except LimenError as exc:  # they are deleted; a VM given to them later finds them gone anyway
        log.warning("a deleted user's VMs were not looked at again", extra={
            "event": "user_delete_release_again", "target": user.name, "code": exc.code.name})
    log.info("user deleted", extra={"event": "user_delete", "user": admin.name, "target": user.name,
                                    "vms_released": [vm.uuid for vm in released]})
    return UserOut.of(user)


@router.put("/api/vms/{vm_id}/owner", response_model=VmOut, responses=_ERRORS)
async def set_vm_owner(
    vm_id: str, body: OwnerChange, admin: AdminUser, access: AccessDep, hypervisor: HypervisorDep
) -> VmOut:
    async with access.audit.recording(admin.name, "set_owner", vm_id) as target:
        target.details = owner_details(body.owner)
        # USER_NOT_FOUND for a typo; any case finds the user, and the VM keeps the user's name as kept.
        owner = None if body.owner is None else (await access.users.get(body.owner)).name
        vm = await hypervisor.get_vm(vm_id)
        target.vm_name, target.vm_uuid = vm.name, vm.uuid
        vm = await set_owner(hypervisor, vm.uuid, owner)
        if owner is not None and await release_if_owner_gone(access.users, hypervisor, access.audit, owner,
                                                             actor=admin.name):
            raise LimenError(ErrorCode.USER_NOT_FOUND, f"no user named {owner!r}: deleted as the VM was given to them")
    await access.revocations.publish(Revocation.vm_changed(
        vm.uuid, end_details.vm_owner_changed(vm.name, owner, admin.name)))
    log.info("VM owner set", extra={"event": "vm_owner", "user": admin.name, "vm_uuid": vm.uuid, "owner": owner})
    return VmOut.of(vm)

"""REST routes for quotas: one's own limits and usage, and administrators' per-user overrides; and the guard
the VM routes put around every change that adds to what a user's VMs use (:mod:`limen.quota`).

``GET /api/quota`` answers the signed-in user's limits and usage and the system-wide ones.
``GET/PUT /api/users/{name}/quota`` (admins) read and set a user's overrides: a null resource falls back to
the ``LIMEN_QUOTA_*`` default for plain users, and to no limit for administrators.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from limen.api.deps import AccessDep, AdminUser, CurrentUser, HypervisorDep
from limen.api.schemas import ErrorBody
from limen.api.services import services_of
from limen.api.strict_json import StrictJsonRoute
from limen.auth.principal import Principal
from limen.hypervisor import Hypervisor
from limen.hypervisor.models import DiskDevice, Vm
from limen.hypervisor.snapshots import SnapshotInfo
from limen.quota import Footprint, Limits, QuotaLedger, QuotaReport
from limen.quota.ledger import owner_limited
from limen.quota.limits import GIB

log = logging.getLogger("limen.api")

router = APIRouter(route_class=StrictJsonRoute, tags=["quota"])
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody} for status in (401, 403, 404, 422)}


async def _ledger(request: Request) -> QuotaLedger:
    ledger: QuotaLedger = services_of(request).quota
    return ledger


INT32_MAX = 2**31 - 1  # the database's INTEGER on PostgreSQL

QuotaDep = Annotated[QuotaLedger, Depends(_ledger)]


class QuotaValues(BaseModel):
    """Per resource: the limit (null: none), or what is in use."""

    vms: int | None = Field(None, description="VMs, running or not")
    vcpus: int | None = Field(None, description="vCPUs of running VMs")
    memory_mib: int | None = Field(None, description="MiB of memory of running VMs")
    # Whole numbers stay whole (a client reading integers gets them); only a disk's usage can have a fraction.
    disk_gib: int | float | None = Field(None, description="GiB of disk capacity (not CD-ROMs)")


class QuotaScope(BaseModel):
    limits: QuotaValues
    usage: QuotaValues


class QuotaOut(BaseModel):
    user: str
    limits: QuotaValues = Field(description="The limits that apply to the user (override, else default)")
    usage: QuotaValues
    system: QuotaScope = Field(description="Limits over every VM, whoever owns it, and their usage")

    @classmethod
    def of(cls, report: QuotaReport) -> QuotaOut:
        return cls(
            user=report.user, limits=QuotaValues(**report.limits.as_dict()),
            usage=QuotaValues.model_validate(report.usage.as_dict()),
            system=QuotaScope(limits=QuotaValues(**report.system_limits.as_dict()),
                              usage=QuotaValues.model_validate(report.system_usage.as_dict())))


class QuotaOverride(BaseModel):
    """An administrator's override of one user's limits; null: the default (plain users) or none (admins)."""

    model_config = ConfigDict(extra="forbid")

    vms: StrictInt | None = Field(None, ge=0, le=INT32_MAX)
    vcpus: StrictInt | None = Field(None, ge=0, le=INT32_MAX)
    memory_mib: StrictInt | None = Field(None, ge=0, le=INT32_MAX)
    disk_gib: StrictInt | None = Field(None, ge=0, le=INT32_MAX)


class UserQuotaOut(QuotaOut):
    override: QuotaValues = Field(description="What an administrator set for this user (null: not set)")


@router.get("/api/quota", response_model=QuotaOut, responses=_ERRORS)
async def my_quota(principal: CurrentUser, quota: QuotaDep, hypervisor: HypervisorDep) -> QuotaOut:
    """Your limits and what your VMs use, and the system-wide limits and usage."""
    return QuotaOut.of(await quota.report(principal.name, hypervisor.list_vms))


async def _user_quota(name: str, quota: QuotaLedger, hypervisor: Hypervisor) -> UserQuotaOut:
    report = await quota.report(name, hypervisor.list_vms)
    override = await quota.override(name)
    return UserQuotaOut(**QuotaOut.of(report).model_dump(), override=QuotaValues(**override.as_dict()))


@router.get("/api/users/{name:path}/quota", response_model=UserQuotaOut, responses=_ERRORS)
async def get_user_quota(name: str, _admin: AdminUser, access: AccessDep, quota: QuotaDep,
                         hypervisor: HypervisorDep) -> UserQuotaOut:
    user = await access.users.get(name)  # USER_NOT_FOUND; any case finds the user
    return await _user_quota(user.name, quota, hypervisor)


@router.put("/api/users/{name:path}/quota", response_model=UserQuotaOut, responses=_ERRORS)
async def put_user_quota(name: str, body: QuotaOverride, admin: AdminUser, access: AccessDep, quota: QuotaDep,
                         hypervisor: HypervisorDep) -> UserQuotaOut:
    """Sets all four overrides at once (a resource left out or null: back to the default). Lowering a limit
    below what the user uses takes nothing away; it refuses the user's further increases."""
    kept = await quota.set_override(name, Limits(body.vms, body.vcpus, body.memory_mib, body.disk_gib))
    log.info("quota set", extra={"event": "user_quota", "user": admin.name, "target": kept,
                                 "quota": body.model_dump()})
    return await _user_quota(kept, quota, hypervisor)


# -- the guard around VM changes ---------------------------------------------------------------------


@asynccontextmanager
async def quota_for_start(quota: QuotaLedger, hypervisor: Hypervisor, principal: Principal,
                          vm: Vm) -> AsyncIterator[None]:
    """Reserved even for a VM that was running when the request read it: it may be stopped before the start
    reaches libvirt, and another VM's start checked meanwhile must count it as running (it counted neither).
    A VM still running adds nothing: its reservation and its footprint are one VM."""
    async with quota.reserving(Footprint.of_vm(vm).started(), hypervisor.list_vms,
                               owner_limited=owner_limited(principal, vm.owner)):
        yield


def quota_for_edit(quota: QuotaLedger, hypervisor: Hypervisor, principal: Principal, vm: Vm, *,
                   vcpus: int | None, memory_mib: int | None,
                   autostart: bool | None = None) -> contextlib.AbstractAsyncContextManager[None]:
    """A running VM's new vCPUs and memory count at once (they apply at its next start, which must fit);
    a stopped VM's must fit the limits on their own. Autostart switched on counts the VM as running (it
    will run when the host starts, unchecked): it must fit beside what runs, as a start must."""
    starts_with_host = autostart is True and not vm.autostart
    if vcpus is None and memory_mib is None and not starts_with_host:
        return contextlib.nullcontext()
    current = Footprint.of_vm(vm)
    change = replace(current, vcpus=vcpus or vm.vcpus, memory_mib=memory_mib or vm.memory_mib,
                     running=current.running or starts_with_host)
    return quota.reserving(change, hypervisor.list_vms, must_fit_alone=True,
                           owner_limited=owner_limited(principal, vm.owner))


def quota_for_revert(quota: QuotaLedger, hypervisor: Hypervisor, principal: Principal, vm: Vm,
                     snapshot: SnapshotInfo) -> contextlib.AbstractAsyncContextManager[None]:
    """A snapshot with a running VM's memory leaves the VM running with the snapshot's vCPUs and memory: a
    stopped VM's revert counts as a start (it started the VM past its owner's quota), a running one's as an
    edit of its running figures. A stopped snapshot's revert runs nothing."""
    if not snapshot.with_memory:
        return contextlib.nullcontext()
    footprint = replace(Footprint.of_vm(vm), vcpus=snapshot.vcpus or vm.vcpus,
                        memory_mib=snapshot.memory_mib or vm.memory_mib)
    limited = owner_limited(principal, vm.owner)
    if vm.is_active:
        return quota.reserving(footprint, hypervisor.list_vms, must_fit_alone=True, owner_limited=limited)
    return quota.reserving(footprint.started(), hypervisor.list_vms, owner_limited=limited)


def quota_for_disk_growth(quota: QuotaLedger, hypervisor: Hypervisor, principal: Principal, vm: Vm, *,
                          target: str, new_bytes: int) -> contextlib.AbstractAsyncContextManager[None]:
    disk = next((d for d in vm.disks if d.device is DiskDevice.DISK and d.target == target), None)
    current = Footprint.of_vm(vm)
    if disk is None or new_bytes <= (disk.capacity_bytes or 0):
        return contextlib.nullcontext()  # the resize itself refuses (DISK_NOT_FOUND, DISK_SHRINK_REFUSED)
    # A disk whose size libvirt could not say counts as 0 bytes in the usage: its whole new size is checked.
    change = replace(current, disk_bytes=current.disk_bytes - (disk.capacity_bytes or 0) + new_bytes)
    return quota.reserving(change, hypervisor.list_vms, owner_limited=owner_limited(principal, vm.owner))


def new_vm_footprint(name: str, owner: str, *, vcpus: int, memory_mib: int, disk_gib: int | None) -> Footprint:
    return Footprint(name=name, owner=owner, running=False, vcpus=vcpus, memory_mib=memory_mib,
                     disk_bytes=(disk_gib or 0) * GIB)

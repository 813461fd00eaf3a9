"""Resource figures: a VM's CPU, memory, disk and network series, the latest figures of every VM one may
see, and the host's CPU, memory and storage pool space. Read from the sampler's memory
(:mod:`limen.stats_sampler`); only the host's memory and pool space are read from libvirt per request.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from limen.api.deps import AccessibleVm, CurrentUser, HypervisorDep, SettingsDep
from limen.api.schemas import ErrorBody
from limen.api.services import services_of
from limen.api.strict_json import StrictJsonRoute
from limen.auth.principal import Principal
from limen.hypervisor import Hypervisor
from limen.hypervisor.models import VmState
from limen.hypervisor.stats import read_host
from limen.stats_history import FIELDS, VmHistory
from limen.stats_sampler import StatsSampler

router = APIRouter(route_class=StrictJsonRoute, tags=["stats"])

_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody} for status in (400, 401, 404, 422, 503)}
Resolution = Literal["auto", "fine", "coarse"]


async def _sampler(request: Request) -> StatsSampler:
    sampler: StatsSampler = services_of(request).stats_sampler
    return sampler


SamplerDep = Annotated[StatsSampler, Depends(_sampler)]


def _latest(history: VmHistory) -> dict[str, float | None]:
    point = history.fine.latest()
    if point is None:
        return {}
    at, values = point
    figures: dict[str, float | None] = {"t": at}
    figures.update({name: None if math.isnan(v) else round(v, 3) for name, v in zip(FIELDS, values, strict=True)})
    return figures


@router.get("/api/vms/{vm_id}/stats", responses=_ERRORS)
async def vm_stats(
    vm: AccessibleVm,
    sampler: SamplerDep,
    since: float = Query(0.0, ge=0, le=1e11, allow_inf_nan=False,
                         description="Unix seconds: only points later than this"),
    resolution: Resolution = Query(
        "auto", description="fine: every sample (the last hour at the default interval); coarse: one-minute "
        "averages (the last 24 hours); auto: fine when it reaches back to `since`, else coarse"),
) -> dict[str, Any]:
    """The VM's series as columns (``t`` in Unix seconds, one list per figure, ``null`` where there is no
    value, e.g. the first CPU % after a start). ``enabled: false`` when sampling is off."""
    history = sampler.history.get(vm.uuid)
    body: dict[str, Any] = {
        "vm_uuid": vm.uuid, "enabled": sampler.enabled, "interval": sampler.interval,
        "running": bool(history and history.running), "vcpus": history.vcpus if history else None,
        "stale": bool(history and history.running and history.stale),
    }
    if history is None:
        body.update(resolution="fine", step=sampler.interval, series={"t": [], **{name: [] for name in FIELDS}})
        return body
    ring = history.fine
    if resolution == "coarse" or (resolution == "auto" and (oldest := ring.oldest) is not None and since < oldest
                                  and ring.count == ring.capacity):
        ring = history.coarse
    fine = ring is history.fine
    newest = ring.newest
    if newest is not None and since > newest:
        # The caller holds points this series does not (the clock was set back and the series began anew, or
        # another server of a cluster answered before): the whole series, which the page takes in their place.
        since = 0.0
    body.update(resolution="fine" if fine else "coarse", step=sampler.interval if fine else history.coarse_step,
                series=ring.since(since), latest=_latest(history))
    return body


async def _running_seen_by(principal: Principal, sampler: StatsSampler, hypervisor: Hypervisor) -> list[VmHistory]:
    """The running VMs' histories ``principal`` may see: a VM one may not see does not exist, not even as a
    count."""
    running = sampler.history.running()
    if not principal.is_admin and running:
        visible = {vm.uuid for vm in await hypervisor.list_vms() if principal.may_access(vm.owner)}
        running = [history for history in running if history.uuid in visible]
    return running


@router.get("/api/stats/vms", responses=_ERRORS)
async def latest_vm_stats(principal: CurrentUser, sampler: SamplerDep, hypervisor: HypervisorDep) -> dict[str, Any]:
    """The latest figures of every running VM the user may see, by UUID (for the VM list)."""
    running = await _running_seen_by(principal, sampler, hypervisor)
    return {
        "enabled": sampler.enabled, "interval": sampler.interval,
        "vms": {history.uuid: {"vcpus": history.vcpus, **_latest(history)} for history in running},
    }


@router.get("/api/host/stats", responses=_ERRORS)
async def host_stats(principal: CurrentUser, sampler: SamplerDep, hypervisor: HypervisorDep,
                     settings: SettingsDep) -> dict[str, Any]:
    """The host's CPUs and CPU % (busy share of all CPUs over the last sampling interval; null while
    sampling is off or before two samples), memory, the space of limen's storage pool, and how many of the
    VMs the user may see run (``running_vms``: an administrator's count is every VM's)."""
    figures = await hypervisor.connection.call("host_stats", lambda conn: read_host(conn, settings.storage_pool))
    return {
        "cpus": figures.cpus,
        "cpu_percent": sampler.host_cpu_percent,
        "memory_total_bytes": figures.memory_total_bytes,
        "memory_available_bytes": figures.memory_available_bytes,
        "storage_pool": {
            "name": figures.pool_name,
            "capacity_bytes": figures.pool_capacity_bytes,
            "allocation_bytes": figures.pool_allocation_bytes,
            "available_bytes": figures.pool_available_bytes,
        },
        "running_vms": await _running_count(principal, sampler, hypervisor),
    }


async def _running_count(principal: Principal, sampler: StatsSampler, hypervisor: Hypervisor) -> int:
    """How many of the VMs ``principal`` may see run: from the sampler's last rounds, or, with sampling off
    or before its first round, from libvirt's list (it said 0 with VMs running)."""
    if sampler.enabled and sampler.history.rounds:
        return len(await _running_seen_by(principal, sampler, hypervisor))
    vms = await hypervisor.list_vms()
    return sum(1 for vm in vms if vm.state == VmState.RUNNING and principal.may_access(vm.owner))

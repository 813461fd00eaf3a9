"""REST routes for the libvirt hosts (admins only): list them with their health, add, remove, drain.

The registry is in the database (:mod:`limen.host_registry`); each change is applied to this process's
host pool at once, and other limen processes on the database pick it up within HOST_SYNC_INTERVAL.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from limen import host_registry
from limen.action_details import migrate_hosts
from limen.api.body_rules import body_rules
from limen.api.deps import AccessDep, AdminUser, HypervisorDep
from limen.api.schemas import ErrorBody
from limen.api.strict_json import StrictJsonRoute
from limen.errors import ErrorCode, LimenError
from limen.hypervisor import Hypervisor
from limen.hypervisor.hosts import DEFAULT_HOST, HostLink
from limen.hypervisor.models import HostFigures

log = logging.getLogger("limen.api")
router = APIRouter(route_class=StrictJsonRoute, prefix="/api/hosts", tags=["hosts"])
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 422)}


class HostIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelled console_address is refused, not dropped

    name: str = Field(description="Letters, digits, '_', '.', '-'; at most 63 characters")
    uri: str = Field(description="A libvirt URI: qemu+tcp://…, qemu+ssh://…, qemu+tls://…, qemu:///system, test:///…")
    console_address: str | None = Field(
        None, description="Where browsers' consoles reach its VMs' VNC servers; default: the URI's host")


class DrainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # {"drain": false} drained the host: its default is True

    draining: StrictBool = Field(True, description="False takes the host back into placement")


class HostOut(BaseModel):
    name: str
    uri: str
    console_address: str | None
    default: bool = Field(description="The host of LIMEN_LIBVIRT_URI (cannot be removed)")
    draining: bool = Field(description="Keeps its VMs, takes no new ones")
    available: bool = Field(description="False: its last call passed LIMEN_LIBVIRT_TIMEOUT or failed to connect")
    last_error: str | None
    vm_count: int | None = Field(description="The VMs defined there, asked now; null when it does not answer")
    memory_mib: int | None = Field(description="The host's memory; null when it does not answer")
    free_memory_mib: int | None = Field(description="Memory not given to its VMs (those stopped too); placement "
                                        "puts a new VM on the host with the most")

    @classmethod
    def of(cls, link: HostLink, figures: HostFigures | None) -> HostOut:
        return cls(name=link.name, uri=link.config.uri, console_address=link.console_address,
                   default=link.name == DEFAULT_HOST, draining=link.config.draining, available=link.available,
                   last_error=link.last_error, vm_count=figures.vm_count if figures else None,
                   memory_mib=figures.memory_mib if figures else None,
                   free_memory_mib=figures.free_memory_mib if figures else None)


@body_rules(HostIn)
async def _host_rules(_request: Request, body: HostIn, _failed: frozenset[str]) -> None:
    """The host's name, URI and console address rules (the add's), beside the body's type errors."""
    host_registry.check_host(body.name, body.uri, body.console_address)


@router.get("", response_model=list[HostOut], responses=_ERRORS)
async def list_hosts(_admin: AdminUser, hypervisor: HypervisorDep) -> list[HostOut]:
    figures = await hypervisor.host_figures()
    return [HostOut.of(link, figures.get(link.name)) for link in hypervisor.hosts.links]


@router.post("", response_model=HostOut, status_code=201, responses=_ERRORS)
async def add_host(body: HostIn, admin: AdminUser, access: AccessDep, hypervisor: HypervisorDep) -> HostOut:
    """Registers a host and answers it as the list would: its figures asked now, null when it does not answer
    (it need not answer yet: it is listed as unavailable until it does)."""
    config = await access.db.in_thread(functools.partial(
        host_registry.add_host, access.db, body.name, body.uri, body.console_address,
        default_uri=hypervisor.settings.libvirt_uri))
    link = hypervisor.hosts.add(config)
    log.info("host added", extra={"event": "host_add", "host": config.name, "uri": config.uri, "user": admin.name})
    figures = await hypervisor.host_figures([link])
    return HostOut.of(link, figures.get(link.name))


@router.delete("/{name}", status_code=204, responses=_ERRORS)
async def remove_host(name: str, admin: AdminUser, access: AccessDep, hypervisor: HypervisorDep) -> None:
    """Refused (HOST_IN_USE) for the default host, for a host that has VMs (or had them when it last
    answered) and for one a move (of any replica) goes to or from."""
    await refuse_busy_host(hypervisor, name)
    # A move's VM is on neither host's list for a while (its target's definition comes last): removing the
    # target then left the VM defined there and listed nowhere, removing the source its copy behind.
    for action in await access.audit.pending_actions("migrate"):
        if name in migrate_hosts(action.details):
            raise LimenError(ErrorCode.HOST_IN_USE, f"VM {action.vm_name!r} is moving {action.details}: retry once "
                                                    "it is done")
    await access.db.in_thread(functools.partial(host_registry.remove_host, access.db, name))
    await hypervisor.hosts.discard(name)
    log.info("host removed", extra={"event": "host_remove", "host": name, "user": admin.name})


@router.post("/{name}/drain", response_model=HostOut, responses=_ERRORS)
async def drain_host(name: str, body: DrainIn, admin: AdminUser, access: AccessDep,
                     hypervisor: HypervisorDep) -> HostOut:
    if name == DEFAULT_HOST:
        raise LimenError(ErrorCode.HOST_IN_USE, "the default host's settings come from LIMEN_LIBVIRT_URI")
    config = await access.db.in_thread(functools.partial(host_registry.set_draining, access.db, name,
                                                           body.draining))
    link = hypervisor.hosts.add(config)
    log.info("host drain changed", extra={"event": "host_drain", "host": name, "draining": body.draining,
                                          "user": admin.name})
    figures = await hypervisor.host_figures([link])
    return HostOut.of(link, figures.get(name))


async def refuse_busy_host(hypervisor: Hypervisor, name: str) -> None:
    if name == DEFAULT_HOST:
        raise LimenError(ErrorCode.HOST_IN_USE, "the default host is LIMEN_LIBVIRT_URI and cannot be removed")
    link = hypervisor.hosts.get(name)
    vms = link.known_vms
    if link.available:
        try:
            vms = await hypervisor.list_vms_on(link)
        except LimenError:
            vms = link.known_vms
    if not link.listed and not link.config.draining:  # down since this limen started: VMs unknown, not none
        raise link.unavailable(f"host {name!r} has not answered since this limen started ({link.last_error}): "
                               "whether VMs are on it is unknown. Remove it once it answers, or drain it first to "
                               "remove it anyway (its VMs, if any, are then no longer listed)")
    if vms:
        names = ", ".join(vm.name for vm in vms[:10])
        raise LimenError(ErrorCode.HOST_IN_USE, f"host {name!r} has {len(vms)} VM(s): {names}")

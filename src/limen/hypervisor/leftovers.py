"""What a create that never finished left in libvirt, and its removal.

A create of VM ``NAME`` (:meth:`Hypervisor.create_vm`) makes the pool volume ``NAME-disk0.qcow2`` (when
it has a disk), then defines the domain ``NAME`` with the create's token in its limen metadata. If its
server dies between the two, or before it could record the outcome, :func:`remove_create_leftovers` undoes
it, given the name and the create's :class:`CreateMark` (token, disk or not), which its pending audit row
holds (:mod:`limen.recovery`). It removes only what is provably that create's:

- the domain ``NAME`` only if its metadata carries that token and it is not running (someone started it:
  it is in use, so it stays);
- the volume ``NAME-disk0.qcow2`` only if the create had a disk and no defined domain uses it. The caller
  guarantees that the name and the volume's name were free when the create's row was written and that no
  other create of the name ran since (one pending create per name), so such a volume is that create's.

Idempotent: running it twice, or on a create that left nothing, removes nothing more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import libvirt

from limen.hypervisor import storage
from limen.hypervisor.domain_xml import parse_domain_xml
from limen.hypervisor.service import Hypervisor

_MARK = re.compile(r"^token=([0-9a-f]{32}) disk=(yes|no)(?: volume=(\S+))?$")


@dataclass(frozen=True, slots=True)
class CreateMark:
    """What recognises a create's leftovers: its random token, whether it makes a disk volume, and which
    (``volume``; rows written before it was recorded mean the VM's plain ``NAME-disk0.qcow2``)."""

    token: str
    with_disk: bool
    volume: str | None = None

    def as_details(self) -> str:
        """The text kept in the pending create's audit row (``details``)."""
        volume = f" volume={self.volume}" if self.volume is not None else ""
        return f"token={self.token} disk={'yes' if self.with_disk else 'no'}{volume}"

    @classmethod
    def parse(cls, details: str) -> CreateMark | None:
        match = _MARK.fullmatch(details)
        return cls(match[1], match[2] == "yes", match[3]) if match else None


_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
)


def _disk_paths(dom: libvirt.virDomain) -> set[str]:
    """Every disk file the domain names, in its persistent definition and (if running) its live one."""
    paths: set[str] = set()
    flags = [libvirt.VIR_DOMAIN_XML_INACTIVE]
    if dom.isActive():
        flags.append(0)
    for flag in flags:
        for disk in parse_domain_xml(dom.XMLDesc(flag)).disks:
            if disk.path:
                paths.add(disk.path)
    return paths


def _paths_in_use(conn: libvirt.virConnect) -> set[str]:
    used: set[str] = set()
    for dom in conn.listAllDomains(0):
        try:
            used |= _disk_paths(dom)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # undefined while we looked: uses nothing
                raise
    return used


def _remove(conn: libvirt.virConnect, pool_name: str, vm_name: str, mark: CreateMark) -> list[str]:
    removed: list[str] = []
    try:
        dom: libvirt.virDomain | None = conn.lookupByName(vm_name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise
        dom = None
    if dom is not None and not dom.isActive():
        parsed = parse_domain_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        if parsed.create_token == mark.token:
            try:
                dom.undefineFlags(_UNDEFINE_FLAGS)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                    raise
                dom.undefine()
            removed.append(f"domain {vm_name}")
    if not mark.with_disk:
        return removed  # a volume of that name is someone else's (a disk kept when its VM was deleted)
    volume = storage.find_volume(conn, pool_name, mark.volume or storage.disk_volume_name(vm_name))
    if volume is None:
        return removed
    path = volume.path()
    if path in _paths_in_use(conn):
        return removed
    try:
        volume.delete(0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:  # another sweeper was quicker
            raise
    else:
        removed.append(f"volume {path}")
    return removed


async def remove_create_leftovers(hypervisor: Hypervisor, vm_name: str, mark: CreateMark) -> list[str]:
    """Removes what the create ``mark`` of ``vm_name`` left (see the module docstring); returns what was
    removed, in words. Raises the usual LimenErrors when libvirt does not answer: then nothing is known
    to be clean, and the caller keeps the create pending to try again."""
    pool_name = hypervisor.settings.storage_pool
    removed: list[str] = []
    # The create may have placed the VM on any host: each is swept (an unavailable one raises, and the
    # create stays pending until it answers again).
    for link in hypervisor.hosts.links:
        removed += await hypervisor.hosts.on_host(
            link.name, "remove_create_leftovers", lambda conn: _remove(conn, pool_name, vm_name, mark),
            subject=vm_name, timeout=hypervisor.settings.libvirt_timeout * 2,
        )
    return removed

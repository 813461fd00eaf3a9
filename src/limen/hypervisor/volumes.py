"""The volumes of limen's storage pool on each host, which VM uses each, and the deletion of one none uses.

A VM deleted with its disks kept (``DELETE /api/vms/{id}`` without ``delete_disks``) leaves its volumes in
the pool (LIMEN_STORAGE_POOL); this is where an administrator finds them and deletes them.

In use, read from libvirt at every call (never guessed from names): a volume is in use when a VM of its host
names its file, in the definition it runs with (its live XML, with the backing chain libvirt reports), the
one it starts with next, or one its snapshots keep (a revert puts that one back); and when another volume
of the pool is backed by it (a qcow2 overlay), which then needs it whoever uses that one.

Images of the ISO library are not disks: when the pool's directory holds the ISO directory (or is it),
libvirt lists them as volumes; they are left out here, since the ISO library lists and deletes them, and
refuses while a CD-ROM holds one.

Deleting beside a create: a create makes its volume, then defines its VM, both under the naming lock
(:func:`limen.hypervisor.service.naming`); the deletion reads the VMs and deletes under the same lock, so in
this process a create's new volume is never seen without its VM. Creates and moves of other processes
are the caller's to check (``check_claims``: :mod:`limen.volume_claims`), after the volume was seen and
before the lock: see :func:`delete_volume`.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import libvirt

from limen.errors import ErrorCode, LimenError
from limen.hypervisor import storage
from limen.hypervisor.domain_xml import snapshot_domain_xml
from limen.hypervisor.hosts import DEFAULT_HOST
from limen.hypervisor.service import Hypervisor, naming

_NO_SNAPSHOT = getattr(libvirt, "VIR_ERR_NO_DOMAIN_SNAPSHOT", 72)


@dataclass(frozen=True, slots=True, order=True)
class VolumeUser:
    """A VM that uses a volume."""

    name: str
    uuid: str


@dataclass(frozen=True, slots=True)
class PoolVolume:
    name: str
    host: str
    path: str
    format: str | None  # qcow2, raw, … as libvirt reads it
    capacity_bytes: int
    allocation_bytes: int
    used_by: tuple[VolumeUser, ...] = ()
    backing_for: tuple[str, ...] = ()  # volumes of the pool backed by this one (qcow2 overlays)

    @property
    def in_use(self) -> bool:
        return bool(self.used_by or self.backing_for)


def _disk_files(domain_xml: str, conn: libvirt.virConnect) -> Iterator[str]:
    """Every file the disks of ``domain_xml`` name: each source, down its backing chain, CD-ROMs too; a
    ``<source pool= volume=>`` as the path of that volume."""
    root = ET.fromstring(domain_xml)
    for source in root.iterfind("devices/disk//source"):
        path = source.get("file") or source.get("dev")
        if path:
            yield path
        elif source.get("pool") and source.get("volume"):
            volume = storage.find_volume(conn, source.get("pool", ""), source.get("volume", ""))
            if volume is not None:
                yield volume.path()


def _definitions(dom: libvirt.virDomain) -> list[str]:
    """The domain XMLs a VM may run with: live, next start's, and each snapshot's."""
    xmls = [dom.XMLDesc(0)]
    if dom.isActive() and dom.isPersistent():
        xmls.append(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    for snap in dom.listAllSnapshots(0):
        try:
            kept = snapshot_domain_xml(snap.getXMLDesc(0))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != _NO_SNAPSHOT:
                raise
            continue  # deleted while we read it: it holds nothing any more
        if kept is not None:
            xmls.append(kept)
    return xmls


def users_by_path(conn: libvirt.virConnect) -> dict[str, set[VolumeUser]]:
    """Every file a VM of ``conn``'s host uses (:func:`_definitions`), with the VMs that use it."""
    users: dict[str, set[VolumeUser]] = {}
    for dom in conn.listAllDomains(0):
        try:
            user = VolumeUser(name=dom.name(), uuid=dom.UUIDString())
            for xml in _definitions(dom):
                for path in _disk_files(xml, conn):
                    users.setdefault(path, set()).add(user)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # undefined while we read it: uses nothing
                raise
    return users


def _is_iso_image(path: str, iso_dir: Path) -> bool:
    return iso_dir.resolve() in Path(path).resolve().parents


def _read_volume(volume: libvirt.virStorageVol, host: str) -> tuple[PoolVolume, str | None]:
    """The volume as it is (no users yet), and the file it is backed by (None: none)."""
    target = ET.fromstring(volume.XMLDesc(0))
    _kind, capacity, allocation = volume.info()
    fmt = target.find("target/format")
    volume_info = PoolVolume(name=volume.name(), host=host, path=volume.path(),
                             format=fmt.get("type") if fmt is not None else None,
                             capacity_bytes=int(capacity), allocation_bytes=int(allocation))
    return volume_info, target.findtext("backingStore/path") or None


def _pool_volumes(conn: libvirt.virConnect, pool_name: str, host: str,
                  iso_dir: Path) -> tuple[list[PoolVolume], dict[str, str]]:
    """The volumes of the pool ``pool_name`` on ``conn``'s host by name, each with the volumes it backs but
    no users (no VM is read), and each overlay's path with the path it is backed by. Nothing when the pool
    is missing or not running (no disk was ever made on that host)."""
    try:
        pool = conn.storagePoolLookupByName(pool_name)
        if not pool.isActive():
            return [], {}
        volumes = pool.listAllVolumes(0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return [], {}
        raise
    read: dict[str, PoolVolume] = {}
    backing: dict[str, str] = {}  # overlay path → the path it is backed by
    for volume in volumes:
        try:
            info, backed_by = _read_volume(volume, host)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:  # deleted while we read it
                raise
            continue
        if _is_iso_image(info.path, iso_dir):
            continue
        read[info.path] = info
        if backed_by is not None:
            backing[info.path] = backed_by
    for overlay, base in backing.items():
        if base in read:
            read[base] = replace(read[base], backing_for=(*read[base].backing_for, read[overlay].name))
    return sorted((replace(info, backing_for=tuple(sorted(info.backing_for))) for info in read.values()),
                  key=lambda info: info.name), backing


def _users_down_backing_chains(users: dict[str, set[VolumeUser]], backing: dict[str, str]) -> None:
    """Adds each overlay's users (``users``: file → VMs) to every file down its backing chain: whoever uses an
    overlay uses its whole chain."""
    for overlay, base in backing.items():
        seen = {overlay}
        while base not in seen:
            seen.add(base)
            users.setdefault(base, set()).update(users.get(overlay, set()))
            base = backing.get(base, base)


def read_pool(conn: libvirt.virConnect, pool_name: str, host: str, iso_dir: Path) -> list[PoolVolume]:
    """The volumes of the pool ``pool_name`` on ``conn``'s host, with their users, by name; none when the
    pool is missing or not running (no disk was ever made on that host)."""
    volumes, backing = _pool_volumes(conn, pool_name, host, iso_dir)
    if not volumes:
        return []  # no VM to read for
    users = users_by_path(conn)
    _users_down_backing_chains(users, backing)
    return [replace(volume, used_by=tuple(sorted(users.get(volume.path, ())))) for volume in volumes]


def _find(volumes: list[PoolVolume], name: str, pool_name: str, host: str) -> PoolVolume:
    for volume in volumes:
        if volume.name == name:
            return volume
    raise LimenError(ErrorCode.VOLUME_NOT_FOUND, f"no volume {name[:120]!r} in pool {pool_name!r} on host {host!r}")


def _delete_unused(conn: libvirt.virConnect, pool_name: str, name: str, host: str, iso_dir: Path,
                   lock_timeout: float) -> PoolVolume:
    with naming(lock_timeout):
        volume = _find(read_pool(conn, pool_name, host, iso_dir), name, pool_name, host)  # its users, now
        if volume.used_by:
            vms = ", ".join(f"{user.name} ({user.uuid})" for user in volume.used_by)
            raise LimenError(ErrorCode.VOLUME_IN_USE, f"volume {name!r} on host {host!r} is a disk of VM {vms}")
        if volume.backing_for:
            raise LimenError(ErrorCode.VOLUME_IN_USE, f"volume {name!r} on host {host!r} backs volume "
                                                      f"{', '.join(volume.backing_for)}")
        try:
            conn.storageVolLookupByPath(volume.path).delete(0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
            raise LimenError(ErrorCode.VOLUME_NOT_FOUND, f"volume {name!r} on host {host!r} was deleted "
                                                         "meanwhile") from None
        return volume


async def list_volumes(hypervisor: Hypervisor, host: str | None = None) -> list[PoolVolume]:
    """The pool's volumes on every host (or on ``host``), by host then name. A host that does not answer is
    HYPERVISOR_UNAVAILABLE naming it (ask for the others with ``host``)."""
    settings = hypervisor.settings
    names = [host] if host is not None else [link.name for link in hypervisor.hosts.links]
    listed: list[PoolVolume] = []
    for name in names:
        listed += await hypervisor.hosts.on_host(name, "list_volumes", functools.partial(
            read_pool, pool_name=settings.storage_pool, host=name, iso_dir=settings.iso_dir))
    return sorted(listed, key=lambda volume: (volume.host != DEFAULT_HOST, volume.host, volume.name))


async def delete_volume(hypervisor: Hypervisor, name: str, *, host: str = DEFAULT_HOST,
                        check_claims: Callable[[PoolVolume], Awaitable[None]]) -> PoolVolume:
    """Deletes the volume ``name`` of host ``host``'s pool if no VM uses it; returns it as it was.

    VOLUME_NOT_FOUND when there is none (an ISO library image is none), VOLUME_IN_USE when a VM uses it (or a
    volume is backed by it), HYPERVISOR_UNAVAILABLE when the host does not answer. ``check_claims`` raises
    when another process's create or move may be about to use it; it runs after the volume was seen and
    before it is checked and deleted, so that such a create is either still pending then (refused) or has
    defined its VM before the check reads the VMs (in use)."""
    settings = hypervisor.settings
    pool, iso_dir = settings.storage_pool, settings.iso_dir
    seen = await hypervisor.hosts.on_host(  # the pool alone, no VM read: the check under the lock reads them
        host, "find_volume", lambda conn: _find(_pool_volumes(conn, pool, host, iso_dir)[0], name, pool, host))
    await check_claims(seen)
    return await hypervisor.hosts.on_host(
        host, "delete_volume",
        lambda conn: _delete_unused(conn, pool, name, host, iso_dir, settings.libvirt_timeout),
        timeout=settings.libvirt_timeout * 2)

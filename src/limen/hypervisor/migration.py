"""Moving a VM to another host.

A running VM moves live with libvirt's own migration, its disks copied as it runs (NBD,
``VIR_MIGRATE_NON_SHARED_DISK``) into volumes made first in the target host's pool: peer-to-peer (the
source libvirtd talks to the target's) when the target has a network URI, else managed by limen, which holds
both connections (the target is a local URI such as qemu:///system, which a remote source daemon cannot
reach). A stopped VM moves cold: its disks are streamed through limen's connections (libvirt's volume
download and upload), then it is defined on the target. Either way the VM's VNC listens on the target's
console address afterwards, and its volumes on the source are deleted once the target has it.

Nothing holds a stopped VM while its disks stream (libvirt has no job for it, and another limen, or
``virsh``, may start it): before the target's definition and again before the source's is removed, the
source is checked to be as it was (stopped, without snapshots, each disk's volume unmodified since). A VM that
changed is not moved: a copy of a disk written meanwhile is torn, and the source's disks would have gone.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import libvirt

from limen.errors import ErrorCode, LimenError
from limen.hypervisor import storage
from limen.hypervisor.models import DiskDevice

log = logging.getLogger("limen.hypervisor")

CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class SourceDisk:
    target: str  # vda
    path: str
    volume_name: str
    capacity_bytes: int
    format: str
    modified: str | None = None  # the volume's mtime as its pool tells it (None: the pool does not say)


@dataclass(frozen=True, slots=True)
class Departure:
    """What the source host says of the VM before it moves."""

    uuid: str
    name: str
    running: bool
    xml: str  # the persistent definition
    disks: tuple[SourceDisk, ...]
    autostart: bool = False  # libvirt keeps it beside the definition: neither a migration nor a define carries it


@dataclass(frozen=True, slots=True)
class Arrival:
    """Where the VM goes: the target's URI, pool, and the address its VNC and migration streams use."""

    uri: str
    pool_name: str
    pool_dir: Path
    address: str
    host: str = ""  # its name in limen


def is_network_uri(uri: str) -> bool:
    return bool(urlsplit(uri).hostname)


def read_departure(conn: libvirt.virConnect, dom: libvirt.virDomain) -> Departure:
    if dom.snapshotNum(0) > 0:
        raise LimenError(ErrorCode.VM_HAS_SNAPSHOTS,
                         f"VM {dom.name()!r} has snapshots, which do not move with it: delete them first")
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    disks = []
    for disk in ET.fromstring(xml).iter("disk"):
        source, target, driver = disk.find("source"), disk.find("target"), disk.find("driver")
        if disk.get("device", "disk") != DiskDevice.DISK.value or source is None or target is None:
            continue
        path = source.get("file")
        if not path:
            continue
        volume = storage.volume_at(conn, path)
        if volume is None:
            raise LimenError(ErrorCode.VM_OPERATION_FAILED,
                             f"disk {target.get('dev')} ({path}) is in no storage pool; limen moves pool volumes only")
        disks.append(SourceDisk(target=target.get("dev", ""), path=path, volume_name=volume.name(),
                                capacity_bytes=int(volume.info()[1]),
                                format=driver.get("type", "raw") if driver is not None else "raw",
                                modified=_modified(volume)))
    return Departure(uuid=dom.UUIDString(), name=dom.name(), running=bool(dom.isActive()), xml=xml,
                     disks=tuple(disks), autostart=bool(dom.autostart()))


def _modified(volume: libvirt.virStorageVol) -> str | None:
    return ET.fromstring(volume.XMLDesc(0)).findtext("target/timestamps/mtime")


def check_unchanged(conn: libvirt.virConnect, departure: Departure) -> libvirt.virDomain:
    """The stopped VM on its source host as :func:`read_departure` found it, or VM_OPERATION_FAILED saying
    what changed: started, given a snapshot, or a disk written (its volume's mtime moved)."""
    dom = conn.lookupByUUIDString(departure.uuid)
    changed = []
    if dom.isActive():
        changed.append("it was started")
    if dom.snapshotNum(0) > 0:
        changed.append("a snapshot was taken of it")
    for disk in departure.disks:
        volume = storage.volume_at(conn, disk.path)
        if volume is None:
            changed.append(f"its disk {disk.target} was deleted")
        elif disk.modified is not None and _modified(volume) != disk.modified:
            changed.append(f"its disk {disk.target} was written")
    if changed:
        raise LimenError(ErrorCode.VM_OPERATION_FAILED, (
            f"VM {departure.name!r} changed while its disks were copied ({', '.join(changed)}): it was not "
            "moved and stays where it was; move it again"))
    return dom


def leave_source(conn: libvirt.virConnect, departure: Departure) -> None:
    """The cold move's last step on the source: the VM, checked unchanged once more, is undefined there (its
    volumes are removed after, by the caller, only once this succeeded). One started between that check and
    the undefine runs on, transient: it is defined again as it was, and the move fails."""
    dom = check_unchanged(conn, departure)
    dom.undefine()
    try:
        started = bool(dom.isActive())
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise
        return  # gone, as it should be
    if started:
        conn.defineXML(departure.xml)
        raise LimenError(ErrorCode.VM_OPERATION_FAILED, (
            f"VM {departure.name!r} was started as its move ended: it was not moved and stays where it was; "
            "move it again"))


def undefine_arrival(conn: libvirt.virConnect, departure: Departure) -> None:
    """Undoes a cold move's definition on the target (its volumes are removed apart)."""
    try:
        conn.lookupByUUIDString(departure.uuid).undefine()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise


def make_volumes(conn: libvirt.virConnect, departure: Departure, arrival: Arrival) -> dict[str, str]:
    """Empty volumes of the same names, sizes and formats in the target's pool; source path → new path."""
    pool = storage.ensure_pool(conn, arrival.pool_name, arrival.pool_dir)
    made: dict[str, str] = {}
    try:
        for disk in departure.disks:
            volume = ET.Element("volume")
            ET.SubElement(volume, "name").text = disk.volume_name
            ET.SubElement(volume, "capacity", unit="bytes").text = str(disk.capacity_bytes)
            ET.SubElement(ET.SubElement(volume, "target"), "format", type=disk.format)
            if _holds_volume(pool, disk.volume_name):
                # Most often a copy an interrupted move (limen stopped, a host that hung) left there: said
                # with the way out, where it was libvirt's "storage volume ... exists already" alone.
                raise LimenError(ErrorCode.VM_OPERATION_FAILED, (
                    f"host {arrival.host!r} holds a volume named {disk.volume_name!r} already (a copy an "
                    "interrupted move left?): if no VM uses it, delete it (the Volumes page, or limen volumes "
                    f"delete {disk.volume_name} --host {arrival.host}), then move the VM again"))
            made[disk.path] = pool.createXML(ET.tostring(volume, encoding="unicode"), 0).path()
    except (libvirt.libvirtError, LimenError):
        remove_volumes(conn, list(made.values()))
        raise
    return made


def _holds_volume(pool: libvirt.virStoragePool, name: str) -> bool:
    try:
        pool.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return False
        raise
    return True


def remove_volumes(conn: libvirt.virConnect, paths: list[str]) -> None:
    for path in paths:
        volume = storage.volume_at(conn, path)
        if volume is not None:
            try:
                volume.delete(0)
            except libvirt.libvirtError as exc:
                log.warning("cannot delete volume %s: %s", path, exc, extra={"event": "migrate_cleanup_failed"})


def arrival_xml(xml: str, paths: dict[str, str], vnc_listen: str) -> str:
    """The definition with the disks at their new paths and VNC listening where the target wants it."""
    root = ET.fromstring(xml)
    for source in root.iter("source"):
        if source.get("file") in paths:
            source.set("file", paths[source.get("file", "")])
    for graphics in root.iter("graphics"):
        if graphics.get("type") == "vnc":
            graphics.set("listen", vnc_listen)
            for listen in graphics.findall("listen"):
                if listen.get("type") == "address":
                    listen.set("address", vnc_listen)
            if graphics.get("autoport", "yes") == "yes":
                graphics.set("port", "-1")
    return ET.tostring(root, encoding="unicode")


def migrate_live(dom: libvirt.virDomain, departure: Departure, arrival: Arrival, xml: str) -> None:
    """Live migration with the disks copied; peer to peer to a network URI, else managed by this process."""
    flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
             | libvirt.VIR_MIGRATE_NON_SHARED_DISK)
    params: dict[str, str | list[str]] = {
        libvirt.VIR_MIGRATE_PARAM_DEST_XML: xml,
        libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: xml,
        libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{_bracketed(arrival.address)}",
        libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: arrival.address,
    }
    if departure.disks:
        params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = [disk.target for disk in departure.disks]
    if is_network_uri(arrival.uri):
        dom.migrateToURI3(arrival.uri, params, flags | libvirt.VIR_MIGRATE_PEER2PEER)
        return
    target = libvirt.open(arrival.uri)
    try:
        dom.migrate3(target, params, flags)
    finally:
        target.close()


def copy_cold(conn: libvirt.virConnect, departure: Departure, arrival: Arrival, xml: str,
              paths: dict[str, str]) -> None:
    """Streams each disk to its new volume through this process, then defines the VM on the target."""
    target = libvirt.open(arrival.uri)
    try:
        for disk in departure.disks:
            source_volume = conn.storageVolLookupByPath(disk.path)
            target_volume = target.storageVolLookupByPath(paths[disk.path])
            download, upload = conn.newStream(0), target.newStream(0)
            source_volume.download(download, 0, 0, 0)
            target_volume.upload(upload, 0, 0, 0)
            try:
                while chunk := download.recv(CHUNK):
                    if isinstance(chunk, int):  # -2: would block; a blocking stream does not say it
                        raise LimenError(ErrorCode.VM_OPERATION_FAILED, "the disk stream stalled")
                    _send(upload, chunk)
                download.finish()
                upload.finish()
            except BaseException:
                for stream in (download, upload):
                    try:
                        stream.abort()
                    except libvirt.libvirtError:
                        pass
                raise
        check_unchanged(conn, departure)
        target.defineXML(xml)
    finally:
        target.close()


def _send(stream: libvirt.virStream, data: bytes) -> None:
    while data:
        sent = stream.send(data)
        if sent < 0:
            raise LimenError(ErrorCode.VM_OPERATION_FAILED, "the disk stream to the target stalled")
        data = data[sent:]


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address

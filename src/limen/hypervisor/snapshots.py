"""VM snapshots: internal qcow2 snapshots through libvirt, with the memory state of a running VM.

A snapshot lives inside the VM's qcow2 disk files (QEMU's ``savevm``; for a stopped VM ``qemu-img
snapshot``), and libvirt keeps its metadata: name, description, parent, the VM's state and definition.
A running VM's snapshot holds its memory too, so a revert resumes it exactly where it was; a stopped
VM's snapshot is disks only, and reverting to it leaves the VM stopped.

The limits are QEMU's: internal snapshots need every disk in qcow2 (a raw disk cannot hold one:
SNAPSHOT_UNSUPPORTED, with the advice to convert it), and a VM without a disk has nowhere to keep
one. Read-only CD-ROMs are left out of the snapshot (libvirt marks them ``snapshot='no'``).

Every libvirt call is bounded like the rest (:mod:`limen.hypervisor.connection`); taking a snapshot of a
running VM and reverting to one copy memory and get bounds of their own (:data:`TAKE_TIMEOUT`,
:data:`REVERT_TIMEOUT`); the API runs the taking in the background (:mod:`limen.hypervisor.operations`).
The parts that need no libvirt (XML in and out, the disk check, the tree order) are plain functions.
"""

from __future__ import annotations

import contextlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import libvirt

from limen.errors import ErrorCode, LimenError, Rule, ValidationFailed, rule
from limen.hypervisor.domain_xml import parse_domain_xml, snapshot_domain_xml
from limen.hypervisor.models import DiskDevice
from limen.hypervisor.ownership import owner_facts, write_owner
from limen.hypervisor.service import Hypervisor, _lookup, check_name

DESCRIPTION_MAX = 1000
# Saving or loading a running VM's memory takes about a second per few hundred MiB on a busy disk.
TAKE_TIMEOUT = 600.0
REVERT_TIMEOUT = 300.0
_NO_SNAPSHOT = getattr(libvirt, "VIR_ERR_NO_DOMAIN_SNAPSHOT", 72)


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    name: str
    description: str
    parent: str | None
    created_at: datetime
    vm_state: str  # the VM's state when it was taken, as libvirt says it: running, shutoff, paused, …
    with_memory: bool  # a running VM's memory is in it: a revert resumes the VM
    current: bool  # the snapshot the VM was last reverted to or taken from
    # The VM's vCPUs and memory in the definition the snapshot keeps (what a revert runs it with); None when
    # it keeps none.
    vcpus: int | None = None
    memory_mib: int | None = None


def check_snapshot_name(name: str) -> None:
    """Snapshot names follow the VM name rule (VALIDATION_ERROR on ``name``)."""
    check_name(name, "name")


# The only characters from U+0020 up that XML 1.0 leaves out, besides the surrogates (never in a body: see
# limen.api.strict_json).
_NOT_IN_XML = frozenset("\ufffe\uffff")


def check_description(description: str) -> None:
    if len(description) > DESCRIPTION_MAX:
        raise ValidationFailed("description", f"at most {DESCRIPTION_MAX} characters",
                               rule=rule(Rule.LENGTH, min=0, max=DESCRIPTION_MAX))
    if any(ord(char) < 32 and char not in "\n\t" for char in description):
        raise ValidationFailed("description", "must not hold control characters", rule=rule(Rule.NO_CONTROL_CHARS))
    if any(char in _NOT_IN_XML for char in description):
        # XML 1.0 cannot carry them: libvirt refused the snapshot's XML after the request had been accepted.
        raise ValidationFailed("description", "must not hold U+FFFE or U+FFFF (not characters)",
                               rule=rule(Rule.NO_CONTROL_CHARS))


def snapshot_xml(name: str, description: str) -> str:
    """The ``<domainsnapshot>`` that asks libvirt for a snapshot; libvirt picks internal snapshots of every
    qcow2 disk and, for a running VM, of its memory."""
    root = ET.Element("domainsnapshot")
    ET.SubElement(root, "name").text = name
    if description:
        ET.SubElement(root, "description").text = description
    return ET.tostring(root, encoding="unicode")


def parse_snapshot_xml(xml: str, *, current: bool = False) -> SnapshotInfo:
    root = ET.fromstring(xml)
    created = int(root.findtext("creationTime") or "0")
    memory = root.find("memory")
    kept = snapshot_domain_xml(xml)
    domain = parse_domain_xml(kept) if kept is not None else None
    return SnapshotInfo(
        name=root.findtext("name") or "",
        description=root.findtext("description") or "",
        parent=root.findtext("parent/name"),
        created_at=datetime.fromtimestamp(created, UTC),
        vm_state=root.findtext("state") or "unknown",
        with_memory=memory is not None and memory.get("snapshot") == "internal",
        current=current,
        vcpus=(domain.vcpus or None) if domain is not None else None,
        memory_mib=(domain.memory_mib or None) if domain is not None else None,
    )


def unsupported_reason(domain_xml: str) -> str | None:
    """Why the VM cannot have internal snapshots, or None when it can (every disk is qcow2)."""
    disks = [disk for disk in ET.fromstring(domain_xml).iterfind("devices/disk") if disk.get("device") == "disk"]
    if not disks:
        return "the VM has no disk to keep a snapshot in"
    for disk in disks:
        driver = disk.find("driver")
        fmt = driver.get("type") if driver is not None else None
        target = disk.find("target")
        dev = target.get("dev") if target is not None else "?"
        if fmt != "qcow2":
            return f"disk {dev} is {fmt or 'of unknown format'}, not qcow2: QEMU keeps internal snapshots " \
                   "in qcow2 files only"
    return None


def missing_library_isos(snapshot_xml: str, iso_dir: Path) -> list[str]:
    """The names of the ISO library's images the snapshot's CD-ROMs hold that are gone from ``iso_dir``
    (a disc from elsewhere is libvirt's to check)."""
    domain = snapshot_domain_xml(snapshot_xml)
    if domain is None:
        return []
    library = os.path.abspath(iso_dir)
    missing = []
    for disk in parse_domain_xml(domain).disks:
        if disk.device is DiskDevice.CDROM and disk.path and os.path.dirname(os.path.abspath(disk.path)) == library \
                and not os.path.exists(disk.path):
            missing.append(os.path.basename(disk.path))
    return missing


def _cdrom_discs(domain_xml: str) -> list[str | None]:
    return [disk.path for disk in parse_domain_xml(domain_xml).disks if disk.device is DiskDevice.CDROM]


def _refuse_other_disc(name: str, snapshot_xml: str, live_xml: str) -> None:
    """libvirt deletes a running VM's snapshot only while its drive holds the disc the snapshot saved ("disk
    image 'hdc' … is not the same as disk image currently used by VM", which limen said as a bare
    VM_OPERATION_FAILED): VM_MUST_BE_STOPPED, naming the disc."""
    domain = snapshot_domain_xml(snapshot_xml)
    if domain is None:
        return
    then, now = _cdrom_discs(domain), _cdrom_discs(live_xml)
    if then == now:
        return
    saved = ", ".join(os.path.basename(path) if path else "no disc" for path in then) or "no CD-ROM"
    raise LimenError(ErrorCode.VM_MUST_BE_STOPPED,
                     f"snapshot {name!r} was taken with {saved} in the CD-ROM drive, and libvirt deletes a running "
                     "VM's snapshot only with the same disc in: put it back, or stop the VM, then delete it")


def tree_order(snapshots: list[SnapshotInfo]) -> list[tuple[int, SnapshotInfo]]:
    """(depth, snapshot) depth first, the oldest first among siblings: the order a tree is drawn in.
    A snapshot whose parent is not in the list is a root."""
    names = {snap.name for snap in snapshots}
    children: dict[str | None, list[SnapshotInfo]] = {}
    for snap in snapshots:
        parent = snap.parent if snap.parent in names else None
        children.setdefault(parent, []).append(snap)
    for siblings in children.values():
        siblings.sort(key=lambda snap: (snap.created_at, snap.name))
    ordered: list[tuple[int, SnapshotInfo]] = []
    stack = [(0, snap) for snap in reversed(children.get(None, []))]
    while stack:
        depth, snap = stack.pop()
        ordered.append((depth, snap))
        stack.extend((depth + 1, child) for child in reversed(children.get(snap.name, [])))
    return ordered


def _missing(dom: libvirt.virDomain, name: str) -> LimenError:
    return LimenError(ErrorCode.SNAPSHOT_NOT_FOUND, f"VM {dom.name()!r} has no snapshot named {name[:80]!r}")


@contextlib.contextmanager
def _gone_is_missing(dom: libvirt.virDomain, name: str) -> Iterator[None]:
    """libvirt's "snapshot not found" inside, from a lookup or from a snapshot deleted by another request since
    it was looked up, as the same SNAPSHOT_NOT_FOUND (not libvirt's words with the call's name)."""
    try:
        yield
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == _NO_SNAPSHOT:
            raise _missing(dom, name) from None
        raise


def _find(dom: libvirt.virDomain, name: str) -> libvirt.virDomainSnapshot:
    if "\x00" in name:  # no snapshot has one, and libvirt's binding cannot pass it (a ValueError)
        raise _missing(dom, name)
    with _gone_is_missing(dom, name):
        return dom.snapshotLookupByName(name, 0)


def _exists(dom: libvirt.virDomain, name: str) -> bool:
    try:
        _find(dom, name)
    except LimenError:
        return False
    return True


def _info(snap: libvirt.virDomainSnapshot) -> SnapshotInfo:
    try:
        current = bool(snap.isCurrent(0))
    except libvirt.libvirtError:
        current = False
    return parse_snapshot_xml(snap.getXMLDesc(0), current=current)


def _refuse_unsupported(dom: libvirt.virDomain) -> None:
    reason = unsupported_reason(dom.XMLDesc(0))
    if reason is not None:
        raise LimenError(ErrorCode.SNAPSHOT_UNSUPPORTED, f"VM {dom.name()!r}: {reason}")


async def list_snapshots(hypervisor: Hypervisor, vm_uuid: str) -> list[SnapshotInfo]:
    """The VM's snapshots, in tree order (see :func:`tree_order`)."""

    def run(conn: libvirt.virConnect) -> list[SnapshotInfo]:
        infos = []
        for snap in _lookup(conn, vm_uuid).listAllSnapshots(0):
            try:
                infos.append(_info(snap))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != _NO_SNAPSHOT:  # deleted while we read: gone from the list
                    raise
        return [snap for _depth, snap in tree_order(infos)]

    return await hypervisor.connection.call("list_snapshots", run, subject=vm_uuid)


async def check_can_take(hypervisor: Hypervisor, vm_uuid: str, name: str, description: str) -> None:
    """Everything :func:`take_snapshot` would refuse, asked before it runs in the background: the name and
    description, a name taken (SNAPSHOT_ALREADY_EXISTS), a disk QEMU cannot snapshot (SNAPSHOT_UNSUPPORTED)."""
    check_snapshot_name(name)
    check_description(description)

    def run(conn: libvirt.virConnect) -> None:
        dom = _lookup(conn, vm_uuid)
        _refuse_unsupported(dom)
        if _exists(dom, name):
            raise LimenError(ErrorCode.SNAPSHOT_ALREADY_EXISTS, f"VM {dom.name()!r} has a snapshot named {name!r}")

    await hypervisor.connection.call("check_snapshot", run, subject=vm_uuid)


async def take_snapshot(hypervisor: Hypervisor, vm_uuid: str, name: str, description: str) -> SnapshotInfo:
    """Takes the snapshot, checking again what :func:`check_can_take` checked.

    No progress figure: libvirt (9.0) holds the VM's job lock for the whole internal snapshot, so a job query
    (``virDomainGetJobStats``) waits for its end instead of answering, and QEMU's ``savevm`` reports none.
    """
    check_snapshot_name(name)
    check_description(description)

    def run(conn: libvirt.virConnect) -> SnapshotInfo:
        dom = _lookup(conn, vm_uuid)
        _refuse_unsupported(dom)
        if _exists(dom, name):
            raise LimenError(ErrorCode.SNAPSHOT_ALREADY_EXISTS, f"VM {dom.name()!r} has a snapshot named {name!r}")
        snap = dom.snapshotCreateXML(snapshot_xml(name, description), libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC)
        return _info(snap)

    return await hypervisor.connection.call("take_snapshot", run, subject=f"{vm_uuid} {name}", timeout=TAKE_TIMEOUT)


async def find_snapshot(hypervisor: Hypervisor, vm_uuid: str, name: str) -> SnapshotInfo:
    """The snapshot ``name`` of the VM (SNAPSHOT_NOT_FOUND)."""
    def run(conn: libvirt.virConnect) -> SnapshotInfo:
        dom = _lookup(conn, vm_uuid)
        with _gone_is_missing(dom, name):
            return _info(_find(dom, name))

    return await hypervisor.connection.call("find_snapshot", run, subject=f"{vm_uuid} {name}")


async def revert_snapshot(hypervisor: Hypervisor, vm_uuid: str, name: str) -> SnapshotInfo:
    """Brings the VM back to the snapshot: disks, and for a snapshot of a running VM its memory (the VM
    runs on from there); a snapshot of a stopped VM leaves it stopped."""

    def run(conn: libvirt.virConnect) -> SnapshotInfo:
        dom = _lookup(conn, vm_uuid)
        with _gone_is_missing(dom, name):
            return revert(dom, _find(dom, name))

    def revert(dom: libvirt.virDomain, snap: libvirt.virDomainSnapshot) -> SnapshotInfo:
        # libvirt would stop a running VM first and then fail to open the disc, leaving it stopped.
        missing = missing_library_isos(snap.getXMLDesc(0), hypervisor.settings.iso_dir)
        if missing:
            raise LimenError(ErrorCode.SNAPSHOT_ISO_MISSING,
                             f"snapshot {name!r} has {', '.join(map(repr, missing))} in its CD-ROM, which the ISO "
                             "library no longer holds")
        # The owner is limen's, not the guest's: a revert put back the one of the snapshot's moment (a VM given
        # to another user went back to the first; a deleted user's VM went back to their name).
        created_at, owner = owner_facts(dom)
        dom.revertToSnapshot(snap, 0)
        if owner_facts(dom) != (created_at, owner):
            write_owner(dom, created_at, owner)
        return _info(snap)

    return await hypervisor.connection.call("revert_snapshot", run, subject=f"{vm_uuid} {name}",
                                            timeout=REVERT_TIMEOUT)


async def delete_snapshot(hypervisor: Hypervisor, vm_uuid: str, name: str) -> None:
    """Deletes one snapshot (its data in the disks too); its children become its parent's."""

    def run(conn: libvirt.virConnect) -> None:
        dom = _lookup(conn, vm_uuid)
        with _gone_is_missing(dom, name):
            snap = _find(dom, name)
            if dom.isActive():
                _refuse_other_disc(name, snap.getXMLDesc(0), dom.XMLDesc(0))
            snap.delete(0)

    await hypervisor.connection.call("delete_snapshot", run, subject=f"{vm_uuid} {name}",
                                     timeout=REVERT_TIMEOUT)

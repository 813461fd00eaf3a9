"""Changing an existing VM: the disc in its CD-ROM drive, its hardware settings, its name, autostart,
the size of its disks, and "finish install" (eject the CD, boot from disk).

The rules, in one place:

- The CD changes at once, running or stopped (libvirt's device update on the live and the persistent
  definition, no restart). A guest that locked its tray refuses it: MEDIA_LOCKED, unless ``force``.
  A VM without a CD-ROM drive gets one only while stopped (VM_MUST_BE_STOPPED otherwise).
- vCPUs, memory and boot order go into the persistent definition. A running VM keeps its running
  settings until it is next started; :attr:`Vm.pending` shows what is waiting (``pending_restart``).
- A rename needs a stopped VM (VM_MUST_BE_STOPPED); the owner (metadata) and the disks stay.
- ``autostart`` applies at once.
- A disk only grows (DISK_SHRINK_REFUSED for a size not above its capacity): a running VM's through
  QEMU (block resize, the guest sees it at once), a stopped VM's through its storage volume.

Every edit of one VM holds that VM's lock in this process, so two edits at once do not overwrite each
other's read-modify-write of the definition.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import xml.etree.ElementTree as ET
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import libvirt
import libvirt_qemu

from limen.action_details import cd_drive_added_details, change_details
from limen.errors import ErrorCode, LimenError, Refusals, Rule, ValidationFailed, range_rule, rule
from limen.hypervisor import storage
from limen.hypervisor.domain_edit import (
    HardwareChange,
    NoFreeTarget,
    cdrom_element,
    new_cdrom_xml,
    with_disc,
    with_hardware,
)
from limen.hypervisor.domain_xml import parse_domain_xml
from limen.hypervisor.models import DiskDevice, Vm
from limen.hypervisor.service import (
    MAX_DISK_GIB,
    Hypervisor,
    _lookup,
    check_boot_order,
    check_name,
    lock_held,
    naming,
    parse_vm_id,
    refuse_taken_name,
)
from limen.isos import resolve_iso

log = logging.getLogger("limen.hypervisor")

MAX_DISK_BYTES = MAX_DISK_GIB * 2**30
SECTOR_BYTES = 512
# libvirt itself waits up to 5 s for a guest to open its tray before it gives up on a CD change.
LIBVIRT_TRAY_WAIT = 5.0
# What libvirt and QEMU say when a guest holds its tray shut: QEMU's "Device '…' is locked and force was
# not specified" and libvirt's "timed out waiting to open tray of '…'" / "Unable to eject media".
_TRAY_LOCKED_WORDS = ("is locked", "waiting to open tray", "unable to eject")
# libvirt learns where the tray is from QEMU's events. A guest's firmware that closes an open tray while
# it boots from the disc does so unseen by libvirt (libvirt 9.0, QEMU 7.2): libvirt goes on believing the
# tray open, skips opening it for the next change, and QEMU answers "Tray of device '…' is not open".
# A short retry covers an event still on its way; after that limen opens the tray itself through QEMU's
# monitor, which puts the two in step again, and repeats the change once.
_TRAY_STATE_LAG = "is not open"
_TRAY_RETRY_PAUSES = (0.05, 0.15)


@dataclass(frozen=True, slots=True)
class VmEdit:
    """A request to change a VM; None leaves a setting as it is. Validated by :func:`edit_vm`."""

    name: str | None = None
    vcpus: int | None = None
    memory_mib: int | None = None
    boot_order: tuple[str, ...] | None = None
    autostart: bool | None = None


@dataclass(frozen=True, slots=True)
class Edited:
    """The VM after a change, and what changed, in words (for the audit trail)."""

    vm: Vm
    changes: tuple[str, ...]

    @property
    def summary(self) -> str:
        return "; ".join(self.changes) or "nothing changed"


@dataclass(frozen=True, slots=True)
class Resized:
    vm: Vm
    target: str
    old_bytes: int
    new_bytes: int


class _DomainLocks:
    """One lock per domain UUID, taken in the worker thread around a read-modify-write of the domain."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def held(self, uuid: str, timeout: float) -> AbstractContextManager[None]:
        with self._guard:
            lock = self._locks.setdefault(uuid, threading.Lock())
        return lock_held(lock, timeout, "another change to this VM is still in progress")


# Module-wide rather than per Hypervisor: every Hypervisor of this process edits the same libvirt domains.
_locks = _DomainLocks()


def _active_flags(active: bool) -> int:
    flags: int = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if active:
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    return flags


def _tray_locked(exc: libvirt.libvirtError) -> bool:
    message = (exc.get_error_message() or str(exc)).lower()
    return any(words in message for words in _TRAY_LOCKED_WORDS)


def _change_disc(dom: libvirt.virDomain, cdrom: ET.Element, iso_path: str | None, *, active: bool,
                 force: bool) -> None:
    flags = _active_flags(active)
    if force:
        flags |= libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE
    drive = with_disc(cdrom, iso_path)
    try:
        for pause in (*_TRAY_RETRY_PAUSES, None):
            try:
                dom.updateDeviceFlags(drive, flags)
                return
            except libvirt.libvirtError as exc:
                if not active or _TRAY_STATE_LAG not in (exc.get_error_message() or ""):
                    raise
                if pause is None:
                    _open_tray_through_qemu(dom, cdrom, force=force)
                    dom.updateDeviceFlags(drive, flags)
                    return
            time.sleep(pause)
    except libvirt.libvirtError as exc:
        if active and _tray_locked(exc):
            raise LimenError(
                ErrorCode.MEDIA_LOCKED,
                f"the guest keeps the CD tray of {dom.name()!r} shut: {exc.get_error_message() or exc}. "
                "Eject the disc inside the guest, or repeat with force",
            ) from None
        raise


def _open_tray_through_qemu(dom: libvirt.virDomain, cdrom: ET.Element, *, force: bool) -> None:
    """Opens the drive's tray with QEMU's ``blockdev-open-tray`` (libvirt marks the domain as touched by a
    monitor command; harmless). A tray the guest locked stays shut unless ``force``: QEMU says "is
    locked", which the caller reports as MEDIA_LOCKED."""
    alias = cdrom.find("alias")
    if alias is None or not alias.get("name"):
        raise libvirt.libvirtError("the CD-ROM drive has no alias to open its tray by")
    log.warning("libvirt's CD tray state is stale; opening the tray through QEMU",
                extra={"event": "cd_tray_resync", "vm_name": dom.name(), "device": alias.get("name")})
    command = {"execute": "blockdev-open-tray", "arguments": {"id": alias.get("name"), "force": force}}
    libvirt_qemu.qemuMonitorCommand(dom, json.dumps(command), 0)
    time.sleep(0.1)  # for libvirt to handle the tray-opened event


def _current_xml(dom: libvirt.virDomain, active: bool) -> str:
    return str(dom.XMLDesc(0 if active else libvirt.VIR_DOMAIN_XML_INACTIVE))


def _persistent_xml(dom: libvirt.virDomain) -> str:
    # SECURE keeps what the definition holds in full (e.g. a VNC password) when it is defined again.
    return str(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE))


def _media_timeout(hypervisor: Hypervisor) -> float:
    return hypervisor.settings.libvirt_timeout + LIBVIRT_TRAY_WAIT * 2


def _deleted_meanwhile(iso_path: str | None) -> bool:
    """The image just put in a drive was deleted since it was checked: that delete read the CD-ROMs before
    the change. (A delete parks the image, then reads them again: it meets the change, or the change sees
    the image gone.)"""
    return iso_path is not None and not os.path.isfile(iso_path)


def _gone(iso: str | None) -> ValidationFailed:
    return ValidationFailed("iso", f"no image named {iso!r}", rule=rule(Rule.ISO_MISSING))


async def change_media(hypervisor: Hypervisor, ident: str, iso: str | None, *, force: bool = False) -> Edited:
    """Puts ISO ``iso`` (a file name in the ISO directory) in the VM's CD-ROM drive, or ejects it (None).

    VALIDATION_ERROR (field ``iso``) for an unknown ISO; MEDIA_LOCKED when the guest holds the tray shut and
    not ``force``; VM_MUST_BE_STOPPED when a running VM has no CD-ROM drive to put it in.
    """
    parse_vm_id(ident)
    iso_path = str(resolve_iso(hypervisor.settings.iso_dir, iso)) if iso is not None else None

    def run(conn: libvirt.virConnect) -> Edited:
        dom = _lookup(conn, ident)
        with _locks.held(dom.UUIDString(), hypervisor.settings.libvirt_timeout):
            active = bool(dom.isActive())
            xml = _current_xml(dom, active)
            cdrom = cdrom_element(xml)
            if cdrom is None:
                if iso_path is None:
                    return Edited(hypervisor._snapshot(dom), ())  # no drive: nothing to eject
                if active:
                    raise LimenError(
                        ErrorCode.VM_MUST_BE_STOPPED,
                        f"VM {dom.name()!r} has no CD-ROM drive; one can be added only while it is stopped",
                    )
                try:
                    drive = new_cdrom_xml(xml, iso_path)
                except NoFreeTarget as exc:
                    raise LimenError(ErrorCode.VM_OPERATION_FAILED, f"cannot add a CD-ROM drive: {exc}") from None
                dom.attachDeviceFlags(drive, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
                if _deleted_meanwhile(iso_path):
                    dom.detachDeviceFlags(drive, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
                    raise _gone(iso)
                return Edited(hypervisor._snapshot(dom), (cd_drive_added_details(iso),))
            source = cdrom.find("source")
            before = source.get("file") if source is not None else None
            if before == iso_path:
                return Edited(hypervisor._snapshot(dom), ())
            _change_disc(dom, cdrom, iso_path, active=active, force=force)
            if _deleted_meanwhile(iso_path):
                _change_disc(dom, cdrom, before, active=active, force=True)
                raise _gone(iso)
            was = before.rsplit("/", 1)[-1] if before else "empty"
            now = iso if iso is not None else "ejected"
            return Edited(hypervisor._snapshot(dom), (change_details("cd", was, now, forced=force),))

    return await hypervisor.connection.call("change_media", run, subject=ident, timeout=_media_timeout(hypervisor))


async def check_edit(hypervisor: Hypervisor, edit: VmEdit, *, host: str | None = None) -> None:
    """VALIDATION_ERROR naming every field of ``edit`` that breaks the create rules or the limits of the VM's
    host ``host`` (None: the default host), in the settings form's order (before a quota counts its numbers)."""
    refusals = Refusals()
    with refusals.check():
        if edit.name is not None:
            check_name(edit.name)
    with refusals.check():
        await hypervisor.check_hardware(vcpus=edit.vcpus, memory_mib=edit.memory_mib, host=host)
    with refusals.check():
        if edit.boot_order is not None:
            if not edit.boot_order:
                raise ValidationFailed("boot_order", "give at least one device ('cdrom', 'hd')",
                                       rule=rule(Rule.NOT_EMPTY))
            check_boot_order(edit.boot_order)
    refusals.raise_any()


async def edit_vm(hypervisor: Hypervisor, ident: str, edit: VmEdit) -> Edited:
    """Applies ``edit`` (see the module's rules). Validation as at create; VM_ALREADY_EXISTS when the
    new name is taken. All or nothing: a failing step undoes the ones before it."""
    parse_vm_id(ident)
    host = await hypervisor.hosts.locate(ident) if hypervisor.hosts.several else None
    await check_edit(hypervisor, edit, host=host)
    if edit.name is not None and hypervisor.hosts.several:
        # Names are unique across hosts, as at create: those of a host down now (as it last listed them)
        # too, and none while a host never listed may hold it (a rename asked only the hosts that answered,
        # and two VMs had one name once the other came back). The VM's own host checks again below, under
        # the VM's lock.
        vm = await hypervisor.get_vm(ident)
        if vm.name != edit.name:
            await hypervisor.check_name_free(edit.name, own_uuid=vm.uuid)

    def run(conn: libvirt.virConnect) -> Edited:
        dom = _lookup(conn, ident)
        uuid = dom.UUIDString()
        with _locks.held(uuid, hypervisor.settings.libvirt_timeout):
            active = bool(dom.isActive())
            old_name = dom.name()
            rename = edit.name is not None and edit.name != old_name
            if rename and active:
                raise LimenError(ErrorCode.VM_MUST_BE_STOPPED, f"VM {old_name!r} runs; rename it while it is stopped")
            # A rename holds the naming lock from its check to the rename (service.naming).
            with naming(hypervisor.settings.libvirt_timeout) if rename else nullcontext():
                if rename:
                    refuse_taken_name(conn, str(edit.name), own_uuid=uuid)
                original = _persistent_xml(dom)
                persistent = parse_domain_xml(original)
                change = HardwareChange(
                    vcpus=edit.vcpus if edit.vcpus not in (None, persistent.vcpus) else None,
                    memory_mib=edit.memory_mib if edit.memory_mib not in (None, persistent.memory_mib) else None,
                    boot_order=edit.boot_order if edit.boot_order not in (None, persistent.boot_order) else None,
                )
                changes = _describe(change, persistent.vcpus, persistent.memory_mib, persistent.boot_order,
                                    pending=active)
                old_autostart = bool(dom.autostart())
                if change != HardwareChange():
                    conn.defineXML(with_hardware(original, change))
                try:
                    if edit.autostart is not None and edit.autostart != old_autostart:
                        dom.setAutostart(int(edit.autostart))
                        changes.append(change_details("autostart", str(old_autostart).lower(),
                                                      str(edit.autostart).lower()))
                    if rename:
                        _rename(dom, str(edit.name))
                        changes.append(change_details("name", old_name, edit.name))
                except BaseException:
                    _undo(conn, uuid, original if change != HardwareChange() else None, old_autostart)
                    raise
            return Edited(hypervisor._snapshot(conn.lookupByUUIDString(uuid)), tuple(changes))

    return await hypervisor.connection.call(
        "edit_vm", run, subject=ident, timeout=hypervisor.settings.libvirt_timeout * 2
    )


def _rename(dom: libvirt.virDomain, name: str) -> None:
    """Renames ``dom``; a name another limen took meanwhile is VM_ALREADY_EXISTS (libvirt says "operation
    failed: domain with name … already exists")."""
    try:
        dom.rename(name, 0)
    except libvirt.libvirtError as exc:
        if "already exists" in str(exc.get_error_message()):
            raise LimenError(ErrorCode.VM_ALREADY_EXISTS, f"a VM named {name!r} exists") from None
        raise


def _undo(conn: libvirt.virConnect, uuid: str, original_xml: str | None, autostart: bool) -> None:
    """Best effort: puts back the definition and autostart an edit had changed before a later step failed."""
    try:
        dom = conn.lookupByUUIDString(uuid)
        if original_xml is not None:
            conn.defineXML(original_xml)
        if bool(dom.autostart()) != autostart:
            dom.setAutostart(int(autostart))
    except libvirt.libvirtError:
        pass


def _describe(change: HardwareChange, vcpus: int, memory_mib: int, boot_order: tuple[str, ...], *,
              pending: bool) -> list[str]:
    changes = []
    if change.vcpus is not None:
        changes.append(change_details("vcpus", vcpus, change.vcpus, pending=pending))
    if change.memory_mib is not None:
        changes.append(change_details("memory_mib", memory_mib, change.memory_mib, pending=pending))
    if change.boot_order is not None:
        changes.append(change_details("boot_order", ",".join(boot_order) or "-", ",".join(change.boot_order),
                                      pending=pending))
    return changes


async def finish_install(hypervisor: Hypervisor, ident: str, *, force: bool = False) -> Edited:
    """Ejects the CD (if one is in) and makes the VM boot from its disk only (``boot_order`` ["hd"]).

    DISK_NOT_FOUND when the VM has no disk to boot from; MEDIA_LOCKED as :func:`change_media`. On a
    running VM the eject is immediate and the boot order waits for the next start (pending).
    """
    parse_vm_id(ident)

    def run(conn: libvirt.virConnect) -> Edited:
        dom = _lookup(conn, ident)
        with _locks.held(dom.UUIDString(), hypervisor.settings.libvirt_timeout):
            active = bool(dom.isActive())
            xml = _current_xml(dom, active)
            if not any(disk.device is DiskDevice.DISK for disk in parse_domain_xml(xml).disks):
                raise LimenError(ErrorCode.DISK_NOT_FOUND, f"VM {dom.name()!r} has no disk to boot from")
            changes = []
            cdrom = cdrom_element(xml)
            source = cdrom.find("source") if cdrom is not None else None
            if cdrom is not None and source is not None and source.get("file"):
                _change_disc(dom, cdrom, None, active=active, force=force)
                changes.append(change_details("cd", str(source.get("file")).rsplit("/", 1)[-1], "ejected"))
            original = _persistent_xml(dom)
            persistent = parse_domain_xml(original)
            if persistent.boot_order != ("hd",):
                change = HardwareChange(boot_order=("hd",))
                conn.defineXML(with_hardware(original, change))
                changes += _describe(change, persistent.vcpus, persistent.memory_mib, persistent.boot_order,
                                     pending=active)
            return Edited(hypervisor._snapshot(dom), tuple(changes))

    return await hypervisor.connection.call("finish_install", run, subject=ident, timeout=_media_timeout(hypervisor))


def check_disk_size(size_bytes: int, field: str = "size_bytes") -> None:
    """VALIDATION_ERROR unless ``size_bytes`` is a size a disk may have (whole sectors, at most 2 TiB)."""
    if not 0 < size_bytes <= MAX_DISK_BYTES:
        # The pages send whole GiB: their refusal is worded from the rule (bytes are the API's own).
        in_gib = range_rule(1, MAX_DISK_GIB, unit="GiB") if field == "size_gib" else None
        raise ValidationFailed(field, f"must be more than 0 and at most {MAX_DISK_GIB} GiB", rule=in_gib)
    if size_bytes % SECTOR_BYTES:
        raise ValidationFailed(field, f"must be a multiple of {SECTOR_BYTES} bytes")


async def resize_disk(hypervisor: Hypervisor, ident: str, target: str, size_bytes: int) -> Resized:
    """Grows the disk at ``target`` (e.g. vda) to ``size_bytes``. DISK_NOT_FOUND for an unknown target or
    a CD-ROM; DISK_SHRINK_REFUSED when the size is not above the current capacity (equal included)."""
    parse_vm_id(ident)
    check_disk_size(size_bytes)

    def run(conn: libvirt.virConnect) -> Resized:
        dom = _lookup(conn, ident)
        with _locks.held(dom.UUIDString(), hypervisor.settings.libvirt_timeout):
            active = bool(dom.isActive())
            disks = [d for d in parse_domain_xml(_current_xml(dom, active)).disks if d.device is DiskDevice.DISK]
            disk = next((d for d in disks if d.target == target), None)
            if disk is None:
                known = ", ".join(d.target for d in disks) or "none"
                raise LimenError(ErrorCode.DISK_NOT_FOUND,
                                 f"VM {dom.name()!r} has no disk {target[:40]!r} (its disks: {known})")
            volume = storage.volume_at(conn, disk.path) if disk.path else None
            if active:
                capacity = int(dom.blockInfo(target, 0)[0])
            elif volume is not None:
                capacity = int(volume.info()[1])
            else:
                raise LimenError(ErrorCode.VM_OPERATION_FAILED,
                                 f"disk {target} of a stopped VM is not a volume of a libvirt storage pool; "
                                 "start the VM to resize it")
            if size_bytes <= capacity:
                raise LimenError(ErrorCode.DISK_SHRINK_REFUSED,
                                 f"disk {target} holds {capacity} bytes; {size_bytes} is not larger")
            if dom.snapshotNum(0) > 0:  # QEMU cannot resize a qcow2 image holding internal snapshots
                raise LimenError(ErrorCode.VM_HAS_SNAPSHOTS,
                                 f"VM {dom.name()!r} has snapshots inside its disks, and a disk with snapshots "
                                 "cannot be resized")
            if active:
                dom.blockResize(target, size_bytes, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
            else:
                assert volume is not None
                volume.resize(size_bytes, 0)
            return Resized(hypervisor._snapshot(dom), target, capacity, size_bytes)

    return await hypervisor.connection.call(
        "resize_disk", run, subject=f"{ident} {target[:40]}", timeout=hypervisor.settings.libvirt_timeout * 3
    )

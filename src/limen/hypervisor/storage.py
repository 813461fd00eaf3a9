"""limen's libvirt storage pool and the qcow2 volumes of VM disks. Functions run in a worker thread."""

from __future__ import annotations

import logging
import threading
import weakref
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

log = logging.getLogger("limen.hypervisor")


def pool_xml(name: str, directory: Path) -> str:
    pool = ET.Element("pool", type="dir")
    ET.SubElement(pool, "name").text = name
    ET.SubElement(ET.SubElement(pool, "target"), "path").text = str(directory)
    return ET.tostring(pool, encoding="unicode")


def volume_xml(name: str, capacity_gib: int) -> str:
    volume = ET.Element("volume")
    ET.SubElement(volume, "name").text = name
    ET.SubElement(volume, "capacity", unit="GiB").text = str(capacity_gib)
    target = ET.SubElement(volume, "target")
    ET.SubElement(target, "format", type="qcow2")
    return ET.tostring(volume, encoding="unicode")


def pool_directory(conn: libvirt.virConnect, name: str) -> Path | None:
    """Where the pool named ``name`` keeps its volumes, or None when there is no such pool."""
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
            raise
        return None
    path = ET.fromstring(pool.XMLDesc(0)).findtext("target/path")
    return Path(path) if path else None


def ensure_pool(conn: libvirt.virConnect, name: str, directory: Path) -> libvirt.virStoragePool:
    """The pool named ``name``, defined, built and started first if it is not yet. A pool of that name defined
    before (by an earlier setting, another limen on the same libvirt) keeps its own directory: said in the log,
    and by ``limen doctor``.

    Callers at once on one connection (the first moves into a host without the pool) take turns here, a
    host's turns apart from another's (a hung host holds only its own); against another process doing the
    same, a pool defined or started meanwhile is taken as it is. 8 of 9 moves at once into a new host failed
    ("storage pool is already active", "already exists with uuid")."""
    with _ensuring_lock:
        turns = _ensuring.setdefault(conn, threading.Lock())
    with turns:
        try:
            return _ensure_pool(conn, name, directory)
        except libvirt.libvirtError:
            return _ensure_pool(conn, name, directory)  # another process's pool, defined or started meanwhile


_ensuring: weakref.WeakKeyDictionary[libvirt.virConnect, threading.Lock] = weakref.WeakKeyDictionary()
_ensuring_lock = threading.Lock()


def _ensure_pool(conn: libvirt.virConnect, name: str, directory: Path) -> libvirt.virStoragePool:
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
            raise
        pool = conn.storagePoolDefineXML(pool_xml(name, directory), 0)
        pool.build(0)
        pool.setAutostart(1)
    else:
        kept = ET.fromstring(pool.XMLDesc(0)).findtext("target/path")
        if kept and Path(kept) != directory:
            log.warning("storage pool %r keeps its disks in %s, not in %s (LIMEN_STORAGE_POOL_DIR)", name, kept,
                        directory, extra={"event": "storage_pool_elsewhere", "pool": name, "path": kept,
                                          "configured": str(directory)})
    if not pool.isActive():
        try:
            pool.build(0)  # recreates the directory if someone removed it
        except libvirt.libvirtError:
            pass
        pool.create(0)
    return pool


def disk_volume_name(vm_name: str, token: str | None = None) -> str:
    """A new VM's disk volume: ``NAME-disk0.qcow2``, or with ``token`` (its create's) ``NAME-disk0-1a2b3c4d.qcow2``,
    the name taken when the first is someone else's (a disk kept from a deleted VM, or one a VM renamed from
    NAME still uses)."""
    return f"{vm_name}-disk0.qcow2" if token is None else f"{vm_name}-disk0-{token[:8]}.qcow2"


def volume_at(conn: libvirt.virConnect, path: str) -> libvirt.virStorageVol | None:
    """The pool volume at ``path``, or None when no pool holds that file."""
    try:
        return conn.storageVolLookupByPath(path)
    except libvirt.libvirtError:
        return None


def find_volume(conn: libvirt.virConnect, pool_name: str, volume_name: str) -> libvirt.virStorageVol | None:
    """The volume ``volume_name`` of the pool ``pool_name``, or None when the pool or the volume is missing
    (or the pool is not running, in which case it holds nothing limen could use)."""
    try:
        pool = conn.storagePoolLookupByName(pool_name)
        if not pool.isActive():
            return None
        return pool.storageVolLookupByName(volume_name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_NO_STORAGE_VOL):
            return None
        raise

"""Removes test VMs straight through libvirt, whatever state limen left them in."""

from __future__ import annotations

import contextlib

import libvirt

from limen.hypervisor.domain_xml import parse_domain_xml
from limen.hypervisor.models import DiskDevice


def remove_domain(uri: str, name: str) -> None:
    conn = libvirt.open(uri)
    try:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            dom = None
        paths: list[str] = []
        if dom is not None:
            with contextlib.suppress(libvirt.libvirtError):
                paths = [
                    d.path
                    for d in parse_domain_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).disks
                    if d.device is DiskDevice.DISK and d.path
                ]
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
            # A plain undefine refuses a domain with snapshots (or a saved state): take their metadata along.
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                                  | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        for path in paths:
            with contextlib.suppress(libvirt.libvirtError):
                conn.storageVolLookupByPath(path).delete(0)
    finally:
        conn.close()


def domain_exists(uri: str, name: str) -> bool:
    conn = libvirt.open(uri)
    try:
        conn.lookupByName(name)
        return True
    except libvirt.libvirtError:
        return False
    finally:
        conn.close()


def volume_exists(uri: str, path: str) -> bool:
    conn = libvirt.open(uri)
    try:
        conn.storageVolLookupByPath(path)
        return True
    except libvirt.libvirtError:
        return False
    finally:
        conn.close()

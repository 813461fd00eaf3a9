"""Removes test VMs straight through libvirt, whatever state limen left them in."""

from __future__ import annotations

import contextlib
import time

import libvirt

from limen.hypervisor.domain_xml import parse_domain_xml
from limen.hypervisor.models import DiskDevice

UNDEFINE_AFTER_DESTROY = 0.2  # seconds between a running domain's destroy and its undefine (see remove_domain)


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
            was_running = False
            with contextlib.suppress(libvirt.libvirtError):
                was_running = bool(dom.isActive())
                dom.destroy()
            if was_running:
                # libvirt 9.0 deadlocks when the undefine frees a console stream that its event loop is aborting
                # because the QEMU behind it just died (a serial console some client still held): give the
                # loop that moment. Servers under test end their consoles first (e2e: delete_through_limen).
                time.sleep(UNDEFINE_AFTER_DESTROY)
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

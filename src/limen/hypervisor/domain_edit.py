"""Edits of an existing domain's XML: the CD-ROM drive and its disc, boot order, vCPUs and memory.

Pure functions over strings, like :mod:`limen.hypervisor.domain_xml`; nothing here talks to libvirt.
Each takes the document libvirt gave and returns the document (or the device element) to send back, so
everything limen does not manage (other devices, other namespaces' metadata) passes through unchanged.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from limen.hypervisor import domain_xml  # also registers the "limen:" prefix for serializing

# New CD-ROM drives go on the IDE bus, which the "pc" machine limen defines always has; its four
# places are hda…hdd. hdc (secondary master) first, as create does.
IDE_TARGETS = ("hdc", "hdd", "hda", "hdb")
# Devices whose per-device <boot order='N'/> would conflict with <os><boot dev=…/>.
_BOOTABLE_DEVICES = ("disk", "interface", "hostdev", "redirdev")


class NoFreeTarget(ValueError):
    """Every IDE place of the domain is taken."""


@dataclass(frozen=True, slots=True)
class HardwareChange:
    """What to write into a definition; None leaves that setting as it is."""

    vcpus: int | None = None
    memory_mib: int | None = None
    boot_order: tuple[str, ...] | None = None


def _devices(domain: ET.Element) -> ET.Element:
    devices = domain.find("devices")
    if devices is None:
        devices = ET.SubElement(domain, "devices")
    return devices


def cdrom_element(domain_xml_text: str) -> ET.Element | None:
    """The domain's first CD-ROM drive (a ``<disk device='cdrom'>``), or None when it has none."""
    devices = ET.fromstring(domain_xml_text).find("devices")
    if devices is None:
        return None
    return next((disk for disk in devices.findall("disk") if disk.get("device") == "cdrom"), None)


def with_disc(cdrom: ET.Element, iso_path: str | None) -> str:
    """The CD-ROM drive ``cdrom`` holding ``iso_path`` (None: empty), for ``updateDeviceFlags``.

    The drive keeps its target, bus, address and alias, which is how libvirt finds the device to change.
    """
    drive = ET.fromstring(ET.tostring(cdrom, encoding="unicode"))  # a copy; the caller's stays as it was
    for source in drive.findall("source"):
        drive.remove(source)
    drive.set("type", "file")
    if iso_path is not None:
        # <source> goes before <target>: libvirt does not care, but people reading the XML do.
        target_index = next((i for i, child in enumerate(drive) if child.tag == "target"), len(drive))
        drive.insert(target_index, domain_xml.shared_media_source(iso_path))
    return ET.tostring(drive, encoding="unicode")


def new_cdrom_xml(domain_xml_text: str, iso_path: str | None) -> str:
    """A new IDE CD-ROM drive for the domain (at its first free IDE place), holding ``iso_path`` or empty.

    Raises :class:`NoFreeTarget` when hda…hdd are all taken.
    """
    taken = {
        target.get("dev")
        for target in ET.fromstring(domain_xml_text).iterfind("devices/disk/target")
    }
    dev = next((name for name in IDE_TARGETS if name not in taken), None)
    if dev is None:
        raise NoFreeTarget(f"every IDE place ({', '.join(sorted(IDE_TARGETS))}) is taken")
    cdrom = ET.Element("disk", type="file", device="cdrom")
    ET.SubElement(cdrom, "driver", name="qemu", type="raw")
    if iso_path is not None:
        cdrom.append(domain_xml.shared_media_source(iso_path))
    ET.SubElement(cdrom, "target", dev=dev, bus="ide")
    ET.SubElement(cdrom, "readonly")
    return ET.tostring(cdrom, encoding="unicode")


def _set_boot_order(domain: ET.Element, boot_order: tuple[str, ...]) -> None:
    os_el = domain.find("os")
    if os_el is None:
        os_el = ET.SubElement(domain, "os")
    for boot in os_el.findall("boot"):
        os_el.remove(boot)
    # libvirt refuses <os><boot> next to per-device <boot order>; the order given replaces both.
    devices = domain.find("devices")
    if devices is not None:
        for kind in _BOOTABLE_DEVICES:
            for device in devices.findall(kind):
                for boot in device.findall("boot"):
                    device.remove(boot)
    for device_name in boot_order:
        ET.SubElement(os_el, "boot", dev=device_name)


def _set_vcpus(domain: ET.Element, vcpus: int) -> None:
    vcpu = domain.find("vcpu")
    if vcpu is None:
        vcpu = ET.SubElement(domain, "vcpu")
    vcpu.text = str(vcpus)
    vcpu.attrib.pop("current", None)  # all of them online, as at create


def _set_memory(domain: ET.Element, memory_mib: int) -> None:
    kib = str(memory_mib * 1024)
    for tag in ("memory", "currentMemory"):
        element = domain.find(tag)
        if element is None:
            if tag == "currentMemory":
                continue  # libvirt takes <memory> for both when there is no <currentMemory>
            element = ET.SubElement(domain, tag)
        element.text = kib
        element.set("unit", "KiB")


def with_hardware(domain_xml_text: str, change: HardwareChange) -> str:
    """The definition ``domain_xml_text`` with ``change`` written into it."""
    domain = ET.fromstring(domain_xml_text)
    if change.vcpus is not None:
        _set_vcpus(domain, change.vcpus)
    if change.memory_mib is not None:
        _set_memory(domain, change.memory_mib)
    if change.boot_order is not None:
        _set_boot_order(domain, change.boot_order)
    return ET.tostring(domain, encoding="unicode")

"""Domain XML: the document limen writes to create a VM, and what it reads back from libvirt.

Pure functions over strings; nothing here talks to libvirt.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime

from limen.hypervisor.models import Disk, DiskDevice, Nic, VncEndpoint

METADATA_NS = "https://limen.invalid/xmlns/vm/1"
METADATA_PREFIX = "limen"

_WILDCARD_TO_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
# Serialized documents (new ones, and edited ones sent back to libvirt) keep the "limen:" prefix.
ET.register_namespace(METADATA_PREFIX, METADATA_NS)


@dataclass(frozen=True, slots=True)
class DomainPlan:
    """Everything needed to write a new domain's XML."""

    name: str
    virt_type: str  # "kvm" or "qemu"
    vcpus: int
    memory_mib: int
    vnc_listen: str
    created_at: datetime
    disk_path: str | None = None
    iso_path: str | None = None
    boot_order: tuple[str, ...] = ("hd",)
    owner: str | None = None
    # The token of the pending create that defines this domain (see limen.recovery): it proves, should
    # that create be lost, that the domain is the one it made. Setting the owner later drops it.
    create_token: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedDomain:
    vcpus: int
    memory_mib: int
    disks: tuple[Disk, ...]
    boot_order: tuple[str, ...]
    vnc: VncEndpoint | None
    created_at: datetime | None
    owner: str | None
    nics: tuple[Nic, ...] = ()
    create_token: str | None = None
    serial_console: bool = False  # a <console> or <serial> device: the serial console can open it


def build_domain_xml(plan: DomainPlan) -> str:
    domain = ET.Element("domain", type=plan.virt_type)
    ET.SubElement(domain, "name").text = plan.name
    metadata = ET.SubElement(ET.SubElement(domain, "metadata"), f"{{{METADATA_NS}}}vm")
    ET.SubElement(metadata, f"{{{METADATA_NS}}}created").text = plan.created_at.isoformat()
    if plan.owner:
        ET.SubElement(metadata, f"{{{METADATA_NS}}}owner").text = plan.owner
    if plan.create_token:
        ET.SubElement(metadata, f"{{{METADATA_NS}}}create").text = plan.create_token
    ET.SubElement(domain, "memory", unit="MiB").text = str(plan.memory_mib)
    ET.SubElement(domain, "vcpu").text = str(plan.vcpus)

    os_el = ET.SubElement(domain, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    for device in plan.boot_order:
        ET.SubElement(os_el, "boot", dev=device)
    features = ET.SubElement(domain, "features")
    ET.SubElement(features, "acpi")  # ACPI shutdown needs it
    ET.SubElement(features, "apic")
    ET.SubElement(domain, "clock", offset="utc")
    ET.SubElement(domain, "on_poweroff").text = "destroy"
    ET.SubElement(domain, "on_reboot").text = "restart"
    ET.SubElement(domain, "on_crash").text = "destroy"

    devices = ET.SubElement(domain, "devices")
    if plan.disk_path:
        disk = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type="qcow2")
        ET.SubElement(disk, "source", file=plan.disk_path)
        ET.SubElement(disk, "target", dev="vda", bus="virtio")
    if plan.iso_path:
        cdrom = ET.SubElement(devices, "disk", type="file", device="cdrom")
        ET.SubElement(cdrom, "driver", name="qemu", type="raw")
        cdrom.append(shared_media_source(plan.iso_path))
        ET.SubElement(cdrom, "target", dev="hdc", bus="ide")
        ET.SubElement(cdrom, "readonly")
    # A serial port and the console on it: the serial console (virDomainOpenConsole) opens this one.
    ET.SubElement(ET.SubElement(devices, "serial", type="pty"), "target", port="0")
    ET.SubElement(ET.SubElement(devices, "console", type="pty"), "target", type="serial", port="0")
    graphics = ET.SubElement(devices, "graphics", type="vnc", port="-1", autoport="yes")
    graphics.set("listen", plan.vnc_listen)
    ET.SubElement(ET.SubElement(devices, "video"), "model", type="vga")
    # An absolute pointer keeps the browser's cursor and the guest's in step.
    ET.SubElement(devices, "input", type="tablet", bus="usb")
    ET.SubElement(devices, "memballoon", model="none")
    ET.register_namespace(METADATA_PREFIX, METADATA_NS)
    return ET.tostring(domain, encoding="unicode")


def shared_media_source(iso_path: str) -> ET.Element:
    """A CD-ROM's ``<source>`` for a library ISO, which libvirt must not relabel.

    libvirt's DAC driver gives each disk file to QEMU's user when a VM starts (on Debian ``libvirt-qemu``,
    mode 0600) and, for read-only media that other VMs may share, never gives it back when the VM stops:
    limen's own user could then no longer read the ISO (checksums, other VMs). The library's images are
    readable by QEMU as they are (:mod:`limen.isos.sharing`), so libvirt is told to leave them alone.
    """
    source = ET.Element("source", file=iso_path)
    ET.SubElement(source, "seclabel", model="dac", relabel="no")
    return source


def metadata_xml(created_at: str | None, owner: str | None) -> str:
    """The body of limen's <metadata> element, for ``virDomainSetMetadata``."""
    root = ET.Element("vm")
    if created_at:
        ET.SubElement(root, "created").text = created_at
    if owner:
        ET.SubElement(root, "owner").text = owner
    return ET.tostring(root, encoding="unicode")


def _memory_mib(domain: ET.Element) -> int:
    memory = domain.find("memory")
    if memory is None or not (memory.text or "").strip():
        return 0
    value = int(memory.text or "0")
    unit = memory.get("unit", "KiB")
    factor = {"b": 1, "bytes": 1, "KB": 1000, "k": 1024, "KiB": 1024, "MB": 10**6, "M": 2**20,
              "MiB": 2**20, "GB": 10**9, "G": 2**30, "GiB": 2**30, "TB": 10**12, "T": 2**40,
              "TiB": 2**40}.get(unit, 1024)
    return value * factor // 2**20


def connect_host(listen: str) -> str:
    """The address to dial for a VNC server listening on ``listen``: wildcards become loopback."""
    listen = listen.strip().strip("[]")
    if listen in _WILDCARD_TO_LOOPBACK:
        return _WILDCARD_TO_LOOPBACK[listen]
    try:
        ipaddress.ip_address(listen)
    except ValueError:
        return listen  # a host name; dial it as given
    return listen


def _vnc(devices: ET.Element | None) -> VncEndpoint | None:
    if devices is None:
        return None
    for graphics in devices.findall("graphics"):
        if graphics.get("type") != "vnc":
            continue
        listen = graphics.get("listen")
        listen_el = graphics.find("listen")
        if listen_el is not None and listen_el.get("address"):
            listen = listen_el.get("address")
        port_text = graphics.get("port", "-1")
        try:
            port: int | None = int(port_text)
        except ValueError:
            port = None
        if port is not None and port <= 0:
            port = None
        return VncEndpoint(host=connect_host(listen or "127.0.0.1"), port=port)
    return None


def _disks(devices: ET.Element | None) -> tuple[Disk, ...]:
    if devices is None:
        return ()
    disks: list[Disk] = []
    for disk in devices.findall("disk"):
        try:
            device = DiskDevice(disk.get("device", "disk"))
        except ValueError:
            continue  # floppy, lun: not shown
        source = disk.find("source")
        path = None
        if source is not None:
            path = source.get("file") or source.get("dev") or source.get("volume")
        target = disk.find("target")
        disks.append(Disk(
            device=device,
            target=target.get("dev", "") if target is not None else "",
            path=path,
            bus=target.get("bus") if target is not None else None,
        ))
    return tuple(disks)


def _nics(devices: ET.Element | None) -> tuple[Nic, ...]:
    if devices is None:
        return ()
    nics = []
    for interface in devices.findall("interface"):
        mac = interface.find("mac")
        source = interface.find("source")
        model = interface.find("model")
        source_name = None
        if source is not None:
            source_name = source.get("network") or source.get("bridge") or source.get("dev")
        nics.append(Nic(
            mac=mac.get("address") if mac is not None else None,
            source=source_name,
            model=model.get("type") if model is not None else None,
        ))
    return tuple(nics)


def snapshot_domain_xml(snapshot_xml: str) -> str | None:
    """The VM's definition a snapshot's XML keeps (its ``<domain>``), or None when it keeps none."""
    domain = ET.fromstring(snapshot_xml).find("domain")
    return ET.tostring(domain, encoding="unicode") if domain is not None else None


def parse_domain_xml(xml: str) -> ParsedDomain:
    domain = ET.fromstring(xml)
    vcpu = domain.find("vcpu")
    os_el = domain.find("os")
    boot_order = tuple(
        boot.get("dev", "") for boot in (os_el.findall("boot") if os_el is not None else [])
    )
    created_at: datetime | None = None
    owner: str | None = None
    create_token: str | None = None
    meta = domain.find(f"metadata/{{{METADATA_NS}}}vm")
    if meta is not None:
        created = meta.findtext(f"{{{METADATA_NS}}}created")
        if created:
            try:
                created_at = datetime.fromisoformat(created)
            except ValueError:
                created_at = None
        owner = meta.findtext(f"{{{METADATA_NS}}}owner") or None
        create_token = meta.findtext(f"{{{METADATA_NS}}}create") or None
    devices = domain.find("devices")
    return ParsedDomain(
        vcpus=int((vcpu.text if vcpu is not None else None) or 1),
        memory_mib=_memory_mib(domain),
        disks=_disks(devices),
        boot_order=boot_order,
        vnc=_vnc(devices),
        created_at=created_at,
        owner=owner,
        nics=_nics(devices),
        create_token=create_token,
        serial_console=devices is not None and (devices.find("console") is not None
                                                or devices.find("serial") is not None),
    )

"""Editing an existing domain's XML (pure; no libvirt): the CD, a new CD-ROM drive, hardware, boot order."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from limen.hypervisor.domain_edit import (
    HardwareChange,
    NoFreeTarget,
    cdrom_element,
    new_cdrom_xml,
    with_disc,
    with_hardware,
)
from limen.hypervisor.domain_xml import DomainPlan, build_domain_xml, parse_domain_xml
from limen.hypervisor.models import Disk, DiskDevice, Nic, PendingChanges
from limen.hypervisor.service import pending_changes

# A running domain's XML as libvirt writes it (abridged): alias, address, per-device boot, other namespaces.
LIVE = """<domain type='qemu' id='3' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>web-1</name>
  <metadata><limen:vm xmlns:limen="https://limen.invalid/xmlns/vm/1"><limen:owner>alice</limen:owner></limen:vm>
  </metadata>
  <memory unit='KiB'>131072</memory>
  <currentMemory unit='KiB'>131072</currentMemory>
  <vcpu placement='static' current='1'>2</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='cdrom'/><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='/pool/web-1-disk0.qcow2' index='2'/>
      <target dev='vda' bus='virtio'/><alias name='virtio-disk0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/><source file='/isos/demo.iso' index='1'/>
      <target dev='hdc' bus='ide'/><readonly/><alias name='ide0-1-0'/>
      <address type='drive' controller='0' bus='1' target='0' unit='0'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:12:34:56'/><source network='default'/><model type='virtio'/>
    </interface>
    <interface type='bridge'><source bridge='br0'/></interface>
  </devices>
  <qemu:commandline><qemu:arg value='-no-hpet'/></qemu:commandline>
</domain>"""


def test_ejecting_keeps_the_drive_as_libvirt_finds_it() -> None:
    cdrom = cdrom_element(LIVE)
    assert cdrom is not None
    drive = ET.fromstring(with_disc(cdrom, None))
    assert drive.find("source") is None
    assert drive.get("device") == "cdrom"
    assert drive.find("target").attrib == {"dev": "hdc", "bus": "ide"}  # type: ignore[union-attr]
    assert drive.find("alias").get("name") == "ide0-1-0"  # type: ignore[union-attr]
    assert drive.find("address") is not None and drive.find("readonly") is not None
    assert cdrom.find("source") is not None  # the caller's element is left as it was


def test_inserting_puts_one_source_before_the_target() -> None:
    cdrom = cdrom_element(LIVE)
    assert cdrom is not None
    drive = ET.fromstring(with_disc(cdrom, "/isos/other ÄÖ & <x>.iso"))
    assert [s.attrib for s in drive.findall("source")] == [{"file": "/isos/other ÄÖ & <x>.iso"}]
    tags = [child.tag for child in drive]
    assert tags.index("source") < tags.index("target")
    # Shared media: libvirt would leave it QEMU's user's, 0600, after the VM stops (see domain_xml).
    assert [label.attrib for label in drive.find("source")] == [  # type: ignore[union-attr]
        {"model": "dac", "relabel": "no"}]


def test_no_cdrom_element_without_a_drive() -> None:
    assert cdrom_element("<domain><devices><disk device='disk'/></devices></domain>") is None
    assert cdrom_element("<domain/>") is None


def test_a_new_drive_takes_the_first_free_ide_place() -> None:
    plain = build_domain_xml(_plan(iso_path=None))
    drive = ET.fromstring(new_cdrom_xml(plain, "/isos/demo.iso"))
    assert drive.get("device") == "cdrom"
    assert drive.find("target").attrib == {"dev": "hdc", "bus": "ide"}  # type: ignore[union-attr]
    assert drive.find("source").get("file") == "/isos/demo.iso"  # type: ignore[union-attr]
    assert drive.find("source/seclabel[@model='dac']").get("relabel") == "no"  # type: ignore[union-attr]
    assert drive.find("readonly") is not None
    taken = plain.replace("</devices>", "<disk device='disk'><target dev='hdc' bus='ide'/></disk></devices>")
    assert ET.fromstring(new_cdrom_xml(taken, None)).find("target").get("dev") == "hdd"  # type: ignore[union-attr]
    assert ET.fromstring(new_cdrom_xml(taken, None)).find("source") is None


def test_no_free_ide_place() -> None:
    full = "<domain><devices>" + "".join(
        f"<disk device='disk'><target dev='{dev}' bus='ide'/></disk>" for dev in ("hda", "hdb", "hdc", "hdd")
    ) + "</devices></domain>"
    with pytest.raises(NoFreeTarget):
        new_cdrom_xml(full, "/isos/demo.iso")


def test_hardware_change_writes_vcpus_memory_and_boot_order() -> None:
    edited = with_hardware(LIVE, HardwareChange(vcpus=2, memory_mib=256, boot_order=("hd",)))
    domain = ET.fromstring(edited)
    vcpu = domain.find("vcpu")
    assert vcpu is not None and vcpu.text == "2" and "current" not in vcpu.attrib  # all online, as at create
    assert domain.find("memory").attrib == {"unit": "KiB"} and domain.find("memory").text == "262144"  # type: ignore[union-attr]
    assert domain.find("currentMemory").text == "262144"  # type: ignore[union-attr]
    parsed = parse_domain_xml(edited)
    assert (parsed.vcpus, parsed.memory_mib, parsed.boot_order) == (2, 256, ("hd",))
    assert parsed.owner == "alice"


def test_hardware_change_leaves_everything_else_alone() -> None:
    edited = with_hardware(LIVE, HardwareChange(boot_order=("cdrom", "hd")))
    assert "limen:owner" in edited  # limen's metadata keeps its prefix
    assert "commandline" in edited and "http://libvirt.org/schemas/domain/qemu/1.0" in edited
    before, after = parse_domain_xml(LIVE), parse_domain_xml(edited)
    assert (after.vcpus, after.memory_mib, after.disks, after.nics) == (
        before.vcpus, before.memory_mib, before.disks, before.nics)
    assert with_hardware(LIVE, HardwareChange()).count("<disk") == 2


def test_boot_order_replaces_per_device_boot_elements() -> None:
    per_device = LIVE.replace("<boot dev='cdrom'/><boot dev='hd'/>", "").replace(
        "<target dev='vda' bus='virtio'/>", "<target dev='vda' bus='virtio'/><boot order='1'/>")
    domain = ET.fromstring(with_hardware(per_device, HardwareChange(boot_order=("cdrom", "hd"))))
    assert domain.findall("devices/disk/boot") == []
    assert [b.get("dev") for b in domain.findall("os/boot")] == ["cdrom", "hd"]


def test_memory_without_current_memory_and_a_missing_vcpu() -> None:
    edited = with_hardware("<domain><memory>1024</memory></domain>", HardwareChange(vcpus=1, memory_mib=64))
    parsed = parse_domain_xml(edited)
    assert (parsed.vcpus, parsed.memory_mib) == (1, 64)
    assert "currentMemory" not in edited


def test_parsing_reads_bus_and_nics() -> None:
    parsed = parse_domain_xml(LIVE)
    assert [(d.target, d.bus) for d in parsed.disks] == [("vda", "virtio"), ("hdc", "ide")]
    assert parsed.nics == (Nic(mac="52:54:00:12:34:56", source="default", model="virtio"),
                           Nic(mac=None, source="br0", model=None))


def test_pending_changes_are_the_persistent_values_that_differ() -> None:
    live = parse_domain_xml(LIVE)
    same = pending_changes(live, live)
    assert not same and same.as_dict() == {}
    persistent = parse_domain_xml(with_hardware(LIVE, HardwareChange(vcpus=1, boot_order=("hd",))))
    pending = pending_changes(live, persistent)
    assert pending == PendingChanges(vcpus=1, boot_order=("hd",))
    assert pending and pending.as_dict() == {"vcpus": 1, "boot_order": ["hd"]}


def test_disk_file_name() -> None:
    assert Disk(DiskDevice.CDROM, "hdc", "/var/lib/limen/isos/a b.iso").file_name == "a b.iso"
    assert Disk(DiskDevice.CDROM, "hdc", None).file_name is None


def _plan(**changes: object) -> DomainPlan:
    base: dict[str, object] = {
        "name": "web-1", "virt_type": "qemu", "vcpus": 1, "memory_mib": 64, "vnc_listen": "127.0.0.1",
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "disk_path": "/pool/web-1-disk0.qcow2",
        "iso_path": "/isos/demo.iso", "boot_order": ("hd",),
    }
    base.update(changes)
    return DomainPlan(**base)  # type: ignore[arg-type]

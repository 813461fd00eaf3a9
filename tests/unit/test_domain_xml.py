from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from limen.hypervisor.domain_xml import DomainPlan, build_domain_xml, connect_host, parse_domain_xml
from limen.hypervisor.models import DiskDevice, VncEndpoint


def _plan(**changes: object) -> DomainPlan:
    base: dict[str, object] = {
        "name": "web-1", "virt_type": "qemu", "vcpus": 2, "memory_mib": 128, "vnc_listen": "127.0.0.1",
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "disk_path": "/pool/web-1-disk0.qcow2",
        "iso_path": "/isos/demo.iso", "boot_order": ("cdrom", "hd"),
    }
    base.update(changes)
    return DomainPlan(**base)  # type: ignore[arg-type]


def test_round_trip_keeps_what_limen_wrote() -> None:
    parsed = parse_domain_xml(build_domain_xml(_plan()))
    assert (parsed.vcpus, parsed.memory_mib) == (2, 128)
    assert parsed.boot_order == ("cdrom", "hd")
    assert [(d.device, d.path) for d in parsed.disks] == [
        (DiskDevice.DISK, "/pool/web-1-disk0.qcow2"), (DiskDevice.CDROM, "/isos/demo.iso")
    ]
    assert parsed.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    # Not running: VNC configured, no port assigned yet.
    assert parsed.vnc == VncEndpoint(host="127.0.0.1", port=None)


def test_the_iso_is_shared_media_libvirt_does_not_relabel() -> None:
    """libvirt gives a started VM's files to QEMU's user and never gives read-only media back: the library's
    ISO would stay libvirt-qemu's, 0600, after the VM stops. The pool's disk is libvirt's to relabel."""
    devices = ET.fromstring(build_domain_xml(_plan())).find("devices")
    assert devices is not None
    cdrom, disk = (devices.find(f"disk[@device='{kind}']/source") for kind in ("cdrom", "disk"))
    assert cdrom is not None and disk is not None
    assert [label.attrib for label in cdrom] == [{"model": "dac", "relabel": "no"}]
    assert list(disk) == []


def test_new_vms_get_autoport_vnc_on_the_configured_address() -> None:
    xml = build_domain_xml(_plan(vnc_listen="0.0.0.0"))
    assert "<graphics type=\"vnc\" port=\"-1\" autoport=\"yes\" listen=\"0.0.0.0\"" in xml


def test_names_are_escaped_not_injected() -> None:
    xml = build_domain_xml(_plan(name="a<b>&c"))
    assert "<name>a&lt;b&gt;&amp;c</name>" in xml


def test_live_vnc_port_and_listen_element() -> None:
    xml = """<domain><vcpu>1</vcpu><memory unit='KiB'>65536</memory><devices>
      <graphics type='vnc' port='5907' autoport='yes' listen='0.0.0.0'>
        <listen type='address' address='0.0.0.0'/></graphics></devices></domain>"""
    parsed = parse_domain_xml(xml)
    assert parsed.vnc == VncEndpoint(host="127.0.0.1", port=5907)
    assert parsed.memory_mib == 64


def test_no_vnc_graphics_means_none() -> None:
    xml = "<domain><vcpu>1</vcpu><memory>1024</memory><devices><graphics type='spice' port='5900'/></devices></domain>"
    assert parse_domain_xml(xml).vnc is None
    assert parse_domain_xml("<domain><vcpu>1</vcpu><memory>1024</memory></domain>").vnc is None


def test_connect_host_turns_wildcards_into_loopback() -> None:
    assert connect_host("0.0.0.0") == "127.0.0.1"
    assert connect_host("::") == "::1"
    assert connect_host("[::]") == "::1"
    assert connect_host("192.0.2.7") == "192.0.2.7"
    assert connect_host("vnc.example") == "vnc.example"

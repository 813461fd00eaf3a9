"""Which VMs use a pool volume (:func:`limen.hypervisor.volumes.read_pool`) beyond a VM's own disk, on
libvirt's test driver: a disk only a snapshot's saved definition names (a revert puts it back), and a qcow2
backing chain (the base is in use while an overlay is backed by it, and whoever uses the overlay uses the
whole chain)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from limen.hypervisor import storage
from limen.hypervisor.volumes import PoolVolume, VolumeUser, read_pool
from tests.conftest import TEST_DRIVER_URI

POOL = "volume-users"


@pytest.fixture
def conn() -> Iterator[libvirt.virConnect]:
    conn = libvirt.open(TEST_DRIVER_URI)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def pool(conn: libvirt.virConnect) -> Iterator[libvirt.virStoragePool]:
    pool = storage.ensure_pool(conn, POOL, Path(f"/{POOL}"))
    yield pool
    for volume in pool.listAllVolumes(0):
        volume.delete(0)


def overlay_xml(name: str, backing_path: str) -> str:
    return (f"<volume><name>{name}</name><capacity unit='G'>1</capacity><target><format type='qcow2'/></target>"
            f"<backingStore><path>{backing_path}</path><format type='qcow2'/></backingStore></volume>")


def domain_xml(name: str, disk_path: str, uuid: str | None = None) -> str:
    return (f"<domain type='test'><name>{name}</name>{f'<uuid>{uuid}</uuid>' if uuid else ''}"
            "<memory unit='MiB'>64</memory><os><type>hvm</type></os><devices>"
            f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk_path}'/>"
            "<target dev='vda' bus='virtio'/></disk></devices></domain>")


def read(conn: libvirt.virConnect, tmp_path: Path) -> dict[str, PoolVolume]:
    return {volume.name: volume for volume in read_pool(conn, POOL, "local", tmp_path / "isos")}


def test_a_volume_only_a_snapshots_definition_names_is_in_use(
    conn: libvirt.virConnect, pool: libvirt.virStoragePool, tmp_path: Path
) -> None:
    """The VM's disk was replaced after the snapshot was taken: its old disk is in no definition it runs or
    starts with, but a revert to the snapshot puts that one back."""
    before = pool.createXML(storage.volume_xml("before.qcow2", 1), 0)
    after = pool.createXML(storage.volume_xml("after.qcow2", 1), 0)
    dom = conn.defineXML(domain_xml("snapshotted", before.path()))
    try:
        dom.snapshotCreateXML("<domainsnapshot><name>kept</name></domainsnapshot>", 0)
        conn.defineXML(domain_xml("snapshotted", after.path(), uuid=dom.UUIDString()))
        user = VolumeUser(name="snapshotted", uuid=dom.UUIDString())
        volumes = read(conn, tmp_path)
        assert volumes["before.qcow2"].used_by == (user,) and volumes["before.qcow2"].in_use
        assert volumes["after.qcow2"].used_by == (user,)
    finally:
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


def test_the_base_of_an_overlay_is_in_use_and_names_it(
    conn: libvirt.virConnect, pool: libvirt.virStoragePool, tmp_path: Path
) -> None:
    base = pool.createXML(storage.volume_xml("base.qcow2", 1), 0)
    pool.createXML(overlay_xml("overlay.qcow2", base.path()), 0)
    volumes = read(conn, tmp_path)
    assert (volumes["base.qcow2"].used_by, volumes["base.qcow2"].backing_for) == ((), ("overlay.qcow2",))
    assert volumes["base.qcow2"].in_use
    assert (volumes["overlay.qcow2"].backing_for, volumes["overlay.qcow2"].in_use) == ((), False)


def test_whoever_uses_an_overlay_uses_its_whole_backing_chain(
    conn: libvirt.virConnect, pool: libvirt.virStoragePool, tmp_path: Path
) -> None:
    base = pool.createXML(storage.volume_xml("base.qcow2", 1), 0)
    middle = pool.createXML(overlay_xml("middle.qcow2", base.path()), 0)
    top = pool.createXML(overlay_xml("top.qcow2", middle.path()), 0)
    dom = conn.defineXML(domain_xml("layered", top.path()))
    try:
        user = VolumeUser(name="layered", uuid=dom.UUIDString())
        volumes = read(conn, tmp_path)
        assert {name: volume.used_by for name, volume in volumes.items()} == {
            "base.qcow2": (user,), "middle.qcow2": (user,), "top.qcow2": (user,)}
        assert (volumes["base.qcow2"].backing_for, volumes["middle.qcow2"].backing_for) == (("middle.qcow2",),
                                                                                            ("top.qcow2",))
    finally:
        dom.undefine()

"""The test driver is put back as fresh between modules: what a module leaves there, the next never sees."""

from __future__ import annotations

from collections.abc import Iterator

import libvirt
import pytest

from tests.support.test_driver_state import URI, differences, fresh_state, put_back_fresh_state, read_state

OWNER_NS = "http://limen.test/owner"


@pytest.fixture
def conn() -> Iterator[libvirt.virConnect]:
    connection = libvirt.open(URI)
    yield connection
    connection.close()


def test_everything_a_module_may_leave_is_put_back(conn: libvirt.virConnect) -> None:
    fresh = fresh_state()
    assert "test" in fresh["domain"] and fresh["domain"]["test"][1]  # the test driver's running VM

    # The VM 'test' stopped, given an owner and a snapshot; it renamed away and back is the same UUID twice.
    test = conn.lookupByName("test")
    test.destroy()
    test.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, "<owner>bob</owner>", "limen", OWNER_NS,
                     libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    test.snapshotCreateXML("<domainsnapshot><name>left</name></domainsnapshot>")
    # A VM of its own, running, with the same XML under another name and UUID.
    xml = conn.lookupByName("test").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    extra = xml.replace("<name>test</name>", "<name>left-behind</name>").replace(
        test.UUIDString(), "6f1c1f5e-7a0e-4f4e-9d5e-0c7e2f0b9a11")
    conn.defineXML(extra).create()
    # A volume in the fresh pool, a pool and a network of its own.
    pool_name = next(iter(fresh["pool"]))
    conn.storagePoolLookupByName(pool_name).createXML(
        "<volume><name>left.img</name><capacity>1048576</capacity></volume>", 0)
    conn.storagePoolDefineXML("<pool type='dir'><name>left-pool</name><target><path>/left</path></target></pool>")
    conn.networkDefineXML("<network><name>left-net</name><bridge name='virbr9'/></network>")

    found = put_back_fresh_state()

    assert set(found) == {"domain 'left-behind' added", "domain 'test' changed", f"pool {pool_name!r} changed",
                          "pool 'left-pool' added", "network 'left-net' added"}
    assert differences(fresh, read_state(conn)) == []
    assert conn.lookupByName("test").isActive() and conn.lookupByName("test").snapshotNum() == 0
    assert put_back_fresh_state() == []  # nothing left to do


def test_a_fresh_driver_is_left_as_it_is(conn: libvirt.virConnect) -> None:
    test = conn.lookupByName("test")
    uuid = test.UUIDString()
    assert put_back_fresh_state() == []
    assert conn.lookupByName("test").UUIDString() == uuid  # not redefined

"""The hypervisor layer against libvirt's in-process test driver (no daemon)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import libvirt
import pytest

from limen.errors import ErrorCode, LimenError, ValidationFailed
from limen.hypervisor import Hypervisor, LifecycleKind, VmSpec, VmState, VmWatch, parse_vm_id, service
from limen.hypervisor.domain_xml import DomainPlan
from limen.hypervisor.service import accelerated_virt_type, act_on_running
from limen.hypervisor.vm_feed import Subscription, VmEvent, VmEventType
from limen.settings import Settings
from tests.conftest import DEMO_ISO

TEST_DOMAIN_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"


async def _until(watch: VmWatch, kind: LifecycleKind) -> None:
    while await watch.next_event() is not kind:
        pass


async def test_lists_the_test_drivers_domain(test_hypervisor: Hypervisor) -> None:
    vms = await test_hypervisor.list_vms()
    assert [(vm.name, vm.state) for vm in vms] == [("test", VmState.RUNNING)]


async def test_get_by_uuid_and_by_name_agree(test_hypervisor: Hypervisor) -> None:
    by_name = await test_hypervisor.get_vm("test")
    by_uuid = await test_hypervisor.get_vm(TEST_DOMAIN_UUID.upper())
    assert by_name == by_uuid
    assert by_name.uuid == TEST_DOMAIN_UUID


async def test_console_vm_agrees_with_get_vm_on_what_a_console_needs(test_hypervisor: Hypervisor) -> None:
    full = await test_hypervisor.get_vm("test")
    for ident in ("test", TEST_DOMAIN_UUID):
        light = await test_hypervisor.console_vm(ident)
        assert (light.uuid, light.name, light.state, light.is_active, light.vnc, light.owner) == (
            full.uuid, full.name, full.state, full.is_active, full.vnc, full.owner)
        assert light.disks == ()


@pytest.mark.parametrize("ident", ["", " ", "a/b", "-x", "x" * 64, "../etc", "名前"])
async def test_invalid_ids_are_refused_before_libvirt(test_hypervisor: Hypervisor, ident: str) -> None:
    for read in (test_hypervisor.get_vm, test_hypervisor.console_vm):
        with pytest.raises(LimenError) as caught:
            await read(ident)
        assert caught.value.code is ErrorCode.INVALID_VM_ID


async def test_unknown_vm(test_hypervisor: Hypervisor) -> None:
    for ident in ("nope", "00000000-0000-0000-0000-000000000000"):
        for read in (test_hypervisor.get_vm, test_hypervisor.console_vm):
            with pytest.raises(LimenError) as caught:
                await read(ident)
            assert caught.value.code is ErrorCode.VM_NOT_FOUND


def test_parse_vm_id() -> None:
    assert parse_vm_id("web-1") == ("name", "web-1")
    assert parse_vm_id(TEST_DOMAIN_UUID.replace("-", "")) == ("uuid", TEST_DOMAIN_UUID)


async def test_lifecycle_create_start_stop_reboot_delete(test_hypervisor: Hypervisor) -> None:
    hv = test_hypervisor
    vm = await hv.create_vm(VmSpec(name="unit-1", vcpus=2, memory_mib=64, disk_gib=1, iso=DEMO_ISO))
    assert vm.state is VmState.STOPPED
    assert (vm.vcpus, vm.memory_mib, vm.boot_order) == (2, 64, ("cdrom", "hd"))
    assert vm.iso_path and vm.iso_path.endswith(DEMO_ISO)
    assert vm.vnc is not None and vm.vnc.port is None
    assert vm.created_at is not None
    disk = next(d for d in vm.disks if d.device.value == "disk")
    assert disk.capacity_bytes == 2**30

    with hv.watch(vm.uuid) as watch:
        assert (await hv.start_vm("unit-1")).state is VmState.RUNNING
        await asyncio.wait_for(_until(watch, LifecycleKind.STARTED), 5)
        with pytest.raises(LimenError) as caught:
            await hv.start_vm("unit-1")
        assert caught.value.code is ErrorCode.VM_ALREADY_RUNNING
        await hv.reboot_vm("unit-1", force=True)
        assert (await hv.stop_vm("unit-1", force=True)).state is VmState.STOPPED
        await asyncio.wait_for(watch.ended.wait(), 5)
    for action in (hv.stop_vm, hv.reboot_vm):
        with pytest.raises(LimenError) as caught:
            await action("unit-1")
        assert caught.value.code is ErrorCode.VM_NOT_RUNNING

    deleted = await hv.delete_vm(vm.uuid, delete_disks=True)
    assert deleted == [disk.path]
    with pytest.raises(LimenError):
        await hv.get_vm(vm.uuid)


async def test_delete_keeps_disks_unless_asked(test_hypervisor: Hypervisor) -> None:
    vm = await test_hypervisor.create_vm(VmSpec(name="unit-keep", memory_mib=64, disk_gib=1))
    assert await test_hypervisor.delete_vm("unit-keep") == []
    path = vm.disks[0].path
    # The volume outlives the VM; remove it here so that the shared test driver stays clean.
    await test_hypervisor.connection.call("delete volume", lambda conn: conn.storageVolLookupByPath(path).delete(0))


async def test_delete_running_vm_stops_it_first(test_hypervisor: Hypervisor) -> None:
    await test_hypervisor.create_vm(VmSpec(name="unit-run", memory_mib=64))
    await test_hypervisor.start_vm("unit-run")
    await test_hypervisor.delete_vm("unit-run")
    assert [vm.name for vm in await test_hypervisor.list_vms()] == ["test"]


async def test_delete_releases_the_vms_serial_consoles_between_destroy_and_undefine(
    test_hypervisor: Hypervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libvirt 9.0 deadlocks when a console stream's abort meets the undefine of its VM
    (limen.hypervisor.serial_stream): the streams go after the destroy (their sessions read the end), and
    before the undefine."""
    vm = await test_hypervisor.create_vm(VmSpec(name="unit-serial-held", memory_mib=64))
    await test_hypervisor.start_vm(vm.uuid)
    seen: list[tuple[str, VmState]] = []

    async def release(vm_uuid: str) -> int:
        seen.append((vm_uuid, (await test_hypervisor.get_vm(vm_uuid)).state))  # still defined, stopped
        return 1

    monkeypatch.setattr("limen.hypervisor.service.release_vm_streams", release)
    await test_hypervisor.delete_vm("unit-serial-held")
    assert seen == [(vm.uuid, VmState.STOPPED)]
    assert "unit-serial-held" not in [vm.name for vm in await test_hypervisor.list_vms()]


async def test_duplicate_name_is_a_conflict(test_hypervisor: Hypervisor) -> None:
    with pytest.raises(LimenError) as caught:
        await test_hypervisor.create_vm(VmSpec(name="test", memory_mib=64))
    assert caught.value.code is ErrorCode.VM_ALREADY_EXISTS


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (VmSpec(name="bad name"), "name"),
        (VmSpec(name="-dash"), "name"),
        (VmSpec(name="x" * 64), "name"),
        (VmSpec(name="ok", vcpus=0), "vcpus"),
        (VmSpec(name="ok", vcpus=10_000), "vcpus"),
        (VmSpec(name="ok", memory_mib=31), "memory_mib"),
        (VmSpec(name="ok", memory_mib=10**9), "memory_mib"),
        (VmSpec(name="ok", disk_gib=0), "disk_gib"),
        (VmSpec(name="ok", disk_gib=2049), "disk_gib"),
        (VmSpec(name="ok", iso="../../etc/passwd"), "iso"),
        (VmSpec(name="ok", iso="absent.iso"), "iso"),
        (VmSpec(name="ok", boot_order=("floppy",)), "boot_order"),
        (VmSpec(name="ok", boot_order=("hd", "hd")), "boot_order"),
    ],
)
async def test_validation_names_the_field(test_hypervisor: Hypervisor, spec: VmSpec, field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await test_hypervisor.create_vm(spec)
    assert caught.value.field == field
    assert [vm.name for vm in await test_hypervisor.list_vms()] == ["test"]


async def test_failed_create_leaves_no_domain_and_no_volume(
    test_hypervisor: Hypervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """define fails after the volume was made: the volume must go too."""

    def broken_xml(_plan: object) -> str:
        return "<domain type='qemu'><name>half</name></domain-broken>"

    monkeypatch.setattr("limen.hypervisor.service.build_domain_xml", broken_xml)
    with pytest.raises(LimenError):
        await test_hypervisor.create_vm(VmSpec(name="half", memory_mib=64, disk_gib=1))
    volumes = await test_hypervisor.connection.call(
        "list volumes",
        lambda conn: conn.storagePoolLookupByName(test_hypervisor.settings.storage_pool).listVolumes(),
    )
    assert "half-disk0.qcow2" not in volumes
    assert [vm.name for vm in await test_hypervisor.list_vms()] == ["test"]


async def test_start_failure_is_typed(test_hypervisor: Hypervisor, monkeypatch: pytest.MonkeyPatch) -> None:
    await test_hypervisor.create_vm(VmSpec(name="unit-fail", memory_mib=64))

    def refuse(_self: libvirt.virDomain, *_args: object) -> int:
        raise libvirt.libvirtError("internal error: process exited while connecting to monitor")

    monkeypatch.setattr(libvirt.virDomain, "create", refuse)
    try:
        with pytest.raises(LimenError) as caught:
            await test_hypervisor.start_vm("unit-fail")
    finally:  # test:///default is the process's: the tests that list its domains expect only 'test'
        await test_hypervisor.delete_vm("unit-fail", delete_disks=True)
    assert caught.value.code is ErrorCode.VM_START_FAILED
    assert "monitor" in caught.value.details


async def test_unreachable_libvirt_is_hypervisor_unavailable(make_settings: Callable[..., Settings]) -> None:
    hv = Hypervisor(make_settings(libvirt_uri="qemu+unix:///system?socket=/nonexistent/limen.sock"))
    await hv.open()
    try:
        with pytest.raises(LimenError) as caught:
            await hv.list_vms()
        assert caught.value.code is ErrorCode.HYPERVISOR_UNAVAILABLE
    finally:
        await hv.close()


async def _next_feed_event(subscription: Subscription, uuid: str, event_type: VmEventType) -> VmEvent:
    while True:
        event = await subscription.next_event(5.0)
        assert event is not None, f"no {event_type} event"
        if event.vm.uuid == uuid and event.type is event_type:
            return event


async def test_the_feed_carries_libvirts_events_with_name_state_and_owner(test_hypervisor: Hypervisor) -> None:
    with test_hypervisor.feed.subscribe(lambda event: True) as subscription:
        vm = await test_hypervisor.create_vm(VmSpec(name="feed-vm", memory_mib=64, owner="alice"))
        defined = await _next_feed_event(subscription, vm.uuid, VmEventType.DEFINED)
        assert (defined.vm.name, defined.vm.state, defined.vm.owner) == ("feed-vm", VmState.STOPPED, "alice")
        await test_hypervisor.start_vm(vm.uuid)
        started = await _next_feed_event(subscription, vm.uuid, VmEventType.STARTED)
        assert started.vm.state is VmState.RUNNING
        await test_hypervisor.delete_vm(vm.uuid)
        # Gone from libvirt with its metadata: the owner comes from what the feed saw of it before.
        undefined = await _next_feed_event(subscription, vm.uuid, VmEventType.UNDEFINED)
        assert (undefined.vm.name, undefined.vm.state, undefined.vm.owner) == ("feed-vm", None, "alice")


async def test_announce_publishes_what_libvirt_does_not(test_hypervisor: Hypervisor) -> None:
    with test_hypervisor.feed.subscribe(lambda event: True) as subscription:
        await test_hypervisor.announce("test", VmEventType.MEDIA_CHANGED)
        event = await _next_feed_event(subscription, TEST_DOMAIN_UUID, VmEventType.MEDIA_CHANGED)
        await test_hypervisor.announce("no-such-vm", VmEventType.MEDIA_CHANGED)  # logged, not raised
    assert event.vm.state is VmState.RUNNING


def test_a_vm_stopped_between_the_check_and_the_act_is_not_running() -> None:
    """Ten stops at once: the ones that found the VM running and reached libvirt after the first got
    VM_OPERATION_FAILED "domain is not running"; they are VM_NOT_RUNNING like a stop of a stopped VM."""
    conn = libvirt.open("test:///default")
    try:
        dom = conn.lookupByName("test")  # the test driver's own domain, running
        if not dom.isActive():
            dom.create()

        def stopped_by_another_first() -> None:
            dom.destroy()  # the other stop
            dom.destroy()  # this one's, a moment late

        with pytest.raises(LimenError) as caught:
            act_on_running(dom, stopped_by_another_first)
        assert caught.value.code is ErrorCode.VM_NOT_RUNNING
        with pytest.raises(LimenError) as caught:
            act_on_running(dom, dom.destroy)  # checked first: not running
        assert caught.value.code is ErrorCode.VM_NOT_RUNNING
    finally:
        dom.create()  # as the driver's other users expect it
        conn.close()


@pytest.fixture
async def raced_images(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[Hypervisor]:
    """A hypervisor whose ISO directory holds first.iso and raced.iso (deleted mid-request by the tests)."""
    iso_dir = tmp_path / "raced-isos"
    iso_dir.mkdir()
    for name in ("first.iso", "raced.iso"):
        (iso_dir / name).write_bytes(b"image")
    hypervisor = Hypervisor(make_settings(iso_dir=iso_dir))
    await hypervisor.open()
    yield hypervisor
    await hypervisor.close()


async def test_a_create_whose_image_is_deleted_before_its_definition_is_undone(
    raced_images: Hypervisor, monkeypatch: pytest.MonkeyPatch, vm_names: Callable[[], str]
) -> None:
    """The image's delete read the CD-ROMs after this create checked the image and before it defined the VM:
    both answered success, and the VM's CD-ROM named a deleted file."""
    real = service.build_domain_xml

    def deleted_meanwhile(plan: DomainPlan) -> str:
        (raced_images.settings.iso_dir / "raced.iso").unlink()
        return real(plan)

    monkeypatch.setattr(service, "build_domain_xml", deleted_meanwhile)
    name = vm_names()
    with pytest.raises(ValidationFailed) as caught:
        await raced_images.create_vm(VmSpec(name=name, memory_mib=64, iso="raced.iso"))
    assert (caught.value.field, caught.value.to_dict()["rule"]["kind"]) == ("iso", "iso_missing")
    assert name not in [vm.name for vm in await raced_images.list_vms()]



def _capabilities(*guests: tuple[str, str, tuple[str, ...]]) -> str:
    """Capabilities XML as libvirt writes it: the host's arch, and per guest its OS type, arch and domain types."""
    described = "".join(
        f"<guest><os_type>{os_type}</os_type><arch name='{arch}'>"
        + "".join(f"<domain type='{kind}'/>" for kind in kinds) + "</arch></guest>"
        for os_type, arch, kinds in guests)
    return f"<capabilities><host><cpu><arch>x86_64</arch></cpu></host>{described}</capabilities>"


def test_kvm_is_what_the_hosts_libvirt_offers_not_what_limens_process_may_open() -> None:
    """limen run as its service user (not in the kvm group) could not open /dev/kvm, and gave every new VM
    TCG on a host whose libvirt (its QEMU) had KVM; a remote host was judged by limen's machine."""
    assert accelerated_virt_type(_capabilities(("hvm", "i686", ("qemu", "kvm")),
                                               ("hvm", "x86_64", ("qemu", "kvm")))) == "kvm"
    assert accelerated_virt_type(_capabilities(("hvm", "x86_64", ("qemu",)))) == "qemu"
    assert accelerated_virt_type(_capabilities(("hvm", "aarch64", ("kvm",)), ("hvm", "x86_64", ("qemu",)))) == "qemu"


async def test_an_auto_domain_type_comes_from_the_hosts_capabilities(
    make_settings: Callable[..., Settings], vm_names: Callable[[], str]
) -> None:
    hypervisor = Hypervisor(make_settings(virt_type="auto"))
    await hypervisor.open()
    try:
        vm = await hypervisor.create_vm(VmSpec(name=vm_names(), memory_mib=64))
        xml = await hypervisor.connection.call("xml", lambda conn: conn.lookupByUUIDString(vm.uuid).XMLDesc(0))
    finally:
        await hypervisor.close()
    assert ET.fromstring(xml).get("type") == "qemu"  # the test driver offers no KVM, whatever /dev/kvm here says

"""Editing VMs on libvirt's in-process test driver (no daemon): hardware, boot order, rename, autostart,
pending changes of running VMs, the refusals; what the test driver cannot do (device updates, volume
resize) is covered on real QEMU in tests/integration/test_vm_edit.py."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import libvirt
import pytest

from limen.errors import ErrorCode, LimenError
from limen.hypervisor import Hypervisor, VmSpec, VmState, editing, service
from limen.hypervisor.domain_edit import HardwareChange, with_hardware
from limen.hypervisor.editing import VmEdit, change_media, edit_vm, finish_install, resize_disk
from limen.hypervisor.models import PendingChanges
from tests.conftest import DEMO_ISO


@pytest.fixture
async def vm_name(test_hypervisor: Hypervisor) -> AsyncIterator[str]:
    name = f"edit-{uuid.uuid4().hex[:8]}"
    await test_hypervisor.create_vm(VmSpec(name=name, memory_mib=64, disk_gib=1, iso=DEMO_ISO, owner="alice"))
    yield name
    for vm in await test_hypervisor.list_vms():
        if vm.name.startswith(name):
            await test_hypervisor.delete_vm(vm.uuid)


async def _code(step: asyncio.Future[object] | object) -> ErrorCode:
    with pytest.raises(LimenError) as caught:
        await step  # type: ignore[misc]
    return caught.value.code


async def test_a_stopped_vm_takes_every_change_at_once(test_hypervisor: Hypervisor, vm_name: str) -> None:
    edited = await edit_vm(test_hypervisor, vm_name, VmEdit(vcpus=2, memory_mib=128, boot_order=("hd",),
                                                            autostart=True))
    vm = edited.vm
    assert (vm.vcpus, vm.memory_mib, vm.boot_order, vm.autostart) == (2, 128, ("hd",), True)
    assert not vm.pending_restart and vm.pending == PendingChanges()
    assert edited.changes == ("vcpus 1 → 2", "memory_mib 64 → 128", "boot_order cdrom,hd → hd",
                              "autostart false → true")
    assert (await test_hypervisor.get_vm(vm_name)).vcpus == 2
    again = await edit_vm(test_hypervisor, vm_name, VmEdit(vcpus=2, autostart=True))
    assert again.changes == () and again.summary == "nothing changed"


async def test_a_running_vm_keeps_its_settings_until_restarted(test_hypervisor: Hypervisor, vm_name: str) -> None:
    await test_hypervisor.start_vm(vm_name)
    edited = await edit_vm(test_hypervisor, vm_name, VmEdit(vcpus=2, memory_mib=96, boot_order=("hd",),
                                                            autostart=True))
    vm = edited.vm
    assert (vm.vcpus, vm.memory_mib, vm.boot_order) == (1, 64, ("cdrom", "hd"))  # still running as before
    assert vm.pending_restart
    assert vm.pending.as_dict() == {"vcpus": 2, "memory_mib": 96, "boot_order": ["hd"]}
    assert vm.autostart  # at once
    assert all(change.endswith("(pending restart)") for change in edited.changes if "autostart" not in change)
    # Back to the running value: no longer pending.
    back = await edit_vm(test_hypervisor, vm_name, VmEdit(memory_mib=64))
    assert back.vm.pending.as_dict() == {"vcpus": 2, "boot_order": ["hd"]}

    await test_hypervisor.stop_vm(vm_name, force=True)
    await test_hypervisor.start_vm(vm_name)
    vm = await test_hypervisor.get_vm(vm_name)
    assert (vm.vcpus, vm.memory_mib, vm.boot_order, vm.pending_restart) == (2, 64, ("hd",), False)


async def test_rename_keeps_owner_and_disks(test_hypervisor: Hypervisor, vm_name: str) -> None:
    before = await test_hypervisor.get_vm(vm_name)
    new_name = f"{vm_name}-renamed.ü"[:63]
    with pytest.raises(LimenError) as caught:
        await edit_vm(test_hypervisor, vm_name, VmEdit(name=new_name))
    assert caught.value.code is ErrorCode.VALIDATION_ERROR and caught.value.details.startswith("name:")
    new_name = f"{vm_name}-{'x' * 63}"[:63]  # the longest name allowed
    edited = await edit_vm(test_hypervisor, vm_name, VmEdit(name=new_name, vcpus=2))
    assert (edited.vm.name, edited.vm.uuid, edited.vm.owner, edited.vm.disks) == (
        new_name, before.uuid, "alice", before.disks)
    assert edited.changes == ("vcpus 1 → 2", f"name {vm_name} → {new_name}")
    assert await _code(test_hypervisor.get_vm(vm_name)) is ErrorCode.VM_NOT_FOUND
    assert (await test_hypervisor.get_vm(before.uuid)).name == new_name


async def test_rename_refusals_change_nothing(test_hypervisor: Hypervisor, vm_name: str) -> None:
    assert await _code(edit_vm(test_hypervisor, vm_name, VmEdit(name="test", vcpus=2, autostart=True))) \
        is ErrorCode.VM_ALREADY_EXISTS
    vm = await test_hypervisor.get_vm(vm_name)
    assert (vm.name, vm.vcpus, vm.autostart) == (vm_name, 1, False)  # all or nothing
    await test_hypervisor.start_vm(vm_name)
    assert await _code(edit_vm(test_hypervisor, vm_name, VmEdit(name="other-name", vcpus=2))) \
        is ErrorCode.VM_MUST_BE_STOPPED
    assert not (await test_hypervisor.get_vm(vm_name)).pending_restart
    same_name = await edit_vm(test_hypervisor, vm_name, VmEdit(name=vm_name))  # running, but no rename
    assert same_name.changes == ()


async def test_two_vms_renamed_at_once_to_one_name_in_two_cases_get_one_of_them(
    test_hypervisor: Hypervisor, vm_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two renames checked the name free side by side (each under its own VM's lock) and both took it:
    ``x`` and ``X`` listed together. The window is widened here so that the two checks overlap every time."""
    other = f"{vm_name}-b"
    await test_hypervisor.create_vm(VmSpec(name=other, memory_mib=64))
    checked = editing.refuse_taken_name

    def slow_check(conn: libvirt.virConnect, name: str, *, own_uuid: str | None = None) -> None:
        checked(conn, name, own_uuid=own_uuid)
        time.sleep(0.2)  # the other rename checks now, were it let

    monkeypatch.setattr(editing, "refuse_taken_name", slow_check)
    wanted = f"{vm_name}-case"
    outcomes = await asyncio.gather(edit_vm(test_hypervisor, vm_name, VmEdit(name=wanted)),
                                    edit_vm(test_hypervisor, other, VmEdit(name=wanted.upper())),
                                    return_exceptions=True)
    refused = [outcome.code for outcome in outcomes if isinstance(outcome, LimenError)]
    assert refused == [ErrorCode.VM_ALREADY_EXISTS], outcomes
    names = [vm.name for vm in await test_hypervisor.list_vms() if vm.name.casefold() == wanted.casefold()]
    assert len(names) == 1, names


async def test_a_create_and_a_rename_at_once_take_one_name_in_two_cases_once(
    test_hypervisor: Hypervisor, vm_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = service.refuse_taken_name

    def slow_check(conn: libvirt.virConnect, name: str, *, own_uuid: str | None = None) -> None:
        checked(conn, name, own_uuid=own_uuid)
        time.sleep(0.2)

    monkeypatch.setattr(service, "refuse_taken_name", slow_check)
    monkeypatch.setattr(editing, "refuse_taken_name", slow_check)
    wanted = f"{vm_name}-new"
    outcomes = await asyncio.gather(test_hypervisor.create_vm(VmSpec(name=wanted.upper(), memory_mib=64)),
                                    edit_vm(test_hypervisor, vm_name, VmEdit(name=wanted)), return_exceptions=True)
    refused = [outcome.code for outcome in outcomes if isinstance(outcome, LimenError)]
    assert refused == [ErrorCode.VM_ALREADY_EXISTS], outcomes
    for vm in await test_hypervisor.list_vms():
        if vm.name == wanted.upper():
            await test_hypervisor.delete_vm(vm.uuid)


@pytest.mark.parametrize(("edit", "field"), [
    (VmEdit(vcpus=0), "vcpus"), (VmEdit(vcpus=10_000), "vcpus"), (VmEdit(memory_mib=31), "memory_mib"),
    (VmEdit(memory_mib=2**40), "memory_mib"), (VmEdit(boot_order=("floppy",)), "boot_order"),
    (VmEdit(boot_order=("hd", "hd")), "boot_order"), (VmEdit(boot_order=()), "boot_order"),
    (VmEdit(name=""), "name"), (VmEdit(name="-x"), "name"), (VmEdit(name="x" * 64), "name"),
    (VmEdit(name="a/b"), "name"),
])
async def test_validation_as_at_create(test_hypervisor: Hypervisor, vm_name: str, edit: VmEdit, field: str) -> None:
    with pytest.raises(LimenError) as caught:
        await edit_vm(test_hypervisor, vm_name, edit)
    assert caught.value.code is ErrorCode.VALIDATION_ERROR
    assert caught.value.details.startswith(f"{field}:")


async def test_parallel_edits_do_not_lose_each_other(
    test_hypervisor: Hypervisor, vm_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_with_hardware(xml: str, change: HardwareChange) -> str:
        time.sleep(0.05)  # widens the read-modify-write window, as a slow libvirtd would (worker thread)
        return with_hardware(xml, change)

    monkeypatch.setattr("limen.hypervisor.editing.with_hardware", slow_with_hardware)
    await asyncio.gather(
        edit_vm(test_hypervisor, vm_name, VmEdit(vcpus=2)),
        edit_vm(test_hypervisor, vm_name, VmEdit(memory_mib=100)),
        edit_vm(test_hypervisor, vm_name, VmEdit(boot_order=("hd", "cdrom"))),
        edit_vm(test_hypervisor, vm_name, VmEdit(autostart=True)),
    )
    vm = await test_hypervisor.get_vm(vm_name)
    assert (vm.vcpus, vm.memory_mib, vm.boot_order, vm.autostart) == (2, 100, ("hd", "cdrom"), True)


async def test_unknown_and_invalid_vms(test_hypervisor: Hypervisor) -> None:
    for step in (edit_vm(test_hypervisor, "nope", VmEdit(vcpus=1)), change_media(test_hypervisor, "nope", None),
                 finish_install(test_hypervisor, "nope"), resize_disk(test_hypervisor, "nope", "vda", 2**31)):
        assert await _code(step) is ErrorCode.VM_NOT_FOUND
    assert await _code(edit_vm(test_hypervisor, "../x", VmEdit(vcpus=1))) is ErrorCode.INVALID_VM_ID


@pytest.mark.parametrize("iso", ["missing.iso", "../etc/passwd", "/var/lib/limen/isos/" + DEMO_ISO, "x.txt", ""])
async def test_unknown_iso(test_hypervisor: Hypervisor, vm_name: str, iso: str) -> None:
    assert await _code(change_media(test_hypervisor, vm_name, iso)) is ErrorCode.VALIDATION_ERROR


async def test_media_on_a_vm_without_a_drive(test_hypervisor: Hypervisor) -> None:
    name = f"edit-{uuid.uuid4().hex[:8]}"
    vm = await test_hypervisor.create_vm(VmSpec(name=name, memory_mib=64))
    try:
        assert vm.cdrom is None
        ejected = await change_media(test_hypervisor, name, None)  # nothing to eject: nothing done
        assert ejected.changes == () and ejected.vm.cdrom is None
        await test_hypervisor.start_vm(name)
        assert await _code(change_media(test_hypervisor, name, DEMO_ISO)) is ErrorCode.VM_MUST_BE_STOPPED
        assert await _code(finish_install(test_hypervisor, name)) is ErrorCode.DISK_NOT_FOUND  # no disk to boot
    finally:
        await test_hypervisor.delete_vm(name)


async def test_resize_refusals(test_hypervisor: Hypervisor, vm_name: str) -> None:
    vm = await test_hypervisor.get_vm(vm_name)
    assert vm.state is VmState.STOPPED
    capacity = next(d.capacity_bytes for d in vm.disks if d.target == "vda")
    assert capacity == 2**30
    for size in (capacity, capacity - 2**20):
        assert await _code(resize_disk(test_hypervisor, vm_name, "vda", size)) is ErrorCode.DISK_SHRINK_REFUSED
    for target in ("hdc", "vdz", "x" * 500, "../vda"):  # hdc is the CD-ROM: not a disk
        assert await _code(resize_disk(test_hypervisor, vm_name, target, 2**31)) is ErrorCode.DISK_NOT_FOUND
    for size in (0, -1, 2**30 + 1, 2049 * 2**30):
        assert await _code(resize_disk(test_hypervisor, vm_name, "vda", size)) is ErrorCode.VALIDATION_ERROR


async def test_a_failing_rename_undoes_the_rest_of_the_edit(
    test_hypervisor: Hypervisor, vm_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(_dom: libvirt.virDomain, _name: str, _flags: int = 0) -> int:
        raise libvirt.libvirtError("rename refused for the test")

    monkeypatch.setattr(libvirt.virDomain, "rename", refuse)
    with pytest.raises(LimenError) as caught:
        await edit_vm(test_hypervisor, vm_name, VmEdit(name="another-name", vcpus=2, boot_order=("hd",),
                                                        autostart=True))
    assert caught.value.code is ErrorCode.VM_OPERATION_FAILED
    vm = await test_hypervisor.get_vm(vm_name)
    assert (vm.name, vm.vcpus, vm.boot_order, vm.autostart) == (vm_name, 1, ("cdrom", "hd"), False)

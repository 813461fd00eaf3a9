"""The quota arithmetic (limen.quota.limits): footprints, merging, and what is refused."""

from __future__ import annotations

import pytest

from limen.hypervisor.models import Disk, DiskDevice, PendingChanges, Vm, VmState
from limen.quota.limits import GIB, Footprint, Limits, QuotaExceeded, Usage, check, check_alone, with_change


def vm(name: str, state: VmState = VmState.STOPPED, *, vcpus: int = 1, memory: int = 128, disk_gib: int = 0,
       pending: PendingChanges = PendingChanges()) -> Vm:
    disks = (Disk(DiskDevice.DISK, "vda", "/p/x", capacity_bytes=disk_gib * GIB),
             Disk(DiskDevice.CDROM, "hdc", "/i/x.iso", capacity_bytes=5 * GIB))
    return Vm(uuid=name, name=name, state=state, vcpus=vcpus, memory_mib=memory, disks=disks, owner="bob",
              pending=pending)


def test_only_running_vms_use_vcpus_and_memory_and_cdroms_are_no_disk() -> None:
    usage = Usage.of([Footprint.of_vm(vm("a", disk_gib=2)), Footprint.of_vm(vm("b", VmState.RUNNING, vcpus=2))])
    assert usage == Usage(vms=2, vcpus=2, memory_mib=128, disk_bytes=2 * GIB)


def test_a_running_vm_counts_its_pending_hardware() -> None:
    running = Footprint.of_vm(vm("a", VmState.RUNNING, vcpus=1, memory=128, pending=PendingChanges(vcpus=4)))
    assert (running.vcpus, running.memory_mib) == (4, 128)


def test_a_reservation_and_the_vm_it_made_are_not_counted_twice() -> None:
    made = {"a": Footprint.of_vm(vm("a", disk_gib=1))}
    reserved = Footprint("a", "bob", running=False, vcpus=1, memory_mib=128, disk_bytes=GIB)
    assert Usage.of(with_change(made, reserved).values()).vms == 1
    new = Footprint("b", "bob", running=False, vcpus=1, memory_mib=128, disk_bytes=GIB)
    assert Usage.of(with_change(made, new).values()) == Usage(vms=2, disk_bytes=2 * GIB)


def test_only_increases_past_the_limit_are_refused() -> None:
    limits = Limits(vms=1, vcpus=2)
    over = Usage(vms=3, vcpus=4)
    check(limits, over, Usage(vms=2, vcpus=4), scope="user 'bob'")  # less than before: fine
    with pytest.raises(QuotaExceeded) as refused:
        check(limits, Usage(vms=1), Usage(vms=2), scope="user 'bob'")
    assert refused.value.to_dict()["quota"] == {"scope": "user 'bob'", "resource": "vms", "limit": 1, "usage": 1,
                                                "requested": 1, "free": 1}
    assert refused.value.to_dict()["code"] == "QUOTA_EXCEEDED"
    assert refused.value.details \
        == "user 'bob' quota on VMs: limit 1, in use 1, this needs 1 more; free 1 (delete a VM)"


def test_disk_is_compared_in_gib_with_fractions() -> None:
    with pytest.raises(QuotaExceeded) as refused:
        check(Limits(disk_gib=1), Usage(disk_bytes=GIB // 2), Usage(disk_bytes=GIB + GIB // 2), scope="system-wide")
    assert refused.value.quota["usage"] == 0.5 and refused.value.quota["free"] == 0.5


def test_a_vm_that_could_never_start_is_refused_alone() -> None:
    check_alone(Limits(vcpus=2, memory_mib=256), Footprint("a", "bob", False, 2, 256, 0), scope="s")
    with pytest.raises(QuotaExceeded) as refused:
        check_alone(Limits(memory_mib=256), Footprint("a", "bob", False, 1, 257, 0), scope="user 'bob'")
    assert refused.value.details == ("user 'bob' quota on memory (MiB): limit 256; a VM with 257 could never start "
                                     "within it (give it at most 256)")


def test_admin_limits_fall_back_only_where_unset() -> None:
    assert Limits(vms=5).or_else(Limits(vms=1, vcpus=2)) == Limits(vms=5, vcpus=2)

"""A console opened on a stopped VM starts it: that start is a VM action like ``POST /api/vms/{id}/start``,
checked against the quota and recorded in the audit trail with who opened the console and which console.

Over libvirt's test driver, with :class:`QuotaCheckedStarts` (what both console endpoints hand their session
as its hypervisor) driven directly: its ``start_vm`` is what the session's start_vm stage calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import pytest

from limen.audit import VmActionInfo
from limen.auth.access import Access
from limen.auth.principal import AuthMethod, Principal
from limen.console.endpoint import QuotaCheckedStarts
from limen.db import Role
from limen.errors import ErrorCode, LimenError
from limen.hypervisor import Hypervisor
from limen.hypervisor.models import Vm, VmSpec, VmState
from limen.quota import QuotaLedger
from limen.settings import Settings
from tests.support.access import make_access


@dataclass
class Admitted:
    principal: Principal | None


ALICE = Admitted(Principal(name="alice", role=Role.USER, method=AuthMethod.TICKET))


@pytest.fixture
async def access(make_settings: Callable[..., Settings]) -> AsyncIterator[Access]:
    access = make_access(make_settings(quota_vcpus=2))
    await access.start()
    await access.users.create("alice", "alice's long password")
    yield access
    await access.close()


@pytest.fixture
async def stopped_vm(test_hypervisor: Hypervisor) -> AsyncIterator[Callable[..., Awaitable[Vm]]]:
    """Makes alice's stopped VMs; deletes them after the test (the test driver is shared by the process)."""
    made: list[Vm] = []

    async def make(vcpus: int = 1) -> Vm:
        made.append(await test_hypervisor.create_vm(
            VmSpec(name=f"auto-start-{len(made)}", vcpus=vcpus, memory_mib=64, owner="alice")))
        return made[-1]

    yield make
    for vm in made:
        await test_hypervisor.delete_vm(vm.uuid)  # stops it first


def starts(access: Access, hypervisor: Hypervisor, console: str = "VNC") -> QuotaCheckedStarts:
    ledger = QuotaLedger(access.db, access.settings, access.clock, instance_id=access.instances.id)
    return QuotaCheckedStarts(hypervisor, ledger, ALICE, access.audit, console=console)


async def test_the_start_is_recorded_with_who_opened_the_console_and_which(
    access: Access, test_hypervisor: Hypervisor, stopped_vm: Callable[..., Awaitable[Vm]]
) -> None:
    vm = await stopped_vm()
    started = await starts(access, test_hypervisor, console="serial").start_vm(vm.uuid)
    assert started.state is VmState.RUNNING
    (row,) = await access.audit.vm_actions(vm=vm.uuid)
    assert (row.user, row.action, row.vm_name, row.result_code) == ("alice", "start", vm.name, "OK")
    assert row.details == "from the serial console" and not row.pending


async def test_a_start_over_the_quota_is_recorded_refused_and_the_vm_stays_stopped(
    access: Access, test_hypervisor: Hypervisor, stopped_vm: Callable[..., Awaitable[Vm]]
) -> None:
    vm = await stopped_vm(vcpus=4)  # alice's quota: 2 running vCPUs
    with pytest.raises(LimenError) as refused:
        await starts(access, test_hypervisor).start_vm(vm.name)
    assert refused.value.code is ErrorCode.QUOTA_EXCEEDED
    assert (await test_hypervisor.get_vm(vm.uuid)).state is VmState.STOPPED
    (row,) = await access.audit.vm_actions(vm=vm.uuid)
    assert (row.action, row.result_code) == ("start", "QUOTA_EXCEEDED")
    assert row.details == "from the VNC console; vCPUs quota: 4 over 2"  # and which quota refused it


class StartAnswersLate:
    """The test driver's hypervisor whose start answers only once ``answer`` is set (a slow libvirt), then
    starts the VM or fails as ``fails`` says."""

    def __init__(self, hypervisor: Hypervisor, fails: LimenError | None = None) -> None:
        self._hv = hypervisor
        self.answer = asyncio.Event()
        self._fails = fails

    def __getattr__(self, name: str) -> object:
        return getattr(self._hv, name)

    async def start_vm(self, ident: str) -> Vm:
        await self.answer.wait()
        if self._fails is not None:
            raise self._fails
        return await self._hv.start_vm(ident)


async def _row_settled(access: Access, vm: Vm) -> VmActionInfo:
    async with asyncio.timeout(10):
        while True:
            (row,) = await access.audit.vm_actions(vm=vm.uuid)
            if not row.pending:
                return row
            await asyncio.sleep(0.01)


async def test_a_start_the_console_stopped_waiting_for_is_recorded_as_what_became_of_the_vm(
    access: Access, test_hypervisor: Hypervisor, stopped_vm: Callable[..., Awaitable[Vm]]
) -> None:
    """The console's client left (or its stage's deadline passed) while libvirt started the VM: the VM ran,
    and its row said VM_START_FAILED. The start goes on; the row waits for libvirt's answer."""
    vm = await stopped_vm()
    slow = StartAnswersLate(test_hypervisor)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):  # the start_vm stage's deadline, or the client gone
            await starts(access, cast(Hypervisor, slow)).start_vm(vm.uuid)
    (row,) = await access.audit.vm_actions(vm=vm.uuid)
    assert row.pending  # libvirt has not answered yet
    slow.answer.set()
    row = await _row_settled(access, vm)
    assert (row.action, row.result_code, row.details) == ("start", "OK", "from the VNC console")
    assert (await test_hypervisor.get_vm(vm.uuid)).state is VmState.RUNNING


async def test_a_start_that_fails_after_the_console_stopped_waiting_is_recorded_with_its_error(
    access: Access, test_hypervisor: Hypervisor, stopped_vm: Callable[..., Awaitable[Vm]]
) -> None:
    vm = await stopped_vm()
    slow = StartAnswersLate(test_hypervisor, LimenError(ErrorCode.HYPERVISOR_UNAVAILABLE, "no answer in 30 s"))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await starts(access, cast(Hypervisor, slow)).start_vm(vm.uuid)
    slow.answer.set()
    row = await _row_settled(access, vm)
    assert (row.result_code, row.details) == ("HYPERVISOR_UNAVAILABLE", "from the VNC console")

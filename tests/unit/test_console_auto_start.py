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
    assert (row.action, row.result_code, row.details) == ("start", "QUOTA_EXCEEDED", "from the VNC console")


class StartNeverAnswers:
    """The test driver's hypervisor whose start never returns (a libvirt call that hangs)."""

    def __init__(self, hypervisor: Hypervisor) -> None:
        self._hv = hypervisor

    def __getattr__(self, name: str) -> object:
        return getattr(self._hv, name)

    async def start_vm(self, ident: str) -> Vm:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_start_the_console_stopped_waiting_for_is_recorded_as_the_failure_it_reported(
    access: Access, test_hypervisor: Hypervisor, stopped_vm: Callable[..., Awaitable[Vm]]
) -> None:
    vm = await stopped_vm()
    hanging = cast(Hypervisor, StartNeverAnswers(test_hypervisor))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):  # the start_vm stage's deadline
            await starts(access, hanging).start_vm(vm.uuid)
    (row,) = await access.audit.vm_actions(vm=vm.uuid)
    assert (row.action, row.result_code, row.details) == ("start", "VM_START_FAILED", "from the VNC console")
    assert not row.pending  # not left STARTED, nor called an internal error

"""The quota ledger on a real SQLite file: reservations count until their change is done, and those of a
lost instance are dropped by a survivor's sweep."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from limen.api.quota import quota_for_start
from limen.audit import AuditLog
from limen.auth.passwords import Passwords
from limen.auth.principal import AuthMethod, Principal
from limen.auth.users import Users
from limen.db import Database
from limen.db.database import MIGRATIONS_DIR
from limen.db.models import Role
from limen.hypervisor import Hypervisor
from limen.hypervisor.models import Vm, VmState
from limen.instances import InstanceRegistry, ProcessIdentity
from limen.quota import Footprint, QuotaExceeded, QuotaLedger
from limen.recovery import Recovery
from limen.settings import Settings
from tests.support.access import CHEAP_HASHER, FakeClock

HEARTBEAT = 5.0
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def new_vm(name: str) -> Footprint:
    return Footprint(name=name, owner="bob", running=False, vcpus=1, memory_mib=64, disk_bytes=0)


async def test_a_reservation_counts_until_done_and_a_lost_instances_go_at_the_sweep(
    make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(quota_vms=1)
    db = Database(settings.db_url)
    db.migrate()
    clock = FakeClock(T0.timestamp())
    await Users(db, Passwords(CHEAP_HASHER), clock).create("bob", "bob's long password")
    in_libvirt: list[Vm] = []

    async def list_vms() -> list[Vm]:
        return list(in_libvirt)

    lost = InstanceRegistry(db, clock, HEARTBEAT, process=ProcessIdentity("h", 1, None),
                            is_process_gone=lambda _: False)
    survivor = InstanceRegistry(db, clock, HEARTBEAT, process=ProcessIdentity("h", 2, None),
                                is_process_gone=lambda _: False)
    await lost.register()
    await survivor.register()
    lost_ledger = QuotaLedger(db, settings, clock, instance_id=lost.id)
    ledger = QuotaLedger(db, settings, clock, instance_id=survivor.id)

    # While one create is in flight, its reservation holds bob's only slot.
    async with ledger.reserving(new_vm("one"), list_vms):
        with pytest.raises(QuotaExceeded):
            async with ledger.reserving(new_vm("two"), list_vms):
                pass
        # Done: libvirt shows it, and it is counted once, not with its reservation as well.
        in_libvirt.append(Vm(uuid="u1", name="one", state=VmState.STOPPED, vcpus=1, memory_mib=64, owner="bob"))
        report = await ledger.report("bob", list_vms)
        assert report.usage.vms == 1 and report.limits.vms == 1
    in_libvirt.clear()  # deleted

    # An instance dies in the middle of a create: its reservation holds the slot until it is found gone.
    held = lost_ledger.reserving(new_vm("orphan"), list_vms)
    await held.__aenter__()
    with pytest.raises(QuotaExceeded):
        async with ledger.reserving(new_vm("two"), list_vms):
            pass
    hypervisor = Hypervisor(settings)
    recovery = Recovery(survivor, AuditLog(db, clock, instance_id=survivor.id), hypervisor, quota=ledger)
    clock.advance(HEARTBEAT * 3 + 1)
    await survivor.heartbeat()
    await hypervisor.open()
    try:
        assert (await recovery.sweep()).lost_instances == (lost.id,)
    finally:
        await hypervisor.close()
    async with ledger.reserving(new_vm("two"), list_vms):
        pass
    db.close()


def test_users_from_before_are_approved_and_the_lock_row_exists(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'limen.db'}")
    try:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0003_m2_crash")
            connection.execute(text(
                "INSERT INTO users (name, name_key, password_hash, role, created_at, disabled) "
                "VALUES ('old', 'old', 'x', 'user', :now, 0)"), {"now": datetime.now(UTC)})
        db.migrate()
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT approved FROM users")).scalar() == 1
            assert connection.execute(text("SELECT id, generation FROM quota_lock")).all() == [(1, 0)]
    finally:
        db.close()


# -- one VM, whatever it is named by then -------------------------------------------------------------

def _bobs(uuid: str, name: str, state: VmState, vcpus: int) -> Vm:
    return Vm(uuid=uuid, name=name, state=state, vcpus=vcpus, memory_mib=64, owner="bob")


async def _ledger_with_bob(settings: Settings) -> tuple[Database, QuotaLedger]:
    db = Database(settings.db_url)
    db.migrate()
    clock = FakeClock(T0.timestamp())
    await Users(db, Passwords(CHEAP_HASHER), clock).create("bob", "bob's long password")
    return db, QuotaLedger(db, settings, clock, instance_id="i-1")


async def test_a_start_and_a_rename_to_more_vcpus_at_once_count_as_one_vm(
    make_settings: Callable[..., Settings]
) -> None:
    # bob may run 4 vCPUs and runs 3. A start of his 1-vCPU VM passed its check; a rename of that VM with 4
    # vCPUs came before libvirt started it: the start's reservation named the old name, the rename's the
    # new, and they counted as two VMs, one stopped: both passed, and the VM started with 4 (7 running).
    db, ledger = await _ledger_with_bob(make_settings(quota_vcpus=4))
    starting = _bobs("u-a", "n-a", VmState.STOPPED, 1)
    in_libvirt = [_bobs("u-b", "n-b", VmState.RUNNING, 3), starting]

    async def list_vms() -> list[Vm]:
        return list(in_libvirt)

    try:
        async with ledger.reserving(Footprint.of_vm(starting).started(), list_vms):
            renamed = Footprint(name="n-x", owner="bob", running=False, vcpus=4, memory_mib=64, disk_bytes=0,
                                uuid="u-a")
            with pytest.raises(QuotaExceeded):
                async with ledger.reserving(renamed, list_vms, must_fit_alone=True):
                    pass
    finally:
        db.close()


async def test_a_start_of_a_vm_read_running_holds_its_vcpus_until_it_is_done(
    make_settings: Callable[..., Settings]
) -> None:
    # The start's request read the VM running and reserved nothing; the VM was stopped and another of 4 vCPUs
    # started meanwhile, then libvirt started the first: 8 running against a limit of 4.
    db, ledger = await _ledger_with_bob(make_settings(quota_vcpus=4))
    read_running = _bobs("u-a", "a", VmState.RUNNING, 4)
    in_libvirt = [_bobs("u-a", "a", VmState.STOPPED, 4), _bobs("u-b", "b", VmState.STOPPED, 4)]
    hypervisor = cast(Hypervisor, SimpleNamespace(list_vms=lambda: _listed(in_libvirt)))
    bob = Principal(name="bob", role=Role.USER, method=AuthMethod.TOKEN)
    try:
        async with quota_for_start(ledger, hypervisor, bob, read_running):
            with pytest.raises(QuotaExceeded):
                async with quota_for_start(ledger, hypervisor, bob, in_libvirt[1]):
                    pass
        async with quota_for_start(ledger, hypervisor, bob, in_libvirt[1]):  # done (it failed): b fits
            pass
    finally:
        db.close()


async def _listed(vms: list[Vm]) -> list[Vm]:
    return list(vms)

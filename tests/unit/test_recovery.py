"""Crash recovery without a daemon: which instances are gone, and what a sweep closes.

Instances share one SQLite file in a temporary dir and one settable clock; libvirt is its in-process
test driver (for what a lost create left behind).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import libvirt
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from limen.audit import AuditLog
from limen.db import Database
from limen.errors import ErrorCode, LimenError
from limen.hypervisor import Hypervisor, VmSpec
from limen.hypervisor.hosts import DEFAULT_HOST, HostConfig
from limen.hypervisor.leftovers import CreateMark, remove_create_leftovers
from limen.hypervisor.storage import disk_volume_name, ensure_pool, volume_xml
from limen.instances import InstanceInfo, InstanceRegistry, ProcessIdentity, process_gone, process_key, why_gone
from limen.recovery import Recovery, SweepReport
from limen.settings import Settings
from tests.support.access import FakeClock

HEARTBEAT = 5.0
BARE = CreateMark("b" * 32, with_disk=True)
DEFINED = CreateMark("d" * 32, with_disk=True)
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


# -- the liveness rule -------------------------------------------------------------------------------------


def instance(**changes: object) -> InstanceInfo:
    base: dict[str, object] = {"id": "a" * 32, "hostname": "h", "pid": 10, "started_at": T0, "heartbeat_at": T0,
                               "stopped_at": None, "process_key": None}
    return InstanceInfo(**{**base, **changes})  # type: ignore[arg-type]


def never_gone(key: str) -> bool:
    return False


LONG_AGO = T0 - timedelta(hours=1)


@pytest.mark.parametrize(("changes", "now", "in_contact_since", "reason"), [
    ({}, T0 + timedelta(seconds=15), LONG_AGO, None),  # three intervals: still alive
    ({}, T0 + timedelta(seconds=15.5), LONG_AGO, "no heartbeat for 16 s"),
    ({"stopped_at": T0}, T0, LONG_AGO, "it stopped"),
    ({"process_key": "gone"}, T0, LONG_AGO, "its process ended"),
    ({"process_key": "alive"}, T0, LONG_AGO, None),
    # After a database outage the judge's own contact is new: the others' silence counts from there (their
    # heartbeats could not be written either), so a live instance gets three intervals to write one.
    ({}, T0 + timedelta(seconds=60), T0 + timedelta(seconds=50), None),
    ({}, T0 + timedelta(seconds=66), T0 + timedelta(seconds=50), "no heartbeat for 66 s"),
    ({}, T0 + timedelta(seconds=60), None, None),  # out of contact itself: judges no silence
    ({"process_key": "gone"}, T0, None, "its process ended"),  # what it sees for itself, it still judges
])
def test_why_gone(changes: dict[str, object], now: datetime, in_contact_since: datetime | None,
                  reason: str | None) -> None:
    assert why_gone(instance(**changes), now=now, heartbeat_interval=HEARTBEAT,
                    is_process_gone=lambda key: key == "gone", in_contact_since=in_contact_since) == reason


def fake_proc(root: Path, *, boot: str = "boot-1", namespace: str = "pid:[4026531836]",
              processes: dict[int, int] | None = None, zombies: frozenset[int] = frozenset()) -> Path:
    """A /proc with a boot id, this process's PID namespace and ``pid → start ticks`` (``zombies``: killed,
    not reaped yet)."""
    (root / "sys/kernel/random").mkdir(parents=True, exist_ok=True)
    (root / "sys/kernel/random/boot_id").write_text(boot + "\n")
    (root / "self/ns").mkdir(parents=True, exist_ok=True)
    link = root / "self/ns/pid"
    link.unlink(missing_ok=True)
    link.symlink_to(namespace)
    for pid, ticks in (processes or {}).items():
        (root / str(pid)).mkdir(exist_ok=True)
        fields = ["Z" if pid in zombies else "S"] + ["0"] * 18 + [str(ticks)] + ["0"] * 10
        (root / str(pid) / "stat").write_text(f"{pid} (limen serve (x)) {' '.join(fields)}\n")
    return root


def test_process_key_names_boot_namespace_pid_and_start(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, processes={42: 777})
    assert process_key(42, proc) == "boot-1/pid:[4026531836]/42/777"
    assert process_key(43, proc) is None
    real = process_key(os.getpid())
    assert real is not None and real.split("/")[2] == str(os.getpid())


def test_a_process_is_gone_when_its_pid_is_free_or_anothers(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, processes={42: 777, 43: 999})
    here = ProcessIdentity("h", 1, "boot-1/pid:[4026531836]/1/5")
    assert not process_gone("boot-1/pid:[4026531836]/42/777", here, proc)  # still running
    assert process_gone("boot-1/pid:[4026531836]/44/777", here, proc)  # its PID is free
    assert process_gone("boot-1/pid:[4026531836]/43/100", here, proc)  # its PID is another process's now
    # Another boot, another PID namespace (a container with the same host name), no key: cannot tell.
    assert not process_gone("boot-0/pid:[4026531836]/44/777", here, proc)
    assert not process_gone("boot-1/pid:[4026532000]/44/777", here, proc)
    assert not process_gone("boot-1/pid:[4026531836]/44/777", ProcessIdentity("h", 1, None), proc)
    assert not process_gone("garbage", here, proc)
    # Killed (kill -9) and not reaped yet by a parent that does not wait: a zombie holds nothing. Restore
    # refused for 15 s saying limen served the database; its consoles stayed live as long.
    proc = fake_proc(tmp_path, processes={45: 888}, zombies=frozenset({45}))
    assert process_gone("boot-1/pid:[4026531836]/45/888", here, proc)


# -- sweeps over a shared database -----------------------------------------------------------------------


@dataclass
class Node:
    """One limen instance: its registry, audit log and recovery on the shared database."""

    registry: InstanceRegistry
    audit: AuditLog
    recovery: Recovery

    @property
    def id(self) -> str:
        return self.registry.id


@pytest.fixture
async def world(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> AsyncIterator[tuple[Callable[..., Node], FakeClock, Hypervisor]]:
    settings = make_settings()
    db = Database(settings.db_url)
    db.migrate()
    clock = FakeClock(T0.timestamp())
    hypervisor = Hypervisor(settings)
    await hypervisor.open()
    pin = libvirt.open(settings.libvirt_uri)  # the test driver forgets everything when its last connection closes

    def node(process_is_gone: Callable[[str], bool] = never_gone) -> Node:
        registry = InstanceRegistry(db, clock, HEARTBEAT, process=ProcessIdentity("h", 1, None),
                                    is_process_gone=process_is_gone)
        audit = AuditLog(db, clock, instance_id=registry.id)
        return Node(registry, audit, Recovery(registry, audit, hypervisor))

    yield node, clock, hypervisor
    await hypervisor.close()
    pin.close()
    db.close()


World = tuple[Callable[..., Node], FakeClock, Hypervisor]


async def open_console(node: Node, session_id: str) -> None:
    await node.audit.console_started(session_id, user="alice", vm_uuid=str(uuid.uuid4()), vm_name="vm",
                                     client_address="127.0.0.1")


async def test_after_a_database_outage_the_first_back_gives_the_others_three_heartbeats(world: World) -> None:
    # The database was down for a minute: every instance's heartbeat failed. The first to reach it again
    # must not find the others silent (a live replica's consoles were swept as SERVER_LOST and kept running,
    # out of every administrator's reach): their silence counts from its own return.
    node, clock, _ = world
    first, other = node(), node()
    await first.registry.register()
    await other.registry.register()
    await open_console(other, "live")
    failing = first.registry.db.run

    async def down(*_: object, **__: object) -> object:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    first.registry.db.run = down  # type: ignore[method-assign]
    clock.advance(HEARTBEAT * 12)
    with pytest.raises(OperationalError):
        await first.registry.heartbeat()
    first.registry.db.run = failing  # type: ignore[method-assign]

    clock.advance(HEARTBEAT)
    assert await first.registry.heartbeat()  # back: in contact from now
    assert await first.recovery.sweep() == SweepReport()  # the other's heartbeat is a minute old: not yet
    clock.advance(HEARTBEAT)
    assert await other.registry.heartbeat()  # it writes within its three intervals
    clock.advance(HEARTBEAT * 3)
    assert await first.recovery.sweep() == SweepReport()
    live = await first.audit.console_session("live")
    assert live is not None and live.live
    # One that does not come back is judged three intervals after the judge's return.
    clock.advance(HEARTBEAT * 3 + 1)
    await first.registry.heartbeat()
    assert (await first.recovery.sweep()).lost_instances == (other.id,)


async def test_after_a_database_that_hung_the_first_back_gives_the_others_three_heartbeats(world: World) -> None:
    # PostgreSQL stopped answering for 45 s without refusing (SIGSTOP, a frozen host): every heartbeat waited,
    # none failed. The first back found the others' heartbeats 45 s old and swept them as lost: the live
    # consoles of a live replica were recorded SERVER_LOST, and its snapshot operations answered "failed".
    node, clock, _ = world
    first, other = node(), node()
    await first.registry.register()
    await other.registry.register()
    await open_console(other, "live")
    answering = first.registry.db.run

    async def hung(work: object) -> object:
        clock.advance(HEARTBEAT * 9)  # the database answers 45 s later
        return await answering(work)  # type: ignore[arg-type]

    first.registry.db.run = hung  # type: ignore[method-assign]
    assert await first.registry.heartbeat()
    first.registry.db.run = answering  # type: ignore[method-assign]
    assert await first.recovery.sweep() == SweepReport()  # the other's heartbeat waited as long: not lost
    live = await first.audit.console_session("live")
    assert live is not None and live.live
    clock.advance(HEARTBEAT)
    assert await other.registry.heartbeat()
    assert await first.recovery.sweep() == SweepReport()
    # One that falls silent then is judged three intervals after its last heartbeat.
    clock.advance(HEARTBEAT * 3 + 1)
    assert await first.registry.heartbeat()
    assert (await first.recovery.sweep()).lost_instances == (other.id,)


async def test_a_silent_instances_consoles_and_actions_are_closed_after_three_heartbeats(world: World) -> None:
    node, clock, _ = world
    lost, survivor = node(), node()
    await lost.registry.register()
    await survivor.registry.register()
    await open_console(lost, "lost-1")
    await open_console(lost, "lost-2")
    await open_console(survivor, "kept")
    vm_uuid = str(uuid.uuid4())
    stop = await lost.audit.action_started(user="alice", action="stop", vm_name="vm", vm_uuid=vm_uuid,
                                           details="forced")

    clock.advance(HEARTBEAT * 3)
    await survivor.registry.heartbeat()
    assert await survivor.recovery.sweep() == SweepReport()  # not yet

    clock.advance(1)
    await survivor.registry.heartbeat()
    report = await survivor.recovery.sweep()
    assert report.lost_instances == (lost.id,)
    assert sorted(report.closed_sessions) == ["lost-1", "lost-2"] and report.failed_actions == (stop,)
    for session_id in ("lost-1", "lost-2"):
        row = await survivor.audit.console_session(session_id)
        assert row is not None and row.end_code == "SERVER_LOST" and row.ended_at == T0 + timedelta(seconds=16)
        assert row.end_details == f"limen instance {lost.id[:12]} (host h, pid 1) was lost: no heartbeat for 16 s"
        # Read back as phrases, as a lost action's are: the Korean audit page showed this English.
        assert row.end_details_phrases == [
            {"kind": "instance_silent", "instance": lost.id[:12], "host": "h", "pid": "1", "seconds": "16"}]
    kept = await survivor.audit.console_session("kept")
    assert kept is not None and kept.live
    (action,) = await survivor.audit.vm_actions()
    assert (action.result_code, action.finished_at) == ("SERVER_LOST", T0 + timedelta(seconds=16))
    # The started row's VM and details stay (the VM's page finds the row); libvirt may have done the work.
    assert action.vm_uuid == vm_uuid
    assert action.details == (f"forced; limen instance {lost.id[:12]} (host h, pid 1) was lost: no heartbeat "
                              f"for 16 s; whether it was carried out is unknown: the VM's state shows it")
    # Read back as phrases, so that the Korean audit page says them in Korean (it showed this English).
    assert action.details_phrases == [
        {"kind": "forced"},
        {"kind": "instance_silent", "instance": lost.id[:12], "host": "h", "pid": "1", "seconds": "16"},
        {"kind": "outcome_unknown"},
    ]

    # Judged once: marked stopped, so the next sweep has nothing to do.
    assert await survivor.recovery.sweep() == SweepReport()
    census = await survivor.registry.census()
    assert census.live == {survivor.id} and census.gone == ()


async def test_a_heartbeat_keeps_an_instance_alive(world: World) -> None:
    node, clock, _ = world
    busy, watcher = node(), node()
    await busy.registry.register()
    await watcher.registry.register()
    await open_console(busy, "s")
    for _ in range(10):
        clock.advance(HEARTBEAT)
        assert await busy.registry.heartbeat()
        assert (await watcher.recovery.sweep()).closed_sessions == ()
    row = await watcher.audit.console_session("s")
    assert row is not None and row.live


async def test_a_dead_process_is_gone_at_once_and_a_stopped_instance_holds_nothing(world: World) -> None:
    node, _, _ = world
    crashed = node()
    await crashed.registry.register()
    await open_console(crashed, "crashed")
    stopped = node()
    await stopped.registry.register()
    await open_console(stopped, "left-open")  # a clean stop whose sessions did not all record their end
    await stopped.registry.stopped()

    restarted = node(process_is_gone=lambda key: True)
    # The crashed one had a process key (on this host, in this PID namespace); its process is gone.
    await crashed.registry.db.execute(text("UPDATE limen_instances SET process_key = 'k' WHERE id = :id"),
                                      {"id": crashed.id})
    await restarted.registry.register()
    report = await restarted.recovery.sweep()
    assert sorted(report.closed_sessions) == ["crashed", "left-open"]
    crashed_row = await restarted.audit.console_session("crashed")
    assert crashed_row is not None and crashed_row.end_details is not None
    assert crashed_row.end_details.endswith("was lost: its process ended")
    left_open = await restarted.audit.console_session("left-open")
    assert left_open is not None and left_open.end_details == f"limen instance {stopped.id[:12]} had stopped"
    assert left_open.end_details_phrases == [{"kind": "instance_had_stopped", "instance": stopped.id[:12]}]
    assert crashed_row.end_details_phrases is not None
    assert crashed_row.end_details_phrases[0]["kind"] == "instance_process_ended"


async def test_rows_written_before_instances_were_recorded_are_closed(world: World) -> None:
    node, _, _ = world
    legacy = AuditLog(node().audit.db, node().audit.clock, instance_id=None)
    await legacy.console_started("old", user="u", vm_uuid="x", vm_name="vm", client_address="::1")
    current = node()
    await current.registry.register()
    assert (await current.recovery.sweep()).closed_sessions == ("old",)


async def test_ending_a_session_no_live_instance_holds_closes_its_row(world: World) -> None:
    node, clock, _ = world
    holder, admin_side = node(), node()
    await holder.registry.register()
    await admin_side.registry.register()
    await open_console(holder, "s")
    assert not await admin_side.recovery.close_if_lost("s")  # its instance is alive
    clock.advance(HEARTBEAT * 3 + 1)
    await admin_side.registry.heartbeat()
    assert await admin_side.recovery.close_if_lost("s")
    row = await admin_side.audit.console_session("s")
    assert row is not None and row.end_code == "SERVER_LOST"
    assert not await admin_side.recovery.close_if_lost("s")  # already closed
    assert not await admin_side.recovery.close_if_lost("no-such-session")


async def test_an_instance_declared_lost_learns_it_at_its_next_heartbeat(world: World) -> None:
    node, clock, _ = world
    stalled, other = node(), node()
    await stalled.registry.register()
    await other.registry.register()
    clock.advance(HEARTBEAT * 4)
    await other.registry.heartbeat()
    assert (await other.recovery.sweep()).lost_instances == (stalled.id,)
    assert not await stalled.registry.heartbeat()  # revived, and told
    assert stalled.id in (await other.registry.census()).live


# -- creates ------------------------------------------------------------------------------------------------


async def test_one_pending_create_per_name(world: World) -> None:
    node, _, _ = world
    a, b = node(), node()
    first = await a.audit.action_started(user="u", action="create", vm_name="same")
    with pytest.raises(LimenError) as caught:
        await b.audit.action_started(user="u", action="create", vm_name="same")
    assert caught.value.code is ErrorCode.VM_ALREADY_EXISTS
    await b.audit.action_started(user="u", action="start", vm_name="same")  # other actions: any number
    assert await a.audit.action_finished(first, result_code="OK")
    assert not await a.audit.action_finished(first, result_code="OK")  # completed once
    await b.audit.action_started(user="u", action="create", vm_name="same")


def leave_half_a_create(hypervisor: Hypervisor, name: str, token: str | None, *, domain: bool,
                        volume_name: str | None = None) -> str:
    """What a create killed after its volume (and, with ``domain``, after defining it) leaves; the path."""
    conn = libvirt.open(hypervisor.settings.libvirt_uri)
    pool = ensure_pool(conn, hypervisor.settings.storage_pool, hypervisor.settings.pool_dir)
    volume = pool.createXML(volume_xml(volume_name or disk_volume_name(name), 1), 0)
    path: str = volume.path()
    if domain:
        from limen.hypervisor.domain_xml import DomainPlan, build_domain_xml

        conn.defineXML(build_domain_xml(DomainPlan(
            name=name, virt_type="qemu", vcpus=1, memory_mib=64, vnc_listen="127.0.0.1", created_at=T0,
            disk_path=path, create_token=token)))
    return path


def volume_present(hypervisor: Hypervisor, path: str) -> bool:
    conn = libvirt.open(hypervisor.settings.libvirt_uri)
    try:
        conn.storageVolLookupByPath(path)
        return True
    except libvirt.libvirtError:
        return False


def domain_present(hypervisor: Hypervisor, name: str) -> bool:
    conn = libvirt.open(hypervisor.settings.libvirt_uri)
    try:
        conn.lookupByName(name)
        return True
    except libvirt.libvirtError:
        return False


async def test_a_lost_creates_volume_and_its_own_domain_are_removed_and_the_row_fails(world: World) -> None:
    node, clock, hypervisor = world
    lost, survivor = node(), node()
    await lost.registry.register()
    await survivor.registry.register()
    bare, defined = f"bare-{uuid.uuid4().hex[:8]}", f"defined-{uuid.uuid4().hex[:8]}"
    bare_id = await lost.audit.action_started(user="u", action="create", vm_name=bare, details=BARE.as_details())
    defined_id = await lost.audit.action_started(user="u", action="create", vm_name=defined,
                                                 details=DEFINED.as_details())
    bare_path = leave_half_a_create(hypervisor, bare, None, domain=False)
    defined_path = leave_half_a_create(hypervisor, defined, DEFINED.token, domain=True)

    clock.advance(HEARTBEAT * 3 + 1)
    await survivor.registry.heartbeat()
    report = await survivor.recovery.sweep()
    assert sorted(report.failed_actions) == sorted([bare_id, defined_id])
    assert not volume_present(hypervisor, bare_path) and not volume_present(hypervisor, defined_path)
    assert not domain_present(hypervisor, defined)
    rows = {row.vm_name: row for row in await survivor.audit.vm_actions()}
    assert rows[bare].result_code == rows[defined].result_code == "SERVER_LOST"
    assert rows[defined].details.endswith(f"removed domain {defined}, volume {defined_path}")


async def test_leftovers_never_take_a_domain_that_is_not_the_creates_nor_a_volume_in_use(world: World) -> None:
    _, _, hypervisor = world
    name = f"other-{uuid.uuid4().hex[:8]}"
    path = leave_half_a_create(hypervisor, name, "someone-elses-token", domain=True)
    assert await remove_create_leftovers(hypervisor, name, DEFINED) == []
    assert domain_present(hypervisor, name) and volume_present(hypervisor, path)
    # Running, even with the token: in use, kept.
    conn = libvirt.open(hypervisor.settings.libvirt_uri)
    running = f"running-{uuid.uuid4().hex[:8]}"
    running_path = leave_half_a_create(hypervisor, running, DEFINED.token, domain=True)
    conn.lookupByName(running).create()
    assert await remove_create_leftovers(hypervisor, running, DEFINED) == []
    assert volume_present(hypervisor, running_path)
    # A create without a disk never takes a volume of its name: that is a disk kept from an earlier VM.
    kept = f"kept-{uuid.uuid4().hex[:8]}"
    kept_path = leave_half_a_create(hypervisor, kept, None, domain=False)
    assert await remove_create_leftovers(hypervisor, kept, CreateMark(DEFINED.token, with_disk=False)) == []
    assert volume_present(hypervisor, kept_path)


async def test_a_lost_create_beside_a_kept_disk_removes_its_own_volume_and_keeps_the_other(world: World) -> None:
    """A VM deleted without its disks left NAME-disk0.qcow2; a new VM of the name took a disk of its own (the
    name was refused for good before), recorded in its row: a sweep takes that one, never the kept one."""
    _, _, hypervisor = world
    name = f"again-{uuid.uuid4().hex[:8]}"
    kept_path = leave_half_a_create(hypervisor, name, None, domain=False)
    token = uuid.uuid4().hex
    own = await hypervisor.free_volume_name(name, token)
    assert own == disk_volume_name(name, token) != disk_volume_name(name)
    mark = CreateMark(token, with_disk=True, volume=own)
    assert CreateMark.parse(mark.as_details()) == mark
    own_path = leave_half_a_create(hypervisor, name, token, domain=True, volume_name=own)
    removed = await remove_create_leftovers(hypervisor, name, mark)
    assert removed == [f"domain {name}", f"volume {own_path}"]
    assert volume_present(hypervisor, kept_path) and not volume_present(hypervisor, own_path)
    assert await hypervisor.free_volume_name(name, token) == disk_volume_name(name, token)  # the kept one stays


def test_create_marks_round_trip_and_nothing_else_parses() -> None:
    assert CreateMark.parse(DEFINED.as_details()) == DEFINED
    assert CreateMark.parse(CreateMark("0" * 32, False).as_details()) == CreateMark("0" * 32, False)
    for details in ("", "tok", f"token={DEFINED.token} disk=maybe", f"token={DEFINED.token[:-1]} disk=yes"):
        assert CreateMark.parse(details) is None


async def test_a_failed_row_is_retried_by_the_next_sweep_when_libvirt_could_not_clean(world: World) -> None:
    node, clock, hypervisor = world
    lost, survivor = node(), node()
    await lost.registry.register()
    await survivor.registry.register()
    name = f"later-{uuid.uuid4().hex[:8]}"
    action_id = await lost.audit.action_started(user="u", action="create", vm_name=name, details=BARE.as_details())
    path = leave_half_a_create(hypervisor, name, None, domain=False)
    clock.advance(HEARTBEAT * 3 + 1)
    await survivor.registry.heartbeat()
    await hypervisor.connection.close()  # libvirt unreachable for this sweep
    report = await survivor.recovery.sweep()
    assert report.still_pending == (action_id,) and volume_present(hypervisor, path)
    (row,) = await survivor.audit.vm_actions()
    assert row.pending and row.instance_id == survivor.id  # claimed by the survivor, which retries

    survivor.recovery.hypervisor = Hypervisor(hypervisor.settings)
    report = await survivor.recovery.sweep()
    assert report.failed_actions == (action_id,) and not volume_present(hypervisor, path)
    await survivor.recovery.hypervisor.close()


async def test_a_retry_of_the_name_clears_a_lost_create_and_proceeds(world: World) -> None:
    node, clock, hypervisor = world
    lost, survivor = node(), node()
    await lost.registry.register()
    await survivor.registry.register()
    name = f"retry-{uuid.uuid4().hex[:8]}"
    lost_id = await lost.audit.action_started(user="u", action="create", vm_name=name, details=BARE.as_details())
    leave_half_a_create(hypervisor, name, None, domain=False)
    spec = VmSpec(name=name, memory_mib=64, disk_gib=1)

    # Its instance still heartbeats: the name is being created.
    with pytest.raises(LimenError) as caught:
        async with survivor.recovery.creating("u", spec):
            pass
    assert caught.value.code is ErrorCode.VM_ALREADY_EXISTS

    clock.advance(HEARTBEAT * 3 + 1)
    await survivor.registry.heartbeat()
    async with survivor.recovery.creating("u", spec) as intent:
        vm = await hypervisor.create_vm(spec, create_token=intent.token)
        intent.vm_uuid = vm.uuid
    rows = {row.id: row for row in await survivor.audit.vm_actions()}
    assert rows[lost_id].result_code == "SERVER_LOST"
    assert rows[intent.action_id].result_code == "OK" and rows[intent.action_id].vm_uuid == vm.uuid
    assert domain_present(hypervisor, name)


async def test_own_create_is_left_alone_while_it_runs_and_recovered_once_it_does_not(world: World) -> None:
    node, _, hypervisor = world
    me = node()
    await me.registry.register()
    name = f"own-{uuid.uuid4().hex[:8]}"
    action_id = await me.audit.action_started(user="u", action="create", vm_name=name, details=BARE.as_details())
    path = leave_half_a_create(hypervisor, name, None, domain=False)
    me.recovery._creating.add(name)  # its request runs in this process
    assert await me.recovery.sweep() == SweepReport()
    assert volume_present(hypervisor, path)
    me.recovery._creating.discard(name)  # the request ended without completing the row
    assert (await me.recovery.sweep()).failed_actions == (action_id,)
    assert not volume_present(hypervisor, path)


async def test_a_create_on_a_host_that_does_not_answer_frees_its_name_at_once(world: World) -> None:
    # It began nothing, so nothing of it can be anywhere; its row stayed pending (looking for leftovers on a
    # host that does not answer), the name refused as "being created" until the host came back, and the
    # sweep then wrote that this live instance "had stopped".
    node, _, hypervisor = world
    me = node()
    await me.registry.register()
    me.recovery.hypervisor = hv = Hypervisor(hypervisor.settings)
    down = hv.hosts.add(HostConfig("down", "qemu+tcp://127.0.0.1:1/system"))
    await hv.open()
    down.available, down.last_error = False, "test: connection refused"
    down.listed = True  # it answered once, with no VM: its names are known (none)
    name = f"downhost-{uuid.uuid4().hex[:8]}"
    spec = VmSpec(name=name, memory_mib=64, host="down")
    with pytest.raises(LimenError) as caught:
        async with me.recovery.creating("u", spec) as intent:
            await hv.create_vm(spec, create_token=intent.token)
    assert caught.value.code is ErrorCode.HYPERVISOR_UNAVAILABLE
    (row,) = await me.audit.vm_actions()
    assert not row.pending and row.result_code == "HYPERVISOR_UNAVAILABLE"
    assert await me.recovery.sweep() == SweepReport()

    elsewhere = VmSpec(name=name, memory_mib=64, host=DEFAULT_HOST)
    async with me.recovery.creating("u", elsewhere) as intent:
        intent.vm_uuid = (await hv.create_vm(elsewhere, create_token=intent.token)).uuid
    assert domain_present(hypervisor, name)
    await hv.close()


async def test_an_own_create_left_pending_is_not_said_to_be_a_stopped_instance(world: World) -> None:
    node, _, _ = world
    me = node()
    await me.registry.register()
    name = f"own-{uuid.uuid4().hex[:8]}"
    await me.audit.action_started(user="u", action="create", vm_name=name, details=BARE.as_details())
    await me.recovery.sweep()
    (row,) = await me.audit.vm_actions()
    assert row.details == "its create stopped without completing its record"


async def test_parallel_creates_of_an_invalid_name_are_all_told_what_is_wrong(world: World) -> None:
    node, _, _ = world
    me = node()
    await me.registry.register()

    async def create() -> ErrorCode:
        with pytest.raises(LimenError) as caught:
            async with me.recovery.creating("u", VmSpec(name="bad name!", memory_mib=64)):
                pass
        return caught.value.code

    assert list(await asyncio.gather(create(), create(), create())) == [ErrorCode.VALIDATION_ERROR] * 3
    assert {row.result_code for row in await me.audit.vm_actions()} == {"VALIDATION_ERROR"}

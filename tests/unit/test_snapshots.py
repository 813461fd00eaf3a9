"""The pure parts of snapshots: the XML limen sends and reads, which VMs can have snapshots, the tree order,
the registry of background operations; and, on libvirt's test driver, a name no snapshot can have."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from limen.errors import ErrorCode, LimenError, ValidationFailed
from limen.hypervisor import Hypervisor, snapshots
from limen.hypervisor.operations import (
    SNAPSHOT_DELETION,
    SNAPSHOT_REVERT,
    VM_DELETION,
    VM_MIGRATION,
    Operation,
    Operations,
    OperationState,
)
from limen.hypervisor.snapshots import (
    SnapshotInfo,
    check_description,
    check_snapshot_name,
    delete_snapshot,
    find_snapshot,
    parse_snapshot_xml,
    revert_snapshot,
    snapshot_xml,
    tree_order,
    unsupported_reason,
)
from limen.hypervisor.vm_feed import VmEvent, VmEventType, VmFacts, VmFeed
from limen.settings import Settings
from tests.support.console import node_with_a_qcow2_vm
from tests.support.replicas import replica

SnapshotAct = Callable[[Hypervisor, str, str], Awaitable[object]]

LIBVIRT_SNAPSHOT = """<domainsnapshot>
  <name>at-prompt</name>
  <description>grub&gt; echo before</description>
  <state>running</state>
  <parent><name>base</name></parent>
  <creationTime>1796120816</creationTime>
  <memory snapshot='internal'/>
  <disks><disk name='vda' snapshot='internal'/><disk name='hdc' snapshot='no'/></disks>
  <domain type='qemu'><name>web</name><memory unit='KiB'>131072</memory><vcpu>2</vcpu></domain>
</domainsnapshot>"""


def test_a_snapshot_as_libvirt_describes_it() -> None:
    snap = parse_snapshot_xml(LIBVIRT_SNAPSHOT, current=True)
    assert snap == SnapshotInfo(name="at-prompt", description="grub> echo before", parent="base",
                                created_at=datetime.fromtimestamp(1796120816, UTC), vm_state="running",
                                with_memory=True, current=True, vcpus=2, memory_mib=128)


def test_a_stopped_vms_snapshot_has_no_memory_and_a_root_no_parent() -> None:
    snap = parse_snapshot_xml("<domainsnapshot><name>s</name><state>shutoff</state>"
                              "<creationTime>5</creationTime><memory snapshot='no'/></domainsnapshot>")
    assert (snap.parent, snap.with_memory, snap.vm_state, snap.description) == (None, False, "shutoff", "")


def test_the_request_escapes_what_it_carries() -> None:
    xml = snapshot_xml("s1", "<b>&'\"é\nline")
    root = ET.fromstring(xml)
    assert (root.tag, root.findtext("name"), root.findtext("description")) == ("domainsnapshot", "s1",
                                                                               "<b>&'\"é\nline")
    assert ET.fromstring(snapshot_xml("s2", "")).find("description") is None


@pytest.mark.parametrize("name", ["", "-a", ".a", "a b", "a/b", "é", "x" * 64, "a\n"])
def test_names_follow_the_vm_name_rule(name: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        check_snapshot_name(name)
    assert raised.value.field == "name"


def test_good_names_and_descriptions_pass() -> None:
    for name in ("a", "before-upgrade", "v1.2_3", "x" * 63):
        check_snapshot_name(name)
    check_description("two\nlines\tand ünïcode " * 10)
    check_description("\ufffd 한글 \U0001f600")  # the replacement character and a pair are characters


@pytest.mark.parametrize("description", ["x" * 1001, "bell\a", "nul\0", "a\uffffb", "\ufffe"])
def test_descriptions_are_bounded_and_printable(description: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        check_description(description)
    assert raised.value.field == "description"


def _domain(*disks: tuple[str, str, str | None]) -> str:
    parts = []
    for device, target, fmt in disks:
        driver = f"<driver name='qemu' type='{fmt}'/>" if fmt else ""
        parts.append(f"<disk type='file' device='{device}'>{driver}<target dev='{target}'/></disk>")
    return f"<domain><devices>{''.join(parts)}</devices></domain>"


def test_every_disk_must_be_qcow2_and_cdroms_do_not_count() -> None:
    assert unsupported_reason(_domain(("disk", "vda", "qcow2"), ("cdrom", "hdc", "raw"))) is None
    assert unsupported_reason(_domain(("disk", "vda", "qcow2"), ("disk", "vdb", "qcow2"))) is None
    reason = unsupported_reason(_domain(("disk", "vda", "qcow2"), ("disk", "vdb", "raw")))
    assert reason is not None and "vdb is raw" in reason
    assert "unknown format" in (unsupported_reason(_domain(("disk", "vda", None))) or "")
    assert "no disk" in (unsupported_reason(_domain(("cdrom", "hdc", "raw"))) or "")


def _snap(name: str, parent: str | None, at: int) -> SnapshotInfo:
    return SnapshotInfo(name=name, description="", parent=parent, created_at=datetime.fromtimestamp(at, UTC),
                        vm_state="shutoff", with_memory=False, current=False)


def test_tree_order_is_depth_first_oldest_sibling_first() -> None:
    snaps = [_snap("d", "c", 4), _snap("b", "a", 2), _snap("c", "a", 3), _snap("a", None, 1), _snap("e", None, 5),
             _snap("orphan", "gone", 0)]
    assert [(depth, snap.name) for depth, snap in tree_order(snaps)] == [
        (0, "orphan"), (0, "a"), (1, "b"), (1, "c"), (2, "d"), (0, "e")]
    assert tree_order([]) == []


def test_a_deep_chain_does_not_recurse() -> None:
    chain = [_snap(f"s{i}", f"s{i - 1}" if i else None, i) for i in range(2000)]
    ordered = tree_order(list(reversed(chain)))
    assert ordered[-1] == (1999, chain[-1])


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _start(operations: Operations, work: object, vm: str = "u1") -> Operation:
    return await operations.start(kind="snapshot", vm_uuid=vm, vm_name=f"vm-{vm}", vm_owner="alice", user="alice",
                            subject="s", work=work, busy=ErrorCode.SNAPSHOT_IN_PROGRESS)  # type: ignore[arg-type]


async def test_an_operation_runs_reports_progress_and_ends() -> None:
    operations = Operations()
    release = asyncio.Event()

    async def work(operation: Operation) -> None:
        await release.wait()

    operation = await _start(operations, work)
    assert operation.payload()["state"] == "running" and operation.progress is None
    await asyncio.sleep(0)
    assert operations.get(operation.id) is operation and operation.state is OperationState.RUNNING
    with pytest.raises(LimenError) as busy:
        await _start(operations, work)
    assert busy.value.code is ErrorCode.SNAPSHOT_IN_PROGRESS and operation.id in busy.value.details
    other = await _start(operations, work, vm="u2")  # another VM is not held up
    release.set()
    await asyncio.sleep(0.01)
    done = operation.payload()
    assert (done["state"], done["progress"], done["error"]) == ("done", 100, None)
    assert other.state is OperationState.DONE and operation.payload()["finished_at"] is not None


async def test_a_failed_operation_carries_its_error_body() -> None:
    operations = Operations()

    async def refused(operation: Operation) -> None:
        raise LimenError(ErrorCode.SNAPSHOT_UNSUPPORTED, "vda is raw")

    async def buggy(operation: Operation) -> None:
        raise KeyError("bug")

    failed = await _start(operations, refused)
    await asyncio.sleep(0)
    assert failed.state is OperationState.FAILED and failed.error is not None
    assert failed.error["code"] == "SNAPSHOT_UNSUPPORTED" and set(failed.error) >= {"error", "details", "message"}
    crashed = await _start(operations, buggy)
    await asyncio.sleep(0)
    assert crashed.error is not None and crashed.error["code"] == "INTERNAL_ERROR"
    with pytest.raises(RuntimeError):
        crashed.move_to(OperationState.DONE, 0.0)  # an ended operation stays ended


async def test_finished_operations_are_forgotten_and_bounded() -> None:
    clock = _Clock()
    operations = Operations(keep_finished=3, keep_seconds=60, clock=clock)

    async def quick(operation: Operation) -> None:
        return None

    started = [await _start(operations, quick, vm=f"u{i}") for i in range(5)]
    await asyncio.sleep(0)
    assert [operations.get(op.id) is not None for op in started] == [False, False, True, True, True]
    clock.now = 61
    assert all(operations.get(op.id) is None for op in started)


async def test_close_ends_what_runs_as_failed_and_refuses_more() -> None:
    operations = Operations()

    async def forever(operation: Operation) -> None:
        await asyncio.Event().wait()

    operation = await _start(operations, forever)
    await asyncio.sleep(0)
    await operations.close()
    assert operation.state is OperationState.FAILED and operation.error is not None
    assert operation.error["code"] == "SERVER_SHUTDOWN"
    with pytest.raises(LimenError) as refused:
        await _start(operations, forever)
    assert refused.value.code is ErrorCode.SERVER_SHUTDOWN


async def test_another_instances_operation_is_read_here_as_its_last_event_told_it() -> None:
    # Another replica's operation was OPERATION_NOT_FOUND here, even while it ran.
    clock = _Clock()
    operations = Operations(keep_finished=3, keep_seconds=60, clock=clock)

    async def quick(operation: Operation) -> None:
        return None

    theirs = Operations()
    elsewhere = await _start(theirs, quick)
    operations.heard(elsewhere.payload(), vm_owner="alice")
    read = operations.get(elsewhere.id)
    assert read is not None and read.payload() == elsewhere.payload() and read.vm_owner == "alice"
    assert read.state is OperationState.RUNNING
    await operations.check_idle(elsewhere.vm_uuid, "web", ErrorCode.SNAPSHOT_IN_PROGRESS)  # holds no VM here
    await asyncio.sleep(0)
    operations.heard(elsewhere.payload(), vm_owner="alice")
    ended = operations.get(elsewhere.id)
    assert ended is not None and ended.payload() == elsewhere.payload() and ended.state is OperationState.DONE
    clock.now = 61
    assert operations.get(elsewhere.id) is None


def test_another_instances_operation_that_never_ends_is_forgotten_in_the_end() -> None:
    clock = _Clock()
    operations = Operations(keep_seconds=60, clock=clock)
    payload = {"id": "f00d", "kind": "snapshot", "vm_uuid": "u", "vm_name": "web", "subject": "s", "user": "bob",
               "state": "running", "progress": None, "error": None, "started_at": "2026-12-06T10:00:00+00:00",
               "finished_at": None}
    operations.heard(payload, vm_owner=None)
    clock.now = 61  # a snapshot may take longer than a finished operation is kept
    assert operations.get("f00d") is not None
    clock.now = 3601
    assert operations.get("f00d") is None
    for malformed in ({**payload, "state": "sleeping"}, {**payload, "progress": "half"}, {"id": "x"}):
        with pytest.raises((ValueError, KeyError, TypeError)):
            operations.heard(malformed, vm_owner=None)


async def test_an_operation_of_an_instance_found_lost_is_read_as_failed_with_server_lost() -> None:
    # A replica killed while taking a snapshot never tells its end: the others answered "running" for an
    # hour (the browser's snapshot section spun and refused new snapshots), though the sweep had already
    # recorded the action as SERVER_LOST.
    operations = Operations()
    payload = {"id": "f00d", "kind": "snapshot", "vm_uuid": "u", "vm_name": "web", "subject": "s", "user": "bob",
               "state": "running", "progress": None, "error": None, "started_at": "2026-12-06T10:00:00+00:00",
               "finished_at": None}
    operations.heard(payload, vm_owner=None, instance_id="dead-instance")
    operations.heard({**payload, "id": "cafe"}, vm_owner=None, instance_id="new-instance")

    class Board:
        async def post_start(self, operation: Operation) -> None:
            return None

        async def read(self, operation_id: str) -> Operation | None:
            return Operation.of_payload({**payload, "id": operation_id}, None, "dead-instance")

    operations.board = Board()
    operations.instances_alive(frozenset({"me", "dead-instance"}))
    heard, on_board = operations.get("f00d"), await operations.find("beef")
    assert heard is not None and on_board is not None
    assert (heard.state, on_board.state) == (OperationState.RUNNING, OperationState.RUNNING)

    operations.instances_alive(frozenset({"me", "new-instance"}))  # the sweep no longer finds it
    for lost in (operations.get("f00d"), await operations.find("beef")):
        assert lost is not None and lost.state is OperationState.FAILED and lost.error is not None
        assert lost.error["code"] == "SERVER_LOST"
        assert lost.error["details"] == ("limen instance dead-instanc running it was lost; whether the snapshot "
                                         "was carried out is unknown: the VM's snapshot list shows it")
    # One never found alive here (started after the sweep) is not judged; an end told is kept as told.
    cafe = operations.get("cafe")
    assert cafe is not None and cafe.state is OperationState.RUNNING
    operations.heard({**payload, "state": "done", "progress": 100}, vm_owner=None, instance_id="dead-instance")
    told = operations.get("f00d")
    assert told is not None and told.state is OperationState.DONE
    # A stall another instance took for a loss: alive again, its operations run again.
    operations.heard(payload, vm_owner=None, instance_id="dead-instance")
    operations.instances_alive(frozenset({"me", "dead-instance"}))
    revived = operations.get("f00d")
    assert revived is not None and revived.state is OperationState.RUNNING


async def test_an_operation_heard_running_is_answered_as_heard_when_the_board_fails_after_an_outage() -> None:
    """Its end may have gone unheard, so the board is asked; one that fails then is no error for the poll."""
    operations = Operations()
    payload = {"id": "f00d", "kind": "snapshot", "vm_uuid": "u", "vm_name": "web", "subject": "s", "user": "bob",
               "state": "running", "progress": None, "error": None, "started_at": "2026-12-06T10:00:00+00:00",
               "finished_at": None}
    operations.heard(payload, vm_owner=None, instance_id="that-one")
    asked: list[str] = []

    class FailingBoard:
        async def post_start(self, operation: Operation) -> None:
            return None

        async def read(self, operation_id: str) -> Operation | None:
            asked.append(operation_id)
            raise LimenError(ErrorCode.REDIS_UNAVAILABLE, "board of operations (Redis) read failed: TimeoutError")

    operations.board = FailingBoard()
    operations.hearing_events(False)
    operations.hearing_events(True)
    found = await operations.find("f00d")
    assert found is not None and found.state is OperationState.RUNNING and asked == ["f00d"]


def test_feed_events_carry_the_operation() -> None:
    feed = VmFeed()
    facts = VmFacts(uuid="u", name="web", state=None, owner="alice")
    event = feed.publish(VmEventType.SNAPSHOT_DONE, facts, operation={"id": "x", "state": "done"})
    assert event.payload()["type"] == "snapshot_done" and event.payload()["operation"] == {"id": "x", "state": "done"}
    assert "operation" not in feed.publish(VmEventType.CHANGED, facts).payload()


@pytest.mark.parametrize("act", [revert_snapshot, delete_snapshot])
async def test_a_name_with_a_nul_is_a_missing_snapshot(
    act: SnapshotAct, make_settings: Callable[..., Settings]
) -> None:
    # libvirt's binding cannot pass the name: it raised ValueError, answered 500 INTERNAL_ERROR.
    hypervisor = Hypervisor(make_settings())
    await hypervisor.open()
    try:
        vm = await hypervisor.get_vm("test")  # the test driver's own domain
        with pytest.raises(LimenError) as missing:
            await act(hypervisor, vm.uuid, "a\x00b")
        assert missing.value.code is ErrorCode.SNAPSHOT_NOT_FOUND
    finally:
        await hypervisor.close()


async def test_what_meets_a_vms_deletion_waits_for_it_and_finds_the_vm_gone() -> None:
    """A VM's deletion is an operation of the VM: a snapshot asked meanwhile starts only once it ended, as
    VM_NOT_FOUND when it deleted the VM, and nothing of the deletion stays behind. It was a lock of its own
    beside the operations (Operations.claim), counting its holders by hand."""
    operations = Operations()
    deleting, go_on = asyncio.Event(), asyncio.Event()

    async def delete(fails: bool) -> None:
        async with operations.running(kind=VM_DELETION, vm_uuid="u1", vm_name="vm-u1", vm_owner="alice",
                                      user="alice", subject="vm-u1", busy=ErrorCode.SNAPSHOT_IN_PROGRESS):
            deleting.set()
            await go_on.wait()
            if fails:
                raise LimenError(ErrorCode.HYPERVISOR_UNAVAILABLE, "libvirt went away")

    async def quick(operation: Operation) -> None:
        return None

    for fails in (False, True):
        deleting.clear()
        go_on.clear()
        deletion = asyncio.create_task(delete(fails))
        await deleting.wait()
        deletion_op = operations.running_for("u1")
        assert deletion_op is not None and deletion_op.kind == VM_DELETION
        snapshot = asyncio.create_task(_start(operations, quick))
        another_vm = await _start(operations, quick, vm="u2")  # another VM is not held up
        await asyncio.sleep(0)
        assert not snapshot.done() and another_vm.state is OperationState.DONE
        go_on.set()
        if fails:  # the VM stayed: the snapshot goes on
            with pytest.raises(LimenError):
                await deletion
            assert (await snapshot).vm_uuid == "u1"
        else:
            await deletion
            with pytest.raises(LimenError) as gone:
                await snapshot
            assert gone.value.code is ErrorCode.VM_NOT_FOUND
        assert operations.get(deletion_op.id) is None  # nobody has its id: it is not kept
        await asyncio.sleep(0)
        assert operations.running_for("u1") is None


@pytest.mark.parametrize("kind", [SNAPSHOT_REVERT, SNAPSHOT_DELETION])
async def test_a_request_run_operation_refuses_others_and_is_never_shown(kind: str) -> None:
    """A revert or a snapshot's deletion holds its VM as a snapshot's taking does (SNAPSHOT_IN_PROGRESS), but
    its request answers for it: it is not left for the other replicas to read, nor answered by id, and a
    refusal names no id nobody could poll."""
    operations = Operations()
    async with operations.running(kind=kind, vm_uuid="u1", vm_name="vm-u1", vm_owner="alice", user="alice",
                                  subject="before", busy=ErrorCode.SNAPSHOT_IN_PROGRESS) as held:
        with pytest.raises(LimenError) as busy:
            await _start(operations, _never_runs)
        assert busy.value.code is ErrorCode.SNAPSHOT_IN_PROGRESS
        assert busy.value.details == f"{kind} 'before' still runs on VM 'vm-u1'"
        assert operations.started_here() == [] and operations.get(held.id) is None
    assert operations.running_for("u1") is None


async def test_whatever_meets_a_move_is_vm_moving() -> None:
    """A second move (or a snapshot) that got past the route's first check before the move began was refused
    with the code it brought along, SNAPSHOT_IN_PROGRESS, for a VM that was moving."""
    operations = Operations()
    async with operations.running(kind=VM_MIGRATION, vm_uuid="u1", vm_name="vm-u1", vm_owner="alice",
                                  user="root", subject="edge", busy=ErrorCode.SNAPSHOT_IN_PROGRESS):
        with pytest.raises(LimenError) as busy:
            await _start(operations, _never_runs)
        assert busy.value.code is ErrorCode.VM_MOVING
        assert busy.value.details == "migrate 'edge' still runs on VM 'vm-u1'"


async def _never_runs(operation: Operation) -> None:
    raise AssertionError("an operation refused ran")


@pytest.mark.parametrize("act", [find_snapshot, revert_snapshot, delete_snapshot])
async def test_a_snapshot_deleted_under_a_request_is_the_same_missing_snapshot(
    act: SnapshotAct, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Deleted by another request between its lookup and its use: libvirt's words ("find_snapshot <uuid> …:
    # Domain snapshot not found: …") were the details, not the VM's and the snapshot's names.
    hypervisor = Hypervisor(make_settings())
    await hypervisor.open()
    try:
        vm = await hypervisor.get_vm("test")
        await hypervisor.connection.call("make", lambda conn: conn.lookupByUUIDString(vm.uuid).snapshotCreateXML(
            "<domainsnapshot><name>going</name></domainsnapshot>"))
        looked_up = snapshots._find

        def found_then_deleted(dom: Any, name: str) -> Any:
            snap = looked_up(dom, name)
            snap.delete(0)  # the other request
            return snap

        monkeypatch.setattr(snapshots, "_find", found_then_deleted)
        with pytest.raises(LimenError) as missing:
            await act(hypervisor, vm.uuid, "going")
        assert (missing.value.code, missing.value.details) == (
            ErrorCode.SNAPSHOT_NOT_FOUND, "VM 'test' has no snapshot named 'going'")
    finally:
        await hypervisor.close()


async def test_a_snapshots_end_is_announced_once_its_operation_answers_it(
    make_settings: Callable[..., Settings], tmp_path: Path,
) -> None:
    """A client that heard ``snapshot_done`` and asked for the operation found it still running: the end was
    announced from the work, before the operation ended (after the audit row's write). The event now comes
    after, with the operation as it answers (its finished_at too)."""
    settings = make_settings(libvirt_uri=node_with_a_qcow2_vm(tmp_path, "pictured"))
    told: list[tuple[str, str | None, bool]] = []
    async with replica(settings) as (client, services):
        operations = services.hypervisor.operations

        def as_the_end_is_told(event: VmEvent) -> bool:  # called as the event is published
            if event.type is not VmEventType.SNAPSHOT_DONE or event.operation is None:
                return False
            found = operations.get(event.operation["id"])
            told.append((event.operation["state"], found.state.value if found else None,
                         event.operation["finished_at"] is not None))
            return True

        with services.hypervisor.feed.subscribe(as_the_end_is_told) as heard:
            started = await client.post("/api/vms/pictured/snapshots", json={"name": "first"})
            assert started.status_code == 202, started.text
            assert await heard.next_event(timeout=10) is not None
        polled = (await client.get(f"/api/operations/{started.json()['id']}")).json()
    assert told == [("done", "done", True)]
    assert polled["state"] == "done"

"""ConsoleAdmission's audit row: written off the set-up path, never skipped, the end after the start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from limen.audit import AuditLog
from limen.auth.principal import AuthMethod, Principal
from limen.auth.revocation import LiveConsole
from limen.console import admission as admission_module
from limen.console.admission import ConsoleAdmission
from limen.db import Database, Role
from limen.db.models import ConsoleSessionRecord
from limen.db.workers import database_hung
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.models import Vm, VmState
from tests.support.hung_batch_writes import hung_batch_writes

VM = Vm(uuid="1ce0be4c-0000-4000-8000-00000000000a", name="vm", state=VmState.RUNNING, vcpus=1, memory_mib=64)
ALICE = Principal(name="alice", role=Role.USER, method=AuthMethod.TICKET)


class FakeAudit:
    def __init__(self, *, fail: bool = False, error: Exception | None = None) -> None:
        self.fail = fail or error is not None
        self.error = error or RuntimeError("database is locked")
        self.release = asyncio.Event()
        self.calls: list[str] = []
        self.inserting = asyncio.Event()  # console_started was called

    async def console_started(self, session_id: str, **fields: Any) -> None:
        self.inserting.set()
        await self.release.wait()
        if self.fail:
            raise self.error
        self.calls.append("started")

    async def console_ended(self, session_id: str, **fields: Any) -> None:
        self.calls.append(f"ended {fields['end_code']}")

    def ensure_room_for_console_rows(self) -> None:
        return None


class FakeSession:
    def __init__(self) -> None:
        self.end_requests: list[LimenError] = []
        self.end_reason: str | None = None
        self.traffic = SimpleNamespace(to_client=12, to_vnc=0)
        self.machine = SimpleNamespace(error=None)

    def request_end(self, error: LimenError) -> None:
        self.end_requests.append(error)


def admitted(monkeypatch: pytest.MonkeyPatch, audit: FakeAudit | AuditLog, session_id: str = "s1",
             on_admitted: Callable[[LiveConsole], None] | None = None) -> tuple[ConsoleAdmission, FakeSession]:
    async def admit(access: Any, conn: Any, find_vm: Any) -> tuple[Principal, Vm]:
        return ALICE, await find_vm()

    monkeypatch.setattr(admission_module, "admit_console", admit)
    access = SimpleNamespace(audit=audit, client_address=lambda conn: "127.0.0.1")
    gate = ConsoleAdmission(access, SimpleNamespace(), session_id, on_admitted)  # type: ignore[arg-type]
    session = FakeSession()
    gate.session = session  # type: ignore[assignment]
    return gate, session


async def find_vm() -> Vm:
    return VM


async def test_admission_does_not_wait_for_the_audit_insert_and_the_end_follows_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    audit = FakeAudit()
    gate, session = admitted(monkeypatch, audit)
    assert await asyncio.wait_for(gate(find_vm), 1) is VM  # the insert is still blocked
    assert audit.calls == []
    gate.session_ended(session)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert audit.calls == []  # the end waits for the start
    audit.release.set()
    await asyncio.wait_for(gate.recorded(), 1)
    assert audit.calls == ["started", "ended OK"]
    assert session.end_requests == []


async def test_a_failed_audit_insert_ends_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    audit = FakeAudit(fail=True)
    gate, session = admitted(monkeypatch, audit)
    await gate(find_vm)
    audit.release.set()
    await asyncio.wait_for(audit.inserting.wait(), 1)  # after the delay, the session still running
    for _ in range(10):
        await asyncio.sleep(0)
    assert [error.code for error in session.end_requests] == [ErrorCode.INTERNAL_ERROR]
    gate.session_ended(session)  # type: ignore[arg-type]
    await asyncio.wait_for(gate.recorded(), 1)
    assert audit.calls == []  # no end for a row that was never written, and no exception escapes


async def test_an_insert_the_database_did_not_answer_still_gets_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its deadline passed on a database that hung: the insert may yet be committed, and without the end after
    it the row would stay live for a console that ended."""
    audit = FakeAudit(error=database_hung(0.2))
    gate, session = admitted(monkeypatch, audit)
    await gate(find_vm)
    audit.release.set()
    await asyncio.wait_for(audit.inserting.wait(), 1)
    for _ in range(10):
        await asyncio.sleep(0)
    assert [error.code for error in session.end_requests] == [ErrorCode.DATABASE_UNAVAILABLE]
    gate.session_ended(session)  # type: ignore[arg-type]
    await asyncio.wait_for(gate.recorded(), 1)
    assert audit.calls == ["ended OK"]


async def test_recorded_waits_for_the_insert_even_without_an_end(monkeypatch: pytest.MonkeyPatch) -> None:
    audit = FakeAudit()
    gate, _ = admitted(monkeypatch, audit)
    await gate(find_vm)
    waiting = asyncio.ensure_future(gate.recorded())
    await asyncio.sleep(0)
    assert not waiting.done()
    audit.release.set()
    await asyncio.wait_for(waiting, 1)
    assert audit.calls == ["started"]


async def test_the_insert_starts_after_the_delay_while_the_session_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    audit = FakeAudit()
    audit.release.set()
    gate, session = admitted(monkeypatch, audit)
    await gate(find_vm)
    await asyncio.sleep(0)
    assert not audit.inserting.is_set()  # not while the set-up's first frames and the RFB exchange run
    await asyncio.wait_for(audit.inserting.wait(), 1)  # the session has not ended: the delay started it
    for _ in range(5):
        await asyncio.sleep(0)
    assert audit.calls == ["started"]
    gate.session_ended(session)  # type: ignore[arg-type]
    await asyncio.wait_for(gate.recorded(), 1)
    assert audit.calls == ["started", "ended OK"]
    assert session.end_requests == []


async def test_a_session_ending_within_the_delay_gets_its_row_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission_module, "AUDIT_START_DELAY", 60.0)  # the end comes long before the timer
    audit = FakeAudit()
    gate, session = admitted(monkeypatch, audit)
    await gate(find_vm)
    await asyncio.sleep(0)
    assert not audit.inserting.is_set()
    session.end_reason = "VNC_CONNECTION_FAILED"
    gate.session_ended(session)  # type: ignore[arg-type]
    await asyncio.wait_for(audit.inserting.wait(), 1)  # started by the end, not by the timer
    assert audit.calls == []  # the end's update waits for the insert
    audit.release.set()
    await asyncio.wait_for(gate.recorded(), 1)
    assert audit.calls == ["started", "ended VNC_CONNECTION_FAILED"]


async def test_recorded_starts_a_pending_insert(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission_module, "AUDIT_START_DELAY", 60.0)
    audit = FakeAudit()
    audit.release.set()
    gate, _ = admitted(monkeypatch, audit)
    await gate(find_vm)
    await asyncio.wait_for(gate.recorded(), 1)  # never heard of the end: the row is still written
    assert audit.calls == ["started"]


async def test_a_failed_insert_started_by_the_end_is_logged_and_the_end_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admission_module, "AUDIT_START_DELAY", 60.0)
    audit = FakeAudit(fail=True)
    audit.release.set()
    gate, session = admitted(monkeypatch, audit)
    await gate(find_vm)
    gate.session_ended(session)  # type: ignore[arg-type]
    await asyncio.wait_for(gate.recorded(), 1)
    assert audit.calls == []
    assert session.end_requests == []  # it has ended: there is nothing left to end, and no reference to it kept
    assert gate.session is None


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):  # a bound on the test itself, not a measurement
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never came")


async def test_a_console_is_refused_while_rows_back_up_behind_a_hung_database_and_queued_rows_are_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A console storm against a database that hangs queued a row for every console without end. Past the
    writer's cap, a new console gets DATABASE_UNAVAILABLE (its error frame, close code 4305) and nothing of it
    is queued; the consoles let in before keep their rows, written once the database answers."""
    monkeypatch.setattr(admission_module, "AUDIT_START_DELAY", 0.0)
    db = Database(f"sqlite:///{tmp_path / 'limen.db'}")
    db.migrate()
    audit = AuditLog(db, time.time)
    audit.console_writes.max_waiting = 2
    let_in: list[str] = []
    try:
        with hung_batch_writes(monkeypatch) as (hung, release):
            gates = []
            for number in (1, 2, 3):
                gate, session = admitted(monkeypatch, audit, f"s{number}", lambda live: let_in.append(live.session_id))
                await gate(find_vm)
                gates.append((gate, session))
                await _until(hung.is_set)  # the first row's batch holds the writer; the others wait
            await _until(lambda: audit.console_writes.waiting == 2)
            refused, refused_session = admitted(monkeypatch, audit, "s4", lambda live: let_in.append(live.session_id))
            with pytest.raises(LimenError) as raised:
                await refused(find_vm)
            assert raised.value.code is ErrorCode.DATABASE_UNAVAILABLE and raised.value.code.close_code == 4305
            assert let_in == ["s1", "s2", "s3"]
            refused.session_ended(refused_session)  # type: ignore[arg-type]
            for gate, session in gates:
                gate.session_ended(session)  # type: ignore[arg-type]
            release.set()
            await asyncio.wait_for(asyncio.gather(*(gate.recorded() for gate, _ in [*gates, (refused, None)])), 10)
            with db.engine.connect() as connection:
                rows = connection.execute(select(ConsoleSessionRecord.id, ConsoleSessionRecord.ended_at)).all()
            assert sorted(row.id for row in rows) == ["s1", "s2", "s3"]
            assert all(row.ended_at is not None for row in rows)
    finally:
        db.close()

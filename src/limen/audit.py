"""The audit trail: every console session and every VM action, with who did it.

Console sessions: :meth:`AuditLog.console_started` when a session has passed its access checks,
:meth:`AuditLog.console_ended` exactly once when it ends (bytes each way, end code: ``OK`` or an
:class:`~limen.errors.ErrorCode` name). VM actions: :meth:`AuditLog.recording`, a context manager that
writes the action's row *before* the work (result ``STARTED``, the instance doing it, no ``finished_at``)
and completes it with the outcome of the block, failure included (a start row committed after its
caller gave up, the block never run, is completed with what the caller got); :meth:`AuditLog.vm_action`
records an action done at once.

Rows carry the id of the limen instance that wrote them (``instance_id``), so that what a crashed
instance held can be found and closed (:mod:`limen.recovery`): its live console rows are ended with
``SERVER_LOST`` and its pending actions completed as failed with the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from limen.action_details import end_phrases, joined, phrases, readable
from limen.clock import Clock, utc_now
from limen.db import Database
from limen.db.batch import BatchedWrites
from limen.db.models import ACTION_TARGET_MAX, CODE_MAX, NAME_MAX, ConsoleSessionRecord, LimenInstance, VmAction
from limen.errors import ErrorCode, LimenError

log = logging.getLogger("limen.audit")

OK = "OK"
STARTED = "STARTED"  # the result of an action whose row was written before its work, until it completes
DETAILS_MAX = 200
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
# How long a console row waits for others to share its transaction (seconds): consoles opened one after
# another, each a few milliseconds, then have their rows written several at a time instead of two
# transactions each (bench/RESULTS.md, rounds 15 and 17). A row waits at most this much beyond the batch
# ahead of it.
CONSOLE_ROWS_LINGER = 0.025
_INSERT_CONSOLE_SESSION = insert(ConsoleSessionRecord)
# One statement for every session's end, so that a batch of ends goes to the driver as one executemany.
_END_CONSOLE_SESSION = (
    update(ConsoleSessionRecord)
    .where(ConsoleSessionRecord.id == bindparam("end_id"), ConsoleSessionRecord.ended_at.is_(None))
    .values(ended_at=bindparam("end_at"), bytes_to_client=bindparam("end_to_client"),
            bytes_from_client=bindparam("end_from_client"), end_code=bindparam("end_code_"),
            end_details=bindparam("end_details_"))
)
CREDENTIAL_MAX = 80
DETAILS_MAX = 200


@dataclass(frozen=True, slots=True)
class ConsoleSessionInfo:
    id: str
    user: str
    vm_uuid: str
    vm_name: str
    client_address: str
    started_at: datetime
    ended_at: datetime | None
    bytes_to_client: int
    bytes_from_client: int
    end_code: str | None
    terminated_by: str | None
    credential: str | None
    end_details: str | None
    instance_id: str | None = None
    kind: str = "vnc"  # which console: "vnc" or "serial"

    @property
    def live(self) -> bool:
        return self.ended_at is None

    @property
    def end_details_phrases(self) -> list[dict[str, str]] | None:
        return end_phrases(self.end_code, self.end_details)

    @classmethod
    def of(cls, row: ConsoleSessionRecord) -> ConsoleSessionInfo:
        return cls(
            id=row.id, user=row.user_name, vm_uuid=row.vm_uuid, vm_name=row.vm_name,
            client_address=row.client_address, started_at=row.started_at, ended_at=row.ended_at,
            bytes_to_client=row.bytes_to_client, bytes_from_client=row.bytes_from_client, end_code=row.end_code,
            terminated_by=row.terminated_by, credential=row.credential, end_details=row.end_details,
            instance_id=row.instance_id, kind=row.kind,
        )


@dataclass(frozen=True, slots=True)
class VmActionInfo:
    id: int
    user: str
    vm_uuid: str | None
    vm_name: str
    action: str
    at: datetime
    result_code: str
    details: str
    finished_at: datetime | None = None
    instance_id: str | None = None

    @property
    def pending(self) -> bool:
        return self.finished_at is None

    @property
    def details_phrases(self) -> list[dict[str, str]] | None:
        return phrases(self.action, self.details)

    @classmethod
    def of(cls, row: VmAction) -> VmActionInfo:
        return cls(id=row.id, user=row.user_name, vm_uuid=row.vm_uuid, vm_name=row.vm_name, action=row.action,
                   at=row.at, result_code=row.result_code, details=readable(row.details), finished_at=row.finished_at,
                   instance_id=row.instance_id)


class _StartRow:
    """An action's start row between the worker thread that writes it and its caller, who may stop waiting
    for it first (a database that hung past its deadline): whichever of the two comes second sees the
    other's mark, so a row committed for a caller that gave up is completed, once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.committed_id: int | None = None
        self.given_up_with: str | None = None  # the result the caller got instead of the row's id


@dataclass(slots=True)
class ActionTarget:
    """What :meth:`AuditLog.recording` will write; the block fills in the VM once it knows it.
    ``action_id`` is the row written before the block (its result ``STARTED`` until the block ends)."""

    vm_name: str
    action_id: int = 0
    vm_uuid: str | None = None
    details: str = ""
    # The result if the block is cancelled (a deadline of the caller's passed): what the caller tells its
    # user. None: INTERNAL_ERROR, as for any failure that is not a LimenError.
    if_cancelled: ErrorCode | None = None


def _held_by_no_live_instance(column: InstrumentedAttribute[str | None], gone: frozenset[str]) -> ColumnElement[bool]:
    """Rows whose instance is stopped, was found gone, or is not recorded (rows from before instances)."""
    stopped = select(LimenInstance.id).where(LimenInstance.stopped_at.is_not(None))
    return or_(column.is_(None), column.in_(stopped), column.in_(sorted(gone)))


class AuditLog:
    def __init__(self, db: Database, clock: Clock, instance_id: str | None = None) -> None:
        self.db = db
        self.clock = clock
        self.instance_id = instance_id  # written into every row this instance holds while it runs
        # Console sessions' rows, written in batches: thousands opening or closing at once become a few
        # transactions (limen.db.batch); each caller still awaits its own row.
        self.console_writes = BatchedWrites(db, linger=CONSOLE_ROWS_LINGER)

    # -- console sessions --------------------------------------------------------------------------

    def ensure_room_for_console_rows(self) -> None:
        """DATABASE_UNAVAILABLE when the console rows' writer is backlogged (its database hangs): a new console
        is refused then, rather than its rows queued without bound; a console let in always has its rows
        queued. Ask before letting a console in."""
        if self.console_writes.backlogged:
            raise LimenError(ErrorCode.DATABASE_UNAVAILABLE,
                             f"{self.console_writes.waiting} console audit rows wait for the database; no new "
                             "console is let in until it answers")

    async def console_started(
        self, session_id: str, *, user: str, vm_uuid: str, vm_name: str, client_address: str,
        credential: str | None = None, kind: str = "vnc",
    ) -> None:
        # A Core INSERT, not a session's add: it runs while the console sets up; batched with other sessions'.
        await self.console_writes.write(_INSERT_CONSOLE_SESSION, {
            "id": session_id, "user_name": user[:NAME_MAX], "vm_uuid": vm_uuid, "vm_name": vm_name[:NAME_MAX],
            "client_address": client_address[:64], "started_at": utc_now(self.clock), "bytes_to_client": 0,
            "bytes_from_client": 0, "credential": credential[:CREDENTIAL_MAX] if credential else None,
            "instance_id": self.instance_id, "kind": kind,
        })

    async def console_ended(
        self, session_id: str, *, bytes_to_client: int, bytes_from_client: int, end_code: str,
        end_details: str | None = None,
    ) -> None:
        """Records the end once (``end_details``: why, in words); later calls for the same session change
        nothing."""
        await self.console_writes.write(_END_CONSOLE_SESSION, {
            "end_id": session_id, "end_at": utc_now(self.clock), "end_to_client": bytes_to_client,
            "end_from_client": bytes_from_client, "end_code_": end_code[:CODE_MAX],
            "end_details_": end_details[:DETAILS_MAX] if end_details else None,
        })

    async def console_session(self, session_id: str) -> ConsoleSessionInfo | None:
        def run(session: Session) -> ConsoleSessionInfo | None:
            row = session.get(ConsoleSessionRecord, session_id)
            return ConsoleSessionInfo.of(row) if row is not None else None

        return await self.db.run(run)

    async def termination_requested(self, session_id: str, by: str) -> ConsoleSessionInfo | None:
        """Notes who asked to end a live session; None if no such session is live."""

        def run(session: Session) -> ConsoleSessionInfo | None:
            row = session.get(ConsoleSessionRecord, session_id)
            if row is None or row.ended_at is not None:
                return None
            row.terminated_by = by[:NAME_MAX]
            return ConsoleSessionInfo.of(row)

        return await self.db.run(run)

    async def console_sessions(
        self, *, user: str | None = None, since: datetime | None = None, live_only: bool = False,
        limit: int = DEFAULT_LIMIT,
    ) -> list[ConsoleSessionInfo]:
        """Newest first; ``user`` None means everyone's; ``since``: only those started then or later."""
        query = select(ConsoleSessionRecord).order_by(ConsoleSessionRecord.started_at.desc(),
                                                      ConsoleSessionRecord.id)
        if user is not None:
            query = query.where(ConsoleSessionRecord.user_name == user)
        if since is not None:
            query = query.where(ConsoleSessionRecord.started_at >= since)
        if live_only:
            query = query.where(ConsoleSessionRecord.ended_at.is_(None))
        query = query.limit(max(1, min(limit, MAX_LIMIT)))
        return await self.db.run(lambda session: [ConsoleSessionInfo.of(row) for row in session.scalars(query)])

    # -- VM actions --------------------------------------------------------------------------------

    async def vm_action(
        self, *, user: str, action: str, vm_name: str, vm_uuid: str | None, result_code: str, details: str = ""
    ) -> None:
        """Records an action that is already over (it was refused, or had nothing to undo)."""
        now = utc_now(self.clock)
        row = VmAction(
            user_name=user[:NAME_MAX], vm_uuid=vm_uuid, vm_name=vm_name[:ACTION_TARGET_MAX], action=action[:16],
            at=now, result_code=result_code[:CODE_MAX], details=details[:DETAILS_MAX], finished_at=now,
        )
        await self.db.run(lambda session: session.add(row))

    async def action_started(
        self, *, user: str, action: str, vm_name: str, vm_uuid: str | None = None, details: str = ""
    ) -> int:
        """Writes the row of an action about to run (``STARTED``, held by this instance); returns its id.

        Raises VM_ALREADY_EXISTS for a create of a name another create is pending for (one at a time per
        name, across instances), and lets other database errors through: no work without its row. A row
        its caller stopped waiting for (the database's deadline passed, or the caller was cancelled) may
        still be committed when the database answers; the action never runs then, and the row is completed
        right after its commit with what the caller got, so that it does not stay pending."""
        row = VmAction(
            user_name=user[:NAME_MAX], vm_uuid=vm_uuid, vm_name=vm_name[:ACTION_TARGET_MAX], action=action[:16],
            at=utc_now(self.clock), result_code=STARTED, details=details[:DETAILS_MAX], instance_id=self.instance_id,
        )
        start = _StartRow()

        def write() -> int:
            with self.db.transaction() as session:
                session.add(row)
                session.flush()
                row_id = row.id
            with start.lock:
                start.committed_id = row_id
                given_up_with = start.given_up_with
            if given_up_with is not None:  # in the thread that committed it: the completion cannot come first
                self._finish_sync(row_id, self._completion(given_up_with))
            return row_id

        try:
            return await self.db.in_thread(write)
        except IntegrityError:
            raise LimenError(ErrorCode.VM_ALREADY_EXISTS,
                             f"a VM named {vm_name!r} is being created right now") from None
        except BaseException as exc:
            result_code = exc.code.name if isinstance(exc, LimenError) else "INTERNAL_ERROR"
            with start.lock:
                start.given_up_with = result_code
                committed_id = start.committed_id
            if committed_id is not None:  # committed just as its caller gave up: the thread has left it
                with contextlib.suppress(Exception):
                    await self.action_finished(committed_id, result_code=result_code)
            raise

    async def action_finished(
        self, action_id: int, *, result_code: str, vm_uuid: str | None = None, vm_name: str | None = None,
        details: str | None = None,
    ) -> bool:
        """Completes a pending action; False if it was no longer pending (a sweep completed it first)."""
        values = self._completion(result_code)
        if vm_name is not None:
            values["vm_name"] = vm_name[:ACTION_TARGET_MAX]
        if vm_uuid is not None:
            values["vm_uuid"] = vm_uuid
        if details is not None:
            values["details"] = details[:DETAILS_MAX]
        return await self.db.in_thread(lambda: self._finish_sync(action_id, values))

    def _completion(self, result_code: str) -> dict[str, object]:
        return {"result_code": result_code[:CODE_MAX], "finished_at": utc_now(self.clock)}

    def _finish_sync(self, action_id: int, values: dict[str, object]) -> bool:
        with self.db.transaction() as session:
            result = session.execute(
                update(VmAction).where(VmAction.id == action_id, VmAction.finished_at.is_(None)).values(**values))
            return bool(getattr(result, "rowcount", 0))

    @asynccontextmanager
    async def recording(
        self, user: str, action: str, vm_name: str, *, vm_uuid: str | None = None, details: str = ""
    ) -> AsyncIterator[ActionTarget]:
        """Writes the action's row before the block (``STARTED``; if that fails, the block does not run)
        and completes it when the block ends: ``OK``, or the LimenError's code (INTERNAL_ERROR else; a
        cancelled block: ``target.if_cancelled``'s, when set), its ``audit_details`` added to the details.

        The VM's UUID and the details known before the work belong in the started row: if the process dies
        mid-action, that row is all the trail keeps (the sweep completes it as SERVER_LOST), and the VM's page
        finds its actions by UUID."""
        target = ActionTarget(vm_name=vm_name, vm_uuid=vm_uuid, details=details)
        target.action_id = await self.action_started(user=user, action=action, vm_name=vm_name, vm_uuid=vm_uuid,
                                                     details=details)
        result = "INTERNAL_ERROR"
        try:
            yield target
            result = OK
        except LimenError as exc:
            result = exc.code.name
            target.details = joined(target.details, exc.audit_details)  # e.g. which quota refused it
            raise
        except asyncio.CancelledError:
            if target.if_cancelled is not None:
                result = target.if_cancelled.name
            raise
        finally:
            try:
                # The block may have learnt the VM's name: asked by UUID, the started row holds the UUID.
                await self.action_finished(target.action_id, result_code=result, vm_uuid=target.vm_uuid,
                                           vm_name=target.vm_name, details=target.details)
            except Exception:  # the action's own outcome matters more to the caller than its record
                log.exception("could not record a VM action", extra={"event": "audit_write_failed",
                                                                     "action": action, "result": result})

    # -- what lost instances held ------------------------------------------------------------------

    async def close_lost_console_sessions(
        self, gone: frozenset[str], describe: Callable[[str | None], str]
    ) -> list[str]:
        """Ends, with SERVER_LOST, every live console row that no live instance holds (its instance stopped,
        is in ``gone``, or is not recorded); ``describe(instance_id)`` says why in ``end_details``.
        Returns the ids of the rows closed."""
        now = utc_now(self.clock)
        query = select(ConsoleSessionRecord).where(
            ConsoleSessionRecord.ended_at.is_(None),
            _held_by_no_live_instance(ConsoleSessionRecord.instance_id, gone))

        def run(session: Session) -> list[str]:
            closed = []
            for row in session.scalars(query):
                row.ended_at, row.end_code = now, ErrorCode.SERVER_LOST.name
                row.end_details = describe(row.instance_id)[:DETAILS_MAX]
                closed.append(row.id)
            return closed

        return await self.db.run(run)

    async def close_console_session_if_lost(
        self, session_id: str, gone: frozenset[str], describe: Callable[[str | None], str]
    ) -> ConsoleSessionInfo | None:
        """Ends the live row ``session_id`` with SERVER_LOST if no live instance holds it (as
        :meth:`close_lost_console_sessions`); returns the row as closed, or None if it is not live or a
        live instance holds it."""
        now = utc_now(self.clock)
        query = select(ConsoleSessionRecord).where(
            ConsoleSessionRecord.id == session_id, ConsoleSessionRecord.ended_at.is_(None),
            _held_by_no_live_instance(ConsoleSessionRecord.instance_id, gone))

        def run(session: Session) -> ConsoleSessionInfo | None:
            row = session.scalars(query).first()
            if row is None:
                return None
            row.ended_at, row.end_code = now, ErrorCode.SERVER_LOST.name
            row.end_details = describe(row.instance_id)[:DETAILS_MAX]
            return ConsoleSessionInfo.of(row)

        return await self.db.run(run)

    async def lost_actions(self, gone: frozenset[str], *, own_creates: bool = False) -> list[VmActionInfo]:
        """Pending actions no live instance holds (as :meth:`close_lost_console_sessions`), oldest first;
        with ``own_creates`` also the pending creates this instance holds (the caller knows which of those
        still run)."""
        lost = _held_by_no_live_instance(VmAction.instance_id, gone)
        if own_creates and self.instance_id is not None:
            lost = or_(lost, (VmAction.instance_id == self.instance_id) & (VmAction.action == "create"))
        query = select(VmAction).where(VmAction.finished_at.is_(None), lost).order_by(VmAction.id)
        return await self.db.run(lambda session: [VmActionInfo.of(row) for row in session.scalars(query)])

    async def pending_creates(self, vm_name: str) -> list[VmActionInfo]:
        """The pending create of ``vm_name`` (at most one: see :meth:`action_started`), as a list."""
        query = select(VmAction).where(VmAction.finished_at.is_(None), VmAction.action == "create",
                                       VmAction.vm_name == vm_name[:ACTION_TARGET_MAX])
        return await self.db.run(lambda session: [VmActionInfo.of(row) for row in session.scalars(query)])

    async def pending_actions(self, *actions: str) -> list[VmActionInfo]:
        """The actions named ``actions`` that have not finished (running, or lost and not yet swept), oldest
        first, across every instance."""
        query = select(VmAction).where(VmAction.finished_at.is_(None), VmAction.action.in_(actions)) \
            .order_by(VmAction.id)
        return await self.db.run(lambda session: [VmActionInfo.of(row) for row in session.scalars(query)])

    async def claim_action(self, action: VmActionInfo) -> bool:
        """Makes this instance the holder of a lost pending action, so that only one instance cleans it up
        and, should this one die meanwhile, the next sweep finds it again. False if it is no longer pending
        or someone else claimed it first."""
        holder = (VmAction.instance_id.is_(None) if action.instance_id is None
                  else VmAction.instance_id == action.instance_id)

        def run(session: Session) -> bool:
            result = session.execute(update(VmAction).where(
                VmAction.id == action.id, VmAction.finished_at.is_(None), holder,
            ).values(instance_id=self.instance_id))
            return bool(getattr(result, "rowcount", 0))

        return await self.db.run(run)

    async def vm_actions(self, *, user: str | None = None, since: datetime | None = None, vm: str | None = None,
                         limit: int = DEFAULT_LIMIT) -> list[VmActionInfo]:
        """Newest first; ``user`` keeps one user's actions, ``since`` those done then or later, ``vm`` one VM's
        (its UUID or its name)."""
        query = select(VmAction).order_by(VmAction.at.desc(), VmAction.id.desc())
        if user is not None:
            query = query.where(VmAction.user_name == user)
        if since is not None:
            query = query.where(VmAction.at >= since)
        if vm is not None:
            query = query.where(or_(VmAction.vm_uuid == vm, VmAction.vm_name == vm))
        query = query.limit(max(1, min(limit, MAX_LIMIT)))
        return await self.db.run(lambda session: [VmActionInfo.of(row) for row in session.scalars(query)])

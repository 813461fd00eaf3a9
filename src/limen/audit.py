"""The audit trail: every console session and every VM action, with who did it.

Console sessions: :meth:`AuditLog.console_started` when a session has passed its access checks,
:meth:`AuditLog.console_ended` exactly once when it ends (bytes each way, end code: ``OK`` or an
:class:`~limen.errors.ErrorCode` name). VM actions: :meth:`AuditLog.vm_action`, or the
:meth:`AuditLog.recording` context manager that records the outcome of the block, failure included.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import Session

from limen.auth.clock import Clock, utc_now
from limen.db import Database
from limen.db.models import CODE_MAX, NAME_MAX, ConsoleSessionRecord, VmAction
from limen.errors import LimenError

log = logging.getLogger("limen.audit")

OK = "OK"
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
_INSERT_CONSOLE_SESSION = insert(ConsoleSessionRecord)


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

    @property
    def live(self) -> bool:
        return self.ended_at is None

    @classmethod
    def of(cls, row: ConsoleSessionRecord) -> ConsoleSessionInfo:
        return cls(
            id=row.id, user=row.user_name, vm_uuid=row.vm_uuid, vm_name=row.vm_name,
            client_address=row.client_address, started_at=row.started_at, ended_at=row.ended_at,
            bytes_to_client=row.bytes_to_client, bytes_from_client=row.bytes_from_client, end_code=row.end_code,
            terminated_by=row.terminated_by,
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

    @classmethod
    def of(cls, row: VmAction) -> VmActionInfo:
        return cls(id=row.id, user=row.user_name, vm_uuid=row.vm_uuid, vm_name=row.vm_name, action=row.action,
                   at=row.at, result_code=row.result_code, details=row.details)


@dataclass(slots=True)
class ActionTarget:
    """What :meth:`AuditLog.recording` will write; the block fills in the VM once it knows it."""

    vm_name: str
    vm_uuid: str | None = None
    details: str = ""


class AuditLog:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    # -- console sessions --------------------------------------------------------------------------

    async def console_started(
        self, session_id: str, *, user: str, vm_uuid: str, vm_name: str, client_address: str
    ) -> None:
        # A Core INSERT, not a session's add: it runs while the console sets up (Database.execute).
        await self.db.execute(_INSERT_CONSOLE_SESSION, {
            "id": session_id, "user_name": user[:NAME_MAX], "vm_uuid": vm_uuid, "vm_name": vm_name[:NAME_MAX],
            "client_address": client_address[:64], "started_at": utc_now(self.clock), "bytes_to_client": 0,
            "bytes_from_client": 0,
        })

    async def console_ended(
        self, session_id: str, *, bytes_to_client: int, bytes_from_client: int, end_code: str
    ) -> None:
        """Records the end once; later calls for the same session change nothing."""
        now = utc_now(self.clock)
        statement = (
            update(ConsoleSessionRecord)
            .where(ConsoleSessionRecord.id == session_id, ConsoleSessionRecord.ended_at.is_(None))
            .values(ended_at=now, bytes_to_client=bytes_to_client, bytes_from_client=bytes_from_client,
                    end_code=end_code[:CODE_MAX])
        )
        await self.db.execute(statement)

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
        self, *, user: str | None = None, live_only: bool = False, limit: int = DEFAULT_LIMIT
    ) -> list[ConsoleSessionInfo]:
        """Newest first; ``user`` None means everyone's."""
        query = select(ConsoleSessionRecord).order_by(ConsoleSessionRecord.started_at.desc(),
                                                      ConsoleSessionRecord.id)
        if user is not None:
            query = query.where(ConsoleSessionRecord.user_name == user)
        if live_only:
            query = query.where(ConsoleSessionRecord.ended_at.is_(None))
        query = query.limit(max(1, min(limit, MAX_LIMIT)))
        return await self.db.run(lambda session: [ConsoleSessionInfo.of(row) for row in session.scalars(query)])

    # -- VM actions --------------------------------------------------------------------------------

    async def vm_action(
        self, *, user: str, action: str, vm_name: str, vm_uuid: str | None, result_code: str, details: str = ""
    ) -> None:
        row = VmAction(
            user_name=user[:NAME_MAX], vm_uuid=vm_uuid, vm_name=vm_name[:NAME_MAX], action=action[:16],
            at=utc_now(self.clock), result_code=result_code[:CODE_MAX], details=details[:200],
        )
        await self.db.run(lambda session: session.add(row))

    @asynccontextmanager
    async def recording(self, user: str, action: str, vm_name: str) -> AsyncIterator[ActionTarget]:
        """Records ``action`` when the block ends: ``OK``, or the LimenError's code (INTERNAL_ERROR else)."""
        target = ActionTarget(vm_name=vm_name)
        result = "INTERNAL_ERROR"
        try:
            yield target
            result = OK
        except LimenError as exc:
            result = exc.code.name
            raise
        finally:
            try:
                await self.vm_action(user=user, action=action, vm_name=target.vm_name, vm_uuid=target.vm_uuid,
                                     result_code=result, details=target.details)
            except Exception:  # the action's own outcome matters more to the caller than its record
                log.exception("could not record a VM action", extra={"event": "audit_write_failed",
                                                                     "action": action, "result": result})

    async def vm_actions(self, *, user: str | None = None, vm: str | None = None,
                         limit: int = DEFAULT_LIMIT) -> list[VmActionInfo]:
        """Newest first; ``user`` keeps one user's actions, ``vm`` one VM's (its UUID or its name)."""
        query = select(VmAction).order_by(VmAction.at.desc(), VmAction.id.desc())
        if user is not None:
            query = query.where(VmAction.user_name == user)
        if vm is not None:
            query = query.where(or_(VmAction.vm_uuid == vm, VmAction.vm_name == vm))
        query = query.limit(max(1, min(limit, MAX_LIMIT)))
        return await self.db.run(lambda session: [VmActionInfo.of(row) for row in session.scalars(query)])

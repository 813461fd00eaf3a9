"""Who may open a console, and the audit trail of the sessions that were let in.

:class:`ConsoleAdmission` is the session's :class:`~limen.console.driver.Admission`: in the check_vm
stage, after the first status frame, it runs :func:`limen.auth.console_gate.admit_console` (Origin, then
the ticket, the session cookie or the bearer token, then the VM's owner) and, once the session is let in,
writes its audit row (user, VM, client address). A refusal is a LimenError like any other failure of the
stage: the client gets the error frame and the close code, never a bare 1006.

The audit row's insert runs in a task started ``AUDIT_START_DELAY`` after admission, so the console's
set-up neither waits for the database nor shares the GIL with the insert while the status frames and
the RFB exchange run (measured: the insert's CPU, right after admission, slowed that exchange). It is
never skipped: a session that ends before the delay starts it at once, the end's update awaits the
insert first, and if the insert fails the session is ended (DATABASE_UNAVAILABLE when the database did
not answer, within LIMEN_DATABASE_TIMEOUT on PostgreSQL; INTERNAL_ERROR else), so no console runs without
its row for longer than the delay, the batch's linger (:data:`limen.audit.CONSOLE_ROWS_LINGER`) and one
write. The end is written after an insert the database did not answer too: one whose deadline passed may
still commit. While the batch writer holds more rows than a healthy one ever does
(:attr:`limen.db.batch.BatchedWrites.backlogged`: the database hangs), a console is refused at admission
with DATABASE_UNAVAILABLE instead of queueing its row.

Once the session is let in it tells ``on_admitted`` (the console registry) who holds it, with which
credential, on which VM, so that revocation can find it (:mod:`limen.auth.revocation`); the audit row keeps
the credential's name (``token:<id>``, ``session:<hash prefix>``; never a secret) too.

It is also a :class:`~limen.console.driver.SessionObserver`: when the session ends it records the end
(bytes each way, end code: ``OK`` when the client closed, else the error code's name, and the error's
details as the words that say why). The write runs
in a task; the endpoint awaits :meth:`ConsoleAdmission.recorded` before it returns, so the row is
complete when the WebSocket handler is done.

Nothing here logs the query string or any credential: the ticket travels in ``?ticket=``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.requests import HTTPConnection

from limen.audit import OK
from limen.auth.access import Access
from limen.auth.console_gate import admit_console
from limen.auth.principal import Principal
from limen.auth.revocation import LiveConsole
from limen.console.pump import Traffic
from limen.db.database import database_unavailable
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.models import Vm

log = logging.getLogger("limen.console")

CLIENT_CLOSED = "client_closed"

# From admission to the audit row's insert (seconds); see the module docstring.
AUDIT_START_DELAY = 0.005


class _Ending(Protocol):
    @property
    def error(self) -> LimenError | None: ...


class AuditedSession(Protocol):
    """What the audit needs of a session of either kind (VNC or serial)."""

    @property
    def machine(self) -> _Ending: ...

    @property
    def traffic(self) -> Traffic: ...

    @property
    def end_reason(self) -> str | None: ...

    def request_end(self, error: LimenError) -> None: ...


class ConsoleAdmission:
    def __init__(
        self,
        access: Access,
        conn: HTTPConnection,
        session_id: str,
        on_admitted: Callable[[LiveConsole], None] | None = None,
        kind: str = "vnc",
    ) -> None:
        self.kind = kind  # the audit row's kind: "vnc" or "serial"
        self.access = access
        self.on_admitted = on_admitted
        self.conn = conn
        self.session_id = session_id
        self.client_address = access.client_address(conn)
        self.principal: Principal | None = None
        self.vm: Vm | None = None
        self._started = False
        self._start: asyncio.Task[None] | None = None
        self._start_timer: asyncio.TimerHandle | None = None
        self._end: asyncio.Task[None] | None = None
        self.session: AuditedSession | None = None  # the session to end if its audit row cannot be written

    # -- Admission --------------------------------------------------------------------------------------

    async def __call__(self, find_vm: Callable[[], Awaitable[Vm]]) -> Vm:
        principal, vm = await admit_console(self.access, self.conn, find_vm)
        self.access.audit.ensure_room_for_console_rows()  # before anything of this console is queued
        self.principal, self.vm = principal, vm
        self._started = True
        self._start_timer = asyncio.get_running_loop().call_later(AUDIT_START_DELAY, self._begin_record_start)
        log.info("%s console admitted", self.kind, extra={
            "event": "console_admitted", "session": self.session_id, "user": principal.name,
            "auth": principal.method.value, "credential": principal.credential, "vm_uuid": vm.uuid,
            "vm_name": vm.name, "client": self.client_address,
        })
        if self.on_admitted is not None:
            self.on_admitted(LiveConsole(session_id=self.session_id, user=principal.name, vm_uuid=vm.uuid,
                                         credential=principal.credential))
        return vm

    # -- SessionObserver ----------------------------------------------------------------------------------

    def first_status_sent(self, session: Any, seconds: float) -> None:
        return None

    def stage_ended(self, session: Any, stage: Any, seconds: float) -> None:
        return None

    def proxy_started(self, session: Any) -> None:
        return None

    def session_ended(self, session: AuditedSession) -> None:
        self.session = None  # nothing to end any more, and no cycle back to the session (it observes us)
        if not self._started or self._end is not None:
            return
        self._begin_record_start()  # a session that ended within the delay: its row now, before the end's
        reason = session.end_reason or CLIENT_CLOSED
        error = session.machine.error
        self._end = asyncio.get_running_loop().create_task(self._record_end(
            bytes_to_client=session.traffic.to_client, bytes_from_client=session.traffic.to_vnc,
            end_code=OK if reason == CLIENT_CLOSED else reason,
            end_details=error.details if error is not None else None,
        ))

    def _begin_record_start(self) -> None:
        """Starts the audit row's insert, once (the delay's timer, or the session's end if that is first)."""
        if self._start_timer is not None:
            self._start_timer.cancel()
            self._start_timer = None
        if self._start is None and self.principal is not None and self.vm is not None:
            self._start = asyncio.get_running_loop().create_task(self._record_start(self.principal, self.vm))

    async def _record_start(self, principal: Principal, vm: Vm) -> None:
        try:
            await self.access.audit.console_started(
                self.session_id, user=principal.name, vm_uuid=vm.uuid, vm_name=vm.name,
                client_address=self.client_address, credential=principal.credential, kind=self.kind,
            )
        except Exception as exc:
            log.exception("could not record a console session; ending it", extra={
                "event": "audit_write_failed", "session": self.session_id, "user": principal.name,
                "vm_uuid": vm.uuid,
            })
            if self.session is not None:
                self.session.request_end(database_unavailable(exc) or LimenError(
                    ErrorCode.INTERNAL_ERROR, f"the console session could not be audited ({type(exc).__name__})"))
            raise

    async def _record_end(
        self, *, bytes_to_client: int, bytes_from_client: int, end_code: str, end_details: str | None
    ) -> None:
        if self._start is not None:
            try:
                await asyncio.shield(self._start)
            except Exception as exc:
                if database_unavailable(exc) is None:
                    return  # no row to complete; _record_start logged it
                # The insert may yet be committed (its deadline passed on a database that hung): the end
                # follows it in the writer's order, so the row is not left live behind a session that ended,
                # and changes nothing if it never is.
        try:
            await self.access.audit.console_ended(
                self.session_id, bytes_to_client=bytes_to_client, bytes_from_client=bytes_from_client,
                end_code=end_code, end_details=end_details,
            )
        except Exception:  # the session is over either way; the log keeps its figures
            log.exception("could not record the end of a console session", extra={
                "event": "audit_write_failed", "session": self.session_id, "end_code": end_code,
            })

    async def recorded(self) -> None:
        """Until the end of the session is written (no-op if it was never admitted)."""
        if self._end is not None:
            await asyncio.shield(self._end)
            return
        if self._started:
            self._begin_record_start()
        if self._start is not None:  # the session ended before its observers heard of it
            with contextlib.suppress(Exception):
                await asyncio.shield(self._start)

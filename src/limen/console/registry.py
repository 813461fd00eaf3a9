"""The registry of live console sessions, one per app, in its services (:mod:`limen.api.services`).

It exists so that something outside a session can end it: server shutdown (:meth:`close_all`, called
before uvicorn closes its sockets, so every client gets SERVER_SHUTDOWN in its close frame), and
revocation (:meth:`revoke`, subscribed to the revocation bus: a user disabled, deleted or demoted, a VM
given away or deleted, a token revoked, a browser signed out, an administrator's "End session"). Tests
use it to check that no session is left behind.

Revocation only ever looks at admitted sessions: the admission tells the registry who holds a session
(:meth:`admitted`) once its checks have passed. A revocation that arrives while a session's checks are
running could miss it, so the registry remembers the revocations of the last ``remember`` seconds and
judges a newly admitted session against those that came since the session began, and against every
remembered credential revocation: a console ticket names the credential that asked for it, which may have
been revoked (a token, a sign-out) between the ticket's issue and its use, and a revoked credential stays
revoked. ``remember`` must therefore cover a ticket's lifetime. Where a revocation asks for it (a user's
or a VM's rights changed), the user's right to the VM is read again (:class:`Rights`) in a task; nothing
here runs per frame. While the other instances' revocations cannot be heard (Redis unreachable), every console
is re-checked that way every few seconds, its credential too (``Scope.UNHEARD``): one such round at a time, a
round asked while one runs following it once, so that rounds against a slow database never pile up.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol

from limen import end_details
from limen.auth.revocation import LiveConsole, Revocation, Rights, Scope, verdict
from limen.console.pump import Traffic
from limen.db.database import POOL_SIZE
from limen.errors import ErrorCode, HypervisorUnavailable, LimenError
from limen.hypervisor.models import Vm

log = logging.getLogger("limen.console")

# How long a revocation is kept to judge sessions admitted after it arrived (at least): well beyond the
# check_vm stage, and as long as a console ticket lives by default.
RECENT_SECONDS = 30.0
RECENT_MAX = 1000
# Rights read at once by one re-check (each a database or libvirt read): a round over every console leaves the
# database pool's overflow to the requests.
READS_AT_ONCE = POOL_SIZE


class LiveSession(Protocol):
    """A live session of either kind (VNC: ``vnc_session.py``; serial: ``serial_session.py``), as the
    registry sees it."""

    @property
    def id(self) -> str: ...

    @property
    def traffic(self) -> Traffic: ...

    @property
    def finished(self) -> asyncio.Event: ...

    @property
    def vm(self) -> Vm | None: ...

    def request_end(self, error: LimenError) -> None: ...


class ConsoleSessions:
    def __init__(
        self,
        rights: Rights | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        remember: float = RECENT_SECONDS,
        reads_at_once: int = READS_AT_ONCE,
    ) -> None:
        self._sessions: dict[str, LiveSession] = {}
        self._began: dict[str, float] = {}
        self._holders: dict[str, LiveConsole] = {}
        self._recent: deque[tuple[float, Revocation]] = deque(maxlen=RECENT_MAX)
        self._rechecks: set[asyncio.Task[None]] = set()
        self._unheard_round: asyncio.Task[None] | None = None
        self._unheard_next: tuple[Revocation, list[LiveConsole]] | None = None  # asked while a round runs
        self.reads_at_once = reads_at_once
        self.rights = rights
        self.clock = clock
        self.remember = max(remember, RECENT_SECONDS)
        self.closing: LimenError | None = None  # set by close_all; later sessions end at once with it

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[LiveSession]:
        return iter(list(self._sessions.values()))

    def get(self, session_id: str) -> LiveSession | None:
        return self._sessions.get(session_id)

    def holder(self, session_id: str) -> LiveConsole | None:
        return self._holders.get(session_id)

    def bytes_so_far(self, session_id: str) -> tuple[int, int] | None:
        """(to the client, from the client) of a session live here, None if it is not: its audit row
        learns its bytes only when it ends, so the audit API overlays these on live rows."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        return session.traffic.to_client, session.traffic.to_vnc

    @contextmanager
    def track(self, session: LiveSession) -> Iterator[LiveSession]:
        """Registers ``session`` for the duration of the ``with`` block."""
        self._sessions[session.id] = session
        self._began[session.id] = self.clock()
        if self.closing is not None:
            session.request_end(self.closing)
        try:
            yield session
        finally:
            self._sessions.pop(session.id, None)
            self._began.pop(session.id, None)
            self._holders.pop(session.id, None)

    # -- revocation ---------------------------------------------------------------------------------------

    def admitted(self, console: LiveConsole) -> None:
        """The session ``console.session_id`` passed its access checks; judges it against the revocations
        that arrived since it began (its checks may have read the rights from before them)."""
        if console.session_id not in self._sessions:
            return
        self._holders[console.session_id] = console
        began = self._began.get(console.session_id, self.clock())
        for received, revocation in list(self._recent):
            if received >= began or revocation.lasting:
                self._judge(revocation, [console])

    def revoke(self, revocation: Revocation) -> None:
        """Ends the live sessions ``revocation`` takes the right from (a bus handler: returns at once)."""
        if revocation.scope is Scope.UNHEARD:
            # No change to remember for later admissions: their own checks read the database while unheard.
            self._ask_unheard_round(revocation)
            return
        now = self.clock()
        recent = self._recent
        while recent and recent[0][0] < now - self.remember:
            recent.popleft()
        recent.append((now, revocation))
        if revocation.scope is Scope.SESSION:
            # An administrator may end a session whose checks are still running: no holder needed.
            session = self._sessions.get(revocation.subject)
            if session is not None:
                self._end(session, revocation.error(), revocation)
            return
        self._judge(revocation, list(self._holders.values()))

    def _judge(self, revocation: Revocation, consoles: Iterable[LiveConsole]) -> None:
        concerned = [console for console in consoles if revocation.concerns(console)]
        if not concerned:
            return
        if not revocation.needs_recheck:
            for console in concerned:
                self._end_console(console, verdict(revocation, console), revocation)
            return
        self._start_recheck(self._recheck(revocation, concerned))

    def _start_recheck(self, recheck: Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(recheck)
        self._rechecks.add(task)  # close_all cancels it
        task.add_done_callback(self._rechecks.discard)
        return task

    def _ask_unheard_round(self, revocation: Revocation) -> None:
        """Re-checks the consoles held now, unless a round runs: then it follows that one, once, with the consoles
        of the latest ask. The bus asks every few seconds while unheard; a round against a slow database may take
        longer, and rounds run side by side only multiplied the reads. A change made unheard while a round runs
        is read by the one that follows it."""
        concerned = [console for console in self._holders.values() if revocation.concerns(console)]
        self._unheard_next = (revocation, concerned) if concerned else None
        if self._unheard_next is not None and (self._unheard_round is None or self._unheard_round.done()):
            self._unheard_round = self._start_recheck(self._unheard_rounds())

    async def _unheard_rounds(self) -> None:
        try:  # not a done callback: an ask right after the last round's end must start a new one
            while self._unheard_next is not None:
                (revocation, consoles), self._unheard_next = self._unheard_next, None
                await self._recheck(revocation, consoles)
        finally:
            self._unheard_round = None

    async def _recheck(self, revocation: Revocation, consoles: list[LiveConsole]) -> None:
        pairs = sorted({(console.user, console.vm_uuid) for console in consoles})
        answers = await self._read_all([functools.partial(self._may_access, user, vm_uuid) for user, vm_uuid in pairs])
        allowed = dict(zip(pairs, answers, strict=True))
        if revocation.scope is Scope.UNHEARD:
            await self._recheck_unheard(revocation, consoles, allowed)
            return
        for console in consoles:
            self._end_console(console, verdict(revocation, console, allowed[(console.user, console.vm_uuid)]),
                              revocation)

    async def _recheck_unheard(self, revocation: Revocation, consoles: list[LiveConsole],
                               allowed: dict[tuple[str, str], bool | None]) -> None:
        """A revoked credential may not have been heard of either: each console's is read too. No change is
        known, so a console whose answer cannot be read just then goes on (the next re-check reads it again)."""
        credentials = sorted({console.credential for console in consoles if console.credential is not None})
        answers = await self._read_all([functools.partial(self._credential_in_force, credential)
                                        for credential in credentials])
        in_force = dict(zip(credentials, answers, strict=True))
        for console in consoles:
            still = [allowed[(console.user, console.vm_uuid)]]
            if console.credential is not None:
                still.append(in_force[console.credential])
            self._end_console(console, verdict(revocation, console, False not in still), revocation)

    async def _read_all(self, reads: list[Callable[[], Awaitable[bool | None]]]) -> list[bool | None]:
        """Every read's answer, in order, with at most ``reads_at_once`` of them running at once."""
        gate = asyncio.Semaphore(self.reads_at_once)

        async def read(one: Callable[[], Awaitable[bool | None]]) -> bool | None:
            async with gate:
                return await one()

        return await asyncio.gather(*(read(one) for one in reads))

    async def _credential_in_force(self, credential: str) -> bool | None:
        if self.rights is None:
            return None
        try:
            return await self.rights.credential_in_force(credential)
        except Exception as exc:
            log.warning("could not re-check a console's credential (%s)", type(exc).__name__,
                        extra={"event": "revocation_recheck_failed", "credential": credential})
            return None

    async def _may_access(self, user: str, vm_uuid: str) -> bool | None:
        if self.rights is None:
            return None
        try:
            return await self.rights.may_access(user, vm_uuid)
        except Exception as exc:  # cannot tell: the console ends (see verdict)
            log.warning("could not re-check a console's access (%s)", type(exc).__name__,
                        extra={"event": "revocation_recheck_failed", "user": user, "vm_uuid": vm_uuid})
            return None

    def _end_console(self, console: LiveConsole, error: LimenError | None, revocation: Revocation) -> None:
        session = self._sessions.get(console.session_id)
        if error is not None and session is not None:
            self._end(session, error, revocation)

    @staticmethod
    def _end(session: LiveSession, error: LimenError, revocation: Revocation) -> None:
        log.info("console session ended by revocation: %s", revocation.reason, extra={
            "event": "console_revoked", "session": session.id, "scope": revocation.scope.value,
            "code": error.code.name,
        })
        session.request_end(error)

    def host_changed(self, host: str, available: bool) -> None:
        """A host-pool listener: a host that stopped answering ends the consoles of its VMs with
        HYPERVISOR_UNAVAILABLE (their VNC may still flow, but nothing can be done about their VMs)."""
        if available:
            return
        for session in list(self._sessions.values()):
            vm = session.vm
            if vm is not None and vm.host == host:
                log.info("console session ended: its host is unavailable", extra={
                    "event": "console_host_lost", "session": session.id, "host": host})
                session.request_end(HypervisorUnavailable(
                    f"host {host!r} of VM {vm.name!r} stopped answering within LIMEN_LIBVIRT_TIMEOUT"))

    async def wait_ended(self, vm_uuid: str, timeout: float) -> None:
        """Until no admitted session of ``vm_uuid`` is left here, or ``timeout`` has passed."""
        sessions = [self._sessions[console.session_id] for console in self._holders.values()
                    if console.vm_uuid == vm_uuid and console.session_id in self._sessions]
        await self._wait_finished(sessions, timeout)

    @staticmethod
    async def _wait_finished(sessions: list[LiveSession], timeout: float | None) -> None:
        waiters = [asyncio.create_task(session.finished.wait()) for session in sessions]
        if not waiters:
            return
        try:
            await asyncio.wait(waiters, timeout=timeout)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def close_all(
        self,
        code: ErrorCode = ErrorCode.SERVER_SHUTDOWN,
        details: str = end_details.SERVER_SHUTDOWN,
        *,
        timeout: float | None = None,
    ) -> int:
        """Ends every session with ``code`` and waits (at most ``timeout``) until they are all gone.

        Sessions opened afterwards end at once with the same code. Returns how many were ended.
        """
        self.closing = LimenError(code, details)
        for task in list(self._rechecks):
            task.cancel()
        sessions = list(self._sessions.values())
        for session in sessions:
            session.request_end(self.closing)
        await self._wait_finished(sessions, timeout)
        return len(sessions)

"""The registry of live console sessions, kept at ``app.state.console_sessions``.

It exists so that something outside a session can end it: server shutdown (:meth:`close_all`, called
before uvicorn closes its sockets, so every client gets SERVER_SHUTDOWN in its close frame) and an
administrator (:meth:`terminate`, behind ``DELETE /api/console-sessions/{id}``: SESSION_TERMINATED).
Tests use it to check that no session is left behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from limen.console.session import ConsoleSession
from limen.errors import ErrorCode, LimenError


class ConsoleSessions:
    def __init__(self) -> None:
        self._sessions: dict[str, ConsoleSession] = {}
        self.closing: LimenError | None = None  # set by close_all; later sessions end at once with it

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[ConsoleSession]:
        return iter(list(self._sessions.values()))

    def get(self, session_id: str) -> ConsoleSession | None:
        return self._sessions.get(session_id)

    def terminate(self, session_id: str, details: str = "an administrator ended the session") -> bool:
        """Ends the live session ``session_id`` with SESSION_TERMINATED (its client gets the close code and
        reason, and the error frame when it asked for notices); False if no such session is live here."""
        session = self._sessions.get(session_id)
        if session is None:
            return False
        session.request_end(LimenError(ErrorCode.SESSION_TERMINATED, details))
        return True

    @contextmanager
    def track(self, session: ConsoleSession) -> Iterator[ConsoleSession]:
        """Registers ``session`` for the duration of the ``with`` block."""
        self._sessions[session.id] = session
        if self.closing is not None:
            session.request_end(self.closing)
        try:
            yield session
        finally:
            self._sessions.pop(session.id, None)

    async def close_all(
        self,
        code: ErrorCode = ErrorCode.SERVER_SHUTDOWN,
        details: str = "limen is shutting down",
        *,
        timeout: float | None = None,
    ) -> int:
        """Ends every session with ``code`` and waits (at most ``timeout``) until they are all gone.

        Sessions opened afterwards end at once with the same code. Returns how many were ended.
        """
        self.closing = LimenError(code, details)
        sessions = list(self._sessions.values())
        for session in sessions:
            session.request_end(self.closing)
        waiters = [asyncio.create_task(session.finished.wait()) for session in sessions]
        if waiters:
            try:
                await asyncio.wait(waiters, timeout=timeout)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)
        return len(sessions)

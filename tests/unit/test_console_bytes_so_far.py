"""The console registry tells the audit API the bytes a live session has moved so far."""

from __future__ import annotations

from typing import cast

from limen.console.pump import Traffic
from limen.console.registry import ConsoleSessions
from limen.console.vnc_session import ConsoleSession
from limen.errors import LimenError


class CountingSession:
    def __init__(self, session_id: str) -> None:
        self.id = session_id
        self.traffic = Traffic()

    def request_end(self, error: LimenError) -> None:
        return None


def test_a_live_sessions_bytes_so_far_and_none_once_it_ended() -> None:
    registry = ConsoleSessions()
    session = CountingSession("abc123")
    with registry.track(cast(ConsoleSession, session)):
        assert registry.bytes_so_far("abc123") == (0, 0)
        session.traffic.to_client += 5000
        session.traffic.to_vnc += 12
        assert registry.bytes_so_far("abc123") == (5000, 12)
        assert registry.bytes_so_far("someone-else") is None
    assert registry.bytes_so_far("abc123") is None

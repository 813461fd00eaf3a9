"""The in-memory console ticket store (the Redis store passes the same contract: tests/integration)."""

from __future__ import annotations

import pytest

from limen.auth.tickets import MemoryTicketStore, TicketStore
from tests.support.access import FakeClock
from tests.support.ticket_contract import TTL, TicketStoreContract


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> TicketStore:
    return MemoryTicketStore(TTL, clock)


class TestMemoryTicketStore(TicketStoreContract):
    pass

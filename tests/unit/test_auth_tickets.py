"""The in-memory console ticket store (the Redis store passes the same contract: tests/integration)."""

from __future__ import annotations

import pytest

from limen.auth.tickets import MemoryTicketStore, TicketStore
from limen.errors import ErrorCode, LimenError
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


async def test_old_tickets_are_forgotten_from_the_front(clock: FakeClock) -> None:
    from limen.auth.tickets import RETAIN_SECONDS

    store = MemoryTicketStore(TTL, clock)
    old = [await store.issue("alice", "vm") for _ in range(3)]
    clock.advance(TTL + RETAIN_SECONDS - 1)
    kept = await store.issue("alice", "vm")
    assert len(store._entries) == 4  # nothing past its retention yet
    clock.advance(1)
    newest = await store.issue("alice", "vm")
    assert len(store._entries) == 2  # the three old ones went; kept and newest stay
    for ticket in old:
        with pytest.raises(LimenError) as caught:
            await store.redeem(ticket, "vm")
        assert caught.value.code is ErrorCode.FORBIDDEN  # unknown again
    assert (await store.redeem(kept, "vm")).user == "alice"
    assert (await store.redeem(newest, "vm")).user == "alice"

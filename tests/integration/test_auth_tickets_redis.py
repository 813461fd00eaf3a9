"""The Redis console ticket store against a real redis-server the test starts (and stops)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from limen.auth.tickets import RedisTicketStore, TicketStore
from limen.errors import ErrorCode, LimenError
from tests.support.access import FakeClock, redis_server
from tests.support.net import free_port
from tests.support.ticket_contract import TTL, VM_A, TicketStoreContract


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(redis_url: str, clock: FakeClock, request: pytest.FixtureRequest) -> AsyncIterator[TicketStore]:
    # A namespace per test keeps tests apart on the one server.
    ticket_store = RedisTicketStore(redis_url, TTL, clock, namespace=f"limen-test-{request.node.name}")
    await ticket_store.check()
    yield ticket_store
    await ticket_store.close()


class TestRedisTicketStore(TicketStoreContract):
    pass


async def test_two_instances_share_tickets(redis_url: str, clock: FakeClock) -> None:
    first, second = RedisTicketStore(redis_url, TTL, clock), RedisTicketStore(redis_url, TTL, clock)
    try:
        ticket = await first.issue("alice", VM_A)
        assert (await second.redeem(ticket, VM_A)).user == "alice"
        with pytest.raises(LimenError) as caught:
            await first.redeem(ticket, VM_A)
        assert caught.value.code is ErrorCode.TICKET_USED
    finally:
        await first.close()
        await second.close()


async def test_redis_keeps_only_hashes_and_lets_keys_expire(redis_url: str, clock: FakeClock) -> None:
    store = RedisTicketStore(redis_url, TTL, clock, namespace="limen-test-keys")
    try:
        ticket = await store.issue("alice", VM_A)
        client = redis.Redis.from_url(redis_url)
        try:
            keys = client.keys("limen-test-keys:*")
            assert len(keys) == 1 and ticket.encode() not in keys[0]
            assert ticket.encode() not in (client.get(keys[0]) or b"")
            assert 0 < client.pttl(keys[0]) <= (TTL + 600) * 1000
        finally:
            client.close()
    finally:
        await store.close()


async def test_unreachable_redis_is_a_clear_error_without_the_url(clock: FakeClock) -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    store = RedisTicketStore(url, TTL, clock)
    try:
        for attempt in (store.check(), store.issue("alice", VM_A)):
            with pytest.raises(LimenError) as caught:
                await attempt
            assert caught.value.code is ErrorCode.REDIS_UNAVAILABLE
            assert "hunter2" not in str(caught.value) and "Redis" in caught.value.details
    finally:
        await store.close()


def test_redis_server_fixture_stops_its_server(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert redis.Redis(port=port).ping()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port, socket_connect_timeout=1).ping()

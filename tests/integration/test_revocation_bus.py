"""The Redis revocation bus against a real redis-server: what one instance publishes reaches the others
once (and itself once, without Redis), old entries are not replayed, a subscriber that lost its
connection catches up, garbage is ignored, the command line can publish, and a Redis that is gone does
not make a change fail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from limen.auth.revocation import Revocation, Scope
from limen.auth.revocation_bus import RedisRevocationBus, publish_from_command_line, stream_key
from tests.support.access import redis_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REVOKED = Revocation.credential_revoked("token:12", "API token 12 revoked by 'root'")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path) as url:
        yield url


class Heard:
    def __init__(self) -> None:
        self.revocations: list[Revocation] = []
        self.changed = asyncio.Event()

    def __call__(self, revocation: Revocation) -> None:
        if revocation.scope is Scope.UNHEARD:  # the bus's own re-checks while its stream cannot be read
            return
        self.revocations.append(revocation)
        self.changed.set()

    async def until(self, count: int, timeout: float = 5.0) -> list[Revocation]:
        deadline = time.monotonic() + timeout
        while len(self.revocations) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))
        return self.revocations


@pytest.fixture
async def buses(redis_url: str) -> AsyncIterator[tuple[RedisRevocationBus, Heard, RedisRevocationBus, Heard]]:
    first, second = RedisRevocationBus(redis_url), RedisRevocationBus(redis_url)
    heard_first, heard_second = Heard(), Heard()
    first.subscribe(heard_first)
    second.subscribe(heard_second)
    await first.start()
    await second.start()
    yield first, heard_first, second, heard_second
    await first.close()
    await second.close()


@pytest.mark.runs_quiet  # heard within 1 s
async def test_one_instance_publishes_every_instance_hears_it_once(
    buses: tuple[RedisRevocationBus, Heard, RedisRevocationBus, Heard],
) -> None:
    first, heard_first, _second, heard_second = buses
    sent = time.monotonic()
    await first.publish(REVOKED)
    assert heard_first.revocations == [REVOKED]  # at once, without a round trip through Redis
    assert await heard_second.until(1) == [REVOKED]
    assert time.monotonic() - sent < 1.0
    await asyncio.sleep(0.3)
    assert heard_first.revocations == [REVOKED]  # its own entry is skipped when it comes back
    assert heard_second.revocations == [REVOKED]


async def test_a_new_instance_does_not_replay_the_past(redis_url: str) -> None:
    old = RedisRevocationBus(redis_url)
    await old.start()
    await old.publish(Revocation.user_changed("bob", "user 'bob' disabled by 'root'"))
    newcomer, heard = RedisRevocationBus(redis_url), Heard()
    newcomer.subscribe(heard)
    await newcomer.start()
    try:
        await old.publish(REVOKED)
        assert await heard.until(1) == [REVOKED]
    finally:
        await old.close()
        await newcomer.close()


async def test_garbage_in_the_stream_is_skipped(
    buses: tuple[RedisRevocationBus, Heard, RedisRevocationBus, Heard], redis_url: str
) -> None:
    _first, _heard_first, _second, heard_second = buses
    raw = redis.Redis.from_url(redis_url)
    try:
        for fields in ({"data": "not json"}, {"data": '{"origin": "x", "revocation": "{}"}'}, {"other": "1"}):
            raw.xadd(stream_key("limen"), fields)  # type: ignore[arg-type]
    finally:
        raw.close()
    assert publish_from_command_line(redis_url, REVOKED)  # what `limen token revoke` does
    assert await heard_second.until(1) == [REVOKED]


async def test_a_subscriber_that_lost_redis_catches_up(
    buses: tuple[RedisRevocationBus, Heard, RedisRevocationBus, Heard], redis_url: str
) -> None:
    first, _heard_first, _second, heard_second = buses
    admin = redis.Redis.from_url(redis_url)
    try:
        admin.client_kill_filter(_type="normal", skipme=True)  # every connection of both buses drops
        await first.publish(REVOKED)
    finally:
        admin.close()
    assert await heard_second.until(1) == [REVOKED]


async def test_a_redis_that_is_gone_does_not_fail_the_change(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "short-lived").mkdir()
    with redis_server(tmp_path / "short-lived") as short_lived:
        bus, heard = RedisRevocationBus(short_lived), Heard()
        bus.subscribe(heard)
        await bus.start()
    try:
        await asyncio.wait_for(bus.publish(REVOKED), 15)  # logged, not raised
        assert heard.revocations == [REVOKED]  # this instance's consoles are told all the same
        assert not publish_from_command_line(short_lived, REVOKED)
    finally:
        await bus.close()


async def test_a_revocation_redis_did_not_take_reaches_the_others_once_it_does(
    buses: tuple[RedisRevocationBus, Heard, RedisRevocationBus, Heard], redis_url: str
) -> None:
    # A user disabled while Redis is down: their consoles on the other instances stayed open for good (the
    # entry was never written). It is sent again until Redis takes it, in order with what followed.
    first, heard_first, _second, heard_second = buses
    later = Revocation.credential_revoked("token:13", "API token 13 revoked by 'root'")
    admin = redis.Redis.from_url(redis_url)
    try:
        admin.execute_command("CLIENT", "PAUSE", 5000, "WRITE")  # every write waits past the client's timeout
    finally:
        admin.close()
    await first.publish(REVOKED)  # fails: queued
    await first.publish(later)  # queued behind it
    assert heard_first.revocations == [REVOKED, later]  # this instance's consoles were told at once
    assert heard_second.revocations == []
    assert await heard_second.until(2, timeout=20) == [REVOKED, later]

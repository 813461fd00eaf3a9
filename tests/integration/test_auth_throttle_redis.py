"""The Redis sign-in throttle store against a real redis-server the test starts (and stops)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from limen.auth.throttle_store import RedisThrottleStore, ThrottleStore
from tests.support.access import redis_server
from tests.support.throttle_contract import NOW, POLICY, USER_LIMIT, ThrottleStoreContract, fail, keys


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
async def store(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[ThrottleStore]:
    # A namespace per test keeps tests apart on the one server (and has glob characters: [ ]).
    throttle = RedisThrottleStore(redis_url, POLICY, namespace=f"limen-test-{request.node.name}[*]")
    await throttle.check()
    yield throttle
    await throttle.close()


class TestRedisThrottleStore(ThrottleStoreContract):
    pass


async def test_two_instances_share_the_counts(redis_url: str) -> None:
    first = RedisThrottleStore(redis_url, POLICY, namespace="limen-test-shared")
    second = RedisThrottleStore(redis_url, POLICY, namespace="limen-test-shared")
    try:
        for store in (first, second, first):
            await fail(store, "alice", NOW)
        assert await second.reserve(keys("alice"), NOW) == POLICY.block_seconds
        assert await first.clear_user("alice") == 1
        assert await second.reserve(keys("alice"), NOW) is None
    finally:
        await first.close()
        await second.close()


async def test_keys_hold_no_names_share_a_slot_and_expire(redis_url: str) -> None:
    store = RedisThrottleStore(redis_url, POLICY, namespace="limen-test-keys")
    client = redis.Redis.from_url(redis_url)
    try:
        for _ in range(USER_LIMIT):
            await fail(store, "alice-secret-name", NOW)
        names = sorted(name for name in client.keys("limen-test-keys:*") if isinstance(name, bytes))
        assert len(names) == 2 and all(b"alice" not in name for name in names)
        assert all(name.startswith(b"limen-test-keys:throttle:{192.0.2.1}:") for name in names)
        for name in names:
            # Kept until the block ends plus the forget window, no longer.
            assert 0 < client.pttl(name) <= (POLICY.block_seconds + POLICY.forget_after) * 1000 + 1000
    finally:
        client.close()
        await store.close()

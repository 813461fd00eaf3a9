"""Sign-in attempts throttled per user name at an address and per address (over the database store)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from limen.auth.ratelimit import LoginRateLimiter, TooManyAttempts
from limen.auth.throttle import ThrottlePolicy
from limen.auth.throttle_store import DatabaseThrottleStore
from limen.db import Database
from tests.support.access import FakeClock

POLICY = ThrottlePolicy(block_seconds=60, block_max_seconds=3600, forget_after=300)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def limiter(tmp_path: Path, clock: FakeClock) -> Iterator[LoginRateLimiter]:
    db = Database(f"sqlite:///{tmp_path / 'limen.db'}")
    db.migrate()
    yield LoginRateLimiter(DatabaseThrottleStore(db, POLICY), max_per_user=3, max_per_address=5, clock=clock)
    db.close()


async def wrong(limiter: LoginRateLimiter, name: str, address: str) -> None:
    await (await limiter.begin(name, address)).failed()


async def refused_for(limiter: LoginRateLimiter, name: str, address: str) -> int:
    with pytest.raises(TooManyAttempts) as caught:
        await limiter.begin(name, address)
    body = caught.value.to_dict()
    assert body["code"] == "TOO_MANY_ATTEMPTS" and body["retry_after"] == caught.value.retry_after
    return caught.value.retry_after


async def test_a_user_is_blocked_at_one_address_only(limiter: LoginRateLimiter, clock: FakeClock) -> None:
    for name in ("Alice", "ALICE", "alice"):  # one user name, however it is spelt
        await wrong(limiter, name, "192.0.2.1")
    clock.advance(4)
    assert await refused_for(limiter, "aLiCe", "192.0.2.1") == 56
    await (await limiter.begin("alice", "198.51.100.1")).succeeded()  # from elsewhere: not blocked
    await (await limiter.begin("bob", "192.0.2.1")).succeeded()  # others at the address: not blocked
    clock.advance(56)
    await (await limiter.begin("alice", "192.0.2.1")).succeeded()


async def test_an_address_guessing_many_names_is_blocked_as_a_whole(limiter: LoginRateLimiter) -> None:
    for index in range(5):
        await wrong(limiter, f"guess{index}", "192.0.2.1")
    assert await refused_for(limiter, "somebody-else", "192.0.2.1") == 60
    await (await limiter.begin("somebody-else", "192.0.2.2")).succeeded()


async def test_an_ipv6_subscriber_is_one_address(limiter: LoginRateLimiter) -> None:
    for suffix in range(3):  # one /64, three addresses
        await wrong(limiter, "alice", f"2001:db8:0:1::{suffix + 1}")
    assert await refused_for(limiter, "alice", "2001:db8:0:1:ffff::7") == 60
    await (await limiter.begin("alice", "2001:db8:0:2::1")).succeeded()


async def test_success_clears_the_user_but_not_the_address(limiter: LoginRateLimiter) -> None:
    for index in range(2):
        await wrong(limiter, "alice", "192.0.2.1")
        await wrong(limiter, f"guess{index}", "192.0.2.1")
    await (await limiter.begin("alice", "192.0.2.1")).succeeded()
    await wrong(limiter, "alice", "192.0.2.1")  # the address has 5 now
    assert await refused_for(limiter, "alice", "192.0.2.1") == 60


async def test_an_abandoned_attempt_counts_nothing(limiter: LoginRateLimiter) -> None:
    for _ in range(10):
        await (await limiter.begin("alice", "192.0.2.1")).abandoned()
    attempt = await limiter.begin("alice", "192.0.2.1")
    await attempt.failed()
    await attempt.succeeded()  # a second decision is ignored
    await wrong(limiter, "alice", "192.0.2.1")
    await wrong(limiter, "alice", "192.0.2.1")
    assert await refused_for(limiter, "alice", "192.0.2.1") == 60


async def test_parallel_attempts_are_reserved_before_any_is_decided(limiter: LoginRateLimiter) -> None:
    outcomes = await asyncio.gather(*(limiter.begin("alice", "192.0.2.1") for _ in range(20)),
                                    return_exceptions=True)
    admitted = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    assert len(admitted) == 3
    assert all(isinstance(outcome, TooManyAttempts) for outcome in outcomes if outcome not in admitted)


async def test_unlock_lifts_the_block_everywhere(limiter: LoginRateLimiter) -> None:
    for address in ("192.0.2.1", "192.0.2.2"):
        for _ in range(3):
            await wrong(limiter, "alice", address)
    assert await limiter.unlock("ALICE") == 2
    for address in ("192.0.2.1", "192.0.2.2"):
        await (await limiter.begin("alice", address)).succeeded()

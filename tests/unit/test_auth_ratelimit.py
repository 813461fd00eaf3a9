"""Failed sign-ins are limited per user name and per address, over a sliding window."""

from __future__ import annotations

import pytest

from limen.auth.ratelimit import LoginRateLimiter, TooManyAttempts
from tests.support.access import FakeClock


def limiter(clock: FakeClock) -> LoginRateLimiter:
    return LoginRateLimiter(max_per_user=3, max_per_address=5, window=60, clock=clock)


def test_user_locks_after_the_limit_until_the_oldest_failure_ages_out() -> None:
    clock = FakeClock(1000.0)
    limit = limiter(clock)
    for _ in range(3):
        limit.check("alice", "192.0.2.1")
        limit.failed("alice", "192.0.2.1")
        clock.advance(10)
    with pytest.raises(TooManyAttempts) as caught:
        limit.check("alice", "192.0.2.99")  # another address does not help
    assert caught.value.retry_after == 30  # first failure at 1000, window 60, now 1030
    limit.check("bob", "192.0.2.99")  # other users are not affected
    clock.advance(30)
    limit.check("alice", "192.0.2.1")


def test_case_and_normalisation_do_not_escape_the_user_count() -> None:
    clock = FakeClock()
    limit = limiter(clock)
    for name in ("Alice", "ALICE", "alice"):
        limit.failed(name, f"192.0.2.{len(name)}")
    with pytest.raises(TooManyAttempts):
        limit.check("aLiCe", "198.51.100.1")


def test_address_locks_across_user_names() -> None:
    clock = FakeClock()
    limit = limiter(clock)
    for index in range(5):
        limit.failed(f"user{index}", "192.0.2.1")
    with pytest.raises(TooManyAttempts):
        limit.check("somebody-else", "192.0.2.1")
    limit.check("somebody-else", "192.0.2.2")


def test_success_clears_the_user_but_not_the_address() -> None:
    clock = FakeClock()
    limit = limiter(clock)
    for index in range(2):
        limit.failed("alice", "192.0.2.1")
        limit.failed(f"guess{index}", "192.0.2.1")
    limit.succeeded("alice")
    limit.failed("alice", "192.0.2.1")
    limit.check("alice", "192.0.2.7")  # 1 failure now
    with pytest.raises(TooManyAttempts):
        limit.check("alice", "192.0.2.1")  # the address has 5

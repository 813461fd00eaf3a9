"""The Redis client of limen's shared stores (sign-in throttle, console tickets, the streams of revocations and
VM events), and the error a failed call becomes.

redis-py retries a failed connection ten times with a growing back-off by default: with Redis down, a sign-in
would wait tens of seconds before failing. limen's calls wait at most ``TIMEOUT`` per connect or reply and
retry once at once, so a request that needs Redis fails within about ``BOUND`` seconds with
REDIS_UNAVAILABLE (503), never hangs and never answers 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from limen.errors import ErrorCode, LimenError

TIMEOUT = 2.0  # seconds for one connect, and for one reply
RETRIES = 1  # one more try, at once: a dropped idle connection reconnects; a Redis that is down fails fast
BOUND = (RETRIES + 1) * 2 * TIMEOUT  # the longest a call can take: connect and reply, on every try


def open_redis(url: str) -> Any:
    """An asyncio Redis client for ``url`` whose every call ends within :data:`BOUND` seconds."""
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return redis.asyncio.Redis.from_url(
        url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, retry=Retry(NoBackoff(), RETRIES)
    )


def redis_unavailable(what: str, operation: str, exc: BaseException) -> LimenError:
    """The error of a failed Redis call. The exception's text can hold the URL, and so a password: it names
    the exception's type only."""
    return LimenError(ErrorCode.REDIS_UNAVAILABLE, f"{what} (Redis) {operation} failed: {type(exc).__name__}")


class RedisStore:
    """What a store kept in Redis shares: its client, a ping for readiness, closing, and the error a failed
    call becomes (REDIS_UNAVAILABLE naming the store, never a redis-py exception)."""

    what: ClassVar[str]  # the store's name in its errors, e.g. "console ticket store"

    def __init__(self, url: str) -> None:
        self._redis: Any = open_redis(url)

    async def check(self) -> None:
        async with self._errors("ping"):
            await self._redis.ping()

    @asynccontextmanager
    async def _errors(self, operation: str) -> AsyncIterator[None]:
        import redis.exceptions

        try:
            yield
        except redis.exceptions.RedisError as exc:
            raise redis_unavailable(self.what, operation, exc) from None

    async def close(self) -> None:
        await self._redis.aclose()


class _RedisProbe(RedisStore):
    what = "limen's store"


async def check_redis_answers(url: str) -> None:
    """REDIS_UNAVAILABLE unless the Redis of ``url`` answers a ping (within :data:`BOUND` seconds)."""
    probe = _RedisProbe(url)
    try:
        await probe.check()
    finally:
        await probe.close()

"""A Redis stand-in for the unit tests of what limen reads and leaves in Redis (the shared stream's reader, the
board of operations), and a wait for a condition those tests poll.

It holds only what those readers call: an empty stream read every few milliseconds, and a board of JSON values.
While ``down`` it fails each call as redis-py does when Redis refuses connections; once back it is as it was
left (a test empties ``board`` itself to play a Redis restarted empty).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import redis.exceptions

READ_PAUSE = 0.005  # seconds an empty read takes: the reader loops at this pace, not at the loop's full speed


class OutageRedis:
    """Answers (an empty stream) until ``down`` is set, fails while it is; counts reads and board reads."""

    def __init__(self) -> None:
        self.down = False
        self.reads = 0
        self.gets = 0
        self.board: dict[str, dict[str, Any]] = {}

    def _check(self) -> None:
        if self.down:
            raise redis.exceptions.ConnectionError("Error 111 connecting to localhost:1")

    async def xrevrange(self, key: str, count: int) -> list[Any]:
        return []

    async def xread(self, streams: dict[str, str], block: int, count: int) -> list[Any]:
        self.reads += 1
        await asyncio.sleep(READ_PAUSE)
        self._check()
        return []

    async def set(self, key: str, value: str, nx: bool = False, ex: int | None = None) -> bool:
        self._check()
        if nx and key in self.board:
            return False
        self.board[key] = json.loads(value)
        return True

    async def get(self, key: str) -> str | None:
        self.gets += 1
        self._check()
        return json.dumps(self.board[key]) if key in self.board else None

    async def aclose(self) -> None:
        return None


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Returns once ``condition()`` holds (checked every few milliseconds); fails after ``timeout`` seconds."""
    for _ in range(int(timeout / READ_PAUSE)):
        if condition():
            return
        await asyncio.sleep(READ_PAUSE)
    raise AssertionError(f"not within {timeout} s")

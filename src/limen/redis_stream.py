"""A Redis stream that every limen instance on one Redis appends to and reads: how a message made on one
instance reaches the others (revocations, and the VM events limen makes itself).

Each instance reads the stream from where it was when the instance started (older entries are not its
business), hands every entry another instance appended to ``receive``, and skips its own (it delivered them
in this process already). A reader whose connection drops picks up, when it is back, what it missed (the
stream keeps its last ``length`` entries). Entries are JSON objects; ``receive`` runs on the event loop and
must return at once. ``on_hearing``, when given, is told (on the event loop, returning at once) when reading
starts to fail (False) and when it works again (True): what the others appended meanwhile may never come
(Redis restarted empty), so its owner may need to check again what an entry would have told it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from limen.cancellation import cancel_and_wait, stop_requested
from limen.redis_client import open_redis, redis_unavailable

log = logging.getLogger("limen.auth")  # the logger its lines have always named (log filters may select it)

# One XREAD waits at most this long. redis-py lets a command it has sent finish before a cancellation takes
# effect (so the connection is never left mid-reply); closing waits for it, so keep it short.
READ_BLOCK_MS = 250
RECONNECT_DELAY = 0.5


class SharedStream:
    """The stream ``key`` on the Redis of ``url``. ``what`` names it in log events (``<what>_read_failed``,
    ``<what>_read_ok``, ``<what>_malformed``: stable names), ``entries`` in the log lines and errors people
    read (what the entries are, plural: "revocations")."""

    def __init__(self, url: str, key: str, receive: Callable[[dict[str, Any]], None], *, what: str, entries: str,
                 length: int, on_hearing: Callable[[bool], None] | None = None) -> None:
        self.key = key
        self.what = what
        self.entries = entries
        self.origin = uuid.uuid4().hex  # this instance, so it can skip its own entries
        self._receive = receive
        self._on_hearing = on_hearing
        self._length = length
        self._redis: Any = open_redis(url)
        self._last_id = "0-0"
        self._reader: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Notes where the stream is now and starts reading; REDIS_UNAVAILABLE when Redis does not answer."""
        if self._reader is not None:
            return
        import redis.exceptions

        try:
            newest = await self._redis.xrevrange(self.key, count=1)
        except redis.exceptions.RedisError as exc:
            raise redis_unavailable(f"stream of {self.entries}", "start", exc) from None
        if newest:
            self._last_id = _text(newest[0][0])
        self._reader = asyncio.get_running_loop().create_task(self._read(), name=f"limen-{self.what}")

    async def append(self, entry: dict[str, Any]) -> None:
        """Appends ``entry`` (with this instance as its origin) for the others; redis-py's errors pass."""
        await self._redis.xadd(self.key, {"data": json.dumps({**entry, "origin": self.origin})},
                               maxlen=self._length, approximate=True)

    async def _read(self) -> None:
        import redis.exceptions

        failing = False
        while not self._closing:
            try:
                answer = await self._redis.xread({self.key: self._last_id}, block=READ_BLOCK_MS, count=100)
            except (redis.exceptions.RedisError, OSError) as exc:
                if stop_requested():  # the cancellation came back as a Redis error: it is no news
                    raise asyncio.CancelledError from exc
                if not failing:
                    log.warning("%s from the other limen instances cannot be read (Redis %s); retrying",
                                self.entries, type(exc).__name__, extra={"event": f"{self.what}_read_failed"})
                    self._tell_hearing(False)
                failing = True
                await asyncio.sleep(RECONNECT_DELAY)
                continue
            if failing:
                log.info("reading %s from the other limen instances again", self.entries,
                         extra={"event": f"{self.what}_read_ok"})
                failing = False
                self._tell_hearing(True)
            for _stream, entries in answer or []:
                for entry_id, fields in entries:
                    self._last_id = _text(entry_id)
                    self._deliver(fields)

    def _tell_hearing(self, hearing: bool) -> None:
        if self._on_hearing is None:
            return
        try:
            self._on_hearing(hearing)
        except Exception:  # the reader goes on whatever its owner does with the news
            log.exception("a listener of the %s stream failed", self.what,
                          extra={"event": f"{self.what}_hearing_listener_failed"})

    def _deliver(self, fields: dict[Any, Any]) -> None:
        try:
            entry = json.loads(_text(fields.get(b"data") or fields.get("data") or b""))
            if entry.get("origin") == self.origin:
                return
            self._receive(entry)
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignored a malformed entry among the %s from the other limen instances", self.entries,
                        extra={"event": f"{self.what}_malformed"})

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            await cancel_and_wait(self._reader, f"the reader of the {self.entries}", READ_BLOCK_MS / 1000 + 1)
        self._reader = None
        await self._redis.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

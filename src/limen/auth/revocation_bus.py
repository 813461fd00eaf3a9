"""How a :class:`~limen.auth.revocation.Revocation` reaches every live console: a small publish/subscribe bus.

:class:`LocalRevocationBus` delivers in this process only (one limen instance). :class:`RedisRevocationBus`
(chosen when ``LIMEN_REDIS_URL`` is set) delivers here at once, and through a Redis stream to every other
instance on the same Redis: each instance reads the stream from where it was when it started, so a change
made on one instance ends consoles held by another, and a subscriber whose connection drops picks up,
when it is back, what it missed (the stream keeps its last :data:`STREAM_LENGTH` entries). An instance
skips its own entries (it delivered them already); the stream is :mod:`limen.redis_stream`'s. While that
stream cannot be read (Redis down or hung), a change made on another instance is not heard here: the bus then
delivers :meth:`Revocation.unheard` here every :data:`UNHEARD_RECHECK_INTERVAL` seconds, and once more when it
reads again, so that this instance's remembered principals, consoles and event streams are checked against the
database meanwhile instead of waiting for Redis (which may also come back empty, without what was sent).
:func:`publish_from_command_line` lets ``limen user
delete`` and the like tell running servers, when they share a Redis.

Handlers run on the event loop and must return at once (the console registry schedules any work it needs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from limen.auth.revocation import Revocation
from limen.cancellation import cancel_and_wait, stop_requested
from limen.redis_stream import SharedStream

log = logging.getLogger("limen.auth")

Handler = Callable[[Revocation], None]

STREAM_LENGTH = 1000  # entries the stream keeps (approximately): what a reconnecting subscriber can catch up on
RECONNECT_DELAY = 0.5  # between tries to send what Redis did not take
UNSENT_MAX = 10_000  # revocations kept for Redis while it is down (the oldest go first past that)
# Seconds between re-checks while the other instances' revocations cannot be heard: the bound, past the time
# the reader takes to find Redis gone, within which a change made elsewhere holds here meanwhile.
UNHEARD_RECHECK_INTERVAL = 2.0


def stream_key(namespace: str) -> str:
    return f"{namespace}:revocations"


class RevocationBus(Protocol):
    def subscribe(self, handler: Handler) -> None:
        """``handler`` is called with every revocation published from now on, here or elsewhere."""
        ...

    def unsubscribe(self, handler: Handler) -> None:
        """``handler`` is called no more (nothing happens if it was not subscribed)."""
        ...

    async def publish(self, revocation: Revocation) -> None:
        """Delivers here at once, and to the other instances; never raises (a failure is logged)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class LocalRevocationBus:
    """Revocations within this process."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def unsubscribe(self, handler: Handler) -> None:
        with contextlib.suppress(ValueError):
            self._handlers.remove(handler)

    def deliver(self, revocation: Revocation) -> None:
        for handler in list(self._handlers):
            try:
                handler(revocation)
            except Exception:  # one broken subscriber must not keep the revocation from the others
                log.exception("a revocation handler failed", extra={"event": "revocation_handler_failed"})

    async def publish(self, revocation: Revocation) -> None:
        log.info("access revoked: %s", revocation.reason, extra={
            "event": "revocation", "scope": revocation.scope.value, "subject": revocation.subject,
        })
        self.deliver(revocation)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisRevocationBus(LocalRevocationBus):
    """Revocations shared through the Redis stream ``<namespace>:revocations``."""

    def __init__(self, url: str, *, namespace: str = "limen") -> None:
        super().__init__()
        self.key = stream_key(namespace)
        self._stream = SharedStream(url, self.key, self._receive, what="revocation", entries="revocations",
                                    length=STREAM_LENGTH, on_hearing=self._hearing)
        self._closing = False
        self._unheard_rechecks: asyncio.Task[None] | None = None  # while the stream cannot be read
        # Revocations Redis did not take, in order, sent again until it does: a user disabled during a Redis
        # outage must still end their consoles on the other instances once it is back.
        self._unsent: deque[Revocation] = deque(maxlen=UNSENT_MAX)
        self._resender: asyncio.Task[None] | None = None

    @property
    def origin(self) -> str:
        return self._stream.origin

    async def start(self) -> None:
        """Notes where the stream is now (older entries are not this instance's business) and starts reading."""
        await self._stream.start()

    async def publish(self, revocation: Revocation) -> None:
        await super().publish(revocation)
        if self._unsent:  # after the ones still waiting, in order
            self._unsent.append(revocation)
            return
        try:
            await self._send(revocation)
        except Exception as exc:
            # The change itself is made and this instance's consoles have been told; the others are told
            # once Redis takes it.
            log.error("could not tell other limen instances of a revocation (Redis %s), retrying: %s",
                      type(exc).__name__, revocation.reason,
                      extra={"event": "revocation_publish_failed", "scope": revocation.scope.value})
            self._unsent.append(revocation)
            if self._resender is None and not self._closing:
                self._resender = asyncio.get_running_loop().create_task(self._resend(), name="limen-revocations-out")

    async def _send(self, revocation: Revocation) -> None:
        await self._stream.append({"revocation": revocation.to_json()})

    async def _resend(self) -> None:
        try:
            while self._unsent and not self._closing:
                await asyncio.sleep(RECONNECT_DELAY)
                try:
                    while self._unsent:
                        await self._send(self._unsent[0])
                        self._unsent.popleft()
                except Exception as exc:
                    if stop_requested():  # the cancellation came back as a Redis error
                        raise asyncio.CancelledError from exc
                    continue
                log.info("told the other limen instances of the revocations Redis had not taken",
                         extra={"event": "revocation_publish_ok"})
        finally:
            self._resender = None

    def _receive(self, entry: dict[str, Any]) -> None:
        self.deliver(Revocation.from_json(entry["revocation"]))

    def _hearing(self, hearing: bool) -> None:
        """The stream's reader stopped or started reading again (on the event loop)."""
        if self._unheard_rechecks is not None:
            self._unheard_rechecks.cancel()
            self._unheard_rechecks = None
        if self._closing:
            return
        if hearing:
            self.deliver(Revocation.unheard())  # what was missed, and never comes if Redis restarted empty
            return
        self._unheard_rechecks = asyncio.get_running_loop().create_task(self._recheck_while_unheard(),
                                                                        name="limen-revocations-unheard")

    async def _recheck_while_unheard(self) -> None:
        log.warning("revocations made on other limen instances cannot be heard; checking access against the "
                    "database every %g s until they can", UNHEARD_RECHECK_INTERVAL,
                    extra={"event": "revocation_unheard"})
        while True:
            self.deliver(Revocation.unheard())
            await asyncio.sleep(UNHEARD_RECHECK_INTERVAL)

    async def close(self) -> None:
        self._closing = True
        if self._unheard_rechecks is not None:
            await cancel_and_wait(self._unheard_rechecks, "the revocation bus's access rechecks")
            self._unheard_rechecks = None
        if self._resender is not None:
            await cancel_and_wait(self._resender, "the revocation bus's resender")
        self._resender = None
        if self._unsent:
            log.error("%d revocations never reached the other limen instances (Redis did not take them before "
                      "this one stopped)", len(self._unsent), extra={"event": "revocation_publish_lost"})
        await self._stream.close()


def make_revocation_bus(redis_url: str | None) -> LocalRevocationBus:
    return RedisRevocationBus(redis_url) if redis_url else LocalRevocationBus()


def publish_from_command_line(redis_url: str | None, revocation: Revocation, *, namespace: str = "limen") -> bool:
    """Tells running limen instances of a change made by the command line; False without a Redis (then only
    consoles opened later are refused) or if Redis cannot be reached (logged)."""
    if not redis_url:
        return False
    import redis
    import redis.exceptions

    client: Any = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        entry = {"origin": "cli", "revocation": revocation.to_json()}
        client.xadd(stream_key(namespace), {"data": json.dumps(entry)}, maxlen=STREAM_LENGTH, approximate=True)
        return True
    except redis.exceptions.RedisError as exc:
        log.error("could not tell running limen instances of a revocation (Redis %s)", type(exc).__name__,
                  extra={"event": "revocation_publish_failed"})
        return False
    finally:
        client.close()

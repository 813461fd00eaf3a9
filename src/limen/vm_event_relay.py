"""Carries the VM events limen makes about its own work (a migration's progress and end, a snapshot's, a CD
changed) to the event streams of every limen instance on the same Redis (``LIMEN_REDIS_URL``), through the stream
``<namespace>:vm-events``.

Each instance hears libvirt's own events (a VM started, defined, moved away) itself; what only the instance
doing the work knows is published ``share``-d on its feed (:class:`~limen.hypervisor.vm_feed.VmFeed`), and
this relay appends it to the stream; the other instances publish it on their feeds, where each browser's
stream filters it as any other event. A snapshot's events carry its operation, which the other instances
record (:meth:`~limen.hypervisor.operations.Operations.heard`) before they publish the event, so a browser
that hears of it may ask any instance for it (``GET /api/operations/{id}``). The relay is also the
instances' :class:`~limen.hypervisor.operations.OperationBoard`: each operation's start (left before it is
answered) and then what its events say are kept under ``<namespace>:operation:<id>`` as long as an instance
keeps it in memory, so an instance that has heard nothing of it yet (started after it began, or asked
before its first event) reads it there. Both name the instance doing the work (``instance``), so that the
others can tell its operations ended when it is lost. A start left while Redis was down, and the whole board
when Redis comes back empty (restarted), would be missing there until the operation ended: when the relay
reads the stream again after it could not, it leaves every operation of this instance there again. An end
the others told meanwhile was dropped with its event: the operations this instance heard running are read
there from then on (:meth:`~limen.hypervisor.operations.Operations.hearing_events`). Without Redis there is
nothing to relay to.

These events say how far work has gone, and the VM itself is re-read from libvirt: one Redis does not take
(down, or slow) is logged and dropped, never retried, and never delays the work it reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from limen.cancellation import cancel_and_wait, stop_requested
from limen.hypervisor.models import VmState
from limen.hypervisor.operations import (
    KEEP_FINISHED_SECONDS,
    KEEP_HEARD_RUNNING_SECONDS,
    Operation,
    Operations,
    OperationState,
)
from limen.hypervisor.vm_feed import VmEvent, VmEventType, VmFacts, VmFeed
from limen.redis_client import open_redis, redis_unavailable
from limen.redis_stream import SharedStream

log = logging.getLogger("limen.events")

STREAM_LENGTH = 1000  # entries the stream keeps (approximately): what a reconnecting reader catches up on
QUEUE_MAX = 1000  # events waiting for Redis; past that, new ones are dropped (a stalled Redis holds no memory)
# The events whose "operation" is one of limen.hypervisor.operations' (a migration's is not: it has no id).
OPERATION_EVENTS = frozenset({VmEventType.SNAPSHOT_PROGRESS, VmEventType.SNAPSHOT_DONE})


def stream_key(namespace: str) -> str:
    return f"{namespace}:vm-events"


def operation_key(namespace: str, operation_id: str) -> str:
    return f"{namespace}:operation:{operation_id}"


class VmEventRelay:
    """Call :meth:`start` in the serving loop (after Redis is known to answer) and :meth:`close` after."""

    def __init__(self, feed: VmFeed, operations: Operations, redis_url: str, *, instance_id: str,
                 namespace: str = "limen") -> None:
        self._feed = feed
        self._operations = operations
        self._instance_id = instance_id  # this limen instance's (limen.instances), on what it relays
        self._namespace = namespace
        self._stream = SharedStream(redis_url, stream_key(namespace), self._receive, what="vm_event",
                                    entries="VM events", length=STREAM_LENGTH, on_hearing=self._hearing)
        self._board: Any = open_redis(redis_url)
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=QUEUE_MAX)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sender: asyncio.Task[None] | None = None
        self._reposting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._sender is not None:
            return
        await self._stream.start()
        self._loop = asyncio.get_running_loop()
        self._sender = self._loop.create_task(self._send_forever(), name="limen-vm-events-out")
        self._feed.sharers.append(self._share)
        self._operations.board = self

    def _share(self, event: VmEvent) -> None:
        """Any thread: queues ``event`` for the other instances."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        entry = {"type": event.type.value, "uuid": event.vm.uuid, "name": event.vm.name,
                 "state": event.vm.state.value if event.vm.state is not None else None, "owner": event.vm.owner,
                 "former_owner": event.former_owner, "operation": event.operation, "instance": self._instance_id}
        with contextlib.suppress(RuntimeError):  # the loop closed in between: limen is stopping
            loop.call_soon_threadsafe(self._enqueue, entry)

    def _enqueue(self, entry: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            log.warning("a VM event was not relayed to the other limen instances: %d wait for Redis already",
                        QUEUE_MAX, extra={"event": "vm_event_relay_dropped", "vm_uuid": entry["uuid"]})

    async def _send_forever(self) -> None:
        failing = False
        while True:
            entry = await self._queue.get()
            try:
                await self._stream.append(entry)
                if VmEventType(entry["type"]) in OPERATION_EVENTS:
                    await self._post(entry["operation"], entry["owner"])
            except Exception as exc:
                if stop_requested():  # the cancellation came back as a Redis error: stop all the same
                    raise asyncio.CancelledError from exc
                if not failing:
                    log.warning("VM events cannot be relayed to the other limen instances (Redis %s); dropping "
                                "them until Redis takes them again", type(exc).__name__,
                                extra={"event": "vm_event_relay_failed"})
                failing = True
                continue
            if failing:
                log.info("relaying VM events to the other limen instances again",
                         extra={"event": "vm_event_relay_ok"})
                failing = False

    async def _post(self, payload: dict[str, Any], vm_owner: str | None, *, first: bool = False) -> None:
        """Puts the operation's latest news on the board, kept as long as instances keep it in memory."""
        running = payload["state"] == OperationState.RUNNING.value
        await self._board.set(operation_key(self._namespace, payload["id"]),
                              json.dumps({"operation": payload, "vm_owner": vm_owner,
                                          "instance": self._instance_id}), nx=first,
                              ex=int(KEEP_HEARD_RUNNING_SECONDS if running else KEEP_FINISHED_SECONDS))

    async def post_start(self, operation: Operation) -> None:
        try:  # only if absent: the operation's task may have ended, and its end been posted, already
            await self._post(operation.payload(), operation.vm_owner, first=True)
        except Exception as exc:
            log.warning("an operation's start was not left for the other limen instances (Redis %s); they "
                        "know it from its first event", type(exc).__name__,
                        extra={"event": "operation_post_failed", "operation": operation.id})

    def _hearing(self, hearing: bool) -> None:
        """The stream's reader stopped or started reading again (on the event loop)."""
        self._operations.hearing_events(hearing)
        if hearing and self._loop is not None and self._reposting is None:
            self._reposting = self._loop.create_task(self._post_again(), name="limen-operations-posted-again")

    async def _post_again(self) -> None:
        """Leaves this instance's operations on the board again: a running one unless later news of it is
        there (its end, posted meanwhile), a finished one as it ended (an end is final)."""
        try:
            for operation in self._operations.started_here():
                running = operation.state is OperationState.RUNNING
                await self._post(operation.payload(), operation.vm_owner, first=running)
        except Exception as exc:  # Redis went again: the reader says so, and this runs again when it is back
            log.warning("this instance's operations were not left again for the other limen instances (Redis "
                        "%s)", type(exc).__name__, extra={"event": "operation_post_failed"})
        finally:
            self._reposting = None

    async def read(self, operation_id: str) -> Operation | None:
        import redis.exceptions

        try:
            found = await self._board.get(operation_key(self._namespace, operation_id))
        except redis.exceptions.RedisError as exc:
            raise redis_unavailable("board of operations", "read", exc) from None
        if found is None:
            return None
        try:
            record = json.loads(found)
            return Operation.of_payload(record["operation"], record["vm_owner"], record.get("instance"))
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed operation on the board of the limen instances",
                        extra={"event": "operation_malformed", "operation": operation_id[:40]})
            return None

    def _receive(self, entry: dict[str, Any]) -> None:
        state = entry["state"]
        facts = VmFacts(uuid=str(entry["uuid"]), name=str(entry["name"]),
                        state=VmState(state) if state is not None else None, owner=entry["owner"])
        event_type = VmEventType(entry["type"])
        if event_type in OPERATION_EVENTS:  # first: a browser told of it may ask for it at once
            self._operations.heard(entry["operation"], vm_owner=facts.owner, instance_id=entry.get("instance"))
        self._feed.publish(event_type, facts, former_owner=entry["former_owner"], operation=entry["operation"])

    async def close(self) -> None:
        if self._operations.board is self:
            self._operations.board = None
        with contextlib.suppress(ValueError):
            self._feed.sharers.remove(self._share)
        if self._sender is not None:
            await cancel_and_wait(self._sender, "the VM-event relay's sender")
            self._sender = None
        await self._stream.close()
        if self._reposting is not None:
            await cancel_and_wait(self._reposting, "the VM-event relay's reposting")
            self._reposting = None
        await self._board.aclose()

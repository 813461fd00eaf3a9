"""The process-wide feed of VM changes: what happened to which VM, in order, for every reader at once.

Publishers (libvirt's event callbacks through :mod:`limen.hypervisor.events`, and routes that change what
libvirt does not announce, such as CD media) call :meth:`VmFeed.publish` from any thread. Every limen process
hears libvirt's events itself; those limen makes about its own work (a migration's progress) are published
``share``-d, for :mod:`limen.vm_event_relay` to carry to the others. Each event gets the
next sequence number and goes into a bounded ring of recent events and to every :class:`Subscription`.

Readers subscribe with the cursor of the last event they saw (an SSE ``Last-Event-ID``): the events after
it that are still in the ring are replayed first, so a reconnecting browser misses nothing; a cursor older
than the ring, from another limen process, or unreadable asks the reader to resync (reload everything).
A cursor is ``<feed id>-<sequence>``: the feed id changes with every process, so a cursor from before a
restart is never mistaken for a current one.

Each subscription has a bounded queue: a reader that falls that far behind is dropped (its stream ends and
the browser reconnects with its cursor), never buffered without bound. No libvirt here: the feed is plain
data and locks, tested without a hypervisor.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Any

from limen.hypervisor.models import LifecycleKind, VmState

DEFAULT_RING_SIZE = 1024
DEFAULT_QUEUE_SIZE = 256


class VmEventType(StrEnum):
    DEFINED = "defined"  # created, or its configuration changed
    UNDEFINED = "undefined"  # deleted
    STARTED = "started"
    STOPPED = "stopped"
    CRASHED = "crashed"
    PAUSED = "paused"
    RESUMED = "resumed"
    MEDIA_CHANGED = "media_changed"  # a CD inserted or ejected
    CHANGED = "changed"  # anything else libvirt reports (devices, shutdown in progress): re-read the VM
    SNAPSHOT_PROGRESS = "snapshot_progress"  # a snapshot is being taken (started, or moved on): see "operation"
    SNAPSHOT_DONE = "snapshot_done"  # a snapshot was taken or failed ("operation": its state and error)
    SNAPSHOTS_CHANGED = "snapshots_changed"  # a snapshot was deleted or reverted to: re-read the list


_TYPE_BY_LIFECYCLE = {
    LifecycleKind.STARTED: VmEventType.STARTED,
    LifecycleKind.STOPPED: VmEventType.STOPPED,
    LifecycleKind.REVERTED: VmEventType.STOPPED,  # a "started" follows when the snapshot's VM runs
    LifecycleKind.MIGRATED: VmEventType.CHANGED,  # it runs on elsewhere: pages read it again (not "stopped")
    LifecycleKind.CRASHED: VmEventType.CRASHED,
    LifecycleKind.PAUSED: VmEventType.PAUSED,
    LifecycleKind.RESUMED: VmEventType.RESUMED,
    LifecycleKind.DEFINED: VmEventType.DEFINED,
    LifecycleKind.UNDEFINED: VmEventType.UNDEFINED,
    LifecycleKind.OTHER: VmEventType.CHANGED,
}


def event_type_of(kind: LifecycleKind) -> VmEventType:
    return _TYPE_BY_LIFECYCLE[kind]


@dataclass(frozen=True, slots=True)
class VmFacts:
    """What an event says about its VM, read from libvirt when the event arrived.

    ``state`` is None when the VM no longer exists (undefined); ``owner`` None for an unowned VM, which
    only admins see.
    """

    uuid: str
    name: str
    state: VmState | None
    owner: str | None


@dataclass(frozen=True, slots=True)
class VmEvent:
    seq: int
    type: VmEventType
    vm: VmFacts
    at: datetime
    # The owner before this change, when it changed: they must learn that the VM left them.
    former_owner: str | None = None
    # A background operation's state (limen.hypervisor.operations), for the snapshot events.
    operation: dict[str, Any] | None = None

    def payload(self) -> dict[str, Any]:
        """The event as the API sends it (the SSE ``data`` field, as JSON)."""
        body: dict[str, Any] = {
            "type": self.type.value,
            "uuid": self.vm.uuid,
            "name": self.vm.name,
            "state": self.vm.state.value if self.vm.state is not None else None,
            "owner": self.vm.owner,
            "at": self.at.isoformat(),
        }
        if self.operation is not None:
            body["operation"] = self.operation
        return body


class SubscriptionEnded(Exception):
    """The subscription was dropped (its reader fell behind) or the feed closed (shutdown)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_END = object()
_WAKE = object()


class Subscription:
    """One reader of the feed: ``replay`` (events after its cursor), ``resync``, then :meth:`next_event`.

    Create it with :meth:`VmFeed.subscribe` inside the asyncio loop that will read it; use it as a context
    manager so it leaves the feed when the reader goes.
    """

    def __init__(self, feed: VmFeed, accept: Callable[[VmEvent], bool], queue_size: int) -> None:
        self._feed = feed
        self._accept = accept
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=queue_size + 1)  # +1: room for the end
        self._capacity = queue_size
        self._ended: str | None = None
        self.replay: list[VmEvent] = []
        self.resync = False
        # The cursor of the newest event in the feed when this subscription began.
        self.cursor = ""

    def offer(self, event: VmEvent) -> None:
        """Thread-safe: queues ``event`` if this reader may see it."""
        if self._accept(event):
            self._call_in_loop(self._put, event)

    def end(self, reason: str) -> None:
        """Thread-safe: ends the subscription after what is already queued."""
        self._call_in_loop(self._finish, reason)

    def wake(self) -> None:
        """Thread-safe: the reader's wait (:meth:`next_event`) returns None now, as if its time had passed."""
        self._call_in_loop(self._wake, None)

    def _wake(self, _: object) -> None:
        if self._ended is None and self._queue.qsize() < self._capacity:  # a full queue wakes it anyway
            self._queue.put_nowait(_WAKE)

    def _call_in_loop(self, func: Callable[[Any], None], arg: Any) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            func(arg)
        elif not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(func, arg)
            except RuntimeError:  # the loop closed in between: its reader is gone
                pass

    def _put(self, event: VmEvent) -> None:
        if self._ended is not None:
            return
        if self._queue.qsize() >= self._capacity:
            self._finish("dropped: the reader fell behind")
            return
        self._queue.put_nowait(event)

    def _finish(self, reason: str) -> None:
        if self._ended is None:
            self._ended = reason
            self._queue.put_nowait(_END)

    async def next_event(self, timeout: float) -> VmEvent | None:
        """The next event, or None when ``timeout`` seconds pass without one or it is woken; SubscriptionEnded
        at the end."""
        try:
            async with asyncio.timeout(timeout):
                item = await self._queue.get()
        except TimeoutError:
            return None
        if item is _WAKE:
            return None
        if item is _END:
            self._queue.put_nowait(_END)  # every later call ends too
            raise SubscriptionEnded(self._ended or "ended")
        event: VmEvent = item
        return event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._feed.unsubscribe(self)


class VmFeed:
    """The ring of recent VM events and the subscriptions reading it. Thread-safe."""

    def __init__(self, *, ring_size: int = DEFAULT_RING_SIZE, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.feed_id = secrets.token_hex(4)
        self._ring: deque[VmEvent] = deque(maxlen=ring_size)
        self._queue_size = queue_size
        self._seq = 0
        self._subscribers: set[Subscription] = set()
        self._lock = threading.Lock()
        self._closed = False
        # Told of every event before it is published, in the publishing thread (cheap, never raising).
        self.listeners: list[Callable[[VmEventType, VmFacts], None]] = []
        # Told of every event published with ``share``, once recorded, in the publishing thread (cheap, never
        # raising): limen's own events about what libvirt does not announce to other limen processes.
        self.sharers: list[Callable[[VmEvent], None]] = []

    def cursor_of(self, seq: int) -> str:
        return f"{self.feed_id}-{seq}"

    def _seq_of(self, cursor: str) -> int | None:
        feed_id, _, seq = cursor.strip().rpartition("-")
        if feed_id != self.feed_id or not seq.isdigit() or len(seq) > 18:
            return None
        return int(seq)

    def publish(self, event_type: VmEventType, vm: VmFacts, *, former_owner: str | None = None,
                operation: dict[str, Any] | None = None, share: bool = False) -> VmEvent:
        """Records an event and hands it to every subscription that accepts it, and with ``share`` to the
        :attr:`sharers` too (which carry it to the other limen processes). Any thread."""
        for listener in self.listeners:  # first: a cache is forgotten before any reader hears of the change
            listener(event_type, vm)
        with self._lock:
            self._seq += 1
            event = VmEvent(seq=self._seq, type=event_type, vm=vm, at=datetime.now(UTC), former_owner=former_owner,
                            operation=operation)
            self._ring.append(event)
            # Offered under the lock so that every subscription sees events in sequence order.
            for subscription in self._subscribers:
                subscription.offer(event)
        if share:
            for sharer in self.sharers:
                sharer(event)
        return event

    def subscribe(self, accept: Callable[[VmEvent], bool], last_event_id: str | None = None) -> Subscription:
        """A subscription for events ``accept`` lets through, replaying those after ``last_event_id``.

        Call in the loop that will read it. Registration and the replay are taken under one lock, so no
        event falls between them, and none is delivered twice.
        """
        subscription = Subscription(self, accept, self._queue_size)
        with self._lock:
            subscription.cursor = self.cursor_of(self._seq)
            if last_event_id is not None:
                seq = self._seq_of(last_event_id)
                oldest = self._ring[0].seq if self._ring else self._seq + 1
                if seq is None or seq > self._seq or seq < oldest - 1:
                    subscription.resync = True
                else:
                    subscription.replay = [event for event in self._ring if event.seq > seq and accept(event)]
            if self._closed:
                subscription.end("limen is shutting down")
            else:
                self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def close(self) -> None:
        """Ends every subscription (server shutdown); later ones end at once."""
        with self._lock:
            self._closed = True
            subscriptions = list(self._subscribers)
        for subscription in subscriptions:
            subscription.end("limen is shutting down")

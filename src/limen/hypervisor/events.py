"""VM lifecycle events from libvirt, delivered to asyncio.

libvirt needs an event loop implementation for events and connection keepalives, and it is
process-wide. limen runs libvirt's own implementation in one daemon thread (:func:`ensure_event_thread`)
rather than binding it to an asyncio loop with libvirtaio: libvirt's callbacks then never run on (and
never block) the server's loop, and every asyncio loop in the process, the server's, the CLI's, each
test's, receives events alike. Each event is fanned out to the :class:`VmWatch` objects of that VM,
each handing it to its own loop with ``call_soon_threadsafe``.

:class:`FeedSource` turns the same callbacks (plus CD tray and device events) into events of the
process-wide :class:`~limen.hypervisor.vm_feed.VmFeed`. It reads each VM's name, state and owner in a
thread of its own, never in libvirt's event thread: a libvirt call there would hold up every other event
and the connection's keepalive behind it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from types import TracebackType
from typing import Any

import libvirt

from limen.hypervisor.models import LifecycleKind
from limen.hypervisor.vm_feed import VmEventType, VmFacts, VmFeed, event_type_of

log = logging.getLogger("limen.hypervisor")

_event_thread_lock = threading.Lock()
_event_thread: threading.Thread | None = None


def _run_event_loop() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


def ensure_event_thread() -> None:
    """Registers libvirt's default event implementation and runs it in a daemon thread, once.

    Call before opening a connection: connections opened earlier get neither events nor keepalive.
    """
    global _event_thread
    with _event_thread_lock:
        if _event_thread is not None:
            return
        libvirt.virEventRegisterDefaultImpl()
        _event_thread = threading.Thread(target=_run_event_loop, name="libvirt-events", daemon=True)
        _event_thread.start()


def lifecycle_kind(event: int, detail: int) -> LifecycleKind:
    if event == libvirt.VIR_DOMAIN_EVENT_STARTED:
        return LifecycleKind.STARTED
    if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
        if detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED:
            return LifecycleKind.CRASHED
        if detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT:
            return LifecycleKind.REVERTED
        if detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED:
            return LifecycleKind.MIGRATED
        return LifecycleKind.STOPPED
    if event == libvirt.VIR_DOMAIN_EVENT_CRASHED:
        return LifecycleKind.CRASHED
    if event in (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED):
        return LifecycleKind.PAUSED
    if event == libvirt.VIR_DOMAIN_EVENT_RESUMED:
        return LifecycleKind.RESUMED
    if event == libvirt.VIR_DOMAIN_EVENT_DEFINED:
        return LifecycleKind.DEFINED
    if event == libvirt.VIR_DOMAIN_EVENT_UNDEFINED:
        # A rename undefines the old name and defines the new one, with the same UUID: the VM goes on
        # (a page that took it for deleted would give it up), so it is a change to re-read, not a removal.
        if detail == libvirt.VIR_DOMAIN_EVENT_UNDEFINED_RENAMED:
            return LifecycleKind.OTHER
        return LifecycleKind.UNDEFINED
    return LifecycleKind.OTHER


class VmWatch:
    """A subscription to one VM's lifecycle events. Use as a context manager; it unsubscribes on exit.

    ``ended`` is set once an event that ends a console (stopped, crashed, undefined) arrives.
    """

    def __init__(self, hub: LifecycleHub, uuid: str) -> None:
        self._hub = hub
        self.uuid = uuid
        self._queue: asyncio.Queue[LifecycleKind] = asyncio.Queue(maxsize=64)
        self._loop = asyncio.get_running_loop()
        self.ended = asyncio.Event()
        self.last: LifecycleKind | None = None
        self._end_callbacks: list[Callable[[LifecycleKind], None]] = []

    def on_end(self, callback: Callable[[LifecycleKind], None]) -> None:
        """Calls ``callback`` with the event, on the loop, once an event that ends a console arrives (soon,
        if one has already). Costs no task: a console session waits for its VM's end this way."""
        if self.ended.is_set() and self.last is not None:
            self._loop.call_soon(callback, self.last)
            return
        self._end_callbacks.append(callback)

    def _deliver(self, kind: LifecycleKind) -> None:
        self.last = kind
        if kind.ends_console:
            self.ended.set()
            callbacks, self._end_callbacks = self._end_callbacks, []
            for callback in callbacks:
                callback(kind)
        if self._queue.full():  # a watcher that does not read keeps only the newest events
            self._queue.get_nowait()
        self._queue.put_nowait(kind)

    def deliver(self, kind: LifecycleKind) -> None:
        """Thread-safe: hands the event to the loop that created this watch."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._deliver(kind)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._deliver, kind)

    async def next_event(self) -> LifecycleKind:
        return await self._queue.get()

    def __enter__(self) -> VmWatch:
        self._hub.add(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._hub.remove(self)
        self._end_callbacks.clear()  # they are the watcher's (its bound methods): no cycle back to it is left


class LifecycleHub:
    """Fans libvirt lifecycle events out to the watches of each VM."""

    def __init__(self) -> None:
        self._watches: dict[str, set[VmWatch]] = defaultdict(set)
        self._lock = threading.Lock()
        # Also told of every event, in libvirt's event thread: (domain, kind). libvirt takes one lifecycle
        # callback per connection from the Python binding, so other listeners hang off this one.
        self.listeners: list[Callable[[Any, LifecycleKind], None]] = []

    def add(self, watch: VmWatch) -> None:
        with self._lock:
            self._watches[watch.uuid].add(watch)

    def remove(self, watch: VmWatch) -> None:
        with self._lock:
            watches = self._watches.get(watch.uuid)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[watch.uuid]

    def watch(self, uuid: str) -> VmWatch:
        return VmWatch(self, uuid)

    @property
    def watch_count(self) -> int:
        with self._lock:
            return sum(len(watches) for watches in self._watches.values())

    def publish(self, uuid: str, kind: LifecycleKind) -> None:
        with self._lock:
            targets = list(self._watches.get(uuid, ()))
        for watch in targets:
            watch.deliver(kind)

    def register_on(self, conn: libvirt.virConnect) -> Callable[[], None] | None:
        """Subscribes to every domain's lifecycle events on ``conn``; returns how to unsubscribe.

        Needs the event thread. A connection with a callback still registered is never really closed.
        """

        def on_lifecycle(_conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
            kind = lifecycle_kind(event, detail)
            uuid = dom.UUIDString()
            log.debug("lifecycle event", extra={"event": "vm_lifecycle", "vm_uuid": uuid, "kind": kind.value})
            self.publish(uuid, kind)
            for listener in self.listeners:
                listener(dom, kind)

        try:
            callback_id = conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle, None)
        except libvirt.libvirtError as exc:
            log.warning("lifecycle events unavailable: %s", exc, extra={"event": "libvirt_events_unavailable"})
            return None
        return lambda: conn.domainEventDeregisterAny(callback_id)


# Owners remembered for VMs seen, so that an "undefined" event (the VM and its metadata are gone by then)
# still reaches the user who owned it. Bounded: the oldest entries go first.
MAX_REMEMBERED_OWNERS = 10000
MAX_PENDING_EVENTS = 4096
# How long closing a connection waits for the reader to finish a call on it: a call on a connection that
# another thread closes meanwhile is a use-after-free in libvirt (seen as a crash in listAllDomains).
RELEASE_WAIT_S = 2.0


class FeedSource:
    """Publishes libvirt's domain events to ``feed``: lifecycle, CD tray changes, devices added or removed,
    metadata (the owner) changed.

    ``describe`` reads a domain's facts (name, state, owner); it runs in this source's reader thread and
    must not raise for a domain that has gone (state None). Register with
    ``connection.on_open(source.register_on)`` and add :meth:`on_lifecycle` to the
    :class:`LifecycleHub`'s listeners; :meth:`stop` ends the reader thread.
    """

    def __init__(self, feed: VmFeed, describe: Callable[[libvirt.virDomain], VmFacts]) -> None:
        self._feed = feed
        self._describe = describe
        self._pending: queue.Queue[tuple[str, Any, VmEventType | None] | None] = queue.Queue(MAX_PENDING_EVENTS)
        self._owners: OrderedDict[str, str | None] = OrderedDict()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        # Held by the reader while it calls libvirt; a connection about to close takes it to retire itself,
        # and the reader skips every later job of a retired connection.
        self._reading = threading.Lock()
        self._retired: weakref.WeakSet[Any] = weakref.WeakSet()

    def _ensure_reader(self) -> None:
        with self._thread_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._read_forever, name="limen-vm-feed", daemon=True)
                self._thread.start()

    def _enqueue(self, job: tuple[str, Any, VmEventType | None]) -> None:
        try:
            self._pending.put_nowait(job)
        except queue.Full:  # libvirt stalls: drop rather than grow; readers resync from the list
            log.warning("VM event dropped: the reader is behind", extra={"event": "vm_feed_overflow"})

    def _remember(self, facts: VmFacts) -> None:
        self._owners[facts.uuid] = facts.owner
        self._owners.move_to_end(facts.uuid)
        while len(self._owners) > MAX_REMEMBERED_OWNERS:
            self._owners.popitem(last=False)

    def _read_forever(self) -> None:
        while True:
            job = self._pending.get()
            if job is None:
                return
            with self._reading:
                self._read_one(*job)

    def _read_one(self, kind: str, target: Any, event_type: VmEventType | None) -> None:
        try:
            # A domain's connect() is its Python connection object: no libvirt call.
            if (target if kind == "prime" else target.connect()) in self._retired:
                return
            if kind == "prime":
                for dom in target.listAllDomains(0):
                    self._remember(self._describe(dom))
                return
            facts = self._describe(target)
            former_owner = None
            if facts.state is None:
                # Gone: tell its owner, whom only our memory still knows. Kept, not popped: the events
                # read after it went (stopped, then undefined) all need it; the memory is bounded.
                facts = VmFacts(facts.uuid, facts.name, None, self._owners.get(facts.uuid))
            else:
                if facts.uuid in self._owners and self._owners[facts.uuid] != facts.owner:
                    former_owner = self._owners[facts.uuid]
                self._remember(facts)
            assert event_type is not None
            self._feed.publish(event_type, facts, former_owner=former_owner)
        except Exception as exc:  # a broken connection must not end the reader
            log.warning("cannot read a VM for its event: %s", exc, extra={"event": "vm_feed_read_failed"})

    def on_lifecycle(self, dom: Any, kind: LifecycleKind) -> None:
        """A lifecycle event from libvirt's event thread (via the LifecycleHub)."""
        self._enqueue(("event", dom, event_type_of(kind)))

    def register_on(self, conn: libvirt.virConnect) -> Callable[[], None] | None:
        """Subscribes to every domain's tray and device events on ``conn``; returns how to unsubscribe.
        Needs the event thread."""
        self._ensure_reader()
        self._enqueue(("prime", conn, None))

        def on_tray(_conn: Any, dom: Any, _dev: Any, _reason: int, _opaque: Any) -> None:
            self._enqueue(("event", dom, VmEventType.MEDIA_CHANGED))

        def on_device(_conn: Any, dom: Any, _dev: Any, _opaque: Any) -> None:
            self._enqueue(("event", dom, VmEventType.CHANGED))

        def on_metadata(_conn: Any, dom: Any, _type: int, _uri: Any, _opaque: Any) -> None:
            self._enqueue(("event", dom, VmEventType.CHANGED))  # e.g. its owner changed

        callbacks = [
            (libvirt.VIR_DOMAIN_EVENT_ID_TRAY_CHANGE, on_tray),
            (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, on_device),
            (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, on_device),
            (libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, on_metadata),
        ]
        registered: list[int] = []
        for event_id, callback in callbacks:
            try:
                registered.append(conn.domainEventRegisterAny(None, event_id, callback, None))
            except libvirt.libvirtError as exc:
                log.warning("VM events unavailable: %s", exc, extra={"event": "libvirt_events_unavailable"})

        def unregister() -> None:
            # Runs just before the connection closes: wait for a call the reader has in flight on it, and
            # keep it from starting another. A reader stuck on a hung host is not waited for forever.
            if self._reading.acquire(timeout=RELEASE_WAIT_S):
                try:
                    self._retired.add(conn)
                finally:
                    self._reading.release()
            else:
                self._retired.add(conn)
            for callback_id in registered:
                try:
                    conn.domainEventDeregisterAny(callback_id)
                except libvirt.libvirtError:
                    pass

        return unregister

    def stop(self) -> None:
        try:
            self._pending.put_nowait(None)
        except queue.Full:
            pass  # a daemon thread: it ends with the process

"""VM lifecycle events from libvirt, delivered to asyncio.

libvirt needs an event loop implementation for events and connection keepalives, and it is
process-wide. limen runs libvirt's own implementation in one daemon thread (:func:`ensure_event_thread`)
rather than binding it to an asyncio loop with libvirtaio: libvirt's callbacks then never run on (and
never block) the server's loop, and every asyncio loop in the process, the server's, the CLI's, each
test's, receives events alike. Each event is fanned out to the :class:`VmWatch` objects of that VM,
each handing it to its own loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from types import TracebackType
from typing import Any

import libvirt

from limen.hypervisor.models import LifecycleKind

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

    def _deliver(self, kind: LifecycleKind) -> None:
        self.last = kind
        if kind.ends_console:
            self.ended.set()
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


class LifecycleHub:
    """Fans libvirt lifecycle events out to the watches of each VM."""

    def __init__(self) -> None:
        self._watches: dict[str, set[VmWatch]] = defaultdict(set)
        self._lock = threading.Lock()

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

        try:
            callback_id = conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle, None)
        except libvirt.libvirtError as exc:
            log.warning("lifecycle events unavailable: %s", exc, extra={"event": "libvirt_events_unavailable"})
            return None
        return lambda: conn.domainEventDeregisterAny(callback_id)

"""A VM's serial console as an asyncio byte stream, over libvirt's console stream (``virDomainOpenConsole``).

No pty path is ever opened by limen: libvirt hands the console over a ``virStream``, so it works through
remote URIs (``qemu+ssh://…``) as well as locally. The stream is non-blocking and driven by libvirt's own
event loop, the one thread limen already runs for lifecycle events (:func:`~limen.hypervisor.events.
ensure_event_thread`). Rules this module keeps:

* Every stream call (recv, send, event mask changes) runs in libvirt's event thread, so the stream has one
  user. The asyncio side asks for a mask change with a zero timeout on that loop (``virEventAddTimeout``),
  never by calling libvirt itself; it only moves bytes in and out of two bounded buffers under a lock.
* Backpressure both ways: reading stops (READABLE leaves the mask) while more than ``READ_HIGH`` bytes wait
  for the asyncio side, and resumes below ``READ_LOW``; :meth:`LibvirtSerialPort.write` waits, within its
  deadline, while more than ``WRITE_HIGH`` bytes wait for the guest.
* Opening and closing are libvirt calls that may hang (a stuck daemon): opening runs in the connection's
  worker threads within the caller's deadline, and an open that completes after its caller gave up is
  closed at once; closing (``virStreamAbort`` waits for the daemon's answer) runs in a thread of its own,
  and :data:`OPEN_STREAMS` counts the streams not yet released, so tests can see none is left.
* A VM's console streams are released before the VM is undefined (:func:`release_vm_streams`). libvirt 9.0
  locks a console stream and then its VM's console table to close the stream (``virFDStreamCloseInt``, whose
  close callback is ``virChrdevFDStreamCloseCb``), but the console table and then each stream to free a VM
  (``virChrdevFree``, from an undefine or a migration's end): an abort that meets an undefine deadlocks
  libvirtd's event loop for good (every client of that host hangs), or crashes it. A destroy alone is safe.
* Likewise before a live migration (:func:`held_for_migration`): its end quits the source's QEMU, whose pty
  hangs up (the session reads the end and aborts its stream), in the same job that frees the source's domain
  (``VIR_MIGRATE_UNDEFINE_SOURCE``). No stream of the VM opens meanwhile: an open waits for the migration's
  end, and those under way when it began are waited for and released with the others.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

import libvirt

from limen import end_details
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.domain_xml import parse_domain_xml
from limen.hypervisor.models import StreamRelease

log = logging.getLogger("limen.hypervisor")

T = TypeVar("T")

SERIAL_READ_SIZE = 16 * 1024
READ_HIGH = 256 * 1024  # bytes from the guest waiting for the browser: stop reading above this
READ_LOW = 64 * 1024
WRITE_HIGH = 64 * 1024  # bytes from the browser waiting for the guest: writers wait above this
CLOSE_TIMEOUT = 5.0

_ALWAYS: int = libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP

# Streams opened and not yet released (aborted, or their abort gave up); read by tests and metrics.
OPEN_STREAMS: set[LibvirtSerialPort] = set()
_LATE_CLOSES: set[asyncio.Task[None]] = set()  # closes of streams whose opener gave up (kept referenced)


class MigrationHold:
    """A live migration's hold on its VM's console streams (:func:`held_for_migration`)."""

    def __init__(self) -> None:
        self.moved = False  # set by the migration once the VM runs on the target
        self.over = asyncio.Event()

    @property
    def outcome(self) -> StreamRelease:
        return StreamRelease.MIGRATED if self.moved else StreamRelease.MIGRATION_FAILED


_MIGRATION_HOLDS: dict[str, MigrationHold] = {}  # VM UUID → the hold of its live migration under way
_OPENINGS: dict[asyncio.Future[None], str] = {}  # opens under way → their VM's UUID


class SerialPort(Protocol):
    """One open serial console. Create through :meth:`SerialPorts.open`, and ``close`` it (a second close waits
    for the first one's release)."""

    async def read(self) -> bytes:
        """The next bytes from the guest; ``b""`` once the stream ended (see :attr:`ended_by`)."""
        ...

    async def write(self, data: bytes, *, timeout: float) -> None:
        """Queues ``data`` for the guest; waits while the queue is full, SERIAL_PORT_ERROR past ``timeout``."""
        ...

    @property
    def ended_by(self) -> str | None:
        """Why the stream ended, in words (None while it runs, or when it ended by a plain end of file)."""
        ...

    @property
    def released_for(self) -> StreamRelease | None:
        """Once the stream ended: what limen released it for, and how that went (None: limen did not)."""
        ...

    async def close(self) -> None: ...


class SerialPorts(Protocol):
    """What the serial console needs from libvirt. Each call raises LimenError (VM_NOT_FOUND, …)."""

    async def has_serial(self, vm_uuid: str) -> bool: ...

    async def open(self, vm_uuid: str, *, force: bool) -> SerialPort:
        """Opens the VM's first console. SERIAL_BUSY when another client holds it and ``force`` is off;
        with ``force`` that client is cut off."""
        ...


def _free(stream: libvirt.virStream) -> None:
    """Releases the stream (and its hold on the connection) now. The binding frees a stream only when the
    Python object goes, and the callback data libvirt keeps after ``eventRemoveCallback`` still holds it:
    a closed connection's socket would stay open for as long as that lasts."""
    handle, stream._o = stream._o, None
    with contextlib.suppress(AttributeError):
        del stream.cb  # __del__ would otherwise remove the callback again, on the freed handle
    if handle is not None:
        libvirt.libvirtmod.virStreamFree(handle)


def _dispatch_stream_event(stream: libvirt.virStream, events: int, port_ref: weakref.ref[LibvirtSerialPort]) -> None:
    port = port_ref()
    if port is not None:
        port._on_stream_event(stream, events)


def _is_busy(exc: libvirt.libvirtError) -> bool:
    return "active console session" in str(exc).lower()


async def release_vm_streams(vm_uuid: str, *, hold: MigrationHold | None = None) -> int:
    """Closes every console stream of the VM ``vm_uuid`` this process holds, and waits (each within
    ``CLOSE_TIMEOUT``) until libvirt released them: call it after a destroy and before the undefine (see the
    module's rules). Their sessions read the end (for a migration's ``hold``: once it is over, with its
    outcome in :attr:`~SerialPort.released_for`). Returns how many there were."""
    ports = [port for port in list(OPEN_STREAMS) if port.vm_uuid == vm_uuid]
    await asyncio.gather(*(port.close(hold=hold) for port in ports))
    return len(ports)


@contextlib.asynccontextmanager
async def held_for_migration(vm_uuid: str) -> AsyncIterator[MigrationHold]:
    """Run a live migration of ``vm_uuid`` in this block (see the module's rules): the VM's console streams
    are released first, and none opens until the block ends (an open meanwhile waits, within its caller's
    deadline). Set the hold's ``moved`` once the VM runs on the target: the sessions whose streams were
    released end then, telling whether it moved."""
    hold = MigrationHold()
    _MIGRATION_HOLDS[vm_uuid] = hold
    try:
        opening = [future for future, uuid in _OPENINGS.items() if uuid == vm_uuid]
        if opening:  # each is bounded by its libvirt call's deadline; one that opened is released below
            await asyncio.wait(opening)
        await release_vm_streams(vm_uuid, hold=hold)
        yield hold
    finally:
        if _MIGRATION_HOLDS.get(vm_uuid) is hold:
            del _MIGRATION_HOLDS[vm_uuid]
        hold.over.set()


class LibvirtCalls(Protocol):
    """What the serial ports use of a connection: a bounded call (one host's connection, or the host pool
    that routes a call to the host of the VM its subject names)."""

    async def call(self, operation: str, func: Callable[[libvirt.virConnect], T], *,
                   subject: str = "", timeout: float | None = None) -> T: ...


class LibvirtSerialPorts:
    """:class:`SerialPorts` over libvirt (any host's VM: calls go through :class:`LibvirtCalls`)."""

    def __init__(self, connection: LibvirtCalls, *, read_high: int = READ_HIGH, read_low: int = READ_LOW) -> None:
        self._connection = connection
        self._read_high = read_high
        self._read_low = read_low

    async def has_serial(self, vm_uuid: str) -> bool:
        def run(conn: libvirt.virConnect) -> bool:
            return parse_domain_xml(conn.lookupByUUIDString(vm_uuid).XMLDesc(0)).serial_console

        return await self._connection.call("get_vm", run, subject=vm_uuid)

    async def open(self, vm_uuid: str, *, force: bool) -> SerialPort:
        while (hold := _MIGRATION_HOLDS.get(vm_uuid)) is not None:  # the VM is moving: open it where it lands
            await hold.over.wait()
        loop = asyncio.get_running_loop()
        port = LibvirtSerialPort(loop, vm_uuid, read_high=self._read_high, read_low=self._read_low)

        def run(conn: libvirt.virConnect) -> None:
            stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
            flags = libvirt.VIR_DOMAIN_CONSOLE_SAFE | (libvirt.VIR_DOMAIN_CONSOLE_FORCE if force else 0)
            try:
                conn.lookupByUUIDString(vm_uuid).openConsole(None, stream, flags)
            except libvirt.libvirtError as exc:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()
                if _is_busy(exc):
                    raise LimenError(ErrorCode.SERIAL_BUSY, "another client holds this VM's serial console "
                                                             "(?force=1 takes it over)") from None
                raise
            port.attach(stream)

        opening = asyncio.ensure_future(self._connection.call("open_console", run, subject=vm_uuid))
        _OPENINGS[opening] = vm_uuid  # a migration beginning now waits for it (see held_for_migration)
        opening.add_done_callback(_OPENINGS.pop)
        try:
            await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The caller's deadline passed while libvirt was still opening: whatever it opens is closed.
            def close_late(done: asyncio.Future[None]) -> None:
                if not done.cancelled() and done.exception() is None:
                    _LATE_CLOSES.add(task := loop.create_task(port.close()))
                    task.add_done_callback(_LATE_CLOSES.discard)

            opening.add_done_callback(close_late)
            raise
        return port


class LibvirtSerialPort:
    """The bridge between one non-blocking ``virStream`` (libvirt's event thread) and asyncio."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, vm_uuid: str, *, read_high: int = READ_HIGH,
        read_low: int = READ_LOW,
    ) -> None:
        self._loop = loop
        self.vm_uuid = vm_uuid
        self.read_high = read_high
        self.read_low = read_low
        self._lock = threading.Lock()  # the buffers and flags below, shared by both threads
        # Held while the event thread uses the stream, and to free it: the handle never goes mid-call.
        self._stream_lock = threading.Lock()
        self._stream: libvirt.virStream | None = None
        # guest → browser: chunks the event thread read, waiting for read()
        self._incoming: collections.deque[bytes] = collections.deque()
        self._incoming_size = 0
        self._reading_paused = False
        # browser → guest: bytes waiting for the event thread to send
        self._outgoing = bytearray()
        self._ended = False
        self._ended_by: str | None = None
        self._closed = False
        self._released: asyncio.Event | None = None  # set once the stream is aborted and freed (by close())
        self._hold: MigrationHold | None = None  # the migration the stream was released for
        self._mask_applied: int | None = None
        self._arrived = asyncio.Event()  # set in the loop when _incoming has data or the stream ended
        self._drained = asyncio.Event()  # set in the loop when _outgoing went below WRITE_HIGH
        self._drained.set()

    # -- set-up (a libvirt worker thread) ---------------------------------------------------------------

    def attach(self, stream: libvirt.virStream) -> None:
        with self._lock:
            self._stream = stream
            self._mask_applied = _ALWAYS | libvirt.VIR_STREAM_EVENT_READABLE
        OPEN_STREAMS.add(self)
        # Through a weak reference: libvirt keeps the callback's data after the callback is removed.
        stream.eventAddCallback(self._mask_applied, _dispatch_stream_event, weakref.ref(self))

    # -- the asyncio side -------------------------------------------------------------------------------

    @property
    def ended_by(self) -> str | None:
        return self._ended_by

    @property
    def released_for(self) -> StreamRelease | None:
        return self._hold.outcome if self._hold is not None and self._hold.over.is_set() else None

    @property
    def buffered(self) -> tuple[int, bool]:
        """(bytes from the guest waiting for :meth:`read`, whether reading from libvirt is paused)."""
        with self._lock:
            return self._incoming_size, self._reading_paused

    async def read(self) -> bytes:
        hold: MigrationHold | None = None
        while True:
            with self._lock:
                if self._incoming:
                    chunk = self._incoming.popleft()
                    self._incoming_size -= len(chunk)
                    resume = self._reading_paused and self._incoming_size < self.read_low
                    if resume:
                        self._reading_paused = False
                    if not self._incoming and not self._ended:
                        self._arrived.clear()
                    break
                if self._ended:
                    chunk, resume, hold = b"", False, self._hold
                    break
                self._arrived.clear()
            await self._arrived.wait()
        if not chunk and hold is not None:  # released for a migration: the end is told once that is over
            await hold.over.wait()
        if resume:
            self._request_mask_update()
        return chunk

    async def write(self, data: bytes, *, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._drained.wait()
        except TimeoutError:
            raise LimenError(ErrorCode.SERIAL_PORT_ERROR,
                             f"the VM's serial port accepted no input for {timeout:g} s") from None
        with self._lock:
            if self._ended:
                return  # read() reports the end
            self._outgoing += data
            if len(self._outgoing) > WRITE_HIGH:
                self._drained.clear()
        self._request_mask_update()

    async def close(self, *, hold: MigrationHold | None = None) -> None:
        """Aborts and frees the stream; a reader waiting in :meth:`read` gets the end (with ``hold``, the
        migration the stream is released for, once that is over). A second close (the session's own, and
        :func:`release_vm_streams`) waits for the first one's release."""
        with self._lock:
            if self._closed:
                released = self._released
                stream = None
            else:
                self._closed = True
                self._ended = True
                self._hold = hold
                stream, self._stream = self._stream, None
                self._incoming.clear()
                self._incoming_size = 0
                self._outgoing.clear()
                released = self._released = asyncio.Event() if stream is not None else None
        self._arrived.set()
        self._drained.set()
        if stream is None:
            if released is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLOSE_TIMEOUT):
                        await released.wait()
            return
        assert released is not None

        def release() -> None:
            try:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.eventRemoveCallback()
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()
                with self._stream_lock:  # not while a callback of the event thread still uses the handle
                    _free(stream)
            finally:
                OPEN_STREAMS.discard(self)
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                    self._loop.call_soon_threadsafe(released.set)

        # The abort waits for the daemon's answer; a hung daemon keeps only this thread (until it answers).
        threading.Thread(target=release, name="serial-close", daemon=True).start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await released.wait()

    def _request_mask_update(self) -> None:
        """Runs :meth:`_apply_mask` in libvirt's event thread, the stream's only user."""
        def fire(timer: int, _opaque: Any) -> None:
            libvirt.virEventRemoveTimeout(timer)
            self._apply_mask()

        libvirt.virEventAddTimeout(0, fire, None)

    # -- libvirt's event thread ---------------------------------------------------------------------------

    def _wanted_mask(self) -> int:
        mask: int = _ALWAYS
        if not self._reading_paused and not self._ended:
            mask |= libvirt.VIR_STREAM_EVENT_READABLE
        if self._outgoing and not self._ended:
            mask |= libvirt.VIR_STREAM_EVENT_WRITABLE
        return mask

    def _apply_mask(self) -> None:
        with self._stream_lock:
            self._apply_mask_locked()

    def _apply_mask_locked(self) -> None:
        with self._lock:
            stream, wanted = self._stream, self._wanted_mask()
            if stream is None or self._closed or wanted == self._mask_applied:
                return
            self._mask_applied = wanted
        with contextlib.suppress(libvirt.libvirtError):
            stream.eventUpdateCallback(wanted)

    def _on_stream_event(self, stream: libvirt.virStream, events: int) -> None:
        with self._stream_lock:
            if self._closed:
                return
            self._handle_events(stream, events)

    def _handle_events(self, stream: libvirt.virStream, events: int) -> None:
        try:
            if events & libvirt.VIR_STREAM_EVENT_WRITABLE:
                self._send_some(stream)
            if events & libvirt.VIR_STREAM_EVENT_READABLE:
                self._receive_some(stream)
            if events & (libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP) and not self._ended:
                self._end(end_details.SERIAL_STREAM_CLOSED)
        except libvirt.libvirtError as exc:
            self._end(f"libvirt console stream: {exc}")
        self._apply_mask_locked()

    def _send_some(self, stream: libvirt.virStream) -> None:
        with self._lock:
            pending = bytes(self._outgoing[:SERIAL_READ_SIZE])
        if not pending:
            return
        sent: int = stream.send(pending)
        if sent <= 0:  # -2: the stream takes nothing now
            return
        with self._lock:
            del self._outgoing[:sent]
            drained = len(self._outgoing) <= WRITE_HIGH
        if drained:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._drained.set)

    def _receive_some(self, stream: libvirt.virStream) -> None:
        while True:
            with self._lock:
                if self._incoming_size >= self.read_high:
                    self._reading_paused = True
                    return
            data = stream.recv(SERIAL_READ_SIZE)
            if isinstance(data, int):  # -2: nothing more for now
                return
            if not data:
                self._end(None)
                return
            with self._lock:
                self._incoming.append(data)
                self._incoming_size += len(data)
            self._wake()

    def _end(self, why: str | None) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
            self._ended_by = why
        self._wake()
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._drained.set)

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is reading any more
            self._loop.call_soon_threadsafe(self._arrived.set)

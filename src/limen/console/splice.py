"""The proxy stage at the protocol level: VNC bytes move between two transports with no task per chunk.

After the last status frame and the banner, a session whose WebSocket server offers it (limen's own
uvicorn protocol, :mod:`limen.console.ws_protocol`, through the ``limen.splice`` ASGI extension) hands
its VNC transport to a :class:`Splice`, which becomes that transport's protocol:

* VNC → browser: the VNC transport reads (up to :data:`SPLICE_READ_SIZE`) straight into a buffer shared by
  every session of the loop, just after :data:`HEADER_ROOM` free bytes; the WebSocket frame header is
  written into the bytes just before the payload and the frame leaves in one ``transport.write`` of a
  memoryview: no copy, no task, no coroutine. A transport that could not send it all may keep a
  reference to the unsent part (uvloop does), so the shared buffer is then replaced (:class:`ReadBuffer`).
* VNC → browser for a session that streams: once a read brings :data:`KERNEL_MOVE_FROM` bytes or more, the
  splice stops the VNC transport's reading and reads the socket itself, the kernel moving the payload to the
  browser's socket through a pipe (:mod:`limen.console.kernel_move`); flow control and deadlines are the
  same, waiting on the socket instead of pausing the transport.
* browser → VNC: the WebSocket protocol keeps parsing frames (websockets' parser, which unmasks with its
  C ``apply_mask``) and gives each binary message to :meth:`Splice.to_vnc` instead of the ASGI queue.
* backpressure, both ways: when one side's transport passes its high-water mark, reading from the other
  side pauses until it drains; so a session holds at most a high-water mark plus one read per direction.
* deadlines: a timer runs only while a side is paused. A browser that reads nothing for the write
  deadline ends the session with SLOW_CLIENT; a VNC server that accepts nothing, VNC_CONNECTION_FAILED.

How the splice ends is :attr:`Splice.ended`'s result; the session then calls :meth:`Splice.stop` and does
the rest (close frame, logs, releasing the VNC connection) as on its other paths.
"""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from limen import end_details
from limen.console.binary_frame import HEADER_ROOM, write_binary_header
from limen.console.kernel_move import KERNEL_MOVE_FROM, ClientWriteFailed, KernelMove, kernel_can_move
from limen.console.pump import Traffic
from limen.console.rfb import only_asks_for_updates
from limen.errors import ErrorCode, LimenError

# The ASGI extension through which a console session hands its VNC transport to the WebSocket protocol:
# ``scope["extensions"][SPLICE_EXTENSION]["splice"]`` is a :class:`SpliceFn`.
SPLICE_EXTENSION = "limen.splice"

# Bytes per read from the VNC server (see bench/RESULTS.md for 256 KiB against 1 MiB).
SPLICE_READ_SIZE = 1 << 20


class ReadBuffer:
    """The buffer the VNC side of every splice of one thread reads into (one read at a time)."""

    def __init__(self, read_size: int = SPLICE_READ_SIZE) -> None:
        self.read_size = read_size
        self.renewals = 0
        self.buffer = bytearray(HEADER_ROOM + read_size)
        self.view = memoryview(self.buffer)
        self.payload = self.view[HEADER_ROOM:]

    def renew(self) -> None:
        """A transport kept (a part of) the last frame: that memory is its now; read into fresh memory."""
        self.buffer = bytearray(HEADER_ROOM + self.read_size)
        self.view = memoryview(self.buffer)
        self.payload = self.view[HEADER_ROOM:]
        self.renewals += 1


_local = threading.local()


def read_buffer() -> ReadBuffer:
    """This thread's shared read buffer (made on first use; an event loop runs in one thread)."""
    shared: ReadBuffer | None = getattr(_local, "buffer", None)
    if shared is None:
        shared = _local.buffer = ReadBuffer()
    return shared


class SpliceEnd(enum.Enum):
    VNC_CLOSED = "vnc_closed"  # EOF or connection lost on the VNC side
    CLIENT_GONE = "client_gone"  # the browser closed or vanished


class SpliceClient(Protocol):
    """What a splice needs of the WebSocket protocol it is bound to."""

    @property
    def transport(self) -> asyncio.Transport: ...

    def splice_pause_reading(self) -> None: ...

    def splice_resume_reading(self) -> None: ...


class SpliceFn(Protocol):
    """The ``splice`` callable the ``limen.splice`` ASGI extension offers."""

    def __call__(
        self,
        vnc: asyncio.BaseTransport,
        traffic: Traffic,
        *,
        initial: Sequence[bytes],
        unread: bytes,
        write_timeout: float,
        clock: Callable[[], float],
    ) -> Splice: ...


class Splice(asyncio.BufferedProtocol):
    """The VNC transport's protocol during the proxy stage, and the session's handle on it."""

    def __init__(
        self,
        client: SpliceClient,
        vnc: asyncio.Transport,
        traffic: Traffic,
        *,
        write_timeout: float,
        clock: Callable[[], float],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._client = client
        self._vnc = vnc
        self._previous = vnc.get_protocol()  # told of connection_lost, so its owner sees the close
        self._traffic = traffic
        self._write_timeout = write_timeout
        self._clock = clock
        self._loop = loop
        self._stopped = False
        self._client_timer: asyncio.TimerHandle | None = None
        self._vnc_timer: asyncio.TimerHandle | None = None
        self._client_paused = False  # we paused reading from the browser (VNC full)
        self._vnc_paused = False  # we paused reading from the VNC server (browser full)
        self._kernel: KernelMove | None = None  # set once the session streams (see kernel_move.py)
        self._kernel_tried = False
        self._client_limits: tuple[int, int] | None = None  # the browser transport's (low, high) before it
        self.ended: asyncio.Future[SpliceEnd | LimenError] = loop.create_future()

    # -- life ------------------------------------------------------------------------------------------

    def start(self, initial: Sequence[bytes], *, client_full: bool, unread: bytes = b"") -> None:
        """Takes the VNC transport over.

        ``initial``: browser messages that came before, in order; ``unread``: VNC bytes that came before
        (read from the transport's previous protocol), sent to the browser first.
        """
        self._vnc.set_protocol(self)
        if unread:
            frame = bytearray(HEADER_ROOM + len(unread))
            frame[HEADER_ROOM:] = unread
            start = write_binary_header(frame, len(unread))
            self._client.transport.write(frame[start:])
            self._traffic.to_client += len(unread)
        for data in initial:
            self.to_vnc(data)
        if client_full:
            self.client_full()

    def stop(self) -> None:
        """Stops moving bytes (idempotent). The VNC transport stays open: its owner closes it."""
        if self._stopped:
            return
        self._stopped = True
        self._finish(SpliceEnd.CLIENT_GONE)  # no-op when already ended; nobody waits after stop()
        for timer in (self._client_timer, self._vnc_timer):
            if timer is not None:
                timer.cancel()
        self._client_timer = self._vnc_timer = None
        if self._kernel is not None:
            self._kernel.close()  # the VNC transport's own reading stays paused
            self._traffic.to_client_by_kernel = self._kernel.moved
            if self._client_limits is not None and not self._client.transport.is_closing():
                low, high = self._client_limits
                self._client.transport.set_write_buffer_limits(high=high, low=low)
        elif not self._vnc.is_closing():
            self._vnc.pause_reading()
        if self._client_paused:
            self._client_paused = False
            self._client.splice_resume_reading()

    def _finish(self, outcome: SpliceEnd | LimenError) -> None:
        if not self.ended.done():
            self.ended.set_result(outcome)

    # -- VNC → browser (the VNC transport's protocol callbacks) -----------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return read_buffer().payload

    def buffer_updated(self, nbytes: int) -> None:
        if self._stopped:
            return
        transport = self._client.transport
        if transport.is_closing():
            self._finish(SpliceEnd.CLIENT_GONE)
            self._vnc.pause_reading()
            return
        self._send_read(transport, nbytes)
        self._traffic.to_client += nbytes
        if nbytes >= KERNEL_MOVE_FROM and not self._kernel_tried:
            self._hand_reading_to_kernel()

    def _send_read(self, transport: asyncio.WriteTransport, nbytes: int) -> None:
        """Sends the ``nbytes`` just read into the shared buffer as one frame."""
        shared = read_buffer()
        start = write_binary_header(shared.buffer, nbytes)
        transport.write(shared.view[start : HEADER_ROOM + nbytes])
        if transport.get_write_buffer_size():
            shared.renew()

    # -- VNC → browser by the kernel, once the session streams ----------------------------------------

    def _hand_reading_to_kernel(self) -> None:
        self._kernel_tried = True
        if not kernel_can_move(self._client.transport, self._vnc):
            return
        try:
            self._kernel = KernelMove.take_over(self._vnc, self._client.transport, self._loop)
        except OSError:  # out of descriptors: this session keeps reading through its transport
            return
        self._vnc.pause_reading()
        # The kernel writes to the browser's socket only while its transport holds nothing (or a frame
        # would overtake what it holds): with no high-water mark, the transport tells us of its first unsent
        # byte (client_full) and of its last one leaving (client_drained).
        transport = self._client.transport
        self._client_limits = transport.get_write_buffer_limits()
        transport.set_write_buffer_limits(high=0, low=0)
        if not self._vnc_paused:
            self._kernel.watch(self._vnc_readable)

    def _vnc_readable(self) -> None:
        kernel = self._kernel
        if self._stopped or kernel is None:
            return
        transport = self._client.transport
        if transport.is_closing():
            self._kernel_ended(SpliceEnd.CLIENT_GONE)
            return
        try:
            if transport.get_write_buffer_size():  # bytes wait in the transport: these go after them
                nbytes = kernel.read_into(read_buffer().payload)
                if nbytes:
                    self._send_read(transport, nbytes)
            else:
                nbytes = kernel.move(transport)
        except BlockingIOError:
            return
        except ClientWriteFailed:
            self._kernel_ended(SpliceEnd.CLIENT_GONE)
            return
        except OSError:  # the VNC connection broke
            nbytes = 0
        if not nbytes:
            self._kernel_ended(SpliceEnd.VNC_CLOSED)
            return
        self._traffic.to_client += nbytes

    def _kernel_ended(self, outcome: SpliceEnd) -> None:
        assert self._kernel is not None
        self._finish(outcome)
        self._kernel.unwatch()

    def _pause_vnc(self) -> None:
        self._vnc_paused = True
        if self._kernel is not None:
            self._kernel.unwatch()
        elif not self._vnc.is_closing():
            self._vnc.pause_reading()

    def _resume_vnc(self) -> None:
        self._vnc_paused = False
        if self._kernel is not None:
            self._kernel.watch(self._vnc_readable)
        elif not self._vnc.is_closing():
            self._vnc.resume_reading()

    def eof_received(self) -> bool:
        self._finish(SpliceEnd.VNC_CLOSED)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(SpliceEnd.VNC_CLOSED)
        for timer in (self._client_timer, self._vnc_timer):
            if timer is not None:
                timer.cancel()
        self._previous.connection_lost(exc)

    def pause_writing(self) -> None:
        """The VNC server is not reading: stop reading from the browser, start its deadline."""
        if self._stopped:
            return
        if not self._client_paused:
            self._client_paused = True
            self._client.splice_pause_reading()
        if self._vnc_timer is None:
            self._vnc_timer = self._loop.call_later(self._write_timeout, self._vnc_too_slow)

    def resume_writing(self) -> None:
        if self._vnc_timer is not None:
            self._vnc_timer.cancel()
            self._vnc_timer = None
        if self._client_paused and not self._stopped:
            self._client_paused = False
            self._client.splice_resume_reading()

    def _vnc_too_slow(self) -> None:
        self._vnc_timer = None
        self._finish(LimenError(ErrorCode.VNC_CONNECTION_FAILED,
                                f"the VNC server accepted no data for {self._write_timeout:g} s"))

    # -- browser → VNC (called by the WebSocket protocol) -----------------------------------------------

    def to_vnc(self, data: bytes) -> None:
        """One binary message from the browser."""
        if self._stopped:
            return
        if not only_asks_for_updates(data):
            self._traffic.last_input = self._clock()
        if not data:
            return
        if self._vnc.is_closing():
            self._finish(SpliceEnd.VNC_CLOSED)
            return
        self._vnc.write(data)
        self._traffic.to_vnc += len(data)

    def client_full(self) -> None:
        """The browser's transport passed its high-water mark: stop reading VNC, start the deadline."""
        if self._stopped:
            return
        self._pause_vnc()
        if self._client_timer is None:
            self._client_timer = self._loop.call_later(self._write_timeout, self._client_too_slow)

    def client_drained(self) -> None:
        if self._client_timer is not None:
            self._client_timer.cancel()
            self._client_timer = None
        if not self._stopped:
            self._resume_vnc()

    def client_gone(self) -> None:
        self._finish(SpliceEnd.CLIENT_GONE)

    def _client_too_slow(self) -> None:
        self._client_timer = None
        self._finish(LimenError(ErrorCode.SLOW_CLIENT,
                                end_details.slow_client(self._write_timeout)))

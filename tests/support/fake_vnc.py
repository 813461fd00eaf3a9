"""VNC peers for tests, well-behaved and not: real TCP servers on free loopback ports.

* :class:`RfbServer`     an RFB 3.8 server, security None, a small framebuffer; answers every
                         FramebufferUpdateRequest with a Raw FramebufferUpdate (after
                         ``update_interval`` seconds); can send a ServerCutText (``server_cut_text``)
                         and records the ClientCutText it gets (``cut_texts``).
* :class:`SilentServer`  accepts and never sends a byte.
* :class:`GarbageServer` sends something that is not a banner.
* :class:`StreamServer`  sends a banner, then ``send_bytes`` of deterministic data, while hashing all it
                         receives: the far end of the byte-exact transfer test.

Use as ``async with RfbServer() as vnc: vnc.port``; leaving the block closes the listener and every
connection, so no socket survives the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import struct
from types import TracebackType
from typing import Self

BANNER = b"RFB 003.008\n"


def deterministic_chunk(index: int, size: int) -> bytes:
    """``size`` bytes that depend on ``index`` only: cheap to make, not compressible by accident."""
    seed = hashlib.sha256(index.to_bytes(8, "big")).digest()
    return (seed * (size // len(seed) + 1))[:size]


class FakeVncServer:
    """Base: a listener on 127.0.0.1 whose connections are all tracked and closed on exit."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0
        self.connections = 0  # accepted so far
        self.received = bytearray()  # what clients sent (only kept by servers that say so)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self.handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # close() cancels handlers; ending normally keeps asyncio's stream callback from logging
            # the cancellation (Python 3.11 asks the task for its exception, which raises).
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.transport.abort()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class SilentServer(FakeVncServer):
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()  # until the test closes the server


class GarbageServer(FakeVncServer):
    def __init__(self, payload: bytes = b"HTTP/1.1 400 Bad Request\r\n\r\n") -> None:
        super().__init__()
        self.payload = payload

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.payload)
        await writer.drain()
        await asyncio.Event().wait()


class ClosingServer(FakeVncServer):
    """Sends ``prefix`` (default: nothing), then closes the connection."""

    def __init__(self, prefix: bytes = b"") -> None:
        super().__init__()
        self.prefix = prefix

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.prefix:
            writer.write(self.prefix)
            await writer.drain()
        writer.close()


class RfbServer(FakeVncServer):
    """Enough of RFB 3.8 for a real client handshake and framebuffer updates (RFC 6143)."""

    WIDTH = 64
    HEIGHT = 48
    NAME = b"limen fake vnc"
    # 32 bpp, depth 24, little endian, true colour, max 255 each, shifts 16/8/0.
    PIXEL_FORMAT = struct.pack("!BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)

    def __init__(self, *, server_cut_text: bytes | None = None, update_interval: float = 0.0) -> None:
        super().__init__()
        self.server_cut_text = server_cut_text  # sent (Latin-1, as RFB says) after the first update
        self.update_interval = update_interval  # a pause before each update, so a browser does not spin
        self.cut_texts: list[bytes] = []
        self.updates_sent = 0
        self.key_events: list[tuple[bool, int]] = []
        self.pointer_events: list[tuple[int, int, int]] = []
        self.client_version = b""
        # QEMU's LED state pseudo-encoding (-261): bit 2 Caps Lock, bit 1 Num Lock, bit 0 Scroll Lock; sent
        # with the next update whenever it changes, to a client that asked for it. None: not sent.
        self.led_state: int | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(BANNER)
        self.client_version = await reader.readexactly(12)
        writer.write(b"\x01\x01")  # one security type: None
        await reader.readexactly(1)
        writer.write(struct.pack("!I", 0))  # SecurityResult OK
        await reader.readexactly(1)  # ClientInit (shared flag)
        writer.write(struct.pack("!HH", self.WIDTH, self.HEIGHT) + self.PIXEL_FORMAT
                     + struct.pack("!I", len(self.NAME)) + self.NAME)
        await writer.drain()
        frame = 0
        encodings: tuple[int, ...] = ()
        led_sent: int | None = None
        while True:
            kind = (await reader.readexactly(1))[0]
            if kind == 0:  # SetPixelFormat
                await reader.readexactly(19)
            elif kind == 2:  # SetEncodings
                _pad, count = struct.unpack("!BH", await reader.readexactly(3))
                encodings = struct.unpack(f"!{count}i", await reader.readexactly(4 * count))
            elif kind == 3:  # FramebufferUpdateRequest
                await reader.readexactly(9)
                if self.update_interval:
                    await asyncio.sleep(self.update_interval)
                frame += 1
                pixels = bytes([frame % 256, 0x40, 0x80, 0]) * (self.WIDTH * self.HEIGHT)
                writer.write(struct.pack("!BxH", 0, 1)
                             + struct.pack("!HHHHi", 0, 0, self.WIDTH, self.HEIGHT, 0) + pixels)
                led = self.led_state
                if led is not None and led != led_sent and -261 in encodings:
                    writer.write(struct.pack("!BxH", 0, 1) + struct.pack("!HHHHi", 0, 0, 0, 0, -261) + bytes([led]))
                    led_sent = led
                if self.server_cut_text is not None and self.updates_sent == 0:
                    writer.write(struct.pack("!B3xI", 3, len(self.server_cut_text)) + self.server_cut_text)
                await writer.drain()
                self.updates_sent += 1
            elif kind == 4:  # KeyEvent
                down, _pad, key = struct.unpack("!BHI", await reader.readexactly(7))
                self.key_events.append((bool(down), key))
            elif kind == 5:  # PointerEvent
                mask, x, y = struct.unpack("!BHH", await reader.readexactly(5))
                self.pointer_events.append((mask, x, y))
            elif kind == 6:  # ClientCutText
                (length,) = struct.unpack("!3xI", await reader.readexactly(7))
                self.cut_texts.append(await reader.readexactly(length))
            else:
                return  # unknown message: a real server would drop the client too


class StreamServer(FakeVncServer):
    """Banner, then ``send_bytes`` of deterministic data; meanwhile hashes everything it receives.
    ``close_after_sending``: then it closes the connection (a VNC server going away mid-session)."""

    CHUNK = 256 * 1024

    def __init__(self, send_bytes: int, *, close_after_sending: bool = False) -> None:
        super().__init__()
        self.send_bytes = send_bytes
        self.close_after_sending = close_after_sending
        self.sent_digest = ""
        self.received_bytes = 0
        self._received_hash = hashlib.sha256()
        self.receive_done = asyncio.Event()
        self.expect_bytes = 0

    @property
    def received_digest(self) -> str:
        return self._received_hash.hexdigest()

    def expected_send_digest(self) -> str:
        digest = hashlib.sha256(BANNER)
        for index, size in self._chunks():
            digest.update(deterministic_chunk(index, size))
        return digest.hexdigest()

    def _chunks(self) -> list[tuple[int, int]]:
        full, rest = divmod(self.send_bytes, self.CHUNK)
        return [(i, self.CHUNK) for i in range(full)] + ([(full, rest)] if rest else [])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def receive() -> None:
            while data := await reader.read(self.CHUNK):
                self._received_hash.update(data)
                self.received_bytes += len(data)
                if self.expect_bytes and self.received_bytes >= self.expect_bytes:
                    self.receive_done.set()

        receiver = asyncio.create_task(receive())
        try:
            sent = hashlib.sha256(BANNER)
            writer.write(BANNER)
            for index, size in self._chunks():
                chunk = deterministic_chunk(index, size)
                sent.update(chunk)
                writer.write(chunk)
                await writer.drain()
            self.sent_digest = sent.hexdigest()
            if self.close_after_sending:
                writer.close()
            await receiver
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await receiver


class BacklogServer:
    """A listener that never accepts, its accept queue already full: a TCP connect to it hangs.

    Stands in for an address that drops SYNs (a firewall, a host gone) without leaving the machine.
    """

    def __init__(self) -> None:
        self._listener: socket.socket | None = None
        self._fillers: list[socket.socket] = []
        self.port = 0

    async def __aenter__(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        self._listener = listener
        self.port = listener.getsockname()[1]
        for _ in range(3):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", self.port))
            self._fillers.append(filler)
        await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        for filler in self._fillers:
            filler.close()
        self._fillers.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None


def refused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port

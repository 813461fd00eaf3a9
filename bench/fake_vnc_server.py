"""A fake VNC server speaking real RFB 3.8 (security type None), one listening port per mode.

Modes (what happens after ServerInit):

* ``stream``: after the client's first FramebufferUpdateRequest, full-screen Raw FramebufferUpdates
  (1024 × 768 × 32 bpp, 3 MiB each) are written back to back, as fast as the socket drains.
* ``echo-update``: each FramebufferUpdateRequest is answered with one small update (16 × 16 Raw),
  for round-trip timing and for checking that an idle session still answers.
* ``idle``: nothing is ever sent after ServerInit; client messages are read and dropped.
* ``stream-256``, ``stream-64``, ``stream-16``: as ``stream``, but each FramebufferUpdate is one Raw
  rectangle of 256 × 256 (256 KiB), 64 × 64 (16 KiB) or 16 × 16 (1 KiB): the small updates a busy desktop
  sends, where per-message costs (a read, a frame header, a write) weigh more than per-byte ones.

Every client message is parsed (SetPixelFormat, SetEncodings, requests, key, pointer, cut text), so
noVNC can talk to it. Run as ``python -m bench.fake_vnc_server --mode stream --mode echo-update``;
once listening it prints one JSON line ``{"pid": …, "ports": {"stream": …, …}}`` and serves until
SIGTERM or SIGINT. The soft open-files limit is raised to the hard one (one socket per session).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import rfb

RECT_SIDES = {"stream-256": 256, "stream-64": 64, "stream-16": 16}
MODES = ("stream", "echo-update", "idle", *RECT_SIDES)
READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class Screen:
    width: int = 1024
    height: int = 768
    name: bytes = b"limen bench"
    small: int = 16  # side of the echo-update rectangle

    def full_update(self) -> bytes:
        return rfb.raw_update(self.width, self.height, rfb.pattern(self.width * self.height * 4))

    def rect_update(self, side: int) -> bytes:
        return rfb.raw_update(side, side, rfb.pattern(side * side * 4))

    def small_update(self) -> bytes:
        return rfb.raw_update(self.small, self.small, rfb.pattern(self.small * self.small * 4))


class SocketReader:
    """Exact-size reads over a non-blocking socket, through the loop's ``sock_recv``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._loop = loop
        self._sock = sock
        self._buffer = bytearray()

    async def read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = await self._loop.sock_recv(self._sock, READ_SIZE)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


async def handshake(loop: asyncio.AbstractEventLoop, sock: socket.socket, reader: SocketReader, screen: Screen) -> None:
    """Server side of ProtocolVersion, Security (None only), SecurityResult, ClientInit, ServerInit."""
    await loop.sock_sendall(sock, rfb.PROTOCOL_VERSION)
    version = await reader.read_exactly(12)
    if not version.startswith(b"RFB 003.") or not version[8:11].isdigit():
        raise rfb.ProtocolError(f"bad client version {version!r}")
    minor = int(version[8:11])
    if minor >= 7:
        await loop.sock_sendall(sock, bytes([1, rfb.SECURITY_NONE]))
        choice = (await reader.read_exactly(1))[0]
        if choice != rfb.SECURITY_NONE:
            reason = b"only security type None is offered"
            await loop.sock_sendall(sock, struct.pack(">II", 1, len(reason)) + reason)
            raise rfb.ProtocolError(f"client chose security type {choice}")
        if minor >= 8:
            await loop.sock_sendall(sock, rfb.SECURITY_RESULT_OK)
    else:
        await loop.sock_sendall(sock, struct.pack(">I", rfb.SECURITY_NONE))
    await reader.read_exactly(1)  # ClientInit (shared flag); every session shares the one screen
    await loop.sock_sendall(sock, rfb.server_init(screen.width, screen.height, screen.name))


async def read_client_messages(reader: SocketReader, on_request: Callable[[], Awaitable[None]]) -> None:
    """Reads client messages until EOF, calling ``on_request`` for each FramebufferUpdateRequest."""
    while True:
        kind = (await reader.read_exactly(1))[0]
        size = rfb.CLIENT_FIXED_SIZES.get(kind)
        if size is None:
            raise rfb.ProtocolError(f"unknown client message type {kind}")
        rest = await reader.read_exactly(size - 1)
        if kind == rfb.SET_ENCODINGS:
            (count,) = struct.unpack_from(">H", rest, 1)
            await reader.read_exactly(4 * count)
        elif kind == rfb.CLIENT_CUT_TEXT:
            (length,) = struct.unpack_from(">I", rest, 3)
            await reader.read_exactly(length)
        elif kind == rfb.FRAMEBUFFER_UPDATE_REQUEST:
            await on_request()


class FakeVncServer:
    def __init__(self, screen: Screen) -> None:
        self.screen = screen
        self._full = screen.full_update()
        self._small = screen.small_update()
        # Updates of one small rectangle, several to a write so the server is not the bottleneck.
        self._rects = {mode: screen.rect_update(side) * max(1, (256 * 1024) // (side * side * 4 + 16))
                       for mode, side in RECT_SIDES.items()}
        self._tasks: set[asyncio.Task[None]] = set()

    async def listen(self, mode: str, host: str, port: int) -> tuple[socket.socket, asyncio.Task[None]]:
        listener = socket.create_server((host, port), backlog=8192)
        listener.setblocking(False)
        task = asyncio.get_running_loop().create_task(self._accept(listener, mode))
        return listener, task

    async def _accept(self, listener: socket.socket, mode: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listener)
            except OSError:  # EMFILE and the like: back off instead of spinning
                await asyncio.sleep(0.05)
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(self._session(sock, mode))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _session(self, sock: socket.socket, mode: str) -> None:
        loop = asyncio.get_running_loop()
        reader = SocketReader(loop, sock)
        streamer: asyncio.Task[None] | None = None

        async def on_request() -> None:
            nonlocal streamer
            if mode == "echo-update":
                await loop.sock_sendall(sock, self._small)
            elif mode.startswith("stream") and streamer is None:
                streamer = loop.create_task(self._stream(sock, self._rects.get(mode, self._full)))

        try:
            await handshake(loop, sock, reader, self.screen)
            # Requests that come while streaming are read and dropped: the stream never waits for them.
            await read_client_messages(reader, on_request)
        except (EOFError, OSError, rfb.ProtocolError):
            pass
        finally:
            if streamer is not None:
                streamer.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await streamer
            sock.close()

    async def _stream(self, sock: socket.socket, update: bytes) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await loop.sock_sendall(sock, update)


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def install_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


async def main_async(args: argparse.Namespace) -> None:
    server = FakeVncServer(Screen(width=args.width, height=args.height))
    ports: dict[str, int] = {}
    listeners = []
    for mode in args.mode or list(MODES):
        listener, task = await server.listen(mode, args.host, 0)
        listeners.append((listener, task))
        ports[mode] = listener.getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(json.dumps({"pid": os.getpid(), "ports": ports}), flush=True)
    await stop.wait()
    for listener, task in listeners:
        task.cancel()
        listener.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", action="append", choices=MODES, help="a mode to serve (repeatable; default all)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    raise_fd_limit()
    if not args.no_uvloop:
        install_uvloop()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()

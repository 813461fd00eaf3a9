"""A streaming console's VNC → browser bytes moved by the kernel, over real loopback TCP sockets (no server)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import resource
import socket
import termios
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.frames import Opcode

from limen.console import kernel_move
from limen.console.kernel_move import ClientWriteFailed, KernelMove, kernel_can_move
from tests.support.raw_ws import parse_as_browser


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        one = socket.create_connection(server.getsockname())
        other, _ = server.accept()
    return one, other


class ClientTransport(asyncio.Transport):
    """The browser's transport, as far as a move uses it: what it is handed to send after the socket."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))


def receive_all(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    parts = []
    with contextlib.suppress(BlockingIOError):
        while part := sock.recv(1 << 20):
            parts.append(part)
    return b"".join(parts)


def receive_exactly(sock: socket.socket, nbytes: int) -> bytes:
    sock.settimeout(5)
    parts = []
    while nbytes:
        part = sock.recv(nbytes)
        assert part, "the connection closed early"
        parts.append(part)
        nbytes -= len(part)
    return b"".join(parts)


def unread_in_pipe(pipe: kernel_move.SharedPipe) -> int:
    held = bytearray(4)
    fcntl.ioctl(pipe.read_fd, termios.FIONREAD, held)
    return int.from_bytes(held, "little")


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket, socket.socket, socket.socket]]:
    """(VNC server, the proxy's VNC socket, the proxy's browser socket, browser)."""
    vnc_server, vnc_side = tcp_pair()
    client_side, browser = tcp_pair()
    for sock in (vnc_side, client_side):
        sock.setblocking(False)
    yield vnc_server, vnc_side, client_side, browser
    for sock in (vnc_server, vnc_side, client_side, browser):
        sock.close()


async def test_what_the_vnc_server_sent_reaches_the_browser_as_one_frame(sockets: Any) -> None:
    vnc_server, vnc_side, client_side, browser = sockets
    move = KernelMove(vnc_side.dup(), client_side.dup(), asyncio.get_running_loop())
    transport = ClientTransport()
    payload = bytes(i % 253 for i in range(200_000))
    vnc_server.sendall(payload)
    await asyncio.sleep(0.01)
    moved = 0
    with contextlib.suppress(BlockingIOError):
        while moved < len(payload):
            moved += move.move(transport)
    frames = parse_as_browser(receive_all(browser))
    assert b"".join(f.data for f in frames) == payload
    assert all(f.opcode is Opcode.BINARY and f.fin for f in frames)
    assert move.moved == len(payload) and transport.written == []
    with pytest.raises(BlockingIOError):
        move.move(transport)  # nothing more from the VNC server
    vnc_server.close()
    assert move.move(transport) == 0  # its end of the stream
    move.close()


async def test_what_the_browsers_socket_does_not_take_goes_after_it_through_the_transport(sockets: Any) -> None:
    vnc_server, vnc_side, client_side, browser = sockets
    client_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    browser.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    move = KernelMove(vnc_side.dup(), client_side.dup(), asyncio.get_running_loop())
    transport = ClientTransport()
    payload = bytes(i % 251 for i in range(300_000))
    vnc_server.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        vnc_server.sendall(payload)
    await asyncio.sleep(0.01)
    nbytes = move.move(transport)
    assert transport.written, "the browser's small socket took the whole frame"
    assert unread_in_pipe(move._pipe) == 0  # the shared pipe is empty for the next session
    through_transport = b"".join(transport.written)
    through_socket = receive_exactly(browser, 10 + nbytes - len(through_transport))  # a 10-byte header
    (frame,) = parse_as_browser(through_socket + through_transport)
    assert frame.data == payload[:nbytes] and move.moved == nbytes - len(through_transport)
    move.close()


async def test_a_browser_gone_fails_the_move_and_leaves_the_pipe_empty(sockets: Any) -> None:
    vnc_server, vnc_side, client_side, browser = sockets
    move = KernelMove(vnc_side.dup(), client_side.dup(), asyncio.get_running_loop())
    browser.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    browser.close()  # a reset
    vnc_server.sendall(b"x" * 100_000)
    await asyncio.sleep(0.01)
    with pytest.raises(ClientWriteFailed):
        move.move(ClientTransport())
    assert unread_in_pipe(move._pipe) == 0
    move.close()


async def test_the_pipe_is_made_by_the_first_streaming_session_and_closed_with_the_last(sockets: Any) -> None:
    _, vnc_side, client_side, _ = sockets
    loop = asyncio.get_running_loop()
    first = KernelMove(vnc_side.dup(), client_side.dup(), loop)
    second = KernelMove(vnc_side.dup(), client_side.dup(), loop)
    pipe = first._pipe
    assert second._pipe is pipe
    first.close()
    first.close()  # idempotent: released once
    fcntl.fcntl(pipe.read_fd, fcntl.F_GETFD)  # still open for the second
    second.close()
    assert kernel_move._thread_pipe.pipe is None
    with pytest.raises(OSError, match="Bad file descriptor"):
        fcntl.fcntl(pipe.read_fd, fcntl.F_GETFD)


async def test_watching_calls_back_when_the_vnc_server_sends(sockets: Any) -> None:
    vnc_server, vnc_side, client_side, _ = sockets
    move = KernelMove(vnc_side.dup(), client_side.dup(), asyncio.get_running_loop())
    readable = asyncio.Event()
    move.watch(readable.set)
    move.watch(readable.set)  # once only
    vnc_server.sendall(b"update")
    await asyncio.wait_for(readable.wait(), 5)
    buffer = bytearray(16)
    assert move.read_into(memoryview(buffer)) == 6 and buffer[:6] == b"update"
    move.close()


class TransportWith(asyncio.Transport):
    def __init__(self, **extra: Any) -> None:
        super().__init__(extra)


def test_only_plain_sockets_are_moved_by_the_kernel() -> None:
    plain = TransportWith(socket=object())
    assert kernel_can_move(plain, plain)
    assert not kernel_can_move(TransportWith(socket=object(), sslcontext=object()), plain)
    assert not kernel_can_move(plain, TransportWith())  # not a socket


async def test_the_duplicates_take_at_most_their_share_of_the_descriptor_limit(
    sockets: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, vnc_side, client_side, _ = sockets
    soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    monkeypatch.setattr(kernel_move, "DUPLICATES_SHARE", 2.5 / soft_limit)  # room for one session's two
    loop = asyncio.get_running_loop()
    vnc, client = TransportWith(socket=vnc_side), TransportWith(socket=client_side)
    first = KernelMove.take_over(vnc, client, loop)
    with pytest.raises(OSError, match="share of descriptors") as refused:
        KernelMove.take_over(vnc, client, loop)
    assert refused.value.errno == errno.EMFILE
    first.close()
    KernelMove.take_over(vnc, client, loop).close()  # its share is free again

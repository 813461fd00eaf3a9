"""A streaming console's VNC → browser bytes moved by the kernel: ``splice(2)`` through a pipe.

A server's WebSocket frames are not masked, so a binary frame is a 2–10-byte header and then the VNC
server's bytes unchanged. For a session that streams (a read of :data:`KERNEL_MOVE_FROM` bytes or more),
:class:`KernelMove` reads the VNC socket itself: the kernel moves what is there into a pipe, limen writes the
frame's header to the browser's socket (``MSG_MORE``, so it leaves with the payload) and the kernel moves the
payload on from the pipe. The bytes are never copied into the process: bench/RESULTS.md (rounds 14 and 16)
has what it saves.

Why only what streams: the session needs a duplicate of the VNC socket's descriptor (uvloop does not let
anything else wait on a descriptor its transport owns) and one of the browser's (to send with ``MSG_MORE``),
two more descriptors a session; 9,000 idle consoles must not need 36,000. And at most a quarter of the
process's descriptor limit goes to them (:data:`DUPLICATES_SHARE`); past it, a session keeps the copy.

Frames stay whole and in order with everything else the WebSocket protocol writes (pongs, the close, notices):
each call sends a whole frame, or what the socket would not take at once goes to the browser's transport,
which sends it before anything written after it. Nothing is moved by the kernel while that transport still
holds bytes (:meth:`KernelMove.move` reports it and the caller reads the bytes the usual way).

The pipe is shared by the streaming sessions of a thread, as the read buffer is (it is empty whenever a call
returns), made by the first and closed with the last.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import resource
import socket
import threading
from collections.abc import Callable

from limen.console.binary_frame import HEADER_ROOM, write_binary_header

# A read from the VNC server at least this large: the session streams, and the kernel moves its bytes.
KERNEL_MOVE_FROM = 64 * 1024
# The pipe's size: the most one move takes from the VNC socket. Linux allows an unprivileged process 1 MiB;
# root may have more, but 2 and 4 MiB cost twice the CPU a GB, and 256 or 512 KiB more too (RESULTS.md, round 16).
PIPE_SIZE = 1 << 20
# At most this share of the process's descriptor limit goes to the duplicates (two a streaming session), so
# thousands of sessions streaming at once cannot leave none for new connections, files and the database.
DUPLICATES_SHARE = 0.25
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, spelled out: Python 3.11's fcntl module has no name for it
_NONBLOCK = getattr(os, "SPLICE_F_NONBLOCK", 0)
_MOVE = getattr(os, "SPLICE_F_MOVE", 0)


class ClientWriteFailed(Exception):
    """The browser's socket refused the bytes (reset, gone): the session is over."""


class SharedPipe:
    """The pipe every kernel move of a thread goes through (empty between moves)."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            self.size = fcntl.fcntl(self.write_fd, _F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # over /proc/sys/fs/pipe-max-size, or the user's pipe pages: the default size works
            self.size = 64 * 1024

    def drain(self, nbytes: int) -> bytes:
        """Takes ``nbytes`` the pipe holds back into the process."""
        parts = []
        while nbytes:
            part = os.read(self.read_fd, nbytes)
            parts.append(part)
            nbytes -= len(part)
        return b"".join(parts)

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


class _ThreadPipe(threading.local):
    pipe: SharedPipe | None = None
    users = 0


_thread_pipe = _ThreadPipe()


def acquire_pipe() -> SharedPipe:
    """This thread's pipe, made by its first user (a thread with no streaming session holds none)."""
    if _thread_pipe.pipe is None:
        _thread_pipe.pipe = SharedPipe()
    _thread_pipe.users += 1
    return _thread_pipe.pipe


def release_pipe() -> None:
    _thread_pipe.users -= 1
    if not _thread_pipe.users and _thread_pipe.pipe is not None:
        _thread_pipe.pipe.close()
        _thread_pipe.pipe = None


def kernel_can_move(client: asyncio.BaseTransport, vnc: asyncio.BaseTransport) -> bool:
    """Whether the kernel can move bytes between these two transports: both plain sockets (a TLS transport
    encrypts in the process), on a system with ``splice(2)``."""
    if not hasattr(os, "splice"):
        return False
    for transport in (client, vnc):
        if transport.get_extra_info("sslcontext") is not None or transport.get_extra_info("socket") is None:
            return False
    return True


class KernelMove:
    """One session's VNC socket read, and its bytes framed for the browser, by the kernel.

    Made by :meth:`take_over` once the session streams; the caller stops the VNC transport's own reading and
    calls :meth:`move` (or :meth:`read_into`) whenever :meth:`watch`'s callback says the VNC socket has bytes.
    """

    def __init__(self, vnc: socket.socket, client: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self._vnc = vnc
        self._client = client
        self._loop = loop
        self._header = bytearray(HEADER_ROOM)
        self._watching = False
        self._pipe = acquire_pipe()
        self._closed = False
        self.moved = 0  # payload bytes the kernel moved (the rest of the session's went through the process)

    @classmethod
    def take_over(cls, vnc: asyncio.BaseTransport, client: asyncio.BaseTransport,
                  loop: asyncio.AbstractEventLoop) -> KernelMove:
        """Duplicates the two transports' descriptors. Raises OSError when it cannot (out of descriptors, or
        the duplicates would pass their share of the process's descriptor limit)."""
        if 2 * (_thread_pipe.users + 1) > resource.getrlimit(resource.RLIMIT_NOFILE)[0] * DUPLICATES_SHARE:
            raise OSError(errno.EMFILE, "the kernel path's share of descriptors is taken")
        with contextlib.ExitStack() as opened:  # closes the duplicates made so far if one step fails
            vnc_socket, client_socket = (
                opened.enter_context(socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno())))
                for transport in (vnc, client)
            )
            vnc_socket.setblocking(False)
            client_socket.setblocking(False)
            move = cls(vnc_socket, client_socket, loop)  # its pipe may fail too
            opened.pop_all()
            return move

    def watch(self, readable: Callable[[], None]) -> None:
        if not self._watching:
            self._loop.add_reader(self._vnc.fileno(), readable)
            self._watching = True

    def unwatch(self) -> None:
        if self._watching:
            self._loop.remove_reader(self._vnc.fileno())
            self._watching = False

    def close(self) -> None:
        """Stops watching and closes the duplicates (the transports keep their own descriptors). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.unwatch()
        self._vnc.close()
        self._client.close()
        release_pipe()

    def read_into(self, buffer: memoryview) -> int:
        """A plain read from the VNC socket (0: it closed). Raises BlockingIOError when nothing is there."""
        return self._vnc.recv_into(buffer)

    def move(self, client: asyncio.Transport) -> int:
        """Moves what the VNC socket has to the browser as one binary frame; returns its payload's size (0:
        the VNC server closed). ``client`` must hold no unsent bytes; whatever the browser's socket does not
        take at once is written to it. Raises BlockingIOError when the VNC socket has nothing,
        ClientWriteFailed when the browser's socket is broken, OSError when the VNC socket is."""
        pipe = self._pipe
        nbytes = os.splice(self._vnc.fileno(), pipe.write_fd, pipe.size, flags=_NONBLOCK | _MOVE)
        if not nbytes:
            return 0
        start = write_binary_header(self._header, nbytes)
        header = memoryview(self._header)[start:]
        left = nbytes
        try:
            try:
                sent = self._client.send(header, socket.MSG_MORE)
            except BlockingIOError:
                sent = 0
            if sent == len(header):
                while left:
                    left -= os.splice(pipe.read_fd, self._client.fileno(), left, flags=_NONBLOCK | _MOVE)
        except BlockingIOError:
            pass  # the browser's socket is full: the rest goes through its transport
        except OSError as exc:
            pipe.drain(left)
            raise ClientWriteFailed(exc) from exc
        self.moved += nbytes - left
        if sent < len(header):
            client.write(bytes(header[sent:]))
        if left:
            client.write(pipe.drain(left))
        return nbytes


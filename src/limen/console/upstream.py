"""The TCP connection to a VM's VNC server: connect with the right socket options, read its banner.

The address is always the one libvirt reports for the VM (``VncEndpoint``), never one a client names.
Neither function bounds its own time: the caller wraps each in the stage's deadline.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Iterable
from typing import SupportsIndex, cast

from limen.console.rfb import BannerReader, BannerStatus
from limen.errors import ErrorCode, LimenError, NothingListens

# Bytes per read on the VNC side; also the StreamReader's limit, which bounds its buffer to about
# twice this before asyncio stops reading the socket (backpressure toward QEMU).
VNC_READ_SIZE = 256 * 1024

# TCP keepalive: notice a VNC peer that vanished without a FIN within about a minute.
_KEEPALIVE_IDLE = 30
_KEEPALIVE_INTERVAL = 10
_KEEPALIVE_COUNT = 3


def _tune(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        (getattr(socket, "TCP_KEEPIDLE", None), _KEEPALIVE_IDLE),
        (getattr(socket, "TCP_KEEPINTVL", None), _KEEPALIVE_INTERVAL),
        (getattr(socket, "TCP_KEEPCNT", None), _KEEPALIVE_COUNT),
    ):
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


class VncReader(asyncio.StreamReader):
    """A StreamReader that knows how much it holds, so that its transport can be handed over losslessly.

    Used with ``read`` only (all the console does).
    """

    def __init__(self, limit: int) -> None:
        super().__init__(limit=limit)
        self.unread = 0  # bytes fed and not yet read
        self.eof_fed = False

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        self.unread += len(cast(bytes, data))  # the transport feeds bytes
        super().feed_data(data)

    def feed_eof(self) -> None:
        self.eof_fed = True
        super().feed_eof()

    async def read(self, n: int = -1) -> bytes:
        data = await super().read(n)
        self.unread -= len(data)
        return data

    def may_hand_over(self) -> bool:
        """No EOF, no error: once its ``unread`` bytes are read, the transport may get another protocol."""
        return not self.eof_fed and self.exception() is None


async def open_vnc(host: str, port: int) -> tuple[VncReader, asyncio.StreamWriter]:
    """Connects to ``host:port``; refused or unreachable becomes VNC_CONNECTION_FAILED."""
    loop = asyncio.get_running_loop()
    reader = VncReader(VNC_READ_SIZE)
    try:
        transport, protocol = await loop.create_connection(lambda: asyncio.StreamReaderProtocol(reader), host, port)
    except OSError as exc:
        # asyncio's message is "Connect call failed (...)"; the errno says what actually happened.
        reason = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
        if exc.errno == errno.ECONNREFUSED:
            raise NothingListens(f"cannot connect to {host}:{port}: {reason}") from None
        raise LimenError(ErrorCode.VNC_CONNECTION_FAILED, f"cannot connect to {host}:{port}: {reason}") from None
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            _tune(sock)
        except OSError:
            pass  # tuning is an optimisation; a socket that refuses it still works
    return reader, writer


async def read_banner(reader: asyncio.StreamReader, where: str) -> bytes:
    """Reads exactly the 12 banner bytes; garbage or an early close is VNC_HANDSHAKE_FAILED at once."""
    banner = BannerReader()
    while (wanted := banner.wanted()) > 0:
        data = await reader.read(wanted)
        verdict = banner.feed(data) if data else banner.eof()
        if verdict.status is BannerStatus.INVALID:
            raise LimenError(ErrorCode.VNC_HANDSHAKE_FAILED, f"{where}: {verdict.reason}")
    return banner.verdict.data

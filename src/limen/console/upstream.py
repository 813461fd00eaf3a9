"""The TCP connection to a VM's VNC server: connect with the right socket options, read its banner.

The address is always the one libvirt reports for the VM (``VncEndpoint``), never one a client names.
Neither function bounds its own time: the caller wraps each in the stage's deadline.
"""

from __future__ import annotations

import asyncio
import os
import socket

from limen.console.rfb import BannerReader, BannerStatus
from limen.errors import ErrorCode, LimenError

# Bytes per read on the VNC side; also the StreamReader's limit, which bounds its buffer to about
# twice this before asyncio stops reading the socket (backpressure toward QEMU).
READ_SIZE = 256 * 1024

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


async def open_vnc(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connects to ``host:port``; refused or unreachable becomes VNC_CONNECTION_FAILED."""
    try:
        reader, writer = await asyncio.open_connection(host, port, limit=READ_SIZE)
    except OSError as exc:
        # asyncio's message is "Connect call failed (...)"; the errno says what actually happened.
        reason = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
        raise LimenError(ErrorCode.VNC_CONNECTION_FAILED, f"cannot connect to {host}:{port}: {reason}") from None
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

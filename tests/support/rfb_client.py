"""A minimal RFB 3.8 client over a console WebSocket: what noVNC does, in a test.

It reads the byte stream across binary frames (RFB knows nothing of frame boundaries), does the
handshake with security None, asks for a full framebuffer update and returns its header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection


class RfbStream:
    def __init__(self, ws: ClientConnection, already: bytes = b"") -> None:
        self._ws = ws
        self._buffer = bytearray(already)

    async def read(self, count: int) -> bytes:
        while len(self._buffer) < count:
            message = await self._ws.recv()
            if isinstance(message, str):
                raise AssertionError(f"text frame in the RFB stream: {message[:200]}")
            self._buffer += message
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    async def write(self, data: bytes) -> None:
        await self._ws.send(data)


@dataclass(frozen=True)
class ServerInit:
    width: int
    height: int
    bits_per_pixel: int
    name: str


@dataclass(frozen=True)
class UpdateHeader:
    rectangles: int
    first: tuple[int, int, int, int, int]  # x, y, width, height, encoding


async def handshake(stream: RfbStream) -> ServerInit:
    banner = await stream.read(12)
    assert banner.startswith(b"RFB 003.") and banner.endswith(b"\n"), banner
    await stream.write(b"RFB 003.008\n")
    (count,) = await stream.read(1)
    if count == 0:
        (length,) = struct.unpack("!I", await stream.read(4))
        raise AssertionError(f"server refused: {(await stream.read(length)).decode(errors='replace')}")
    types = await stream.read(count)
    assert 1 in types, f"security None not offered: {list(types)}"
    await stream.write(b"\x01")
    (result,) = struct.unpack("!I", await stream.read(4))
    assert result == 0, f"security result {result}"
    await stream.write(b"\x01")  # ClientInit: shared
    width, height = struct.unpack("!HH", await stream.read(4))
    pixel_format = await stream.read(16)
    (name_length,) = struct.unpack("!I", await stream.read(4))
    name = (await stream.read(name_length)).decode(errors="replace")
    return ServerInit(width, height, pixel_format[0], name)


async def request_full_update(stream: RfbStream, init: ServerInit) -> UpdateHeader:
    """SetEncodings [Raw], a non-incremental FramebufferUpdateRequest; returns the update's header."""
    await stream.write(struct.pack("!BxHi", 2, 1, 0))
    await stream.write(struct.pack("!BBHHHH", 3, 0, 0, 0, init.width, init.height))
    while True:
        (kind,) = await stream.read(1)
        if kind == 0:
            _pad, rectangles = struct.unpack("!BH", await stream.read(3))
            first = struct.unpack("!HHHHi", await stream.read(12))
            return UpdateHeader(rectangles, first)
        if kind == 2:  # Bell
            continue
        if kind == 3:  # ServerCutText
            (length,) = struct.unpack("!3xI", await stream.read(7))
            await stream.read(length)
            continue
        raise AssertionError(f"unexpected server message type {kind}")

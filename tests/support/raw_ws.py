"""A raw WebSocket client for tests that must write what a WebSocket library refuses to: hand-made masked
frames (invalid UTF-8, say) and any Host header; and what a browser makes of a server's bytes."""

from __future__ import annotations

import asyncio
import base64
import os
import struct

from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.protocol import State
from websockets.uri import parse_uri

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def masked_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    length = len(payload)
    header = bytes([(0x80 if fin else 0) | opcode])
    if length < 126:
        header += bytes([0x80 | length])
    elif length < 1 << 16:
        header += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", length)
    return header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


def parse_as_browser(data: bytes) -> list[Frame]:
    """The frames a WebSocket client makes of ``data`` from the server."""
    browser = ClientProtocol(parse_uri("ws://limen/console"), state=State.OPEN, max_size=None)
    browser.receive_data(data)
    return [event for event in browser.events_received() if isinstance(event, Frame)]


class RawConsole:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, path: str, headers: dict[str, str], *, host: str | None = None,
                   pipelined: bytes = b"") -> RawConsole:
        """Upgrades ``path`` on 127.0.0.1:``port``; ``host`` is the Host header (default 127.0.0.1:port).
        ``pipelined``: frames written in the same write as the upgrade, before its 101 has come."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
                 *(f"{name}: {value}" for name, value in headers.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + pipelined)
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert response.startswith(b"HTTP/1.1 101"), response
        return cls(reader, writer)

    async def frame(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(length)

    async def until(self, opcode: int) -> bytes:
        while True:
            got, payload = await asyncio.wait_for(self.frame(), 15)
            if got == opcode:
                return payload

    async def close_code(self) -> int:
        payload = await self.until(CLOSE)
        code: int = struct.unpack("!H", payload[:2])[0]
        return code

    def send(self, frame: bytes) -> None:
        self.writer.write(frame)

    def close(self) -> None:
        self.writer.transport.abort()

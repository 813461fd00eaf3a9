"""A WebSocket → TCP pump built straight on asyncio Protocols: the ceiling for a Python console proxy.

Not limen and not for production: no VM checks, no status frames, no deadlines. It answers the
question "what does the proxy hot path cost when nothing but the loop sits between the two sockets?"

How the hot path works:

* VNC → browser: the VNC socket is a ``BufferedProtocol`` reading into one buffer shared by every
  session (reads of up to ``--read-size``), at offset 10; the WebSocket header is written into the
  bytes just before the payload and the frame leaves in one ``transport.write`` of a memoryview:
  no task, no coroutine, no copy unless the socket cannot take it all at once.
* browser → VNC: frames are parsed in place; payloads are unmasked with websockets' C ``apply_mask``.
* backpressure: the browser transport's ``pause_writing``/``resume_writing`` pause and resume reading
  from VNC (and the other way round), so a session holds at most a transport's high-water mark.

``python -m bench.ws_pump --port P --target-port T [--no-uvloop] [--read-size N]``; prints
``{"pid": …, "port": …}`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import resource
import signal
import socket
import sys
from typing import cast

from websockets.utils import apply_mask

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
HEADER_ROOM = 10  # the longest server frame header: 2 bytes + 8-byte length
MAX_REQUEST = 8192


class Shared:
    """The read buffer every session's VNC side reads into (one loop, one reader at a time).

    uvloop's ``transport.write`` keeps a reference to what it could not send at once instead of
    copying it; so when a write leaves bytes queued, the buffer now belongs to that transport and a
    fresh one is taken for the next read (``renew``). ``renewals`` counts how often that happened.
    """

    def __init__(self, read_size: int) -> None:
        self.read_size = read_size
        self.renewals = 0
        self.renew()

    def renew(self) -> None:
        self.buffer = bytearray(HEADER_ROOM + self.read_size)
        self.view = memoryview(self.buffer)
        self.payload = self.view[HEADER_ROOM:]


class VncSide(asyncio.BufferedProtocol):
    def __init__(self, client: ClientSide, shared: Shared) -> None:
        self.client = client
        self.shared = shared
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.shared.payload

    def buffer_updated(self, nbytes: int) -> None:
        shared = self.shared
        # Header into the room just before the payload, then one write of header + payload.
        view = self.shared.view
        if nbytes < 126:
            start = HEADER_ROOM - 2
            view[start] = 0x82
            view[start + 1] = nbytes
        elif nbytes < 1 << 16:
            start = HEADER_ROOM - 4
            view[start : HEADER_ROOM] = b"\x82\x7e" + nbytes.to_bytes(2, "big")
        else:
            start = 0
            view[0:HEADER_ROOM] = b"\x82\x7f" + nbytes.to_bytes(8, "big")
        if self.client.send(view[start : HEADER_ROOM + nbytes]):
            shared.renew()
            shared.renewals += 1

    def pause_writing(self) -> None:
        self.client.pause_reading()

    def resume_writing(self) -> None:
        self.client.resume_reading()

    def eof_received(self) -> bool:
        self.client.close(1000)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close(1000)


class ClientSide(asyncio.Protocol):
    """The browser's socket: the HTTP upgrade, then masked frames in and binary frames out."""

    def __init__(self, target: tuple[str, int], shared: Shared) -> None:
        self.target = target
        self.shared = shared
        self.transport: asyncio.Transport | None = None
        self.vnc: VncSide | None = None
        self.request = bytearray()
        self.upgraded = False
        self.frames = bytearray()  # unparsed bytes of client frames
        self.closed = False
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.request += data
            end = self.request.find(b"\r\n\r\n")
            if end < 0:
                if len(self.request) > MAX_REQUEST:
                    self.abort()
                return
            rest = bytes(self.request[end + 4 :])
            self.upgrade(bytes(self.request[:end]))
            if rest:
                self.frames += rest
            return
        self.frames += data
        self.parse_frames()

    def upgrade(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        key = headers.get("sec-websocket-key")
        if not lines[0].startswith("GET ") or key is None or "websocket" not in headers.get("upgrade", "").lower():
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")  # type: ignore[union-attr]
            self.abort()
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + ACCEPT_GUID).digest()).decode()
        protocols = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
        extra = "Sec-WebSocket-Protocol: binary\r\n" if "binary" in protocols else ""
        response = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n")
        assert self.transport is not None
        self.transport.write(response.encode())
        self.upgraded = True
        self.transport.pause_reading()  # until the VNC side is connected
        asyncio.get_running_loop().create_task(self.connect())

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, vnc = await loop.create_connection(lambda: VncSide(self, self.shared), *self.target)
        except OSError:
            self.close(1011)
            return
        self.vnc = cast(VncSide, vnc)
        if self.closed:
            assert self.vnc.transport is not None
            self.vnc.transport.close()
            return
        assert self.transport is not None
        self.transport.resume_reading()
        self.parse_frames()

    def parse_frames(self) -> None:
        if self.vnc is None or self.vnc.transport is None:
            return
        buffer = self.frames
        while len(buffer) >= 6:
            first, second = buffer[0], buffer[1]
            length = second & 0x7F
            offset = 2
            if length == 126:
                if len(buffer) < 8:
                    return
                length = int.from_bytes(buffer[2:4], "big")
                offset = 4
            elif length == 127:
                if len(buffer) < 14:
                    return
                length = int.from_bytes(buffer[2:10], "big")
                offset = 10
            if not second & 0x80:  # client frames must be masked
                self.close(1002)
                return
            if len(buffer) < offset + 4 + length:
                return
            key = bytes(buffer[offset : offset + 4])
            payload = apply_mask(bytes(buffer[offset + 4 : offset + 4 + length]), key)
            del buffer[: offset + 4 + length]
            opcode = first & 0x0F
            if opcode in (0x0, 0x2):
                self.vnc.transport.write(payload)
            elif opcode == 0x8:
                self.close(1000)
                return
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(bytes([0x8A, len(payload)]) + payload)

    def send(self, frame: memoryview) -> bool:
        """Writes a frame; True when the transport kept part of it queued (so it holds the buffer)."""
        if self.transport is None or self.closed:
            return False
        self.transport.write(frame)
        return self.transport.get_write_buffer_size() > 0

    # backpressure: our transport's buffer is full → stop reading VNC
    def pause_writing(self) -> None:
        if self.vnc is not None and self.vnc.transport is not None:
            self.vnc.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.vnc is not None and self.vnc.transport is not None:
            self.vnc.transport.resume_reading()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self.paused:
            self.paused = False
            self.transport.resume_reading()

    def close(self, code: int) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.write(b"\x88\x02" + code.to_bytes(2, "big"))
            self.transport.close()
        if self.vnc is not None and self.vnc.transport is not None:
            self.vnc.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.vnc is not None and self.vnc.transport is not None:
            self.vnc.transport.close()


async def serve(port: int, target: tuple[str, int], read_size: int) -> None:
    loop = asyncio.get_running_loop()
    shared = Shared(read_size)
    server = await loop.create_server(lambda: ClientSide(target, shared), "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(json.dumps({"pid": os.getpid(), "port": server.sockets[0].getsockname()[1]}), flush=True)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--read-size", type=int, default=1 << 20)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    coroutine = serve(args.port, ("127.0.0.1", args.target_port), args.read_size)
    if args.no_uvloop:
        asyncio.run(coroutine)
    else:
        import uvloop

        uvloop.run(coroutine)


if __name__ == "__main__":
    main()

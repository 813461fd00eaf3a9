"""The load client: opens console sessions the way a browser with noVNC does, and measures them.

A target is ``tcp://HOST:PORT`` (RFB straight to the VNC server: the raw baseline) or
``ws://HOST:PORT/PATH`` (a WebSocket proxy). With ``--status-frames`` (limen) the client first reads
the JSON status frames until "VNC connection established, starting proxy...", as the browser does.
With ``--tickets`` (limen) each session first gets a one-time ticket (``POST …/console-ticket`` with the
bearer token in ``LIMEN_TOKEN``) and opens ``…/console?ticket=``, as the browser does; the ticket's time
is reported on its own and not counted in the set-up.
Then, over either transport: the RFB 3.8 handshake (version, security None, ClientInit, ServerInit).

Commands, each printing one JSON object on its last stdout line:

* ``setup``  sequential sessions: connect → ServerInit (and upgrade → first status frame), p50/p99
* ``tickets`` (limen) the console ticket's ``POST`` alone: back to back, then each after an idle pause
* ``rtt``    one session against ``echo-update``: FramebufferUpdateRequest → whole update, p50/p99
* ``stream`` N parallel sessions against ``stream``: FramebufferUpdate bytes per second over a window,
  and the proxy's CPU seconds per GB in that window (``--proxy-pgid``)
* ``idle``   N idle sessions over W worker processes (``idle-worker``); then every session is asked
  for one small update; the proxy's RSS/PSS before and after gives the memory per session

WebSocket work uses the ``websockets`` library (asyncio client, no compression, no subprotocol, like
current noVNC). The soft open-files limit is raised to the hard one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from bench import procstat, rfb

FINAL_STATUS = "VNC connection established, starting proxy..."
# Raw TCP read sizes: big for streams (fewer loop turns), small for the many idle sessions.
STREAM_READ_SIZE = 1 << 20
READ_SIZE = 64 * 1024
SMALL = 16  # side of the rectangle asked for in round trips and liveness checks


class SessionError(Exception):
    """A session did not reach ServerInit, or broke afterwards; ``kind`` names the failure class."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


AUTH_MODES = ("ticket", "cookie", "bearer")


@dataclass(frozen=True)
class Target:
    url: str
    status_frames: bool = False
    tickets: bool = False  # fetch a one-time console ticket before each WebSocket, as limen's page does
    # How the WebSocket upgrade proves who opens it: "ticket" (?ticket=, as the page does; same as
    # ``tickets``), "cookie" (the browser session cookie LIMEN_COOKIE), "bearer" (API token LIMEN_TOKEN in
    # Authorization); "" sends the bearer token if LIMEN_TOKEN is set (other proxies ignore it).
    auth: str = ""

    @property
    def auth_mode(self) -> str:
        return "ticket" if self.tickets else self.auth

    @property
    def is_raw(self) -> bool:
        return self.url.startswith("tcp://")


# -- transports -------------------------------------------------------------------------------------


class Connection:
    """One session's byte stream to the VNC server, through whatever transport the target uses."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self.statuses: list[dict[str, Any]] = []
        self.first_status_at: float | None = None
        self.opened_at = 0.0

    async def read_chunk(self) -> bytes | memoryview:
        """The next bytes the server sent (a view valid until the next call); EOFError at the end."""
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    async def close(self, *, abort: bool = False) -> None:
        raise NotImplementedError

    async def read_exactly(self, size: int) -> bytes:
        while len(self._pending) < size:
            self._pending += await self.read_chunk()
        data = bytes(self._pending[:size])
        del self._pending[:size]
        return data

    def take_pending(self) -> bytes:
        data = bytes(self._pending)
        self._pending.clear()
        return data


class RawConnection(Connection):
    def __init__(self, sock: socket.socket, read_size: int) -> None:
        super().__init__()
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray(read_size)
        self._view = memoryview(self._buffer)

    @classmethod
    async def open(cls, host: str, port: int, read_size: int = READ_SIZE) -> RawConnection:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await loop.sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        connection = cls(sock, read_size)
        connection.opened_at = time.perf_counter()
        return connection

    async def read_chunk(self) -> memoryview:
        size = await self._loop.sock_recv_into(self._sock, self._buffer)
        if not size:
            raise EOFError
        return self._view[:size]

    async def write(self, data: bytes) -> None:
        await self._loop.sock_sendall(self._sock, data)

    async def close(self, *, abort: bool = False) -> None:
        self._sock.close()


class WsConnection(Connection):
    def __init__(self, ws: ClientConnection) -> None:
        super().__init__()
        self._ws = ws

    @classmethod
    async def open(cls, url: str, *, auth: str = "") -> WsConnection:
        # limen's console needs a user: the bench's limen servers make an admin token and a browser session
        # and export them as LIMEN_TOKEN and LIMEN_COOKIE before the load clients start
        # (bench.systems.start_limen); other systems ignore them. With tickets the URL carries ?ticket= and
        # no header is sent, as from a browser.
        headers: dict[str, str] = {}
        token, cookie = os.environ.get("LIMEN_TOKEN"), os.environ.get("LIMEN_COOKIE")
        if auth in ("", "bearer") and token:
            headers["Authorization"] = f"Bearer {token}"
        elif auth == "cookie" and cookie:
            headers["Cookie"] = f"limen_session={cookie}"
        ws = await connect(
            url,
            additional_headers=headers or None,
            compression=None,
            max_size=None,
            ping_interval=None,
            close_timeout=2,
            open_timeout=None,  # the caller bounds the whole session set-up
            user_agent_header=None,
        )
        connection = cls(ws)
        connection.opened_at = time.perf_counter()
        return connection

    async def read_statuses(self) -> None:
        """Reads limen's JSON frames up to the last status frame; an error frame raises SessionError."""
        while True:
            message = await self._recv()
            if isinstance(message, bytes):
                raise SessionError("binary_before_status", "a binary frame came before the last status frame")
            if self.first_status_at is None:
                self.first_status_at = time.perf_counter()
            frame = json.loads(message)
            self.statuses.append(frame)
            if frame.get("type") == "error":
                raise SessionError(str(frame.get("code")), str(frame.get("details")))
            if frame.get("message") == FINAL_STATUS:
                return

    async def _recv(self) -> str | bytes:
        try:
            return await self._ws.recv()
        except WebSocketException as exc:
            raise EOFError(str(exc)) from None

    async def read_chunk(self) -> bytes:
        message = await self._recv()
        if isinstance(message, str):
            raise SessionError("text_during_proxy", message[:200])
        return message

    async def write(self, data: bytes) -> None:
        try:
            await self._ws.send(data)
        except WebSocketException as exc:
            raise EOFError(str(exc)) from None

    async def close(self, *, abort: bool = False) -> None:
        if abort:
            self._ws.transport.abort()
            return
        with contextlib.suppress(Exception):
            await self._ws.close()

    def detach(self, protocol: asyncio.BaseProtocol) -> asyncio.Transport:
        """Hands the socket to ``protocol``; the websockets connection is not used again.

        Only safe while the server has nothing in flight (before the first update request): bytes the
        websockets connection already read would be lost to the new protocol.
        """
        if self._pending:
            raise SessionError("detach_with_pending", f"{len(self._pending)} bytes not consumed")
        transport = self._ws.transport
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        return transport


class TicketClient:
    """``POST /api/vms/{id}/console-ticket`` with the bench's bearer token, over kept-alive HTTP/1.1
    connections (a browser's fetch reuses its connection too). One pool per process."""

    def __init__(self) -> None:
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def fetch(self, console_url: str) -> tuple[str, float]:
        """The console URL with ``?ticket=``, and how long the ticket took (ms)."""
        parts = urlsplit(console_url)
        path = parts.path.rstrip("/") + "-ticket"
        token = os.environ.get("LIMEN_TOKEN", "")
        request = (f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
                   "Content-Length: 0\r\n\r\n").encode()
        started = time.perf_counter()
        reused = bool(self._idle)
        reader, writer = self._idle.pop() if reused else await asyncio.open_connection(
            parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            writer.write(request)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                if not reused:
                    raise
                # The server closed the kept-alive connection while it sat idle: a browser retries on a
                # new one, and so does this.
                writer.close()
                reader, writer = await asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 80)
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            writer.close()
            raise SessionError("ticket_failed", f"{type(exc).__name__}: {exc}") from None
        if status != 200:
            writer.close()
            raise SessionError("ticket_failed", f"HTTP {status}: {body[:200]!r}")
        self._idle.append((reader, writer))
        ticket = json.loads(body)["ticket"]
        return f"{console_url}?ticket={ticket}", (time.perf_counter() - started) * 1000


TICKETS = TicketClient()


@dataclass
class ServerInit:
    width: int
    height: int
    bits_per_pixel: int
    name: bytes


async def rfb_handshake(connection: Connection) -> ServerInit:
    version = await connection.read_exactly(12)
    if not version.startswith(b"RFB 003."):
        raise SessionError("bad_banner", repr(version))
    await connection.write(rfb.PROTOCOL_VERSION)
    count = (await connection.read_exactly(1))[0]
    if count == 0:
        (length,) = (int.from_bytes(await connection.read_exactly(4), "big"),)
        raise SessionError("security_refused", (await connection.read_exactly(length)).decode(errors="replace"))
    types = await connection.read_exactly(count)
    if rfb.SECURITY_NONE not in types:
        raise SessionError("no_security_none", repr(types))
    await connection.write(bytes([rfb.SECURITY_NONE]))
    if await connection.read_exactly(4) != rfb.SECURITY_RESULT_OK:
        raise SessionError("security_failed")
    await connection.write(rfb.CLIENT_INIT_SHARED)
    width, height, bits_per_pixel, name_length = rfb.parse_server_init_fixed(
        await connection.read_exactly(rfb.SERVER_INIT_FIXED)
    )
    name = await connection.read_exactly(name_length)
    return ServerInit(width, height, bits_per_pixel, name)


@dataclass
class Session:
    connection: Connection
    server_init: ServerInit
    started_at: float  # before the TCP connect
    ready_at: float  # ServerInit received
    ticket_ms: float | None = None  # the console ticket's request, before started_at (not in setup_ms)

    @property
    def setup_ms(self) -> float:
        return (self.ready_at - self.started_at) * 1000

    @property
    def first_status_ms(self) -> float | None:
        first = self.connection.first_status_at
        return None if first is None else (first - self.connection.opened_at) * 1000


async def open_session(target: Target, read_size: int = READ_SIZE) -> Session:
    """(Fetch a ticket,) connect (and upgrade), read the status frames if any, do the RFB handshake."""
    url, ticket_ms = target.url, None
    if target.auth_mode == "ticket":
        url, ticket_ms = await TICKETS.fetch(target.url)
    started = time.perf_counter()
    parts = urlsplit(url)
    connection: Connection
    try:
        if target.is_raw:
            connection = await RawConnection.open(parts.hostname or "127.0.0.1", parts.port or 5900, read_size)
        else:
            connection = await WsConnection.open(url, auth=target.auth_mode)
    except (OSError, WebSocketException) as exc:
        raise SessionError("connect_failed", f"{type(exc).__name__}: {exc}") from None
    try:
        if target.status_frames:
            assert isinstance(connection, WsConnection)
            await connection.read_statuses()
        server_init = await rfb_handshake(connection)
    except EOFError as exc:
        await connection.close(abort=True)
        raise SessionError("closed_during_setup", str(exc)) from None
    except BaseException:
        await connection.close(abort=True)
        raise
    return Session(connection, server_init, started, time.perf_counter(), ticket_ms)


async def ask_small_update(session: Session, parser: rfb.UpdateParser) -> None:
    """One FramebufferUpdateRequest for a small rectangle, then read until a whole update came."""
    connection = session.connection
    await connection.write(rfb.update_request(0, 0, SMALL, SMALL))
    leftover = connection.take_pending()
    if leftover and parser.feed(leftover):
        return
    while not parser.feed(await connection.read_chunk()):
        pass


class Failures:
    """Counts of failures by kind, with the first message of each kind as a sample."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.samples: dict[str, str] = {}

    def add(self, exc: BaseException) -> None:
        kind = exc.kind if isinstance(exc, SessionError) else type(exc).__name__
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.samples.setdefault(kind, str(exc)[:300])

    def as_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "samples": self.samples} if self.counts else {}


def percentiles(samples: list[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(samples)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    return {"p50": round(statistics.median(ordered), 4), "p99": round(at(0.99), 4), "max": round(ordered[-1], 4)}


class WsStreamReader(asyncio.BufferedProtocol):
    """The stream measurement's WebSocket reader: frames parsed in place, payload fed to the RFB parser.

    The websockets connection costs about 0.8 CPU-seconds per GB on this machine's cores (a bytes object
    and a queue hop per frame), close to what the proxies under test cost; on a 2-core machine that
    would make the client the bottleneck. This reader takes over the socket after the RFB handshake:
    reads of up to 1 MiB into one buffer, payload never copied, pings answered. Client frames it
    writes are masked, as RFC 6455 requires.
    """

    def __init__(self, parser: rfb.UpdateParser, counter: StreamCounter) -> None:
        self._parser = parser
        self._counter = counter
        self._buffer = bytearray(STREAM_READ_SIZE)
        self._view = memoryview(self._buffer)
        self._head = bytearray()
        self._need = 2  # header bytes wanted
        self._payload_left = 0
        self._opcode = 0
        self._control = bytearray()  # payload of the current control frame
        self.transport: asyncio.Transport | None = None
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        try:
            self._feed(self._view[:nbytes])
        except (rfb.ProtocolError, SessionError) as exc:
            self._finish(f"{type(exc).__name__}: {exc}")
            assert self.transport is not None
            self.transport.abort()

    def eof_received(self) -> bool:
        self._finish("EOF")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(f"connection lost: {exc}")

    def _finish(self, reason: str) -> None:
        if not self.done.done():
            self._counter.error = reason
            self.done.set_result(None)

    def send_binary(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(masked_frame(0x2, payload))

    def _feed(self, data: memoryview) -> None:
        position, end = 0, len(data)
        while position < end:
            if self._payload_left:
                taken = min(self._payload_left, end - position)
                chunk = data[position : position + taken]
                position += taken
                self._payload_left -= taken
                if self._opcode in (0x0, 0x2):
                    self._counter.bytes += taken
                    self._counter.updates += self._parser.feed(chunk)
                else:
                    self._control += chunk
                if not self._payload_left:
                    self._end_of_frame()
                continue
            taken = min(self._need - len(self._head), end - position)
            self._head += data[position : position + taken]
            position += taken
            if len(self._head) == self._need:
                self._on_header()

    def _on_header(self) -> None:
        head = self._head
        length = head[1] & 0x7F
        wanted = 2 + (2 if length == 126 else 8 if length == 127 else 0)
        if head[1] & 0x80:
            raise SessionError("masked_server_frame")
        if len(head) < wanted:
            self._need = wanted
            return
        if length == 126:
            length = int.from_bytes(head[2:4], "big")
        elif length == 127:
            length = int.from_bytes(head[2:10], "big")
        self._opcode = head[0] & 0x0F
        if self._opcode == 0x1:
            raise SessionError("text_during_proxy")
        if self._opcode in (0x0, 0x2):
            self._counter.frames += 1
        head.clear()
        self._need = 2
        self._payload_left = length
        if not length:
            self._end_of_frame()

    def _end_of_frame(self) -> None:
        if self._opcode == 0x9 and self.transport is not None:  # ping → pong with the same payload
            self.transport.write(masked_frame(0xA, bytes(self._control)))
        elif self._opcode == 0x8:
            self._finish("close frame")
        self._control.clear()


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A final client frame (payloads under 64 KiB only: update requests and pongs)."""
    if len(payload) >= 1 << 16:
        raise ValueError("payload too large for this helper")
    key = os.urandom(4)
    length = bytes([0x80 | len(payload)]) if len(payload) < 126 else b"\xfe" + len(payload).to_bytes(2, "big")
    masked = bytes(byte ^ key[index & 3] for index, byte in enumerate(payload))
    return bytes([0x80 | opcode]) + length + key + masked


# -- measurements -----------------------------------------------------------------------------------


async def measure_setup(target: Target, count: int, timeout: float) -> dict[str, Any]:
    setup: list[float] = []
    first_status: list[float] = []
    tickets: list[float] = []
    failures = Failures()
    for _ in range(count):
        try:
            async with asyncio.timeout(timeout):
                session = await open_session(target)
        except (SessionError, TimeoutError) as exc:
            failures.add(exc)
            continue
        setup.append(session.setup_ms)
        if session.first_status_ms is not None:
            first_status.append(session.first_status_ms)
        if session.ticket_ms is not None:
            tickets.append(session.ticket_ms)
        await session.connection.close()
    return {
        "count": count,
        "ok": len(setup),
        "failures": failures.as_dict(),
        "setup_ms": percentiles(setup),
        "first_status_ms": percentiles(first_status) if first_status else None,
        "ticket_ms": percentiles(tickets) if tickets else None,
    }


async def measure_tickets(target: Target, count: int, idle: float, warmup: int, timeout: float) -> dict[str, Any]:
    """The console ticket's ``POST`` alone, over one kept-alive connection: ``count`` back to back (the
    server's code warm), then ``count`` each after ``idle`` seconds with nothing sent (a click after a
    pause). In the set-up loop a ticket follows a whole console's work, which evicts its code from the
    CPU's caches, so that figure sits between these two."""
    async def series(pause: float) -> list[float]:
        samples = []
        for index in range(warmup + count):
            if pause:
                await asyncio.sleep(pause)
            async with asyncio.timeout(timeout):
                _url, ms = await TICKETS.fetch(target.url)
            if index >= warmup:
                samples.append(ms)
        return samples

    back_to_back = await series(0.0)
    after_idle = await series(idle)
    return {"count": count, "idle_s": idle, "back_to_back_ms": percentiles(back_to_back),
            "after_idle_ms": percentiles(after_idle)}


async def measure_rtt(target: Target, count: int, warmup: int, timeout: float) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        session = await open_session(target)
    parser = rfb.UpdateParser(session.server_init.bits_per_pixel)
    samples: list[float] = []
    try:
        async with asyncio.timeout(timeout + count * 0.05):
            for index in range(warmup + count):
                started = time.perf_counter()
                await ask_small_update(session, parser)
                if index >= warmup:
                    samples.append((time.perf_counter() - started) * 1000)
    finally:
        await session.connection.close()
    return {"count": len(samples), "rtt_ms": percentiles(samples)}


@dataclass
class StreamCounter:
    bytes: int = 0
    updates: int = 0
    frames: int = 0  # WebSocket data frames (0 over raw TCP)
    error: str | None = None


async def _drain_stream(session: Session, counter: StreamCounter) -> None:
    parser = rfb.UpdateParser(session.server_init.bits_per_pixel)
    connection = session.connection
    leftover = connection.take_pending()
    counter.bytes += len(leftover)
    counter.updates += parser.feed(leftover)
    try:
        while True:
            chunk = await connection.read_chunk()
            counter.bytes += len(chunk)
            counter.updates += parser.feed(chunk)
    except (EOFError, OSError, SessionError, rfb.ProtocolError) as exc:
        counter.error = f"{type(exc).__name__}: {exc}"


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure_stream(
    target: Target, streams: int, seconds: float, warmup: float, timeout: float, proxy_pgid: int, server_pid: int,
    ws_library: bool = False,
) -> dict[str, Any]:
    """``ws_library``: read through the websockets connection (a bytes object and a queue hop per frame,
    as a client built on that library does) instead of :class:`WsStreamReader`; the client is then
    slower and the proxy is paused by backpressure more often."""
    async with asyncio.timeout(timeout):
        sessions = await asyncio.gather(*(open_session(target, STREAM_READ_SIZE) for _ in range(streams)))
    counters = [StreamCounter() for _ in sessions]
    tasks: list[asyncio.Future[None]] = []
    for session, counter in zip(sessions, counters, strict=True):
        width, height = session.server_init.width, session.server_init.height
        request = rfb.update_request(0, 0, width, height, incremental=False)
        if isinstance(session.connection, WsConnection) and not ws_library:
            reader = WsStreamReader(rfb.UpdateParser(session.server_init.bits_per_pixel), counter)
            session.connection.detach(reader)
            reader.send_binary(request)
            tasks.append(reader.done)
        else:
            tasks.append(asyncio.create_task(_drain_stream(session, counter)))
            await session.connection.write(request)
    try:
        await asyncio.sleep(warmup)

        def snapshot() -> tuple[float, int, float, float, float]:
            return (
                time.perf_counter(),
                sum(c.bytes for c in counters),
                procstat.cpu_seconds(proxy_pgid) if proxy_pgid else 0.0,
                procstat.cpu_seconds(server_pid) if server_pid else 0.0,
                _client_cpu(),
            )

        t0, b0, proxy0, server0, client0 = snapshot()
        each0 = [c.bytes for c in counters]
        frames0 = sum(c.frames for c in counters)
        await asyncio.sleep(seconds)
        t1, b1, proxy1, server1, client1 = snapshot()
        each = [c.bytes - start for c, start in zip(counters, each0, strict=True)]
        frames = sum(c.frames for c in counters) - frames0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for session in sessions:
            await session.connection.close(abort=True)
    gigabytes = (b1 - b0) / 1e9
    elapsed = t1 - t0

    def per_gb(cpu: float) -> float | None:
        return round(cpu / gigabytes, 4) if gigabytes > 0 else None

    errors = [c.error for c in counters if c.error]
    return {
        "streams": streams,
        "seconds": round(elapsed, 3),
        "bytes": b1 - b0,
        "updates": sum(c.updates for c in counters),
        "mean_frame_kb": round((b1 - b0) / frames / 1024, 1) if frames else None,
        "gb_per_s": round(gigabytes / elapsed, 4),
        "per_stream_gb_per_s": [round(b / 1e9 / elapsed, 3) for b in each],
        "proxy_cpu_s": round(proxy1 - proxy0, 3) if proxy_pgid else None,
        "proxy_cpu_s_per_gb": per_gb(proxy1 - proxy0) if proxy_pgid else None,
        "server_cpu_s_per_gb": per_gb(server1 - server0) if server_pid else None,
        "client_cpu_s_per_gb": per_gb(client1 - client0),
        "errors": errors[:3],
        "streams_failed": len(errors),
    }


# -- idle sessions over worker processes ------------------------------------------------------------


async def _open_many(target: Target, count: int, parallel: int, timeout: float,
                     deadline: float = 0.0) -> tuple[list[Session], Failures]:
    """``count`` sessions, ``parallel`` at a time; with ``deadline`` (seconds), those not open by then are
    given up (counted as ``not_by_deadline``)."""
    sessions: list[Session] = []
    failures = Failures()
    gate = asyncio.Semaphore(parallel)

    async def one() -> None:
        async with gate:
            try:
                async with asyncio.timeout(timeout):
                    sessions.append(await open_session(target))
            except (SessionError, TimeoutError, OSError) as exc:
                failures.add(exc)

    tasks = [asyncio.ensure_future(one()) for _ in range(count)]
    _, pending = await asyncio.wait(tasks, timeout=deadline or None)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if pending:
        failures.counts["not_by_deadline"] = len(pending)
    return sessions, failures


async def _reopen_with_backoff(target: Target, count: int, parallel: int, timeout: float,
                               backoff: tuple[float, ...]) -> dict[str, Any]:
    """``count`` clients reconnecting as the console page does after its session was cut: wait
    ``backoff[0]``, try; on failure wait the next delay; give up after the last. ``parallel`` bounds the
    attempts in flight (the client's own CPU), not the clients waiting."""
    started = time.perf_counter()
    gate = asyncio.Semaphore(parallel)
    failures = Failures()
    opened: list[Session] = []
    admitted_at: list[float] = []
    attempts = 0

    async def client() -> None:
        nonlocal attempts
        for delay in backoff:
            await asyncio.sleep(delay)
            async with gate:
                attempts += 1
                try:
                    async with asyncio.timeout(timeout):
                        session = await open_session(target)
                except (SessionError, TimeoutError, OSError) as exc:
                    failures.add(exc)
                    continue
            opened.append(session)
            admitted_at.append(time.perf_counter() - started)
            return
        failures.add(SessionError("gave_up"))

    await asyncio.gather(*(client() for _ in range(count)))
    for session in opened:
        await session.connection.close(abort=True)
    return {"reconnected": len(opened), "attempts": attempts, "failures": failures.as_dict(),
            "last_admitted_s": round(max(admitted_at), 3) if admitted_at else None}


async def _check_all(sessions: list[Session], timeout: float) -> tuple[int, Failures]:
    failures = Failures()

    async def one(session: Session) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await ask_small_update(session, rfb.UpdateParser(session.server_init.bits_per_pixel))
            return True
        except (SessionError, TimeoutError, EOFError, OSError, rfb.ProtocolError) as exc:
            failures.add(exc)
            return False

    answers = await asyncio.gather(*(one(s) for s in sessions))
    return sum(answers), failures


async def _read_line(reader: asyncio.StreamReader) -> str:
    return (await reader.readline()).decode().strip()


UI_BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)  # console-outcome.js's BACKOFF_SECONDS


async def idle_worker(target: Target, count: int, parallel: int, timeout: float, deadline: float = 0.0) -> None:
    """Holds ``count`` sessions; talks to its parent over stdin/stdout, one JSON line per step."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    def say(payload: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()

    started = time.perf_counter()
    sessions, failures = await _open_many(target, count, parallel, timeout, deadline)
    say({"opened": len(sessions), "failures": failures.as_dict(), "seconds": round(time.perf_counter() - started, 3)})
    try:
        word = await _read_line(stdin)
        if word == "check":
            answered, check_failures = await _check_all(sessions, timeout)
            say({"answered": answered, "failures": check_failures.as_dict()})
            word = await _read_line(stdin)  # "close", or EOF when the parent went away
        if word == "reconnect":  # the server was restarted: every session is cut; reconnect as the page does
            await asyncio.gather(*(s.connection.close(abort=True) for s in sessions), return_exceptions=True)
            count, sessions = len(sessions), []
            say(await _reopen_with_backoff(target, count, parallel, timeout, UI_BACKOFF))
    finally:
        await asyncio.gather(*(s.connection.close(abort=True) for s in sessions), return_exceptions=True)
    say({"closed": len(sessions)})


class WorkerSet:
    """Worker processes of ``idle-worker``, read line by line with a deadline."""

    def __init__(self, target: Target, counts: list[int], parallel: int, timeout: float,
                 deadline: float = 0.0) -> None:
        command = [sys.executable, "-m", "bench.load_client", "idle-worker", "--target", target.url,
                   "--parallel", str(parallel), "--timeout", str(timeout), "--deadline", str(deadline)]
        if target.auth:
            command += ["--auth", target.auth]
        if target.status_frames:
            command.append("--status-frames")
        if target.tickets:
            command.append("--tickets")
        env = {**os.environ, "PYTHONPATH": _repo_root() + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.processes = [
            subprocess.Popen([*command, "--sessions", str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env=env, text=True, bufsize=1)
            for count in counts
        ]

    async def read_all(self, deadline: float) -> list[dict[str, Any]]:
        async def one(process: subprocess.Popen[str]) -> dict[str, Any]:
            assert process.stdout is not None
            line = await asyncio.to_thread(process.stdout.readline)
            return json.loads(line) if line else {"error": "worker ended"}

        async with asyncio.timeout(deadline):
            return await asyncio.gather(*(one(p) for p in self.processes))

    def tell(self, word: str) -> None:
        for process in self.processes:
            assert process.stdin is not None
            with contextlib.suppress(OSError):
                process.stdin.write(word + "\n")
                process.stdin.flush()

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(OSError):
                if process.stdin is not None:
                    process.stdin.close()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def measure_idle(
    target: Target, sessions: int, workers: int, parallel: int, timeout: float, proxy_pgid: int, warmup: int
) -> dict[str, Any]:
    if warmup:
        opened, _ = await _open_many(target, warmup, min(parallel, warmup), timeout)
        await asyncio.gather(*(s.connection.close() for s in opened))
        await asyncio.sleep(0.5)
    before = procstat.memory(proxy_pgid) if proxy_pgid else None
    workers = max(1, min(workers, sessions))
    counts = [sessions // workers + (1 if index < sessions % workers else 0) for index in range(workers)]
    worker_set = WorkerSet(target, counts, parallel, timeout)
    result: dict[str, Any] = {"sessions": sessions, "workers": workers}
    try:
        started = time.perf_counter()
        # Opening is bounded: every session has ``timeout`` and at most ``parallel`` wait at once.
        opened = await worker_set.read_all(timeout * (max(counts) / parallel + 2) + 30)
        result["open_seconds"] = round(time.perf_counter() - started, 2)
        result["opened"] = sum(o.get("opened", 0) for o in opened)
        result["open_failures"] = _merge([o.get("failures", {}) for o in opened])
        await asyncio.sleep(1.0)  # let the proxy settle (buffers, lazy allocations) before measuring
        after = procstat.memory(proxy_pgid) if proxy_pgid else None
        worker_set.tell("check")
        checked = await worker_set.read_all(timeout + 30)
        result["answered"] = sum(c.get("answered", 0) for c in checked)
        result["check_failures"] = _merge([c.get("failures", {}) for c in checked])
        if before is not None and after is not None and result["opened"]:
            held = result["opened"]
            result["proxy_processes"] = after.processes
            result["rss_before_mb"] = round(before.rss / 2**20, 1)
            result["rss_after_mb"] = round(after.rss / 2**20, 1)
            result["pss_after_mb"] = round(after.pss / 2**20, 1)
            result["rss_per_session_kb"] = round((after.rss - before.rss) / held / 1024, 1)
            result["pss_per_session_kb"] = round((after.pss - before.pss) / held / 1024, 1)
        worker_set.tell("close")
        await worker_set.read_all(60)
    finally:
        worker_set.stop()
    result["held"] = min(result.get("opened", 0), result.get("answered", 0))
    return result


def _merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Merges the workers' ``Failures.as_dict()`` reports."""
    counts: dict[str, int] = {}
    samples: dict[str, str] = {}
    for report in reports:
        for kind, count in report.get("counts", {}).items():
            counts[kind] = counts.get(kind, 0) + count
        for kind, sample in report.get("samples", {}).items():
            samples.setdefault(kind, sample)
    return {"counts": counts, "samples": samples} if counts else {}


# -- command line -----------------------------------------------------------------------------------


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _run(coroutine: Awaitable[Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)  # type: ignore[arg-type]
    return uvloop.run(coroutine)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name)
        sub.add_argument("--target", required=True, help="tcp://HOST:PORT or ws://HOST:PORT/PATH")
        sub.add_argument("--status-frames", action="store_true", help="read limen's status frames first")
        sub.add_argument("--tickets", action="store_true",
                         help="POST …/console-ticket (bearer LIMEN_TOKEN) before each WebSocket, open it with ?ticket=")
        sub.add_argument("--auth", choices=AUTH_MODES, default="",
                         help="how the upgrade proves its user (ticket = --tickets; cookie: LIMEN_COOKIE; bearer)")
        sub.add_argument("--timeout", type=float, default=10.0, help="bound on one session's set-up, seconds")
        return sub

    add("setup").add_argument("--count", type=int, default=200)
    tickets = add("tickets")
    tickets.add_argument("--count", type=int, default=200)
    tickets.add_argument("--idle", type=float, default=0.02, help="seconds between the second series' POSTs")
    tickets.add_argument("--warmup", type=int, default=20)
    rtt = add("rtt")
    rtt.add_argument("--count", type=int, default=2000)
    rtt.add_argument("--warmup", type=int, default=50)
    stream = add("stream")
    stream.add_argument("--streams", type=int, default=1)
    stream.add_argument("--seconds", type=float, default=5.0)
    stream.add_argument("--warmup", type=float, default=0.5)
    stream.add_argument("--proxy-pgid", type=int, default=0)
    stream.add_argument("--server-pid", type=int, default=0)
    stream.add_argument("--ws-library", action="store_true", help="read through the websockets library")
    idle = add("idle")
    idle.add_argument("--sessions", type=int, required=True)
    idle.add_argument("--workers", type=int, default=1)
    idle.add_argument("--parallel", type=int, default=32, help="set-ups in flight per worker")
    idle.add_argument("--proxy-pgid", type=int, default=0)
    idle.add_argument("--warmup", type=int, default=20)
    worker = add("idle-worker")
    worker.add_argument("--sessions", type=int, required=True)
    worker.add_argument("--parallel", type=int, default=32)
    worker.add_argument("--deadline", type=float, default=0.0, help="give up opening after this many seconds")
    args = parser.parse_args(argv)

    raise_fd_limit()
    target = Target(args.target, args.status_frames, args.tickets, args.auth)
    run: Callable[[], Awaitable[Any]]
    if args.command == "setup":
        run = lambda: measure_setup(target, args.count, args.timeout)  # noqa: E731
    elif args.command == "tickets":
        run = lambda: measure_tickets(target, args.count, args.idle, args.warmup, args.timeout)  # noqa: E731
    elif args.command == "rtt":
        run = lambda: measure_rtt(target, args.count, args.warmup, args.timeout)  # noqa: E731
    elif args.command == "stream":
        run = lambda: measure_stream(  # noqa: E731
            target, args.streams, args.seconds, args.warmup, args.timeout, args.proxy_pgid, args.server_pid,
            args.ws_library,
        )
    elif args.command == "idle":
        run = lambda: measure_idle(  # noqa: E731
            target, args.sessions, args.workers, args.parallel, args.timeout, args.proxy_pgid, args.warmup
        )
    else:
        _run(idle_worker(target, args.sessions, args.parallel, args.timeout, args.deadline))
        return
    result = _run(run())
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

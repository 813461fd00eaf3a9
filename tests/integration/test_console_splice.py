"""The proxy stage's fast path under limen's own uvicorn protocol, and the fallback under another one.

Each test runs the app under uvicorn with a real VNC peer over TCP and checks that the expected path
carried the bytes (byte-exact, counted), and that backpressure bounds what the server holds when either
peer stops reading.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import websockets

from limen.console import splice as splice_module
from limen.console import ws_protocol
from limen.console.binary_frame import HEADER_ROOM
from limen.console.kernel_move import KernelMove
from limen.console.splice import SPLICE_READ_SIZE, Splice
from limen.console.ws_protocol import BoundedCloseWebSocketProtocol
from limen.settings import Settings
from tests.support.certificates import make_certificate
from tests.support.console import (
    ConsoleServer,
    ConsoleTranscript,
    FakeDomain,
    Records,
    client,
    driver_uri,
    read_frames,
    ws_protocols,
)
from tests.support.fake_vnc import BANNER, StreamServer, deterministic_chunk

# The database is read only at admission, the ticket path every console test takes on both databases;
# what is tested here is the proxy stage after it. runs_quiet: tens of megabytes pass through one event loop
# (the console server's, the fake VNC server's and the browser's) with 1-second write deadlines, which the load
# of 3 workers made it miss (a CI run of 2026-12-05: "the VNC server accepted no data for 1 s").
pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("no_leaks"), pytest.mark.same_on_any_database,
              pytest.mark.runs_quiet]

DOWN = 24 * 2**20
UP = 8 * 2**20


@pytest.fixture
def splices(monkeypatch: pytest.MonkeyPatch) -> list[Splice]:
    """Every splice the WebSocket protocol makes, in order."""
    made: list[Splice] = []
    original = BoundedCloseWebSocketProtocol.splice

    def spy(self: BoundedCloseWebSocketProtocol, *args: Any, **kwargs: Any) -> Splice:
        splice = original(self, *args, **kwargs)
        made.append(splice)
        return splice

    monkeypatch.setattr(ws_protocol.BoundedCloseWebSocketProtocol, "splice", spy)
    return made


@contextlib.asynccontextmanager
async def console(settings: Settings, *, ws: str | None = None,
                  tls: tuple[Path, Path] | None = None) -> AsyncIterator[ConsoleServer]:
    server = ConsoleServer(settings)
    if ws is not None:
        server.server.config.ws = ws  # another WebSocket implementation: no limen.splice extension
    if tls is not None:
        server.server.config.ssl_certfile, server.server.config.ssl_keyfile = map(str, tls)
    await server.start()
    try:
        yield server
        await server.wait_idle()
    finally:
        await server.stop()


async def transfer(server: ConsoleServer, vnc: StreamServer, *, trust: ssl.SSLContext | None = None) -> None:
    """DOWN bytes from VNC and UP bytes to it at once; both byte-exact. ``trust``: over wss://, trusting it."""
    url = server.url("vm")
    async with client(url.replace("ws://", "wss://") if trust else url, ssl=trust) as browser:
        t = ConsoleTranscript()
        await read_frames(browser, t, time.monotonic(), until_binary=1)
        assert t.binary == [BANNER]
        received, sent = hashlib.sha256(BANNER), hashlib.sha256()

        async def upload() -> None:
            for index in range(UP // 2**16):
                chunk = deterministic_chunk(index, 2**16)
                sent.update(chunk)
                await browser.send(chunk)

        async def download() -> None:
            count = 0
            while count < DOWN:
                message = await browser.recv()
                assert isinstance(message, bytes)
                received.update(message)
                count += len(message)

        await asyncio.gather(upload(), download())
        await asyncio.wait_for(vnc.receive_done.wait(), 30)
    assert received.hexdigest() == vnc.sent_digest
    assert vnc.received_digest == sent.hexdigest()


async def ended(console_log: Records) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while not console_log.events("console_end"):
        assert time.monotonic() < deadline, "the session did not end"
        await asyncio.sleep(0.02)
    (end,) = console_log.events("console_end")
    return end


async def spliced_transfer(tmp_path: Path, make_settings: Callable[..., Settings], splices: list[Splice],
                           console_log: Records) -> dict[str, Any]:
    """DOWN and UP bytes through limen's own protocol, byte-exact and counted; the session's end line."""
    async with StreamServer(send_bytes=DOWN) as vnc:
        vnc.expect_bytes = UP
        settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("vm", vnc.port)]))
        async with console(settings) as server:
            await transfer(server, vnc)
    assert len(splices) == 1
    end = await ended(console_log)
    assert end["bytes_to_client"] == len(BANNER) + DOWN and end["bytes_to_vnc"] == UP
    return end


async def test_limen_protocol_carries_the_proxy_stage_in_a_splice(
    tmp_path: Path, make_settings: Callable[..., Settings], splices: list[Splice], console_log: Records
) -> None:
    end = await spliced_transfer(tmp_path, make_settings, splices, console_log)
    # The session streams: the kernel moved most of what the VNC server sent (the rest went through limen
    # while the browser's socket was full).
    assert end["bytes_to_client_by_kernel"] > DOWN // 4


def out_of_descriptors(*args: object) -> KernelMove:
    raise OSError(errno.EMFILE, "Too many open files")


@pytest.mark.parametrize("why", ["tls", "out of descriptors"])
async def test_without_the_kernel_moving_bytes_the_splice_copies_them(
    tmp_path: Path, make_settings: Callable[..., Settings], splices: list[Splice], console_log: Records,
    monkeypatch: pytest.MonkeyPatch, why: str,
) -> None:
    if why == "tls":  # a TLS transport encrypts in the process: kernel_can_move says no
        monkeypatch.setattr(splice_module, "kernel_can_move", lambda client, vnc: False)
    else:
        monkeypatch.setattr(KernelMove, "take_over", out_of_descriptors)
    end = await spliced_transfer(tmp_path, make_settings, splices, console_log)
    assert end["bytes_to_client_by_kernel"] == 0


async def test_over_tls_served_by_limen_the_bytes_are_encrypted_in_the_process(
    tmp_path: Path, make_settings: Callable[..., Settings], splices: list[Splice], console_log: Records
) -> None:
    cert, key = await asyncio.to_thread(make_certificate, tmp_path)
    async with StreamServer(send_bytes=DOWN) as vnc:
        vnc.expect_bytes = UP
        settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("vm", vnc.port)]))
        async with console(settings, tls=(cert, key)) as server:
            await transfer(server, vnc, trust=ssl.create_default_context(cafile=str(cert)))
    assert len(splices) == 1
    end = await ended(console_log)
    assert end["bytes_to_client"] == len(BANNER) + DOWN and end["bytes_to_vnc"] == UP
    assert end["bytes_to_client_by_kernel"] == 0


async def test_a_vnc_server_closing_mid_stream_ends_the_session_after_its_last_byte(
    tmp_path: Path, make_settings: Callable[..., Settings], splices: list[Splice], console_log: Records
) -> None:
    async with StreamServer(send_bytes=DOWN, close_after_sending=True) as vnc:
        settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("vm", vnc.port)]))
        async with console(settings) as server, client(server.url("vm")) as browser:
            received = hashlib.sha256()
            count = 0
            with contextlib.suppress(websockets.ConnectionClosed):
                while True:
                    message = await browser.recv()
                    if isinstance(message, bytes):
                        received.update(message)
                        count += len(message)
    assert count == len(BANNER) + DOWN and received.hexdigest() == vnc.sent_digest
    end = await ended(console_log)
    assert end["stage"] == "proxy" and end["bytes_to_client"] == len(BANNER) + DOWN
    assert end["bytes_to_client_by_kernel"] > 0


async def test_a_browser_reset_mid_stream_ends_the_session_and_frees_its_descriptors(
    tmp_path: Path, make_settings: Callable[..., Settings], splices: list[Splice], console_log: Records
) -> None:
    """The ``no_leaks`` fixture checks the descriptors: the kernel path's duplicates and pipe are closed."""
    async with StreamServer(send_bytes=512 * 2**20) as vnc:
        settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("vm", vnc.port)]))
        async with console(settings) as server:
            browser = raw_upgrade(server.port, server.auth_headers)
            browser.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            received = 0
            while received < 16 * 2**20:  # the session streams, through the kernel by now
                received += len(await asyncio.to_thread(browser.recv, 1 << 20))
            protocol, = ws_protocols(server)
            assert protocol.transport.get_write_buffer_limits() == (0, 0)  # told of every unsent byte
            browser.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            browser.close()  # a reset, mid-stream
            end = await ended(console_log)
    assert end["stage"] == "proxy" and end["bytes_to_client_by_kernel"] > 0
    assert end["reason"] == "client_closed"


async def test_other_servers_get_the_task_pump(
    tmp_path: Path, make_settings: Callable[..., Settings], splices: list[Splice], console_log: Records
) -> None:
    async with StreamServer(send_bytes=DOWN) as vnc:
        vnc.expect_bytes = UP
        settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("vm", vnc.port)]))
        async with console(settings, ws="websockets-sansio") as server:
            await transfer(server, vnc)
    assert splices == []
    end = await ended(console_log)
    assert end["bytes_to_client"] == len(BANNER) + DOWN and end["bytes_to_vnc"] == UP


def raw_upgrade(port: int, headers: dict[str, str]) -> socket.socket:
    """A WebSocket client that upgrades, then never reads (tiny receive buffer)."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /api/vms/vm/console HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n".encode()
    )
    return sock


async def test_a_browser_that_stops_reading_holds_at_most_a_high_water_mark_and_a_read(
    tmp_path: Path, make_settings: Callable[..., Settings], splices: list[Splice], console_log: Records
) -> None:
    async with StreamServer(send_bytes=512 * 2**20) as vnc:
        settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("vm", vnc.port)]),
                                 console_write_timeout=2.0)
        async with console(settings) as server:
            sock = raw_upgrade(server.port, server.auth_headers)
            try:
                deadline = time.monotonic() + 10
                while not splices:
                    assert time.monotonic() < deadline, "the proxy stage did not start"
                    await asyncio.sleep(0.02)
                largest = 0
                while not splices[0].ended.done():
                    for protocol in ws_protocols(server):
                        largest = max(largest, protocol.transport.get_write_buffer_size())
                    await asyncio.sleep(0.01)
                high = ws_protocols(server)[0].transport.get_write_buffer_limits()[1] if ws_protocols(server) else 0
                end = await ended(console_log)
            finally:
                sock.close()
    assert end["reason"] == "SLOW_CLIENT" and end["stage"] == "proxy"
    assert largest <= max(high, 64 * 1024) + SPLICE_READ_SIZE + HEADER_ROOM
    assert end["bytes_to_client"] < 32 * 2**20  # socket buffers and one read, not the 512 MB on offer


class BannerThenDeaf:
    """A VNC server that sends its banner and never reads again (tiny receive buffer)."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> BannerThenDeaf:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self._writers.append(writer)
            writer.write(BANNER)

        self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._writers:
            writer.transport.abort()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


async def test_a_vnc_server_that_stops_reading_stops_the_browser_and_fails_in_time(
    tmp_path: Path, make_settings: Callable[..., Settings], splices: list[Splice], console_log: Records
) -> None:
    async with BannerThenDeaf() as vnc:
        settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("vm", vnc.port)]),
                                 console_write_timeout=1.0)
        async with console(settings) as server, client(server.url("vm"), write_limit=2**16) as browser:
            t = ConsoleTranscript()
            await read_frames(browser, t, time.monotonic(), until_binary=1)
            chunk = b"k" * 2**16

            async def flood() -> None:
                with contextlib.suppress(Exception):
                    while True:
                        await browser.send(chunk)

            flooding = asyncio.create_task(flood())
            try:
                end = await ended(console_log)
            finally:
                flooding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flooding
    assert len(splices) == 1
    assert end["reason"] == "VNC_CONNECTION_FAILED" and end["stage"] == "proxy"
    assert end["bytes_to_vnc"] < 32 * 2**20  # paused reading the browser instead of queueing its input

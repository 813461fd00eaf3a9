"""Frames a client writes in the same write as its WebSocket upgrade, before the 101 has come, are taken as if
they had come after it, on every path the upgrade hands over (a ticket, an API token, the serial console):
uvicorn hands the WebSocket protocol only the upgrade's head, and those frames were lost.

limen's own uvicorn protocols in-process, a fake VNC server, and a raw client that writes the upgrade and its
first frames in one write (a WebSocket library waits for the 101).
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from limen.settings import Settings
from tests.support.console import ConsoleServer, FakeDomain, Records, driver_uri
from tests.support.fake_vnc import BANNER, StreamServer
from tests.support.raw_ws import BINARY, CLOSE, PING, PONG, RawConsole, masked_frame

# Real sockets and a server (the upgrade's handover is in uvicorn's protocols); the audit row is the same on any
# database.
pytestmark = [pytest.mark.integration, pytest.mark.same_on_any_database]

VM = "pipelined-vm"
WAYS_IN = ["ticket", "token", "serial"]  # every kind of WebSocket the HTTP protocol hands over


@pytest.fixture
async def vnc() -> AsyncIterator[StreamServer]:
    async with StreamServer(send_bytes=0) as server:
        yield server


@pytest.fixture
async def server(tmp_path: Path, make_settings: Callable[..., Settings],
                 vnc: StreamServer) -> AsyncIterator[ConsoleServer]:
    running = ConsoleServer(make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain(VM, vnc.port)])))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def opened_with(server: ConsoleServer, way_in: str, pipelined: bytes) -> RawConsole:
    """The upgrade for ``way_in``, with ``pipelined`` in the same write."""
    if way_in == "ticket":
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", headers=server.auth_headers) as api:
            ticket = (await api.post(f"/api/vms/{VM}/console-ticket")).json()["ticket"]
        return await RawConsole.open(server.port, f"/api/vms/{VM}/console?ticket={ticket}", {}, pipelined=pipelined)
    path = f"/api/vms/{VM}/serial" if way_in == "serial" else f"/api/vms/{VM}/console"
    return await RawConsole.open(server.port, path, server.auth_headers, pipelined=pipelined)


def close_frame(code: int) -> bytes:
    return masked_frame(CLOSE, struct.pack("!H", code))


@pytest.mark.parametrize("way_in", WAYS_IN)
async def test_a_ping_and_a_close_written_with_the_upgrade_are_answered(server: ConsoleServer, way_in: str) -> None:
    console = await opened_with(server, way_in, masked_frame(PING, b"early") + close_frame(1000))
    try:
        assert await console.until(PONG) == b"early"
        assert await console.close_code() == 1000  # the reply to the client's close echoes its code
    finally:
        console.close()
    await server.wait_idle()


@pytest.mark.parametrize("way_in", ["ticket", "token"])
async def test_a_message_written_with_the_upgrade_reaches_the_vnc_server_and_the_audit(
    server: ConsoleServer, vnc: StreamServer, way_in: str,
) -> None:
    message = b"\x00" * 20  # an RFB client's first message would be its version; any bytes do here
    vnc.expect_bytes = len(message)
    console = await opened_with(server, way_in, masked_frame(BINARY, message))
    try:
        assert await console.until(BINARY) == BANNER  # the proxy stage runs
        await asyncio.wait_for(vnc.receive_done.wait(), 10)
        assert vnc.received_digest == hashlib.sha256(message).hexdigest()
        console.send(close_frame(1000))
        assert await console.close_code() == 1000
    finally:
        console.close()
    await server.wait_idle()
    (row,) = await server.access.audit.console_sessions()
    assert (row.end_code, row.bytes_from_client) == ("OK", len(message))


async def test_a_broken_frame_written_with_the_upgrade_is_a_client_protocol_error(
    server: ConsoleServer, console_log: Records,
) -> None:
    unmasked = bytes([0x80 | BINARY, 5]) + b"hello"  # RFC 6455 5.3: a client's frames are masked
    console = await opened_with(server, "token", unmasked)
    try:
        assert await console.close_code() == 1002
    finally:
        console.close()
    await server.wait_idle()
    (ended,) = console_log.events("console_end")
    assert ended["reason"] == "CLIENT_PROTOCOL_ERROR"

"""The console's fault matrix, each case end to end: uvicorn, the app, libvirt's test driver, real TCP peers.

Each case asserts the exact frames, the error code, the close code and reason, that the verdict came
within its stage timeout (+1 s), and (through ``running_console``) that no session, connection or task
is left. Stage timeouts are short here; the defaults are checked in the unit tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from limen.console.ws_protocol import CLOSE_GRACE
from limen.errors import ErrorCode
from limen.settings import Settings
from tests.support.console import (
    ConsoleServer,
    ConsoleTranscript,
    FakeDomain,
    Records,
    client,
    driver_uri,
    read_console,
    read_frames,
    read_until_status,
    running_console,
)
from tests.support.fake_vnc import (
    BacklogServer,
    ClosingServer,
    GarbageServer,
    RfbServer,
    SilentServer,
    StreamServer,
    refused_port,
)
from tests.support.hanging_libvirt import HangingLibvirt
from tests.support.raw_ws import BINARY, CLOSE, RawConsole, masked_frame

FAST = {
    "console_check_vm_timeout": 1.0,
    "console_start_vm_timeout": 2.0,
    "console_get_port_timeout": 1.0,
    "console_connect_timeout": 1.0,
    "console_banner_timeout": 1.0,
    "console_write_timeout": 1.0,
    "libvirt_timeout": 5.0,
}
CHECKING = "Connected, checking VM status..."
GETTING_PORT = "Getting VNC port..."
ESTABLISHED = "VNC connection established, starting proxy..."
SLACK = 1.0



def connecting(port: int) -> str:
    return f"Connecting to VNC server on port {port}..."


@pytest.fixture
def fast_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return make_settings(**{**FAST, **overrides})

    return make


@contextlib.asynccontextmanager
async def console_for(
    tmp_path: Path, settings_of: Callable[..., Settings], domains: list[FakeDomain], **overrides: Any
) -> AsyncIterator[ConsoleServer]:
    settings = settings_of(libvirt_uri=driver_uri(tmp_path, domains), **overrides)
    async with running_console(settings) as server:
        yield server


@contextlib.asynccontextmanager
async def with_peer(
    tmp_path: Path, settings_of: Callable[..., Settings], peer: Any, **overrides: Any
) -> AsyncIterator[tuple[Any, ConsoleServer]]:
    """A fake VNC peer, and a console whose one VM, "vm", has its VNC graphics on the peer's port."""
    async with peer as vnc, console_for(tmp_path, settings_of, [FakeDomain("vm", vnc.port)], **overrides) as server:
        yield vnc, server


def assert_error(t: ConsoleTranscript, code: ErrorCode, stage: str) -> dict[str, Any]:
    (error,) = t.errors
    assert list(error) == ["type", "error", "code", "details", "message", "stage"]
    assert error["code"] == code.name and error["stage"] == stage
    assert error["error"] == code.title and error["message"] == code.user_message
    assert t.texts[-1] is error  # nothing after the error frame
    assert t.binary == []
    assert (t.close_code, t.close_reason) == (code.close_code, code.name)
    return error


def assert_within(t: ConsoleTranscript, seconds: float) -> None:
    assert t.closed_after is not None and t.closed_after <= seconds + SLACK, t.closed_after


pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_leaks")]


# -- before any VNC server: the VM -------------------------------------------------------------------


async def test_vm_not_found(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    async with console_for(tmp_path, fast_settings, [FakeDomain("here", None)]) as server:
        t = await read_console(server.url("not-there"))
    assert t.statuses == [CHECKING]
    error = assert_error(t, ErrorCode.VM_NOT_FOUND, "check_vm")
    assert "not-there" in error["details"]
    assert_within(t, FAST["console_check_vm_timeout"])


async def test_invalid_vm_id(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    async with console_for(tmp_path, fast_settings, []) as server:
        t = await read_console(server.url("bad%20name%22%5C"))
    assert t.statuses == [CHECKING]
    assert_error(t, ErrorCode.INVALID_VM_ID, "check_vm")


async def test_stopped_vm_with_auto_start_off(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    domains = [FakeDomain("off", 5999, running=False)]
    async with console_for(tmp_path, fast_settings, domains, console_auto_start=False) as server:
        t = await read_console(server.url("off"))
    assert t.statuses == [CHECKING]
    assert_error(t, ErrorCode.VM_NOT_RUNNING, "check_vm")
    assert_within(t, FAST["console_check_vm_timeout"])


async def test_stopped_vm_with_auto_start_gets_five_statuses(
    tmp_path: Path, fast_settings: Callable[..., Settings]
) -> None:
    async with RfbServer() as vnc:
        domain = FakeDomain("off", vnc.port, running=False)
        async with console_for(tmp_path, fast_settings, [domain]) as server:
            t = ConsoleTranscript()
            async with client(server.url(domain.uuid)) as ws:
                await read_frames(ws, t, time.monotonic(), until_binary=1)
            assert (await server.hypervisor.get_vm(domain.uuid)).is_active
    assert t.statuses == [CHECKING, "Starting VM...", GETTING_PORT, connecting(vnc.port), ESTABLISHED]
    assert [frame["stage"] for frame in t.texts] == ["check_vm", "start_vm", "get_port", "connect", "proxy"]
    assert t.binary == [b"RFB 003.008\n"]


async def test_vm_without_vnc_graphics(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    async with console_for(tmp_path, fast_settings, [FakeDomain("headless", None)]) as server:
        t = await read_console(server.url("headless"))
    assert t.statuses == [CHECKING]
    assert_error(t, ErrorCode.VNC_NOT_CONFIGURED, "check_vm")


async def test_port_never_assigned(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    async with console_for(tmp_path, fast_settings, [FakeDomain("auto", "auto")]) as server:
        t = await read_console(server.url("auto"))
    assert t.statuses == [CHECKING, GETTING_PORT]
    error = assert_error(t, ErrorCode.VNC_PORT_ERROR, "get_port")
    assert error["message"] == "VNC port not available yet. Please wait a moment and try again."
    assert t.closed_after is not None and t.closed_after >= FAST["console_get_port_timeout"]
    assert_within(t, FAST["console_get_port_timeout"])


async def test_libvirt_call_that_hangs(fast_settings: Callable[..., Settings], libvirt_hangs: HangingLibvirt) -> None:
    # libvirt's own timeout is longer than the stage's: the stage deadline is what must end it.
    settings = fast_settings(libvirt_uri=libvirt_hangs.uri, libvirt_timeout=10.0)
    async with running_console(settings) as server:
        libvirt_hangs.armed = True
        t = await read_console(server.url("any-vm"))
        assert t.statuses == [CHECKING]
        error = assert_error(t, ErrorCode.HYPERVISOR_UNAVAILABLE, "check_vm")
        assert "libvirt did not answer within 1 s" in error["details"]
        assert_within(t, FAST["console_check_vm_timeout"])
        libvirt_hangs.close()  # ends the hung call, so its thread and socket go before the leak checks


# -- the VNC server ---------------------------------------------------------------------------------------


async def test_port_refused(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    port = refused_port()
    async with console_for(tmp_path, fast_settings, [FakeDomain("vm", port)]) as server:
        t = await read_console(server.url("vm"))
    assert t.statuses == [CHECKING, GETTING_PORT, connecting(port)]
    error = assert_error(t, ErrorCode.VNC_CONNECTION_FAILED, "connect")
    assert f"127.0.0.1:{port}" in error["details"] and "refused" in error["details"].lower()
    assert_within(t, FAST["console_connect_timeout"])


async def test_connect_that_hangs(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    async with with_peer(tmp_path, fast_settings, BacklogServer()) as (vnc, server):
        t = await read_console(server.url("vm"))
    assert t.statuses == [CHECKING, GETTING_PORT, connecting(vnc.port)]
    error = assert_error(t, ErrorCode.VNC_CONNECTION_FAILED, "connect")
    assert "within 1 s" in error["details"]
    assert_within(t, FAST["console_connect_timeout"])


async def test_server_that_stays_silent(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    async with with_peer(tmp_path, fast_settings, SilentServer()) as (vnc, server):
        t = await read_console(server.url("vm"))
    assert t.statuses == [CHECKING, GETTING_PORT, connecting(vnc.port)]
    error = assert_error(t, ErrorCode.VNC_HANDSHAKE_FAILED, "read_banner")
    assert error["details"] == f"no RFB banner from 127.0.0.1:{vnc.port} within 1 s"
    assert t.closed_after is not None and t.closed_after >= FAST["console_banner_timeout"]
    assert_within(t, FAST["console_banner_timeout"])


@pytest.mark.runs_quiet  # closed within 0.5 s
async def test_server_that_sends_garbage(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    async with with_peer(tmp_path, fast_settings, GarbageServer(b'HTTP/1.1 400 "Bad"\\\n\xff\xfe')) as (vnc, server):
        t = await read_console(server.url("vm"))
    assert t.statuses == [CHECKING, GETTING_PORT, connecting(vnc.port)]
    error = assert_error(t, ErrorCode.VNC_HANDSHAKE_FAILED, "read_banner")
    assert "expected an RFB banner" in error["details"]
    assert t.closed_after is not None and t.closed_after < 0.5  # on the first wrong byte, not the timeout


async def test_server_that_closes_at_once(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    async with with_peer(tmp_path, fast_settings, ClosingServer(b"RFB 00")) as (_, server):
        t = await read_console(server.url("vm"))
    error = assert_error(t, ErrorCode.VNC_HANDSHAKE_FAILED, "read_banner")
    assert "closed the connection after b'RFB 00'" in error["details"]


# -- the proxy stage ----------------------------------------------------------------------------------------


async def open_proxy(server: ConsoleServer, vm: str, *, query: str = "") -> tuple[Any, ConsoleTranscript]:
    ws = await client(server.url(vm, query=query))
    t = ConsoleTranscript()
    await read_frames(ws, t, time.monotonic(), until_binary=1)
    assert t.statuses[-1] == ESTABLISHED
    return ws, t


async def test_vm_destroyed_mid_session(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    async with RfbServer() as vnc:
        domain = FakeDomain("vm", vnc.port)
        async with console_for(tmp_path, fast_settings, [domain]) as server:
            ws, t = await open_proxy(server, "vm")
            destroyed = time.monotonic()
            await server.hypervisor.stop_vm(domain.uuid, force=True)
            await read_frames(ws, t, time.monotonic())
            verdict = time.monotonic() - destroyed
    assert (t.close_code, t.close_reason) == (4102, "VM_STOPPED")
    assert t.errors == []  # no text frame after the proxy stage without ?notices=1
    assert verdict < 1.0


async def test_vm_destroyed_mid_session_with_notices(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    async with RfbServer() as vnc:
        domain = FakeDomain("vm", vnc.port)
        async with console_for(tmp_path, fast_settings, [domain]) as server:
            ws, t = await open_proxy(server, "vm", query="notices=1")
            await server.hypervisor.stop_vm(domain.uuid, force=True)
            await read_frames(ws, t, time.monotonic())
    (error,) = t.errors
    assert (error["code"], error["stage"]) == ("VM_STOPPED", "proxy")
    assert (t.close_code, t.close_reason) == (4102, "VM_STOPPED")


async def test_vnc_server_closing_while_the_vm_runs(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    async with with_peer(tmp_path, fast_settings, RfbServer()) as (vnc, server):
        ws, t = await open_proxy(server, "vm")
        await vnc.close()
        await read_frames(ws, t, time.monotonic())
    assert (t.close_code, t.close_reason) == (4202, "VNC_CONNECTION_FAILED")


async def test_server_shutdown_mid_session(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    async with RfbServer() as vnc:
        settings = fast_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("vm", vnc.port)]))
        server = await ConsoleServer(settings).start()
        try:
            ws, t = await open_proxy(server, "vm")
            asked = time.monotonic()
            stopping = asyncio.create_task(server.stop())
            await read_frames(ws, t, time.monotonic())
            await stopping
        finally:
            await server.stop()
    assert (t.close_code, t.close_reason) == (4402, "SERVER_SHUTDOWN")
    assert time.monotonic() - asked < 3
    assert len(server.sessions) == 0


async def test_server_shutdown_waits_for_the_clients_close_reply(
    tmp_path: Path, fast_settings: Callable[..., Settings]
) -> None:
    """At shutdown limen sends its close frame, then keeps the connection until the client answers it (RFC 6455
    7.1.1) or CLOSE_GRACE passes. Closing TCP at once made a browser still sending VNC input get a reset, and
    Chromium, its write failing, dropped the socket as 1006 without reading the close frame before it: the page
    said CONNECTION_LOST instead of SERVER_SHUTDOWN and the reconnect was for the wrong reason."""
    async with RfbServer() as vnc:
        settings = fast_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("vm", vnc.port)]))
        server = await ConsoleServer(settings).start()
        try:
            console = await RawConsole.open(server.port, "/api/vms/vm/console", server.auth_headers)
            try:
                await console.until(BINARY)  # the VNC server's banner: the session is in its proxy stage
                stopping = asyncio.create_task(server.stop())
                close = await console.until(CLOSE)
                assert close == struct.pack("!H", 4402) + b"SERVER_SHUTDOWN"
                with pytest.raises(TimeoutError):  # the connection stays while the client has not answered
                    await asyncio.wait_for(console.reader.read(1), 0.5)
                assert not stopping.done()
                console.send(masked_frame(CLOSE, close[:2]))
                assert await asyncio.wait_for(console.reader.read(1), 2) == b""  # then it ends, cleanly
                await asyncio.wait_for(stopping, 5)
            finally:
                console.close()
        finally:
            await server.stop()


async def test_server_shutdown_during_the_handshake(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    async with SilentServer() as vnc:
        settings = fast_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("vm", vnc.port)]),
                                 console_banner_timeout=10.0)
        server = await ConsoleServer(settings).start()
        try:
            async with client(server.url("vm")) as ws:
                t = ConsoleTranscript()
                started = time.monotonic()
                await read_until_status(ws, t, connecting(vnc.port), started)
                stopping = asyncio.create_task(server.stop())
                await read_frames(ws, t, started)
                await stopping
        finally:
            await server.stop()
    error = assert_error(t, ErrorCode.SERVER_SHUTDOWN, "read_banner")
    assert error["details"] == "limen is shutting down"


async def test_idle_timeout_warns_then_closes(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    idle = {"console_idle_timeout": 1.0, "console_idle_warning": 0.5}
    async with with_peer(tmp_path, fast_settings, RfbServer(), **idle) as (_, server):
        ws, t = await open_proxy(server, "vm", query="notices=1")
        start = time.monotonic()
        await read_frames(ws, t, start)
        idle_for = time.monotonic() - start
        quiet_ws, quiet = await open_proxy(server, "vm")
        await read_frames(quiet_ws, quiet, time.monotonic())
    notices = [frame for frame in t.texts if frame["type"] == "notice"]
    assert [n["code"] for n in notices] == ["IDLE_WARNING"]
    assert (t.errors[0]["code"], t.close_code, t.close_reason) == ("IDLE_TIMEOUT", 4401, "IDLE_TIMEOUT")
    assert 0.8 <= idle_for <= 2.0
    assert quiet.texts[-1]["message"] == ESTABLISHED  # no notice, no error frame without ?notices=1
    assert (quiet.close_code, quiet.close_reason) == (4401, "IDLE_TIMEOUT")


async def test_input_keeps_an_idle_session_open(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    idle = {"console_idle_timeout": 1.0, "console_idle_warning": 0.0}
    async with with_peer(tmp_path, fast_settings, RfbServer(), **idle) as (_, server):
        ws, _ = await open_proxy(server, "vm")
        await ws.send(b"RFB 003.008\n")
        for _ in range(6):
            await asyncio.sleep(0.3)
            await ws.send(b"")  # an empty binary message is input too
        assert ws.close_code is None
        await ws.close()


# -- the client ------------------------------------------------------------------------------------------------


async def test_subprotocol_binary_is_echoed_when_offered_and_the_alias_works(
    tmp_path: Path, fast_settings: Callable[..., Settings]
) -> None:
    async with RfbServer() as vnc:
        domain = FakeDomain("vm", vnc.port)
        async with console_for(tmp_path, fast_settings, [domain]) as server:
            async with client(server.url(domain.uuid, alias=True), subprotocols=["binary"]) as ws:
                assert ws.subprotocol == "binary"
                t = ConsoleTranscript()
                await read_frames(ws, t, time.monotonic(), until_binary=1)
            async with client(server.url("vm")) as ws:
                assert ws.subprotocol is None
                t2 = ConsoleTranscript()
                await read_frames(ws, t2, time.monotonic(), until_binary=1)
    assert t.statuses == t2.statuses[:-2] + t2.statuses[-2:] and t.statuses[-1] == ESTABLISHED


async def test_first_status_frame_comes_at_once(
    fast_settings: Callable[..., Settings], libvirt_hangs: HangingLibvirt
) -> None:
    async with running_console(fast_settings(libvirt_uri=libvirt_hangs.uri, libvirt_timeout=10.0)) as server:
        libvirt_hangs.armed = True  # libvirt never answers: the first frame cannot depend on it
        gaps = []
        for _ in range(5):
            t = ConsoleTranscript()
            async with client(server.url("vm")) as ws:
                await read_frames(ws, t, time.monotonic(), until_frames=1)
            assert t.texts[0] == {"type": "status", "message": CHECKING, "stage": "check_vm", "elapsed_ms": 0}
            assert t.first_frame_after is not None
            gaps.append(t.first_frame_after)
        await server.wait_idle()
        libvirt_hangs.close()
    assert min(gaps) < 0.002, gaps
    assert max(gaps) < 0.05, gaps


def raw_upgrade(port: int, path: str, headers: dict[str, str]) -> socket.socket:
    """A WebSocket client that upgrades, then never reads again (tiny receive buffer)."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n".encode()
    )
    return sock


@pytest.mark.runs_quiet  # freed within 1 s
async def test_client_that_never_reads_is_dropped_and_everything_freed(
    tmp_path: Path, fast_settings: Callable[..., Settings], console_log: Records
) -> None:
    async with with_peer(tmp_path, fast_settings, StreamServer(send_bytes=256 * 2**20)) as (_, server):
        sock = raw_upgrade(server.port, "/api/vms/vm/console", server.auth_headers)
        try:
            started = time.monotonic()
            while not console_log.events("console_end"):
                assert time.monotonic() - started < 10, "the slow client was not dropped"
                await asyncio.sleep(0.05)
            dropped_after = time.monotonic() - started
            await server.wait_idle(timeout=5)  # the session, its connection and its tasks are gone
            freed_after = time.monotonic() - started
        finally:
            sock.close()
        (end,) = console_log.events("console_end")
        assert end["reason"] == "SLOW_CLIENT" and end["stage"] == "proxy"
        assert end["bytes_to_client"] < 64 * 2**20  # backpressure: the server did not buffer it all
    assert dropped_after <= FAST["console_write_timeout"] * 2 + SLACK
    # dropped, then the close frame's own deadline, then the transport's CLOSE_GRACE
    assert freed_after <= FAST["console_write_timeout"] * 2 + CLOSE_GRACE + SLACK


STAGE_WAITS = {
    "get_port": GETTING_PORT,
    "connect": "Connecting to VNC server",
    "read_banner": "Connecting to VNC server",
    "proxy": ESTABLISHED,
}
SLOW_STAGES = {"console_check_vm_timeout": 10.0, "console_get_port_timeout": 10.0,
               "console_connect_timeout": 10.0, "console_banner_timeout": 10.0}


async def leave_during(server: ConsoleServer, status: str, console_log: Records, *, settle: float = 0.0) -> None:
    """Opens the console, leaves once ``status`` arrived; the session must end at once, freeing all."""
    async with client(server.url("vm")) as ws:
        await read_until_status(ws, ConsoleTranscript(), status)
        await asyncio.sleep(settle)
    left = time.monotonic()
    await server.wait_idle(timeout=2)
    assert time.monotonic() - left < 1.0
    (end,) = console_log.events("console_end")
    assert end["reason"] == "client_closed"


@pytest.mark.parametrize("stage", list(STAGE_WAITS))
async def test_client_that_leaves_during_a_stage(
    stage: str, tmp_path: Path, fast_settings: Callable[..., Settings], console_log: Records
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        port: int | str = "auto"  # get_port: libvirt never assigns one
        if stage != "get_port":
            peer: Any = {"connect": BacklogServer, "read_banner": SilentServer, "proxy": RfbServer}[stage]()
            port = (await stack.enter_async_context(peer)).port
        settings = fast_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("vm", port)]), **SLOW_STAGES)
        server = await stack.enter_async_context(running_console(settings))
        # read_banner: the TCP connect is done a moment after its status; then the banner is awaited.
        await leave_during(server, STAGE_WAITS[stage], console_log, settle=0.1 if stage == "read_banner" else 0)
    (end,) = console_log.events("console_end")
    assert end["stage"] == stage


async def test_client_that_leaves_while_libvirt_hangs(
    fast_settings: Callable[..., Settings], console_log: Records, libvirt_hangs: HangingLibvirt
) -> None:
    settings = fast_settings(libvirt_uri=libvirt_hangs.uri, libvirt_timeout=20.0, **SLOW_STAGES)
    async with running_console(settings) as server:
        libvirt_hangs.armed = True
        await leave_during(server, CHECKING, console_log)
        libvirt_hangs.close()
    (end,) = console_log.events("console_end")
    assert end["stage"] == "check_vm"


# -- logs and keepalive -----------------------------------------------------------------------------------


async def test_one_log_line_for_the_stages_one_per_error_and_one_per_end(
    tmp_path: Path, fast_settings: Callable[..., Settings], console_log: Records
) -> None:
    async with with_peer(tmp_path, fast_settings, RfbServer()) as (vnc, server):
        ws, _ = await open_proxy(server, "vm")
        await ws.send(b"RFB 003.008\n")
        await ws.close()
        await server.wait_idle()
        t = await read_console(server.url("missing"))
    assert t.close_reason == "VM_NOT_FOUND"
    stages = console_log.events("console_stages")
    (first,) = [line for line in stages if line["vm"] == "vm"]
    assert [stage for stage, _ in first["stages"]] == ["check_vm", "get_port", "connect", "read_banner", "proxy"]
    assert [elapsed for _, elapsed in first["stages"]] == sorted(elapsed for _, elapsed in first["stages"])
    assert first["stage"] == "proxy" and first["port"] == vnc.port
    (missing,) = [line for line in stages if line["vm"] == "missing"]  # ended in its first stage: logged too
    assert missing["stages"][0][0] == "check_vm" and len(missing["stages"]) == 1
    ends = console_log.events("console_end")
    assert [(end["vm"], end["reason"]) for end in ends] == [("vm", "client_closed"), ("missing", "VM_NOT_FOUND")]
    happy = ends[0]
    assert happy["vm_name"] == "vm" and happy["vm_uuid"] and happy["port"] == vnc.port
    assert happy["bytes_to_client"] >= 12 and happy["bytes_to_vnc"] == 12
    assert isinstance(happy["elapsed_ms"], int) and happy["session"]
    (error,) = console_log.events("console_error")
    assert (error["code"], error["stage"], error["vm"]) == ("VM_NOT_FOUND", "check_vm", "missing")
    assert all("vnc" in record.getMessage().lower() for record in console_log.records)
    assert len({line["session"] for line in stages + ends}) == 2


def read_ws_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One unmasked server frame from a raw socket: (opcode, payload)."""

    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    first, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(exactly(2), "big")
    elif length == 127:
        length = int.from_bytes(exactly(8), "big")
    return first & 0x0F, exactly(length)


def send_pong(sock: socket.socket, payload: bytes) -> None:
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + mask + masked)


def read_upgrade_response(sock: socket.socket) -> bytes:
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    return response


async def test_pings_keep_an_idle_session_alive(tmp_path: Path, fast_settings: Callable[..., Settings]) -> None:
    async with with_peer(tmp_path, fast_settings, SilentServer(), console_ping_interval=0.2,
                         console_banner_timeout=5.0) as (_, server):
        sock = raw_upgrade(server.port, "/api/vms/vm/console", server.auth_headers)
        try:
            sock.settimeout(3)
            assert (await asyncio.to_thread(read_upgrade_response, sock)).startswith(b"HTTP/1.1 101")
            pings = 0
            started = time.monotonic()
            while pings < 4:
                opcode, payload = await asyncio.to_thread(read_ws_frame, sock)
                if opcode == 0x9:
                    pings += 1
                    send_pong(sock, payload)
            assert time.monotonic() - started >= 0.6  # one ping per interval
            assert len(server.sessions) == 1  # answered pings: still there
        finally:
            sock.close()


async def test_a_client_that_does_not_answer_pings_is_dropped(
    tmp_path: Path, fast_settings: Callable[..., Settings], console_log: Records
) -> None:
    async with with_peer(tmp_path, fast_settings, SilentServer(), console_ping_interval=0.2,
                         console_banner_timeout=5.0) as (_, server):
        sock = raw_upgrade(server.port, "/api/vms/vm/console", server.auth_headers)
        try:
            started = time.monotonic()
            while not server.sessions:  # the upgrade is only sent: idle before the server has even accepted it
                assert time.monotonic() - started < 1.0, "no session for the upgrade"
                await asyncio.sleep(0.01)
            await server.wait_idle(timeout=3)
            assert time.monotonic() - started < 1.5  # interval + ping timeout, and the session is gone
        finally:
            sock.close()
    (end,) = console_log.events("console_end")
    assert end["reason"] == "client_closed"

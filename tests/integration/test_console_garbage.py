"""A console that has ended leaves no cyclic garbage: reference counting frees all of it at once.

Every ended console used to leave ≈ 80 objects that only CPython's cyclic collector could free: its session
and its admission pointing at each other, the session's VM watch holding the session's callback, and the HTTP
protocol the WebSocket was upgraded from, held by its own parser and flow control, and the WebSocket protocol,
whose scope offers its own methods (the splice). They reached the oldest
generation of a busy server, where a full collection found them, and a full collection that finds garbage
spaces the next one less (limen.collector): after 900 consoles, the admission storm that followed walked its
heap twice more (bench/RESULTS.md, round 26).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from limen.console.ws_protocol import BoundedCloseWebSocketProtocol
from limen.settings import Settings
from tests.support.console import (
    ConsoleTranscript,
    FakeDomain,
    Records,
    client,
    driver_uri,
    read_console,
    read_frames,
    running_console,
    ws_protocols,
)
from tests.support.fake_vnc import BANNER, RfbServer, refused_port
from tests.support.garbage import cyclic_garbage

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_leaks"), pytest.mark.same_on_any_database]


async def test_consoles_that_ended_every_way_leave_no_cyclic_garbage(
    tmp_path: Path, make_settings: Callable[..., Settings], console_log: Records,
) -> None:
    async with RfbServer() as vnc:
        settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("vm", vnc.port)]))
        async with running_console(settings) as server:
            with cyclic_garbage() as found:
                connections: list[weakref.ref[BoundedCloseWebSocketProtocol]] = []
                for ending in ("close", "abort", "close", "abort"):
                    async with client(server.url("vm")) as browser:
                        transcript = ConsoleTranscript()
                        await read_frames(browser, transcript, time.monotonic(), until_binary=1)
                        assert transcript.binary == [BANNER]  # in the proxy stage, spliced
                        connections += [weakref.ref(protocol) for protocol in ws_protocols(server)]
                        if ending == "abort":
                            browser.transport.abort()  # the browser's tab killed
                # Ended, and their audit rows written: nothing of theirs is still in use.
                await server.wait_idle()
                rows = await server.access.audit.console_sessions()
                assert [row.end_code for row in rows] == ["OK"] * 4
    assert [end["reason"] for end in console_log.events("console_end")] == ["client_closed"] * 4
    assert found == Counter()
    # Not kept alive either (a timer bounding a close that already happened held each for 2 s): freed.
    assert len(connections) == 4 and [connection() for connection in connections] == [None] * 4


async def test_consoles_that_failed_leave_no_cyclic_garbage(
    tmp_path: Path, make_settings: Callable[..., Settings], console_log: Records,
) -> None:
    """An ended session keeps its error (for the close and the audit row), and a raised error its frames."""
    port = refused_port()
    settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("refused", port)]))
    async with running_console(settings) as server:
        with cyclic_garbage() as found:
            missing = await read_console(server.url("no-such-vm"))
            refused = await read_console(server.url("refused"))
            await server.wait_idle()
    assert [missing.close_reason, refused.close_reason] == ["VM_NOT_FOUND", "VNC_CONNECTION_FAILED"]
    assert [end["reason"] for end in console_log.events("console_end")] == ["VM_NOT_FOUND", "VNC_CONNECTION_FAILED"]
    assert found == Counter()


async def test_http_connections_that_ended_leave_no_cyclic_garbage(
    tmp_path: Path, make_settings: Callable[..., Settings],
) -> None:
    """A browser's or a script's HTTP connection: its protocol, flow control and request cycle, once it is lost."""
    settings = make_settings(libvirt_uri=driver_uri(tmp_path, []))
    async with running_console(settings) as server:
        with cyclic_garbage() as found:
            for request in (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # kept alive, then dropped
                            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(request)
                assert (await reader.readline()).startswith(b"HTTP/1.1 200")
                writer.close()
                await writer.wait_closed()
            await server.wait_idle()
    assert found == Counter()

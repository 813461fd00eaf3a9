"""Browsers that vanish together: their sessions learn of it a few a loop iteration, and each still ends.

A close storm (bench/RESULTS.md, round 25) delivers thousands of lost sockets in one poll of the event loop;
told all at once, their sessions' tasks and teardowns held every live console's traffic for hundreds of
milliseconds. The WebSocket protocol now tells a session its browser is gone through a paced lane
(limen.console.pacing); until then the connection refuses to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from uvicorn.protocols.utils import ClientDisconnected

from limen.console import ws_protocol
from limen.console.pacing import CONNECTIONS_LOST_PER_TURN
from limen.console.splice import Splice
from limen.console.ws_protocol import BoundedCloseWebSocketProtocol
from limen.settings import Settings
from tests.support.console import (
    ConsoleServer,
    ConsoleTranscript,
    FakeDomain,
    Records,
    client,
    driver_uri,
    read_frames,
    running_console,
    ws_protocols,
)
from tests.support.fake_vnc import BANNER, RfbServer
from tests.support.loop_turns import LoopTurns

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_leaks"), pytest.mark.same_on_any_database]

BROWSERS = 40


@contextlib.contextmanager
def recorded_in_turns(monkeypatch: pytest.MonkeyPatch, owner: type, name: str, turns: LoopTurns) -> Iterator[list[int]]:
    """The loop iteration of every call of ``owner.name``."""
    calls: list[int] = []
    original = getattr(owner, name)

    def spy(self: Any, *args: Any) -> Any:
        calls.append(turns.count)
        return original(self, *args)

    monkeypatch.setattr(owner, name, spy)
    yield calls


async def open_in_proxy_stage(stack: contextlib.AsyncExitStack, server: ConsoleServer, count: int) -> list[Any]:
    """``count`` consoles of the VM, each past its banner (the proxy stage, spliced)."""
    browsers = [await stack.enter_async_context(client(server.url("vm"))) for _ in range(count)]
    for browser in browsers:
        transcript = ConsoleTranscript()
        await read_frames(browser, transcript, time.monotonic(), until_binary=1)
        assert transcript.binary == [BANNER]
    return browsers


async def ends(console_log: Records, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while len(console_log.events("console_end")) < count:
        assert time.monotonic() < deadline, f"{len(console_log.events('console_end'))} of {count} sessions ended"
        await asyncio.sleep(0.02)
    return console_log.events("console_end")


async def test_browsers_that_vanish_together_reach_their_sessions_a_few_each_loop_iteration(
    tmp_path: Path, make_settings: Callable[..., Settings], console_log: Records, monkeypatch: pytest.MonkeyPatch,
) -> None:
    turns = LoopTurns()
    async with RfbServer() as vnc:
        settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("vm", vnc.port)]))
        async with running_console(settings) as server, contextlib.AsyncExitStack() as stack, turns.counting():
            browsers = await open_in_proxy_stage(stack, server, BROWSERS)
            with recorded_in_turns(monkeypatch, BoundedCloseWebSocketProtocol, "connection_lost", turns) as lost, \
                    recorded_in_turns(monkeypatch, Splice, "client_gone", turns) as told:
                for browser in browsers:
                    browser.transport.abort()  # all at once, as a close storm's browsers
                endings = await ends(console_log, BROWSERS)
    assert [end["reason"] for end in endings] == ["client_closed"] * BROWSERS
    assert console_log.events("console_internal_error") == []
    assert len(lost) == len(told) == BROWSERS
    # The storm reached the server together: more sockets were lost in one iteration than a turn tells ...
    assert max(Counter(lost).values()) > CONNECTIONS_LOST_PER_TURN
    # ... and their sessions were told a few an iteration, in order.
    assert max(Counter(told).values()) <= CONNECTIONS_LOST_PER_TURN
    assert told == sorted(told)


async def test_a_connection_whose_socket_is_gone_sends_nothing_before_its_session_is_told(
    tmp_path: Path, make_settings: Callable[..., Settings], console_log: Records, monkeypatch: pytest.MonkeyPatch,
) -> None:
    held: list[Callable[[], object]] = []

    def hold(loop: asyncio.AbstractEventLoop, lane: str, callback: Callable[[], object]) -> None:
        held.append(callback)  # as when the lane's places are taken by a storm's earlier losses

    async with RfbServer() as vnc:
        settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("vm", vnc.port)]))
        async with running_console(settings) as server, contextlib.AsyncExitStack() as stack:
            (browser,) = await open_in_proxy_stage(stack, server, 1)
            (protocol,) = ws_protocols(server)
            monkeypatch.setattr(ws_protocol, "when_paced", hold)
            browser.transport.abort()
            deadline = time.monotonic() + 10
            while not held:
                assert time.monotonic() < deadline, "the server did not see the socket go"
                await asyncio.sleep(0.01)
            with pytest.raises(ClientDisconnected):
                await protocol.send_frames(['{"type": "status"}'])
            with pytest.raises(ClientDisconnected):
                await protocol.send({"type": "websocket.send", "text": "{}"})
            protocol.shutdown()  # the server stopping meanwhile: no close frame for a socket that is gone
            assert protocol.queue.empty()
            assert console_log.events("console_end") == []  # not told yet
            for callback in held:
                callback()
            (end,) = await ends(console_log, 1)
    assert end["reason"] == "client_closed"

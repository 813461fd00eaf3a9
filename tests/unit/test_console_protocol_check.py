"""The start-up check of what the splice uses of uvicorn's private protocol, its loud fallback to the task
pump, and both paths carrying a console's bytes exactly (small amounts: the megabytes and the
backpressure bounds are tests/integration/test_console_splice.py)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from limen.console import ws_protocol
from limen.console.splice import Splice
from limen.console.ws_protocol import (
    UVICORN_ATTRIBUTES,
    UVICORN_METHODS,
    BoundedCloseWebSocketProtocol,
    NoSpliceWebSocketProtocol,
    missing_uvicorn_parts,
    uvicorn_ws_options,
)
from limen.settings import Settings
from tests.support.console import (
    ConsoleServer,
    ConsoleTranscript,
    FakeDomain,
    Records,
    client,
    driver_uri,
    read_frames,
)
from tests.support.fake_vnc import BANNER, StreamServer, deterministic_chunk


class UvicornWithoutTheFrameBuffer:
    """A stand-in for a uvicorn release that reorganised how it collects a message's frames."""

    def __init__(self) -> None:
        self.loop = self.transport = self.disconnected = self.close_sent = self.queue = None
        self.read_paused = self.writable = self.conn = self.handshake_complete = self.handshake_initiated = None
        self.client = None

    def handle_connect(self) -> None:
        self.response: object = None
        self.scope: dict[str, object] = {}

    def run_asgi(self) -> None: ...
    def send_500_response(self) -> None: ...
    def keepalive_timeout(self) -> None: ...
    def send_receive_event_to_app(self) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    def handle_close(self) -> None: ...
    def connection_lost(self) -> None: ...
    async def send(self) -> None: ...
    def shutdown(self) -> None: ...
    def stop_keepalive(self) -> None: ...


def test_the_pinned_uvicorn_has_all_the_splice_uses(make_settings: Callable[..., Settings]) -> None:
    assert missing_uvicorn_parts() == []
    assert uvicorn_ws_options(make_settings())["ws"] is BoundedCloseWebSocketProtocol


def test_a_missing_method_or_attribute_is_named() -> None:
    assert missing_uvicorn_parts(UvicornWithoutTheFrameBuffer) == [
        "handle_parser_exception", "frames", "curr_msg_data_type",
    ]
    assert missing_uvicorn_parts(object) == [*UVICORN_METHODS, *UVICORN_ATTRIBUTES]


def test_without_them_limen_says_so_and_serves_without_the_splice(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ws_protocol, "WebSocketsSansIOProtocol", UvicornWithoutTheFrameBuffer)
    with caplog.at_level(logging.WARNING, logger="limen.console"):
        options = uvicorn_ws_options(make_settings())
    assert options["ws"] is NoSpliceWebSocketProtocol
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "console_splice_unavailable"]
    assert record.levelno == logging.WARNING
    assert record.__dict__["missing"] == ["handle_parser_exception", "frames", "curr_msg_data_type"]
    assert "frames" in record.getMessage() and "task pump" in record.getMessage()


@pytest.fixture
def splices(monkeypatch: pytest.MonkeyPatch) -> list[Splice]:
    made: list[Splice] = []
    original = BoundedCloseWebSocketProtocol.splice

    def spy(self: BoundedCloseWebSocketProtocol, *args: Any, **kwargs: Any) -> Splice:
        made.append(original(self, *args, **kwargs))
        return made[-1]

    monkeypatch.setattr(BoundedCloseWebSocketProtocol, "splice", spy)
    return made


DOWN = 128 * 1024
UP = 64 * 1024


@pytest.mark.parametrize(
    ("ws", "spliced"),
    [(None, True), (NoSpliceWebSocketProtocol, False)],
    ids=["splice", "task-pump"],
)
async def test_both_paths_carry_the_bytes_exactly(
    tmp_path: Path, make_settings: Callable[..., Settings], splices: list[Splice], console_log: Records,
    ws: type | str | None, spliced: bool,
) -> None:
    async with StreamServer(send_bytes=DOWN) as vnc:
        vnc.expect_bytes = UP
        server = ConsoleServer(make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("vm", vnc.port)])))
        if ws is not None:
            server.server.config.ws = ws
        await server.start()
        try:
            async with client(server.url("vm")) as browser:
                transcript = ConsoleTranscript()  # the stage notices, then the banner
                await read_frames(browser, transcript, time.monotonic(), until_binary=1)
                assert transcript.binary == [BANNER]
                received, sent = hashlib.sha256(BANNER), hashlib.sha256()

                async def upload() -> None:
                    for index in range(UP // 2**14):
                        chunk = deterministic_chunk(index, 2**14)
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
                await asyncio.wait_for(vnc.receive_done.wait(), 10)
            await server.wait_idle()
        finally:
            await server.stop()
    assert received.hexdigest() == vnc.sent_digest
    assert vnc.received_digest == sent.hexdigest()
    assert len(splices) == (1 if spliced else 0)
    deadline = time.monotonic() + 5
    while not console_log.events("console_end"):
        assert time.monotonic() < deadline, "the session did not end"
        await asyncio.sleep(0.01)
    (end,) = console_log.events("console_end")
    assert end["bytes_to_client"] == len(BANNER) + DOWN and end["bytes_to_vnc"] == UP

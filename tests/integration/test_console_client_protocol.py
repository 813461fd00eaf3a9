"""A console the WebSocket server fails because the browser broke the protocol (close 1002, 1007, 1009) is
recorded as ended with CLIENT_PROTOCOL_ERROR, not as one the browser closed (OK), on both paths of the proxy
stage; a browser's own close frame, whatever its code, stays OK.

limen's own uvicorn protocol in-process, a fake VNC server, and a raw client writing hand-made frames (a
WebSocket library refuses to send them). The serial console's side of it: tests/unit/fast_forward.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from limen.console.ws_protocol import NoSpliceWebSocketProtocol
from limen.settings import Settings
from tests.support.console import ConsoleServer, FakeDomain, driver_uri
from tests.support.fake_vnc import BANNER, StreamServer
from tests.support.raw_ws import BINARY, CLOSE, TEXT, RawConsole, masked_frame

# Real sockets and a server per case (3 s of the fast tier's 30): here. The audit row is the same on any database.
pytestmark = [pytest.mark.integration, pytest.mark.same_on_any_database]

MAX_MESSAGE = 1 << 20  # uvicorn_ws_options' ws_max_size


def unmasked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame without the mask RFC 6455 5.3 requires of every client frame."""
    return bytes([0x80 | opcode, len(payload)]) + payload


def too_big_frame_head() -> bytes:
    """The head of a binary frame one byte over the limit: the server refuses it on its length alone."""
    return bytes([0x80 | BINARY, 0x80 | 127]) + struct.pack("!Q", MAX_MESSAGE + 1) + b"mask"


BROKEN_FRAMES = {
    1002: unmasked_frame(BINARY, b"hello"),
    1007: masked_frame(TEXT, b"\xff\xfe"),  # its very first byte is not UTF-8
    1009: too_big_frame_head(),
}


async def console_ended_by(tmp_path: Path, make_settings: Callable[..., Settings], ws: type | None,
                           frame: bytes) -> tuple[int, str | None, str | None]:
    """The close code the client got, then the audit row's end code and details."""
    async with StreamServer(send_bytes=0) as vnc:
        server = ConsoleServer(make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("vm", vnc.port)])))
        if ws is not None:
            server.server.config.ws = ws
        await server.start()
        try:
            console = await RawConsole.open(server.port, "/api/vms/vm/console", server.auth_headers)
            try:
                assert await console.until(BINARY) == BANNER  # the proxy stage runs
                console.send(frame)
                closed_with = await console.close_code()
            finally:
                console.close()
            await server.wait_idle()
            (row,) = await server.access.audit.console_sessions()
        finally:
            await server.stop()
    return closed_with, row.end_code, row.end_details


@pytest.mark.parametrize("ws", [None, NoSpliceWebSocketProtocol], ids=["splice", "task-pump"])
@pytest.mark.parametrize("close_code", sorted(BROKEN_FRAMES))
async def test_a_browser_breaking_the_protocol_is_recorded_as_client_protocol_error(
    tmp_path: Path, make_settings: Callable[..., Settings], ws: type | None, close_code: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    closed_with, end_code, end_details = await console_ended_by(tmp_path, make_settings, ws,
                                                                BROKEN_FRAMES[close_code])
    assert closed_with == close_code
    assert end_code == "CLIENT_PROTOCOL_ERROR"
    assert end_details is not None and f"closed the WebSocket with {close_code}" in end_details
    # The client's fault, not a server error: uvicorn's own path logged text that is not UTF-8 at ERROR with a
    # traceback ("Invalid UTF-8 sequence received from client.").
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR or record.exc_info]


@pytest.mark.parametrize("close_code", [1000, 1002])
async def test_a_browsers_own_close_is_ok_whatever_its_code(
    tmp_path: Path, make_settings: Callable[..., Settings], close_code: int,
) -> None:
    closed_with, end_code, end_details = await console_ended_by(
        tmp_path, make_settings, None, masked_frame(CLOSE, struct.pack("!H", close_code)))
    assert closed_with == close_code  # the server's reply echoes the browser's code
    assert (end_code, end_details) == ("OK", None)

"""The proxy stage's fast path without sockets: frame headers, and the splice's flow control and deadlines."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.frames import Opcode

from limen.console.binary_frame import HEADER_ROOM, write_binary_header
from limen.console.pump import Traffic
from limen.console.splice import ReadBuffer, Splice, SpliceEnd, read_buffer
from limen.errors import ErrorCode, LimenError
from tests.support.raw_ws import parse_as_browser


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 4096, 65535, 65536, 65537, 1 << 20])
def test_header_in_the_room_before_the_payload_makes_one_valid_binary_frame(size: int) -> None:
    buffer = ReadBuffer(read_size=max(size, 1))
    payload = bytes(i % 251 for i in range(size))
    buffer.payload[:size] = payload
    start = write_binary_header(buffer.buffer, size)
    (frame,) = parse_as_browser(bytes(buffer.view[start : HEADER_ROOM + size]))
    assert frame.opcode is Opcode.BINARY and frame.fin
    assert frame.data == payload
    assert HEADER_ROOM - start == (2 if size < 126 else 4 if size < 65536 else 10)


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.kept = 0  # what get_write_buffer_size reports
        self.reading = True
        self.closing = False
        self.protocol: Any = None

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return self.kept

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol


class FakeClient:
    """The WebSocket protocol's side of a splice."""

    def __init__(self) -> None:
        self.transport = FakeTransport()
        self.reading = True

    def splice_pause_reading(self) -> None:
        self.reading = False

    def splice_resume_reading(self) -> None:
        self.reading = True


class PreviousProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.lost: list[Exception | None] = []

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


def make_splice(write_timeout: float = 5.0) -> tuple[Splice, FakeClient, FakeTransport, Traffic, PreviousProtocol]:
    client, vnc, traffic, previous = FakeClient(), FakeTransport(), Traffic(), PreviousProtocol()
    vnc.protocol = previous
    splice = Splice(client, vnc, traffic, write_timeout=write_timeout, clock=lambda: 42.0,
                    loop=asyncio.get_running_loop())
    return splice, client, vnc, traffic, previous


def feed_from_vnc(splice: Splice, data: bytes) -> None:
    view = splice.get_buffer(len(data))
    view[: len(data)] = data
    splice.buffer_updated(len(data))


async def test_vnc_bytes_leave_as_binary_frames_and_are_counted() -> None:
    splice, client, vnc, traffic, _ = make_splice()
    splice.start([b"held", b"queued"], client_full=False, unread=b"early")
    assert vnc.protocol is splice and vnc.written == [b"held", b"queued"] and traffic.to_vnc == 10
    assert traffic.last_input == 42.0
    feed_from_vnc(splice, b"RFB frame")
    feed_from_vnc(splice, b"x" * 70_000)
    frames = parse_as_browser(b"".join(client.transport.written))
    assert [f.data for f in frames] == [b"early", b"RFB frame", b"x" * 70_000]
    assert traffic.to_client == 5 + 9 + 70_000
    splice.to_vnc(b"key")
    assert vnc.written[-1] == b"key" and traffic.to_vnc == 13


async def test_the_browsers_requests_for_screen_updates_are_passed_on_but_are_not_input() -> None:
    """noVNC asks for the next screen after each update by itself: a guest's output is not input."""
    splice, _, vnc, traffic, _ = make_splice()
    splice.start([], client_full=False, unread=b"")
    traffic.last_input = 0.0
    request = bytes([3, 1, 0, 0, 0, 0, 4, 0, 3, 0])
    splice.to_vnc(request * 2)
    assert vnc.written[-1] == request * 2 and traffic.last_input == 0.0
    splice.to_vnc(bytes([4, 1, 0, 0, 0, 0, 0, 0x61]))  # a key
    assert traffic.last_input == 42.0


async def test_the_read_buffer_is_renewed_when_the_transport_keeps_part_of_a_frame() -> None:
    splice, client, _, _, _ = make_splice()
    splice.start([], client_full=False)
    before = read_buffer().buffer
    feed_from_vnc(splice, b"a" * 1000)
    assert read_buffer().buffer is before  # all sent: the buffer is reused
    client.transport.kept = 500
    feed_from_vnc(splice, b"b" * 1000)
    assert read_buffer().buffer is not before  # the transport may hold a view of it: not reused


async def test_a_browser_that_does_not_read_pauses_vnc_then_ends_with_slow_client() -> None:
    splice, _, vnc, _, _ = make_splice(write_timeout=0.05)
    splice.start([], client_full=False)
    splice.client_full()
    assert not vnc.reading
    outcome = await asyncio.wait_for(splice.ended, 1)
    assert isinstance(outcome, LimenError) and outcome.code is ErrorCode.SLOW_CLIENT


async def test_a_browser_that_drains_in_time_resumes_vnc_and_stays() -> None:
    splice, _, vnc, _, _ = make_splice(write_timeout=0.05)
    splice.start([], client_full=True)  # already full when the splice began
    assert not vnc.reading
    splice.client_drained()
    assert vnc.reading
    await asyncio.sleep(0.1)
    assert not splice.ended.done()
    splice.stop()


async def test_a_vnc_server_that_does_not_read_pauses_the_browser_then_fails() -> None:
    splice, client, _, _, _ = make_splice(write_timeout=0.05)
    splice.start([], client_full=False)
    splice.pause_writing()
    assert not client.reading
    splice.resume_writing()
    assert client.reading
    splice.pause_writing()
    outcome = await asyncio.wait_for(splice.ended, 1)
    assert isinstance(outcome, LimenError) and outcome.code is ErrorCode.VNC_CONNECTION_FAILED
    splice.stop()
    assert client.reading  # stop() gives the browser back its reads (for the close handshake)


async def test_vnc_eof_and_loss_end_the_splice_and_reach_the_previous_protocol() -> None:
    splice, _, _, _, previous = make_splice()
    splice.start([], client_full=False)
    assert splice.eof_received() is False
    assert splice.ended.result() is SpliceEnd.VNC_CLOSED
    splice.connection_lost(None)
    assert previous.lost == [None]  # its owner (the StreamWriter) sees the close


async def test_after_stop_nothing_moves() -> None:
    splice, client, vnc, traffic, _ = make_splice()
    splice.start([], client_full=False)
    splice.client_gone()
    assert splice.ended.result() is SpliceEnd.CLIENT_GONE
    splice.stop()
    splice.to_vnc(b"late")
    feed_from_vnc(splice, b"late")
    assert vnc.written == [] and client.transport.written == [] and traffic.to_vnc == traffic.to_client == 0
    assert not vnc.reading

"""limen's uvicorn HTTP protocol without sockets: bytes in through ``data_received``, a fake transport
records what goes out. Deadlines are a tenth of a second here; the defaults are in test_settings."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
import websockets.http11
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from limen.console.ws_protocol import uvicorn_ws_options
from limen.http_protocol import DROPPED_STATUS_SCOPE_KEY, MAX_HEAD_BYTES, DeadlineHttpProtocol, uvicorn_http_options
from limen.request_reading import BODY_PROGRESS_BYTES
from limen.settings import Settings

TIMEOUT = 0.1
GET = b"GET /x HTTP/1.1\r\nHost: limen\r\n\r\n"


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.reading = True
        self.protocol: asyncio.Protocol | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            assert self.protocol is not None
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 0

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol  # type: ignore[assignment]

    def answer(self) -> tuple[int, Any]:
        head, _, body = bytes(self.written).partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        return status, json.loads(body) if body.startswith(b"{") else body


class App:
    """Reads the whole body (after ``read_delay``), then answers 200 with its size."""

    def __init__(self, read_delay: float = 0.0) -> None:
        self.read_delay = read_delay
        self.saw_disconnect = False
        self.body = 0
        self.scope: Scope = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        if scope["type"] == "websocket":
            await receive()  # connect
            await send({"type": "websocket.accept"})
            while (await receive())["type"] != "websocket.disconnect":
                pass
            return
        await asyncio.sleep(self.read_delay)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.saw_disconnect = True
                return
            self.body += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


Connect = Callable[..., tuple[DeadlineHttpProtocol, FakeTransport]]


@pytest.fixture
def drops() -> list[str]:
    """The error codes of the requests the protocol dropped, as the metrics are told them."""
    return []


@pytest.fixture
def connect(make_settings: Callable[..., Settings], drops: list[str]) -> Connect:
    settings = make_settings(request_read_timeout=TIMEOUT)

    def make(app: App) -> tuple[DeadlineHttpProtocol, FakeTransport]:
        config = uvicorn.Config(app, lifespan="off", log_config=None, proxy_headers=False,
                                **uvicorn_http_options(settings, on_drop=drops.append), **uvicorn_ws_options(settings))
        config.load()
        protocol_class = config.http_protocol_class
        assert issubclass(protocol_class, DeadlineHttpProtocol) and protocol_class.read_timeout == TIMEOUT
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
        transport = FakeTransport()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        return protocol, transport

    return make


async def settle(seconds: float = 0.0) -> None:
    await asyncio.sleep(seconds)
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(connect: Connect, drops: list[str]) -> None:
    _, transport = connect(App())
    await settle(TIMEOUT / 2)
    assert not transport.closed
    await settle(TIMEOUT)
    assert transport.closed and transport.written == b""
    assert drops == ["REQUEST_TIMEOUT"]


async def test_a_head_that_trickles_gets_408_and_the_close(connect: Connect) -> None:
    protocol, transport = connect(App())
    for byte in GET[:-4]:  # everything but the end of the headers, a byte at a time
        protocol.data_received(bytes([byte]))
        await settle(TIMEOUT / 40)
        if transport.closed:
            break
    await settle(TIMEOUT)
    assert transport.closed
    status, body = transport.answer()
    assert status == 408 and body["code"] == "REQUEST_TIMEOUT" and "LIMEN_REQUEST_READ_TIMEOUT" in body["details"]
    assert b"connection: close" in transport.written


async def test_a_request_in_time_is_answered_and_its_kept_alive_connection_keeps_uvicorns_timeout(
    connect: Connect,
) -> None:
    protocol, transport = connect(App())
    protocol.data_received(GET)
    await settle(TIMEOUT * 3)
    assert transport.answer() == (200, b"ok") and not transport.closed
    # The next request's deadline runs from its first byte, not from the connection.
    protocol.data_received(b"GET /x HT")
    await settle(TIMEOUT * 1.5)
    assert transport.closed and transport.answer()[0] == 200  # dropped, but the 200 was the only answer


async def test_a_body_that_stalls_gets_408_and_the_app_stops_waiting(connect: Connect) -> None:
    app = App()
    protocol, transport = connect(app)
    protocol.data_received(b"POST /x HTTP/1.1\r\nHost: limen\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    await settle(TIMEOUT / 2)
    protocol.data_received(b"x")  # a trickle buys no time
    await settle(TIMEOUT)
    assert transport.closed and app.saw_disconnect
    status, body = transport.answer()
    # It says what the rule is: a trickling body does progress, only too slowly.
    assert status == 408 and f"body came slower than {BODY_PROGRESS_BYTES // 1024} KiB in" in body["details"]
    assert app.scope[DROPPED_STATUS_SCOPE_KEY] == 408  # for the request's metrics


async def test_a_body_that_keeps_coming_is_read_however_long_it_takes(connect: Connect, drops: list[str]) -> None:
    app = App()
    protocol, transport = connect(app)
    steps = 12
    size = BODY_PROGRESS_BYTES * steps
    protocol.data_received(b"POST /x HTTP/1.1\r\nHost: limen\r\nContent-Length: %d\r\n\r\n" % size)
    for _ in range(steps):  # 12 × 0.03 s: longer than the timeout in all
        await settle(TIMEOUT * 0.3)
        protocol.data_received(b"x" * BODY_PROGRESS_BYTES)
    await settle(TIMEOUT / 2)
    assert transport.answer() == (200, b"ok") and app.body == size and not transport.closed
    assert drops == []


@pytest.fixture
def connect_upload(make_settings: Callable[..., Settings]) -> Connect:
    """As ``connect``, with the ISO upload's idle timeout three times the general read timeout."""
    settings = make_settings(request_read_timeout=TIMEOUT, iso_upload_idle_timeout=TIMEOUT * 3)

    def make(app: App) -> tuple[DeadlineHttpProtocol, FakeTransport]:
        config = uvicorn.Config(app, lifespan="off", log_config=None, proxy_headers=False,
                                **uvicorn_http_options(settings))
        config.load()
        protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
        transport = FakeTransport()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        return protocol, transport

    return make


UPLOAD_HEAD = b"POST /api/isos?name=x.iso HTTP/1.1\r\nHost: limen\r\nContent-Length: 20\r\n\r\n"


async def test_an_iso_upload_may_pause_for_its_idle_timeout_not_the_read_timeout(connect_upload: Connect) -> None:
    app = App()
    protocol, transport = connect_upload(app)
    protocol.data_received(UPLOAD_HEAD + b"x" * 10)
    await settle(TIMEOUT * 2)  # past LIMEN_REQUEST_READ_TIMEOUT, within LIMEN_ISO_UPLOAD_IDLE_TIMEOUT
    assert not transport.closed
    protocol.data_received(b"x" * 10)
    await settle(TIMEOUT / 2)
    assert transport.answer() == (200, b"ok") and app.body == 20 and not transport.closed


async def test_an_iso_upload_that_sends_nothing_for_its_idle_timeout_gets_408_naming_it(
    connect_upload: Connect,
) -> None:
    app = App()
    protocol, transport = connect_upload(app)
    protocol.data_received(UPLOAD_HEAD + b"x" * 10)
    await settle(TIMEOUT * 2.5)
    protocol.data_received(b"x")  # a byte is enough: the rule is idleness, not a rate
    await settle(TIMEOUT * 2.5)
    assert not transport.closed
    await settle(TIMEOUT)
    assert transport.closed and app.saw_disconnect
    status, body = transport.answer()
    assert status == 408 and "sent nothing for" in body["details"]
    assert "LIMEN_ISO_UPLOAD_IDLE_TIMEOUT" in body["details"]
    assert app.scope[DROPPED_STATUS_SCOPE_KEY] == 408


async def test_no_deadline_while_the_server_does_not_read(connect: Connect) -> None:
    app = App(read_delay=TIMEOUT * 4)  # an app busy elsewhere before it reads the body
    protocol, transport = connect(app)
    size = 200_000
    protocol.data_received(b"POST /x HTTP/1.1\r\nHost: limen\r\nContent-Length: %d\r\n\r\n" % size + b"x" * 100_000)
    assert not transport.reading  # uvicorn stopped reading: more than its high-water mark is waiting
    await settle(TIMEOUT * 3)
    assert not transport.closed
    for _ in range(100):  # the app reads: reading resumes, and the client has its full time again
        if transport.reading:
            break
        await asyncio.sleep(TIMEOUT / 20)
    assert transport.reading and not transport.closed
    protocol.data_received(b"x" * 100_000)
    await settle(TIMEOUT / 2)
    assert transport.answer() == (200, b"ok") and app.body == size


async def test_a_head_over_its_size_gets_413(connect: Connect, drops: list[str]) -> None:
    protocol, transport = connect(App())
    protocol.data_received(b"GET /x HTTP/1.1\r\nHost: limen\r\n")
    for _ in range(MAX_HEAD_BYTES // 8192 + 2):
        if transport.closed:
            break
        protocol.data_received(b"X-Filler: " + b"a" * 8180 + b"\r\n")
    await settle()
    assert transport.closed
    status, body = transport.answer()
    assert status == 413 and body["code"] == "PAYLOAD_TOO_LARGE" and str(MAX_HEAD_BYTES) in body["details"]
    assert drops == ["PAYLOAD_TOO_LARGE"]


async def test_bytes_that_are_not_http_get_the_json_error_and_the_close(connect: Connect, drops: list[str]) -> None:
    protocol, transport = connect(App())
    protocol.data_received("POST /api/isos?name=한글.iso HTTP/1.1\r\nHost: limen\r\n\r\n".encode())  # not %-encoded
    await settle()
    assert transport.closed
    status, body = transport.answer()
    assert status == 400 and body["code"] == "INVALID_REQUEST" and "percent-encoded" in body["details"]
    assert b"content-type: application/json" in transport.written
    assert b"x-content-type-options: nosniff" in transport.written and b"cache-control: no-store" in transport.written
    assert drops == ["INVALID_REQUEST"]


@pytest.mark.parametrize(("head", "said"), [
    (b"BREW /pot HTTP/1.1\r\nHost: limen\r\n\r\n", "Invalid method encountered"),
    (b"POST / HTTP/1.1\r\nHost: limen\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
     "Transfer-Encoding can't be present with Content-Length"),
    (b"POST / HTTP/1.1\r\nHost: limen\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "Duplicate Content-Length"),
    (b"POST / HTTP/1.1\r\nHost: limen\r\nContent-Length: -1\r\n\r\n", "Invalid character in Content-Length"),
])
async def test_bytes_that_are_not_http_are_told_what_is_wrong(connect: Connect, head: bytes, said: str) -> None:
    # Every one was told its path's non-ASCII characters must be percent-encoded, though its path had none.
    protocol, transport = connect(App())
    protocol.data_received(head)
    await settle()
    status, body = transport.answer()
    assert status == 400 and body["code"] == "INVALID_REQUEST"
    assert said in body["details"] and "percent-encoded" not in body["details"], body


async def test_a_websocket_upgrade_leaves_the_deadlines_behind(connect: Connect) -> None:
    protocol, transport = connect(App())
    protocol.data_received(
        b"GET /ws HTTP/1.1\r\nHost: limen\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await settle(TIMEOUT * 3)
    assert transport.protocol is not protocol and not transport.closed
    assert transport.written.startswith(b"HTTP/1.1 101")
    transport.close()
    await settle()


UPGRADE = (b"Host: limen\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")


@pytest.mark.parametrize("header", [b"Cookie: " + b"c" * 9000, b"X-Filler: a\r\n" * 200],
                         ids=["a 9 KiB cookie", "200 headers"])
async def test_an_upgrade_opens_with_any_head_the_http_protocol_takes(connect: Connect, header: bytes) -> None:
    # websockets' own parser refused a line over 8 KiB (a browser's cookies) or 128 headers, and then nobody
    # answered: the console hung.
    protocol, transport = connect(App())
    protocol.data_received(b"GET /ws HTTP/1.1\r\n" + UPGRADE + header.rstrip(b"\r\n") + b"\r\n\r\n")
    await settle()
    assert transport.written.startswith(b"HTTP/1.1 101") and not transport.closed
    transport.close()
    await settle()


async def test_an_upgrade_websockets_cannot_parse_gets_the_json_error_and_the_close(connect: Connect) -> None:
    protocol, transport = connect(App())
    # websockets refuses a transfer coding on the upgrade, which the HTTP parser lets through
    protocol.data_received(b"GET /ws HTTP/1.1\r\n" + UPGRADE + b"Transfer-Encoding: chunked\r\n\r\n")
    await settle()
    assert transport.closed
    status, body = transport.answer()
    assert status == 400 and body["code"] == "INVALID_REQUEST" and "WebSocket upgrade" in body["details"]


async def test_an_upgrade_refused_by_websockets_limits_gets_413_as_json(
    connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A websockets whose limits could not be widened: its refusal is still answered, as limen's error.
    protocol, transport = connect(App())
    monkeypatch.setattr(websockets.http11, "MAX_LINE_LENGTH", 8192)
    protocol.data_received(b"GET /ws HTTP/1.1\r\n" + UPGRADE + b"Cookie: " + b"c" * 9000 + b"\r\n\r\n")
    await settle()
    assert transport.closed
    status, body = transport.answer()
    assert status == 413 and body["code"] == "PAYLOAD_TOO_LARGE" and "too large" in body["details"]


async def test_a_target_of_64_kib_in_one_chunk_gets_413(connect: Connect, drops: list[str]) -> None:
    # httptools cannot parse a URL that long: it was answered as bytes that are not HTTP.
    protocol, transport = connect(App())
    protocol.data_received(b"GET /x?q=" + b"a" * MAX_HEAD_BYTES + b" HTTP/1.1\r\nHost: limen\r\n\r\n")
    await settle()
    assert transport.closed
    status, body = transport.answer()
    assert status == 413 and body["code"] == "PAYLOAD_TOO_LARGE" and str(MAX_HEAD_BYTES) in body["details"]
    assert drops == ["PAYLOAD_TOO_LARGE"]


@pytest.mark.parametrize("size", [MAX_HEAD_BYTES + 1_000, 3 * MAX_HEAD_BYTES])
async def test_a_head_over_its_size_in_one_chunk_gets_413_and_never_reaches_the_app(
    connect: Connect, drops: list[str], size: int
) -> None:
    # A whole head in one read (loopback delivers ~190 KB at once) was parsed before it was counted: 66 KB to
    # 180 KB of headers were answered 200.
    app = App()
    protocol, transport = connect(app)
    protocol.data_received(b"GET /x HTTP/1.1\r\nHost: limen\r\nX-Big: " + b"b" * size + b"\r\n\r\n")
    await settle()
    assert transport.closed and app.scope == {}  # the application never saw it
    status, body = transport.answer()
    assert status == 413 and body["code"] == "PAYLOAD_TOO_LARGE" and str(MAX_HEAD_BYTES) in body["details"]
    assert drops == ["PAYLOAD_TOO_LARGE"]


async def test_a_head_just_under_its_size_in_one_chunk_is_served(connect: Connect) -> None:
    protocol, transport = connect(App())
    head = b"GET /x HTTP/1.1\r\nHost: limen\r\nX-Big: \r\n\r\n"
    protocol.data_received(head.replace(b"X-Big: ", b"X-Big: " + b"b" * (MAX_HEAD_BYTES - len(head) - 100)))
    await settle()
    assert transport.answer() == (200, b"ok")


KEY, VERSION = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b"Sec-WebSocket-Version: 13\r\n"
UPGRADE_HEADERS = b"Upgrade: websocket\r\nConnection: Upgrade\r\n"


@pytest.mark.parametrize(("head", "status", "code", "said", "header"), [
    (b"GET /ws HTTP/1.1\r\nHost: limen\r\n" + UPGRADE_HEADERS + b"Sec-WebSocket-Key: nope\r\n" + VERSION,
     400, "INVALID_REQUEST", "invalid Sec-WebSocket-Key header: nope", None),
    (b"GET /ws HTTP/1.1\r\nHost: limen\r\n" + UPGRADE_HEADERS + "Sec-WebSocket-Key: 한국\r\n".encode() + VERSION,
     400, "INVALID_REQUEST", "invalid Sec-WebSocket-Key header: 한국", None),  # as typed, not as Latin-1
    (b"GET /ws HTTP/1.1\r\nHost: limen\r\n" + UPGRADE_HEADERS + VERSION,
     400, "INVALID_REQUEST", "missing Sec-WebSocket-Key header", None),
    (b"GET /ws HTTP/1.1\r\nHost: limen\r\n" + UPGRADE_HEADERS + KEY + KEY + VERSION,
     400, "INVALID_REQUEST", "invalid Sec-WebSocket-Key header: multiple values", None),
    (b"GET /ws HTTP/1.1\r\nHost: limen\r\n" + UPGRADE_HEADERS + KEY,
     400, "INVALID_REQUEST", "missing Sec-WebSocket-Version header", None),
    (b"GET /ws HTTP/1.1\r\nHost: limen\r\n" + UPGRADE_HEADERS + KEY + b"Sec-WebSocket-Version: 8\r\n",
     400, "INVALID_REQUEST", "invalid Sec-WebSocket-Version header: 8", None),
    (b"POST /ws HTTP/1.1\r\nHost: limen\r\nContent-Length: 0\r\n" + UPGRADE_HEADERS + KEY + VERSION,
     405, "METHOD_NOT_ALLOWED", "unsupported HTTP method: POST", b"Allow: GET"),
    (b"GET /ws HTTP/1.1\r\nHost: limen\r\nUpgrade: websocket\r\n" + UPGRADE_HEADERS + KEY + VERSION,
     426, "WEBSOCKET_REQUIRED", "invalid Upgrade header: websocket, websocket", b"Upgrade: websocket"),
    (b"GET /ws HTTP/1.1\r\nHost: limen\r\nOrigin: http://limen\r\nOrigin: http://evil\r\n" + UPGRADE_HEADERS + KEY
     + VERSION, 400, "INVALID_REQUEST", "invalid Origin header: multiple values", None),
], ids=["a malformed key", "a Korean key", "no key", "two keys", "no version", "version 8", "POST",
        "two Upgrade headers", "two Origin headers"])
async def test_an_upgrade_websockets_refuses_gets_limens_json_error_and_never_reaches_the_app(
    connect: Connect, head: bytes, status: int, code: str, said: str, header: bytes | None,
) -> None:
    # websockets answered these in plain text ("Failed to open a WebSocket connection: ..."): a script reading
    # the error schema, as it does for every other refusal, found no code.
    app = App()
    protocol, transport = connect(app)
    protocol.data_received(head + b"\r\n")
    await settle()
    assert transport.closed and app.scope == {}
    answered_status, body = transport.answer()
    assert answered_status == status and body["code"] == code, body
    assert body["details"] == f"the WebSocket upgrade was refused: {said}" and set(body) == {
        "error", "code", "details", "message"}
    answer_head = bytes(transport.written).partition(b"\r\n\r\n")[0].split(b"\r\n")
    # RFC 9110, 7.8: a 426's Upgrade is named in its Connection
    connection = b"Connection: Upgrade, close" if status == 426 else b"Connection: close"
    assert b"Content-Type: application/json" in answer_head and connection in answer_head
    assert header is None or header in answer_head


async def test_a_head_upgrade_gets_its_405_without_content(connect: Connect) -> None:
    app = App()
    protocol, transport = connect(app)
    protocol.data_received(b"HEAD /ws HTTP/1.1\r\nHost: limen\r\n" + UPGRADE_HEADERS + KEY + VERSION + b"\r\n")
    await settle()
    assert transport.closed and app.scope == {}
    head, _, content = bytes(transport.written).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 ") and b"Allow: GET" in head.split(b"\r\n") and content == b""

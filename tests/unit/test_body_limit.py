"""The body limit on a plain ASGI app: what it answers, and how much of the body it lets anyone read."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from limen.api.body_limit import BodyLimit
from limen.request_reading import UNLIMITED_BODY_ROUTES

LIMIT = 4096


def http_scope(method: str = "POST", path: str = "/api/vms", headers: dict[str, str] | None = None) -> Scope:
    return {
        "type": "http", "method": method, "path": path, "query_string": b"", "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()],
    }


class Client:
    """Feeds a body in chunks and records what the app under test sends back and how much it took."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.taken = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if not self.chunks:
            return {"type": "http.disconnect"}
        chunk = self.chunks.pop(0)
        self.taken += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    def json(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


class ReadingApp:
    """Reads the whole body as a framework would, then answers 200 with its size."""

    def __init__(self) -> None:
        self.saw_disconnect = False
        self.body_read = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.saw_disconnect = True
                break
            self.body_read += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(self.body_read).encode()})


async def run(headers: dict[str, str], chunks: list[bytes], **scope: Any) -> tuple[Client, ReadingApp]:
    client, app = Client(chunks), ReadingApp()
    await BodyLimit(app, max_body_bytes=LIMIT)(http_scope(headers=headers, **scope), client.receive, client.send)
    return client, app


async def test_a_declared_length_over_the_limit_is_refused_before_a_byte_is_read() -> None:
    client, app = await run({"content-length": str(300 * 2**20)}, [b"x" * 1024] * 10)
    assert client.status == 413 and client.taken == 0 and app.body_read == 0
    assert client.headers[b"connection"] == b"close"
    body = client.json()
    assert body["code"] == "PAYLOAD_TOO_LARGE"
    assert set(body) >= {"error", "code", "details", "message"} and str(LIMIT) in body["details"]


async def test_a_declared_length_at_the_limit_passes_untouched() -> None:
    client, app = await run({"content-length": str(LIMIT)}, [b"x" * LIMIT])
    assert client.status == 200 and app.body_read == LIMIT


async def test_a_chunked_body_is_refused_as_soon_as_the_count_passes_the_limit() -> None:
    chunks = [b"x" * 1000] * 1000  # 1 MB offered
    client, app = await run({"transfer-encoding": "chunked"}, chunks)
    assert client.status == 413 and client.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert client.headers[b"connection"] == b"close"
    # Read up to the chunk that passed the limit, not one more; the app saw a disconnect.
    assert client.taken == 5000 and app.saw_disconnect
    # The app's own answer after the disconnect was dropped: one response only.
    assert [m["type"] for m in client.sent] == ["http.response.start", "http.response.body"]


async def test_a_chunked_body_within_the_limit_reaches_the_app_whole() -> None:
    client, app = await run({"transfer-encoding": "chunked"}, [b"x" * 1000] * 4)
    assert client.status == 200 and app.body_read == 4000 and not app.saw_disconnect


async def test_requests_without_a_body_pass_untouched() -> None:
    client, app = await run({}, [], method="GET", path="/api/vms")
    assert client.status == 200 and app.saw_disconnect  # the fake client had nothing: a disconnect


async def test_the_iso_upload_route_is_the_one_exemption() -> None:
    assert {("POST", "/api/isos")} == UNLIMITED_BODY_ROUTES
    client, app = await run({"transfer-encoding": "chunked"}, [b"x" * 1000] * 10, path="/api/isos")
    assert client.status == 200 and app.body_read == 10_000
    # Another method on the same path is limited as usual.
    client, _ = await run({"content-length": str(LIMIT + 1)}, [], method="PUT", path="/api/isos")
    assert client.status == 413


async def test_websockets_and_lifespan_pass_untouched() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def nothing() -> Message:
        return {}

    async def drop(_: Message) -> None:
        return None

    limit = BodyLimit(app, max_body_bytes=LIMIT)
    await limit({"type": "websocket", "path": "/api/vms/x/console", "headers": []}, nothing, drop)
    await limit({"type": "lifespan"}, nothing, drop)
    assert seen == ["websocket", "lifespan"]

"""A request target in absolute form (``GET http://limen.lan:8080/api/vms HTTP/1.1``, what clients send to a
proxy) names the host itself, and HTTP/1.1 has the server ignore the Host header then. uvicorn kept only the
target's path, so limen's Host check read the header: ``GET http://evil.example/…`` with ``Host: 127.0.0.1``
passed, and a request naming limen in its target was refused by a header a proxy had left."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from limen.http_protocol import absolute_form_authority
from limen.settings import Settings
from tests.support.console import ConsoleServer


@pytest.mark.parametrize(("target", "authority"), [
    (b"http://limen.lan:8080/api/vms", b"limen.lan:8080"), (b"HTTPS://limen.lan/", b"limen.lan"),
    (b"http://user:secret@[::1]:8080/x?y", b"[::1]:8080"), (b"http://127.0.0.1?x=1", b"127.0.0.1"),
    (b"/api/vms", None), (b"*", None), (b"/redirect?to=http://evil.example/", None), (b"ftp://a/b", None),
])
def test_the_authority_of_an_absolute_target(target: bytes, authority: bytes | None) -> None:
    assert absolute_form_authority(target) == authority


async def test_the_targets_host_is_checked_not_the_header(make_settings: Callable[..., Settings]) -> None:
    server = await ConsoleServer(make_settings()).start()
    own = f"127.0.0.1:{server.port}"

    async def status_and_code(target: str, host: str) -> tuple[int, str | None]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, json.loads(body).get("code") if status >= 400 else None

    try:
        assert await status_and_code("http://evil.example/healthz", own) == (400, "HOST_NOT_ALLOWED")
        assert await status_and_code(f"http://{own}/healthz", "evil.example") == (200, None)
        assert await status_and_code(f"http://someone@{own}/healthz", "evil.example") == (200, None)
        assert await status_and_code("/healthz", own) == (200, None)
    finally:
        await server.stop()

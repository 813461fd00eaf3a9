"""A WebSocket upgrade to an address limen has no WebSocket at (a script's mistyped console address) is
answered like any request to an unknown address: 404 NOT_FOUND in the one error schema, before any upgrade;
an HTTP request to a WebSocket's address gets 426 WEBSOCKET_REQUIRED.
It was Starlette's close before the handshake, which uvicorn sends as a 403 with no body: a refusal that
said nothing, to a client that had made a typing mistake."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from limen.settings import Settings
from tests.conftest import app_client
from tests.support.console import ConsoleServer


async def test_an_upgrade_to_no_websocket_gets_the_404_error_and_the_console_still_upgrades(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    server = await ConsoleServer(make_settings()).start()
    try:
        for path in ("/api/vms/web/consol", "/api/vms", "/nothing/%E2%9C%93"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"ws://127.0.0.1:{server.port}{path}", additional_headers=server.auth_headers):
                    pass
            response = refused.value.response
            assert response.status_code == 404, path
            assert response.headers["content-type"] == "application/json"
            body = json.loads(response.body)
            assert body["code"] == "NOT_FOUND" and body["details"].startswith("no WebSocket at '/"), body
        async with connect(server.url("web"), additional_headers=server.auth_headers) as console:
            assert json.loads(await console.recv())["type"] in ("status", "error")  # upgraded: the console speaks
    finally:
        await server.stop()
    # uvicorn took the answer for an unfinished handshake and logged an error for each
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []


async def test_a_request_to_a_websockets_address_gets_426_not_a_404(make_settings: Callable[..., Settings]) -> None:
    """A console's address opened in a browser's address bar, or fetched with curl, is where a WebSocket is:
    it said 404 "Check the address", which is right, to someone who then looked for a typo."""
    async with app_client(make_settings()) as client:
        for path in ("/api/vms/web/console", "/api/vms/web/serial", "/api/vms/%ED%95%9C/console"):
            for method in ("GET", "POST"):
                response = await client.request(method, path)
                assert response.status_code == 426, (method, path, response.text)
                # RFC 9110: the protocol it takes, named in Connection too
                assert (response.headers["upgrade"], response.headers["connection"]) == ("websocket", "Upgrade")
                body = response.json()
                assert body["code"] == "WEBSOCKET_REQUIRED" and "takes WebSocket upgrades only" in body["details"]
        for path in ("/api/vms/web/consol", "/api/vms/web/console/x", "/api/console"):  # no WebSocket's address
            response = await client.get(path)
            assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND", path

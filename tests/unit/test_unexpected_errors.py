"""An exception limen did not expect, in a route: the client gets the JSON error with its request id, and its
kept-alive connection stays (Starlette's own last-resort answer has no id and re-raises, which makes
uvicorn close the connection under the client's next request)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi.routing import APIRoute

from limen.api.app import create_app
from limen.settings import Settings


async def boom() -> None:
    raise ValueError("embedded null character")  # what libvirt's binding raised for a NUL in a name


async def test_an_unexpected_exception_is_the_json_error_with_the_request_id(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings())
    app.router.routes.insert(0, APIRoute("/boom", boom))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)  # it re-raises what the app raises
        async with httpx.AsyncClient(transport=transport, base_url="http://limen.test") as client:
            response = await client.get("/boom", headers={"X-Request-ID": "req-77"})
            metrics = (await client.get("/metrics")).text
    assert response.status_code == 500
    body = response.json()
    assert (body["code"], body["request_id"]) == ("INTERNAL_ERROR", "req-77")
    assert body["details"] == "ValueError [request_id=req-77]" and response.headers["x-request-id"] == "req-77"
    assert 'limen_http_requests_total{method="GET",route="/boom",status="500"} 1.0' in metrics
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "http_internal_error"]
    assert record.exc_info is not None  # the traceback is in the log, not in the answer

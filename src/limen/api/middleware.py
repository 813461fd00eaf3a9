"""Request ids and HTTP metrics, as plain ASGI middleware (no per-request task or body copying).

Every HTTP request gets an id (the client's ``X-Request-ID`` if it is sane, else a new one). It is
echoed in the response, bound to the log context, and appended to error details by the error handlers.
An unexpected exception from inside is answered here, while the id is bound: 500 INTERNAL_ERROR with the
id, and the connection kept (Starlette's outermost handler answers too, but without the id, and re-raises,
so that uvicorn closes a kept-alive connection under the client's next request).
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from limen.api.error_responses import answer_unexpected_error
from limen.http_protocol import DROPPED_STATUS_SCOPE_KEY
from limen.logs import request_id_var
from limen.metrics import Metrics

REQUEST_ID_HEADER = b"x-request-id"
_SANE_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"")
        request_id = given.decode() if _SANE_ID.match(given) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        status = 0  # none sent yet

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0].lower() != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if status:  # the answer was under way: nothing to add to it, the connection must go
                raise
            await answer_unexpected_error(exc, scope, receive, send_with_id)
        finally:
            status = status or 500
            request_id_var.reset(token)
            status = scope.get(DROPPED_STATUS_SCOPE_KEY, status)  # what the client got, not the app's answer
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.http_requests.labels(template, scope["method"], str(status)).inc()

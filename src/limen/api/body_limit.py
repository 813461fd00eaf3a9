"""Request bodies are bounded: over ``max_body_bytes`` the answer is 413 PAYLOAD_TOO_LARGE, and the body
is never buffered whole.

* A declared ``Content-Length`` over the limit is refused at once; not a byte of the body is read.
* A body without one (``Transfer-Encoding: chunked``) is counted as the application receives it. As
  soon as the count passes the limit, the 413 goes out, the application is told the client has gone
  (``http.disconnect``) and whatever it still sends is dropped.

Either way the 413 carries ``Connection: close``: the rest of the body is never read, so the connection
cannot carry another request. (Should an application have started its answer before the limit passed,
nothing can be sent; it just gets the disconnect.)

The one exemption, written only here: :data:`UNLIMITED_BODY_ROUTES`. Its bodies are not counted, but an
answer that starts before its body was read whole (a refusal: 401, 403, a 422 for a missing parameter, one
of the route's own) carries ``Connection: close`` likewise: the server closes the connection instead of
reading and discarding what may be gigabytes of body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from limen.api.error_responses import error_response
from limen.errors import ErrorCode, LimenError
from limen.request_reading import UNLIMITED_BODY_ROUTES

CLOSE_CONNECTION = {"Connection": "close"}


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length``, or None when it has none (or one the server let through unparsed)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def has_unsized_body(scope: Scope) -> bool:
    """Whether a body follows without a declared length (HTTP/1.1 frames it with Transfer-Encoding)."""
    return any(name == b"transfer-encoding" for name, _ in scope["headers"])


def has_body(scope: Scope) -> bool:
    return bool(declared_length(scope)) or has_unsized_body(scope)


def too_large(limit: int) -> LimenError:
    return LimenError(
        ErrorCode.PAYLOAD_TOO_LARGE, f"the request body is larger than {limit} bytes (LIMEN_MAX_BODY_BYTES)"
    )


class BodyLimit:
    """Pure ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (scope["method"], scope["path"]) in UNLIMITED_BODY_ROUTES:
            await self._closing_unless_read(scope, receive, send)
            return
        length = declared_length(scope)
        if length is not None and length > self.limit:
            await error_response(too_large(self.limit), headers=CLOSE_CONNECTION)(scope, receive, send)
            return
        if length is not None or not has_unsized_body(scope):
            # The server delivers exactly Content-Length bytes (or none): nothing to count.
            await self.app(scope, receive, send)
            return
        await self._counting(scope, receive, send)

    async def _closing_unless_read(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Passes the request through; an answer starting before the whole body came says ``Connection: close``."""
        body_read = not has_body(scope)

        async def watched_receive() -> Message:
            nonlocal body_read
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_read = True
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not body_read:
                headers = [(name, value) for name, value in message.get("headers", []) if name.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, watched_receive, closing_send)

    async def _counting(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        refused = False
        response_started = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    refused = True
                    if not response_started:
                        await error_response(too_large(self.limit), headers=CLOSE_CONNECTION)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if refused:
                return  # the 413 went out instead
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, counted_receive, guarded_send)

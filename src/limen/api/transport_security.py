"""HSTS when limen terminates TLS itself: every HTTPS answer tells the browser to use only HTTPS for this
host from now on, so a later ``http://`` link or a downgrade in the network cannot strip TLS away."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A year, the usual value; subdomains are not limen's to decide.
HSTS_VALUE = b"max-age=31536000"
HSTS_HEADER = b"strict-transport-security"


class StrictTransportSecurity:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != HSTS_HEADER]
                message = {**message, "headers": [*headers, (HSTS_HEADER, HSTS_VALUE)]}
            await send(message)

        await self.app(scope, receive, send_with_hsts)

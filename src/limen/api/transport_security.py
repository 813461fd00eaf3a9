"""HSTS when limen terminates TLS itself: every HTTPS answer tells the browser to use only HTTPS for this
host from now on, so a later ``http://`` link or a downgrade in the network cannot strip TLS away.

Not for ``localhost`` (and its subdomains) nor a loopback address: a browser keeps HSTS per host name, not
per port, so limen's answer there made it force HTTPS, for a year, on every other ``http://localhost:*``
service of the machine (a developer's servers, other tools' pages). No network lies between such a browser
and limen, so there is no downgrade for HSTS to stop."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from limen.auth.site import host_of, is_loopback

# A year, the usual value; subdomains are not limen's to decide.
HSTS_VALUE = b"max-age=31536000"
HSTS_HEADER = b"strict-transport-security"


def names_this_machine(scope: Scope) -> bool:
    """Whether the request's Host is ``localhost``, a subdomain of it, or a loopback address."""
    host = next((value for name, value in scope.get("headers", []) if name == b"host"), None)
    if host is None:
        return False
    name = host_of(host.decode("latin-1"))
    return is_loopback(name) or name.endswith(".localhost")


class StrictTransportSecurity:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https" or names_this_machine(scope):
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != HSTS_HEADER]
                message = {**message, "headers": [*headers, (HSTS_HEADER, HSTS_VALUE)]}
            await send(message)

        await self.app(scope, receive, send_with_hsts)

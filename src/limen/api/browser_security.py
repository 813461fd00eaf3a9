"""Headers that tell the browser what limen's answers may do: on every HTTP answer, a Content Security
Policy, no framing, no MIME sniffing and no referrer to other sites; on the API's answers, ``no-store``.

Why: SameSite cookies stop framing from other sites, not from the same site (another port of the host, a
sibling subdomain), and such a page could frame the signed-in console or an action page and trick the user
into typing or clicking there. The policy also keeps any script that is not one of limen's own files (an
injected ``<script>``, an ``on…=`` attribute) from running. The API's answers carry per-user data (VMs,
tokens, users), which a shared machine's browser cache must not keep.

A header the route set itself is kept: ``/api/docs`` has its own policy (Swagger UI's page runs an inline
script), the event stream and the screenshot their own ``Cache-Control``. Static files keep their caching.
Plain ASGI: the headers are constants, appended to the response's start message.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = b"content-security-policy"
CACHE_CONTROL = b"cache-control"
API_PREFIX = "/api/"


def content_security_policy(script_src: str = "'self'") -> str:
    """limen's policy: only its own scripts, styles, images and connections (Chromium counts same-origin
    ``ws:``/``wss:`` as ``'self'``), never in a frame. Inline styles stay allowed: xterm.js and Swagger UI
    write ``<style>`` elements. ``script_src`` is for ``/api/docs``, which adds its inline script's hash."""
    return "; ".join((
        "default-src 'self'",
        f"script-src {script_src}",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
        "form-action 'self'",
    ))


_EVERY_ANSWER = (
    (CONTENT_SECURITY_POLICY, content_security_policy().encode()),
    (b"x-frame-options", b"DENY"),  # frame-ancestors for browsers that predate it
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # not no-referrer: same-origin requests keep their Origin
)
_API_ANSWER = (*_EVERY_ANSWER, (CACHE_CONTROL, b"no-store"))


class BrowserSecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = _API_ANSWER if scope["path"].startswith(API_PREFIX) else _EVERY_ANSWER

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in added if header[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

"""Refuses HTTP requests whose ``Host`` names no address of this server (HOST_NOT_ALLOWED, 400, JSON),
on loopback too: a DNS-rebinding page then cannot talk to limen under its own name.
Which names pass is :class:`limen.auth.site.Site`'s to say.

WebSocket requests pass through: the console checks the Host itself in its check_vm stage, so that a
refusal is an error frame and close code 4010 like its other refusals (:mod:`limen.auth.console_gate`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from limen.api.error_responses import error_response
from limen.auth.site import Site
from limen.errors import LimenError


class HostCheck:
    def __init__(self, app: ASGIApp, site: Site) -> None:
        self.app = app
        self.site = site

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.site.hosts is not None:
            hosts = [value.decode("latin-1") for name, value in scope["headers"] if name == b"host"]
            try:
                self.site.check_host_headers(hosts)
            except LimenError as refusal:
                await error_response(refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

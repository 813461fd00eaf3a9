"""Requests to routes that need a user are authenticated before their body is read.

FastAPI reads and parses a route's body before it resolves the route's dependencies, so with the
``CurrentUser`` dependency alone an anonymous client makes limen read and parse whatever it sends. This
middleware stands between the route and the body: when the application first asks for the body of a
request, the router has picked its route (``scope["route"]``); if that route depends on ``CurrentUser``
(:func:`limen.api.deps.needs_user`) and nobody has authenticated the request yet, it is authenticated
from its headers there and then (credential, then CSRF for cookie requests). A refusal is the usual
JSON error with ``Connection: close``; the application is told the client has gone (``http.disconnect``)
and what it still sends is dropped, so not a byte of the body is read. An accepted principal is left
in the scope (``PRINCIPAL_SCOPE_KEY``), where the dependency takes it instead of authenticating again.

Requests without a body pass untouched; so do routes that need no user (``POST /api/login``: the body
limit bounds what it reads) and routes that read their body after their dependencies ran (a streamed
upload): the dependency has authenticated them already, and its refusal closes the connection
(:mod:`limen.api.body_limit`), so the body is not read either.
"""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from limen.api.body_limit import CLOSE_CONNECTION, has_body
from limen.api.deps import PRINCIPAL_SCOPE_KEY, access_of, needs_user
from limen.api.error_responses import error_response
from limen.auth.credentials import authenticate_request
from limen.errors import LimenError


def route_needs_user(scope: Scope) -> bool:
    """Whether the route the router picked for this request depends on ``CurrentUser``."""
    route = scope.get("route")
    return isinstance(route, APIRoute) and needs_user(route.dependant)


class AuthenticateFirst:
    """Pure ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not has_body(scope):
            await self.app(scope, receive, send)
            return
        checked = False
        refused = False
        response_started = False

        async def receive_once_authenticated() -> Message:
            nonlocal checked, refused
            if not checked:
                checked = True
                if PRINCIPAL_SCOPE_KEY not in scope and route_needs_user(scope):
                    conn = HTTPConnection(scope)
                    try:
                        scope[PRINCIPAL_SCOPE_KEY] = await authenticate_request(access_of(conn), conn)
                    except LimenError as error:
                        refused = True
                        if not response_started:
                            await error_response(error, headers=CLOSE_CONNECTION)(scope, receive, send)
            if refused:
                return {"type": "http.disconnect"}
            return await receive()

        async def send_unless_refused(message: Message) -> None:
            nonlocal response_started
            if refused:
                return  # the refusal went out instead
            response_started = True
            await send(message)

        await self.app(scope, receive_once_authenticated, send_unless_refused)

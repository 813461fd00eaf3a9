"""Console tickets: ``POST /api/vms/{id}/console-ticket`` → a one-time ticket for the console WebSocket.

The page asks for a ticket right before it opens ``/api/vms/{id}/console?ticket=…``; the ticket is bound to
the user and the VM, valid for ``console_ticket_ttl`` seconds, and opens one console.

The route is declared to FastAPI (the OpenAPI document, a request with a body, another method's 405), but
a body-less ``POST`` — what every browser sends — is answered by :class:`ConsoleTicketRoute` before the
router, with the same functions the route's dependencies are. Why: a ticket comes after the user has
clicked, when the server has been idle or busy with other work and the CPU's caches hold none of this
path; measured so, a request costs in proportion to the code it runs, and FastAPI's request handling
(routing, dependency solving, response handling) was half of this one's (bench/RESULTS.md, round 13).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from limen.api.body_limit import has_body
from limen.api.deps import ConsoleVm, CurrentUser, access_of, console_vm, current_user
from limen.api.error_responses import error_response
from limen.api.schemas import ErrorBody
from limen.api.strict_json import StrictJsonRoute
from limen.auth.principal import Principal
from limen.errors import LimenError
from limen.hypervisor.models import Vm

log = logging.getLogger("limen.auth")

router = APIRouter(route_class=StrictJsonRoute, tags=["console"])
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody} for status in (400, 401, 403, 404, 503)}
NO_STORE = {"Cache-Control": "no-store"}


class TicketOut(BaseModel):
    ticket: str = Field(description="Pass as ?ticket= when opening the console WebSocket; usable once")
    expires_in: float = Field(description="Seconds the ticket stays valid")
    vm_uuid: str


async def _ticket_response(request: Request, vm: Vm, principal: Principal) -> JSONResponse:
    access = access_of(request)
    ticket = await access.tickets.issue(principal.name, vm.uuid, principal.credential)
    log.info("console ticket issued", extra={"event": "console_ticket", "user": principal.name, "vm_uuid": vm.uuid})
    body = TicketOut(ticket=ticket, expires_in=access.tickets.ttl, vm_uuid=vm.uuid)
    return JSONResponse(body.model_dump(), headers=NO_STORE)


@router.post("/api/vms/{vm_id}/console-ticket", response_model=TicketOut, responses=_ERRORS)
async def console_ticket(vm: ConsoleVm, principal: CurrentUser, request: Request) -> JSONResponse:
    return await _ticket_response(request, vm, principal)


TICKET_ROUTE: APIRoute = next(route for route in router.routes if isinstance(route, APIRoute))
TICKET_PATH = TICKET_ROUTE.path_regex  # the router's own pattern: group 1 is {vm_id}, one path segment


class ConsoleTicketRoute:
    """Pure ASGI middleware, innermost of limen's (request id, Host check and body limit have run): answers
    a body-less ``POST`` to the ticket's path as the route would; everything else goes on to the router."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = TICKET_PATH.match(scope["path"]) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST" or has_body(scope):
            await self.app(scope, receive, send)
            return
        vm_id = match.group(1)
        scope["route"] = TICKET_ROUTE  # as the router sets it: the metrics' path template
        scope["path_params"] = {"vm_id": vm_id}
        request = Request(scope, receive, send)
        try:
            principal = await current_user(request)
            vm = await console_vm(vm_id, principal, request)
            response = await _ticket_response(request, vm, principal)
        except LimenError as error:
            response = error_response(error)
        await response(scope, receive, send)

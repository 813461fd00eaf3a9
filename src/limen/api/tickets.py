"""Console tickets: ``POST /api/vms/{id}/console-ticket`` → a one-time ticket for the console WebSocket.

The page asks for a ticket right before it opens ``/api/vms/{id}/console?ticket=…``; the ticket is bound to
the user and the VM, valid for ``console_ticket_ttl`` seconds, and opens one console.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from limen.api.deps import ConsoleVm, CurrentUser, access_of
from limen.api.schemas import ErrorBody

log = logging.getLogger("limen.auth")

router = APIRouter(tags=["console"])
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody} for status in (400, 401, 403, 404, 503)}


class TicketOut(BaseModel):
    ticket: str = Field(description="Pass as ?ticket= when opening the console WebSocket; usable once")
    expires_in: float = Field(description="Seconds the ticket stays valid")
    vm_uuid: str


@router.post("/api/vms/{vm_id}/console-ticket", response_model=TicketOut, responses=_ERRORS)
async def console_ticket(vm: ConsoleVm, principal: CurrentUser, request: Request) -> JSONResponse:
    access = access_of(request)  # not a dependency: one node less in the tree FastAPI walks every request
    ticket = await access.tickets.issue(principal.name, vm.uuid, principal.credential)
    log.info("console ticket issued", extra={"event": "console_ticket", "user": principal.name, "vm_uuid": vm.uuid})
    body = TicketOut(ticket=ticket, expires_in=access.tickets.ttl, vm_uuid=vm.uuid)
    return JSONResponse(body.model_dump(), headers={"Cache-Control": "no-store"})

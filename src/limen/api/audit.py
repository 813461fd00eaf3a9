"""The audit trail over HTTP: console sessions (admins: everyone's; users: their own), ending a live
session (admins), and VM actions.

Ending a session is asked of the console registry at ``app.state.console_sessions``: its
``terminate(session_id)`` makes the session close with SESSION_TERMINATED and returns (or resolves to)
whether the session was live in this process.
"""

from __future__ import annotations

import inspect
import logging
from datetime import datetime
from typing import Any, Protocol

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from limen.api.schemas import ErrorBody
from limen.audit import DEFAULT_LIMIT, MAX_LIMIT
from limen.auth.deps import AccessDep, AdminUser, CurrentUser
from limen.errors import ErrorCode, LimenError

log = logging.getLogger("limen.audit")

router = APIRouter(tags=["audit"])
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody} for status in (401, 403, 404)}


class ConsoleTerminator(Protocol):
    def terminate(self, session_id: str) -> Any:
        """Ends the live session ``session_id`` with SESSION_TERMINATED; True (or an awaitable of it)
        if it was live in this process."""
        ...


class ConsoleSessionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    user: str
    vm_uuid: str
    vm_name: str
    client_address: str
    started_at: datetime
    ended_at: datetime | None
    live: bool
    bytes_to_client: int
    bytes_from_client: int
    end_code: str | None = Field(description="OK, or the error code the session ended with")
    terminated_by: str | None



class TerminationOut(BaseModel):
    session: ConsoleSessionOut
    ending: bool = Field(description="True if the session was live in this limen process and is now ending")


class VmActionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user: str
    vm_uuid: str | None
    vm_name: str
    action: str
    at: datetime
    result_code: str
    details: str



@router.get("/api/console-sessions", response_model=list[ConsoleSessionOut], responses=_ERRORS)
async def list_console_sessions(
    principal: CurrentUser,
    access: AccessDep,
    live: bool = Query(False, description="Only sessions that have not ended"),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
) -> list[ConsoleSessionOut]:
    """Newest first. Admins see every session; users see their own."""
    sessions = await access.audit.console_sessions(
        user=None if principal.is_admin else principal.name, live_only=live, limit=limit
    )
    return [ConsoleSessionOut.model_validate(info) for info in sessions]


@router.delete("/api/console-sessions/{session_id}", response_model=TerminationOut, status_code=202,
               responses=_ERRORS)
async def terminate_console_session(
    session_id: str, request: Request, admin: AdminUser, access: AccessDep
) -> JSONResponse:
    """Ends a live console session; its client is told SESSION_TERMINATED."""
    info = await access.audit.termination_requested(session_id, admin.name)
    if info is None:
        raise LimenError(ErrorCode.CONSOLE_SESSION_NOT_FOUND, f"no live console session {session_id[:40]!r}")
    registry: ConsoleTerminator | None = getattr(request.app.state, "console_sessions", None)
    ending = False
    if registry is not None:
        result = registry.terminate(session_id)
        ending = bool(await result) if inspect.isawaitable(result) else bool(result)
    log.info("console session termination requested", extra={
        "event": "console_terminate", "user": admin.name, "session_id": session_id, "ending": ending,
    })
    body = TerminationOut(session=ConsoleSessionOut.model_validate(info), ending=ending)
    return JSONResponse(body.model_dump(mode="json"), status_code=202)


@router.get("/api/vm-actions", response_model=list[VmActionOut], responses=_ERRORS)
async def list_vm_actions(
    principal: CurrentUser,
    access: AccessDep,
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    vm: str | None = Query(None, min_length=1, max_length=64, description="Only this VM's actions (UUID or name)"),
) -> list[VmActionOut]:
    """Newest first. Admins see every action; users see the actions they did."""
    actions = await access.audit.vm_actions(user=None if principal.is_admin else principal.name, vm=vm,
                                            limit=limit)
    return [VmActionOut.model_validate(info) for info in actions]

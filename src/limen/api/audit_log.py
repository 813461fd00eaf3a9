"""The audit trail over HTTP: console sessions (admins: everyone's; users: their own), ending a live
session (admins), and VM actions.

Ending a session is published on the revocation bus (:mod:`limen.auth.revocation`), so whichever limen
instance holds the session ends it with SESSION_TERMINATED (across instances when they share a Redis).
A row that is live but that no live limen instance holds (its server died) is closed at once with
SERVER_LOST instead (:meth:`limen.recovery.Recovery.close_if_lost`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from limen import end_details
from limen.api.deps import AccessDep, AdminUser, CurrentUser
from limen.api.schemas import ErrorBody
from limen.api.services import services_of
from limen.api.strict_json import StrictJsonRoute
from limen.audit import DEFAULT_LIMIT, MAX_LIMIT
from limen.auth.access import Access
from limen.auth.principal import Principal
from limen.auth.revocation import Revocation
from limen.db.models import ACTION_TARGET_MAX
from limen.errors import ErrorCode, LimenError

log = logging.getLogger("limen.audit")

router = APIRouter(route_class=StrictJsonRoute, tags=["audit"])
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody} for status in (401, 403, 404)}


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
    end_details: str | None = Field(None, description="Why it ended, in words (e.g. \"API token 12 revoked\")")
    end_details_phrases: list[dict[str, str]] | None = Field(None, description=(
        "end_details read back as phrases, as a VM action's details_phrases, when they are limen's own words: a "
        "lost server's (SERVER_LOST, e.g. {\"kind\": \"instance_silent\", \"instance\", \"host\", \"pid\", "
        "\"seconds\"}) or an error's (e.g. {\"kind\": \"vm_given\", \"vm\", \"owner\", \"by\"}); null otherwise: "
        "then show end_details as they are"))
    terminated_by: str | None
    credential: str | None = Field(
        None, description="What opened it: token:<id>, or session:<first 16 hex digits of the sign-in's hash>"
    )
    kind: str = Field("vnc", description="Which console: vnc (the screen) or serial (the text console)")


class TerminationOut(BaseModel):
    session: ConsoleSessionOut
    ending: bool = Field(description="True if the session was live in this limen process and is now ending; "
                         "an instance that shares this one's Redis ends it too if it holds it")
    closed: bool = Field(False, description="True if no live limen instance held the session (its server "
                                            "died): its record was closed at once with SERVER_LOST")


class VmActionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user: str
    vm_uuid: str | None
    vm_name: str
    action: str
    at: datetime
    result_code: str = Field(description="OK, an error code, or STARTED while the action runs")
    details: str
    details_phrases: list[dict[str, str]] | None = Field(None, description=(
        "The details read back as phrases, for a client to word in its own language: a list of {kind, values} "
        "(e.g. {\"kind\": \"given_to\", \"owner\": \"bob\"}, {\"kind\": \"change\", \"field\": \"vcpus\", "
        "\"old\": \"1\", \"new\": \"2\", \"pending\": \"true\"}); null when a part is not a known phrase "
        "(a snapshot's name, an older row's words): then show details as they are"))
    finished_at: datetime | None = Field(None, description="None while the action runs")


async def _own_rows(principal: Principal, access: Access) -> tuple[str | None, datetime | None]:
    """Whose audit rows, and since when, a user sees: everyone's for an administrator (None, None); for a user,
    those of their name since their account was made. Rows keep a deleted user's name: a new user given that
    name saw the old one's sessions (client addresses, credentials) and actions."""
    if principal.is_admin:
        return None, None
    return principal.name, (await access.users.get(principal.name)).created_at


@router.get("/api/console-sessions", response_model=list[ConsoleSessionOut], responses=_ERRORS)
async def list_console_sessions(
    request: Request,
    principal: CurrentUser,
    access: AccessDep,
    live: bool = Query(False, description="Only sessions that have not ended"),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
) -> list[ConsoleSessionOut]:
    """Newest first. Admins see every session; users see their own.

    A live session's row holds its bytes only once it ends; for sessions live in this limen process the
    answer shows the bytes so far (a session another instance holds shows 0 until it ends)."""
    user, since = await _own_rows(principal, access)
    sessions = await access.audit.console_sessions(user=user, since=since, live_only=live, limit=limit)
    registry = services_of(request).console_sessions
    answer = []
    for info in sessions:
        out = ConsoleSessionOut.model_validate(info)
        so_far = registry.bytes_so_far(info.id) if info.live else None
        if so_far is not None:
            out.bytes_to_client, out.bytes_from_client = so_far
        answer.append(out)
    return answer


@router.delete("/api/console-sessions/{session_id}", response_model=TerminationOut, status_code=202,
               responses=_ERRORS)
async def terminate_console_session(
    session_id: str, request: Request, admin: AdminUser, access: AccessDep
) -> JSONResponse:
    """Ends a live console session; its client is told SESSION_TERMINATED."""
    info = await access.audit.termination_requested(session_id, admin.name)
    if info is None:
        raise LimenError(ErrorCode.CONSOLE_SESSION_NOT_FOUND, f"no live console session {session_id[:40]!r}")
    services = services_of(request)
    ending = services.console_sessions.get(session_id) is not None
    closed = False
    if not ending and await services.recovery.close_if_lost(session_id):
        closed = True
        info = await access.audit.console_session(session_id) or info
    else:  # held here or by another live instance: whichever holds it ends it
        await access.revocations.publish(Revocation.session_ended(
            session_id, end_details.session_ended_by_admin(admin.name)))
    log.info("console session termination requested", extra={
        "event": "console_terminate", "user": admin.name, "session_id": session_id, "ending": ending,
        "closed": closed,
    })
    body = TerminationOut(session=ConsoleSessionOut.model_validate(info), ending=ending, closed=closed)
    return JSONResponse(body.model_dump(mode="json"), status_code=202)


@router.get("/api/vm-actions", response_model=list[VmActionOut], responses=_ERRORS)
async def list_vm_actions(
    principal: CurrentUser,
    access: AccessDep,
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    vm: str | None = Query(None, min_length=1, max_length=ACTION_TARGET_MAX,
                           description="Only this VM's actions (UUID or name; or a volume's name: its deletions)"),
) -> list[VmActionOut]:
    """Newest first. Admins see every action; users see the actions they did."""
    user, since = await _own_rows(principal, access)
    actions = await access.audit.vm_actions(user=user, since=since, vm=vm, limit=limit)
    return [VmActionOut.model_validate(info) for info in actions]

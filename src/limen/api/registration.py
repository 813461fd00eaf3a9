"""Self-registration: ``GET /api/registration`` tells the sign-in page whether it may offer a sign-up, and
``POST /api/register`` makes a plain user's account (``LIMEN_REGISTRATION``: ``off`` refuses with
REGISTRATION_CLOSED; ``approval`` makes it wait for an administrator, ``PUT /api/users/{name}/approved``,
and until then signing in answers ACCOUNT_PENDING; ``open`` makes it ready to sign in).

Both routes need no user. Registrations go through the sign-in throttle: each one takes a place on the
client address and is counted as a failure there, so one address makes at most
``LIMEN_LOGIN_MAX_FAILURES_PER_ADDRESS`` accounts (or failed sign-ins) per failure window.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from limen.api.body_rules import body_rules
from limen.api.deps import AccessDep
from limen.api.error_responses import error_response
from limen.api.schemas import ErrorBody
from limen.api.strict_json import StrictJsonRoute
from limen.auth.ratelimit import TooManyAttempts
from limen.auth.users import check_name_and_password
from limen.errors import ErrorCode, LimenError

log = logging.getLogger("limen.auth")

router = APIRouter(route_class=StrictJsonRoute, prefix="/api", tags=["access"])
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody} for status in (403, 409, 422, 429)}


class RegistrationOut(BaseModel):
    mode: Literal["off", "approval", "open"] = Field(
        description="off: no sign-up; approval: new accounts wait for an administrator; open: ready at once")


class RegisterBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=256, description="Any text of 1–64 characters, without control characters")
    password: str = Field(max_length=1024, description="At least 8 characters",
                          json_schema_extra={"format": "password"})


@body_rules(RegisterBody)
async def _register_rules(_request: Request, body: RegisterBody, _failed: frozenset[str]) -> None:
    """The name and password rules of a new account, beside the body's type errors."""
    check_name_and_password(body.name, body.password)


class Registered(BaseModel):
    name: str
    approved: bool = Field(description="False: an administrator must approve the account before it signs in")


@router.get("/registration", response_model=RegistrationOut)
async def registration_mode(access: AccessDep) -> RegistrationOut:
    return RegistrationOut(mode=access.settings.registration)


@router.post("/register", response_model=Registered, status_code=201, responses=_ERRORS)
async def register(body: RegisterBody, request: Request, access: AccessDep) -> Any:
    mode = access.settings.registration
    if mode == "off":
        raise LimenError(ErrorCode.REGISTRATION_CLOSED, "LIMEN_REGISTRATION is off")
    address = access.client_address(request)
    access.check_origin(request)
    try:
        attempt = await access.login_limiter.begin(body.name, address)
    except TooManyAttempts as exc:
        log.warning("registration refused: too many attempts",
                    extra={"event": "register_throttled", "client": address, "retry_after": exc.retry_after})
        return error_response(exc, headers={"Retry-After": str(exc.retry_after)})
    try:
        user = await access.users.create(body.name, body.password, approved=mode == "open")
    except BaseException:
        await attempt.failed()
        raise
    await attempt.failed()  # counted, so that one address cannot make accounts without end
    log.info("user registered", extra={"event": "user_register", "new_user": user.name, "client": address,
                                       "approved": user.approved})
    return JSONResponse(Registered(name=user.name, approved=user.approved).model_dump(), status_code=201)

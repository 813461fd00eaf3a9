"""Signing in and out, who am I, and API tokens.

``POST /api/login`` sets the ``limen_session`` cookie and returns the CSRF token the page must send
(``X-CSRF-Token``) with every state-changing request. Attempts are throttled per user name at the client
address and per address (:mod:`limen.auth.ratelimit`); the answer never says whether the user exists.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from limen import end_details
from limen.api.body_rules import body_rules
from limen.api.deps import AccessDep, CurrentUser
from limen.api.error_responses import error_response
from limen.api.schemas import ErrorBody
from limen.api.strict_json import StrictJsonRoute
from limen.auth.browser_sessions import COOKIE_NAME
from limen.auth.names import name_key
from limen.auth.principal import AuthMethod, require_admin, token_credential
from limen.auth.ratelimit import TooManyAttempts
from limen.auth.revocation import Revocation
from limen.auth.tokens import TokenInfo, clean_token_name
from limen.auth.users import AccountNotUsable
from limen.db.models import Role
from limen.errors import ErrorCode, LimenError
from limen.i18n import LANGUAGE_COOKIE, LANGUAGE_COOKIE_MAX_AGE

log = logging.getLogger("limen.auth")

router = APIRouter(route_class=StrictJsonRoute, prefix="/api", tags=["access"])
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody} for status in (401, 403, 404, 422, 429)}
# What holds a secret (the CSRF token beside who is signed in, a token's secret) is kept by no cache, the
# browser's disk cache included.
NO_STORE = "no-store"


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=256)
    password: str = Field(max_length=1024, json_schema_extra={"format": "password"})


class MeOut(BaseModel):
    name: str
    role: Role
    auth: AuthMethod = Field(description="How this request was authenticated")
    csrf_token: str | None = Field(
        None, description="Send as X-CSRF-Token with state-changing requests (cookie sign-ins only)"
    )
    language: str | None = Field(
        None, description="The UI language the user chose (ko or en); null: the browser's Accept-Language decides"
    )


class MeChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: Literal["ko", "en"] | None = Field(
        description="The UI language to remember for this user (ko or en); null forgets the choice"
    )


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="What the token is for, e.g. 'backup script'")
    user: str | None = Field(None, description="Admins only: make the token for this user (default: yourself)")


class TokenOut(BaseModel):
    id: int
    name: str
    owner: str
    prefix: str = Field(description="The secret's first characters, to tell tokens apart")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, token: TokenInfo) -> TokenOut:
        return cls(id=token.id, name=token.name, owner=token.owner, prefix=token.prefix,
                   created_at=token.created_at, last_used_at=token.last_used_at, revoked_at=token.revoked_at)


class TokenCreated(TokenOut):
    secret: str = Field(description="Shown this once: send it as 'Authorization: Bearer <secret>'")


@router.post("/login", response_model=MeOut, responses=_ERRORS)
async def login(body: LoginBody, request: Request, response: Response, access: AccessDep) -> Any:
    address = access.client_address(request)
    access.check_origin(request)
    try:
        attempt = await access.login_limiter.begin(body.name, address)
    except TooManyAttempts as exc:
        log.warning("sign-in refused: too many attempts",
                    extra={"event": "login_throttled", "client": address, "retry_after": exc.retry_after})
        return error_response(exc, headers={"Retry-After": str(exc.retry_after)})
    try:
        principal = await access.users.authenticate(body.name, body.password)
    except AccountNotUsable as refused:
        await attempt.succeeded()  # the right password: told only now, so guessers learn nothing
        log.info("sign-in of an account that cannot sign in", extra={
            "event": "login_pending" if refused.code is ErrorCode.ACCOUNT_PENDING else "login_disabled",
            "client": address})
        raise
    except BaseException:
        await attempt.abandoned()
        raise
    if principal is None:
        await attempt.failed()
        # The name is not logged: people type passwords into it.
        log.warning("sign-in failed", extra={"event": "login_failed", "client": address})
        raise LimenError(ErrorCode.INVALID_CREDENTIALS, "no enabled user has this name and password")
    await attempt.succeeded()
    session = await access.sessions.create(principal.name)  # INVALID_CREDENTIALS if deleted meanwhile
    response.set_cookie(
        COOKIE_NAME, session.cookie, max_age=int(access.settings.session_ttl), path="/", httponly=True,
        samesite="strict", secure=access.cookie_secure(request),
    )
    language = session.language
    if language is not None:  # the pages render in it from now on, in this browser too
        _remember_language(response, request, access, language)
    log.info("signed in", extra={"event": "login", "user": principal.name, "client": address})
    response.headers["Cache-Control"] = NO_STORE
    return MeOut(name=principal.name, role=principal.role, auth=AuthMethod.COOKIE, csrf_token=session.csrf_token,
                 language=language)


def _remember_language(response: Response, request: Request, access: AccessDep, language: str) -> None:
    """The language cookie the page routes read. Not HttpOnly: signed-out pages set it from script."""
    response.set_cookie(LANGUAGE_COOKIE, language, max_age=LANGUAGE_COOKIE_MAX_AGE, path="/", samesite="lax",
                        secure=access.cookie_secure(request))


@router.post("/logout", status_code=204, responses=_ERRORS)
async def logout(request: Request, principal: CurrentUser, access: AccessDep) -> Response:
    """Ends this browser session, and the consoles opened with it (a no-op for API tokens: revoke those)."""
    response = Response(status_code=204)
    cookie = request.cookies.get(COOKIE_NAME)
    if principal.method is AuthMethod.COOKIE and cookie:
        await access.sessions.end(cookie)
        await access.revocations.publish(Revocation.credential_revoked(
            access.sessions.credential_of(cookie), end_details.signed_out(principal.name)))
        response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict",
                               secure=access.cookie_secure(request))
        log.info("signed out", extra={"event": "logout", "user": principal.name})
    return response


@router.get("/me", response_model=MeOut, responses=_ERRORS)
async def me(principal: CurrentUser, response: Response, access: AccessDep) -> MeOut:
    language = await access.users.language(principal.name)
    response.headers["Cache-Control"] = NO_STORE
    return MeOut(name=principal.name, role=principal.role, auth=principal.method, csrf_token=principal.csrf_token,
                 language=language)


@router.patch("/me", response_model=MeOut, responses=_ERRORS)
async def change_me(body: MeChange, principal: CurrentUser, request: Request, response: Response,
                    access: AccessDep) -> MeOut:
    """Remembers the user's UI language (the language menu on every page), here and in every browser
    they sign in from; this browser's pages follow at once (the response sets the language cookie)."""
    await access.users.set_language(principal.name, body.language)
    if body.language is None:
        response.delete_cookie(LANGUAGE_COOKIE, path="/", samesite="lax", secure=access.cookie_secure(request))
    else:
        _remember_language(response, request, access, body.language)
    log.info("language changed", extra={"event": "language_changed", "user": principal.name,
                                        "language": body.language})
    response.headers["Cache-Control"] = NO_STORE
    return MeOut(name=principal.name, role=principal.role, auth=principal.method, csrf_token=principal.csrf_token,
                 language=body.language)


@router.get("/tokens", response_model=list[TokenOut], responses=_ERRORS)
async def list_tokens(
    principal: CurrentUser,
    access: AccessDep,
    all_users: bool = Query(False, alias="all", description="Admins only: every user's tokens"),
) -> list[TokenOut]:
    if all_users:
        require_admin(principal)
    tokens = await access.tokens.list_all(None if all_users else principal.name)
    return [TokenOut.of(token) for token in tokens]


@body_rules(TokenCreate)
async def _token_rules(_request: Request, body: TokenCreate, _failed: frozenset[str]) -> None:
    """The token name's rules (the create's), beside the body's type errors."""
    if body.name is not None:
        clean_token_name(body.name)


@router.post("/tokens", response_model=TokenCreated, status_code=201, responses=_ERRORS)
async def create_token(body: TokenCreate, principal: CurrentUser, access: AccessDep) -> JSONResponse:
    owner = principal.name
    if body.user is not None and name_key(body.user) != name_key(principal.name):
        require_admin(principal)
        owner = body.user
    made = await access.tokens.create(owner, body.name)
    log.info("API token created", extra={"event": "token_create", "user": principal.name, "owner": owner,
                                         "token_id": made.info.id})
    created = TokenCreated(**TokenOut.of(made.info).model_dump(), secret=made.secret)
    # Never cached anywhere: the secret is in this body only.
    return JSONResponse(created.model_dump(mode="json"), status_code=201, headers={"Cache-Control": NO_STORE})


@router.delete("/tokens/{token_id}", response_model=TokenOut, responses=_ERRORS)
async def revoke_token(token_id: int, principal: CurrentUser, access: AccessDep) -> TokenOut:
    """Revokes one of your tokens (admins: anyone's). A revoked token is refused from then on, and the
    consoles opened with it (or with a ticket it asked for) end."""
    token = await access.tokens.revoke(token_id, principal)
    await access.revocations.publish(Revocation.credential_revoked(
        token_credential(token.id), end_details.token_revoked(token.id, principal.name)))
    log.info("API token revoked", extra={"event": "token_revoke", "user": principal.name, "token_id": token_id})
    return TokenOut.of(token)

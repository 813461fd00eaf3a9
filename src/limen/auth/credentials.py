"""Who a request is, from its headers alone: an API token (``Authorization: Bearer``) or a session
cookie, and for cookie-authenticated requests that change state the Origin check and the session's CSRF
token in ``X-CSRF-Token`` (CSRF_FAILED); bearer requests are exempt (a browser never adds that header by
itself). The FastAPI dependencies over these functions are in :mod:`limen.api.deps`.
"""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection

from limen.auth.access import Access
from limen.auth.browser_sessions import COOKIE_NAME, CSRF_HEADER
from limen.auth.principal import Principal
from limen.errors import ErrorCode, LimenError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def authenticate(access: Access, *, bearer: str | None, cookie: str | None) -> Principal:
    """The principal behind a bearer secret or a session cookie (bearer wins); UNAUTHORIZED otherwise."""
    if bearer is not None:
        principal = await access.tokens.resolve(bearer)
        if principal is None:
            raise LimenError(ErrorCode.UNAUTHORIZED, "the API token is unknown or revoked, or its user is disabled")
        return principal
    if cookie:
        principal = await access.sessions.resolve(cookie)
        if principal is None:
            raise LimenError(ErrorCode.UNAUTHORIZED, "the session has expired or was signed out")
        return principal
    raise LimenError(ErrorCode.UNAUTHORIZED, "no session cookie and no API token")


def check_csrf(access: Access, conn: HTTPConnection, principal: Principal) -> None:
    """For a cookie-authenticated request that changes state: Origin allowed and the CSRF token sent."""
    if principal.csrf_token is None or conn.scope["method"] in SAFE_METHODS:
        return
    access.check_origin(conn)
    sent = conn.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), principal.csrf_token.encode()):
        raise LimenError(ErrorCode.CSRF_FAILED, f"the {CSRF_HEADER} header is missing or wrong")


def bearer_secret(conn: HTTPConnection) -> str | None:
    """The secret of ``Authorization: Bearer <secret>``, read as the ``HTTPBearer`` scheme reads it."""
    scheme, _, secret = conn.headers.get("authorization", "").partition(" ")
    secret = secret.strip()
    return secret if scheme.lower() == "bearer" and secret else None


async def authenticate_request(access: Access, conn: HTTPConnection) -> Principal:
    """The request's principal (bearer secret or session cookie), CSRF-checked; UNAUTHORIZED or
    CSRF_FAILED otherwise. Looks at the headers only: the body is never touched."""
    principal = await authenticate(access, bearer=bearer_secret(conn), cookie=conn.cookies.get(COOKIE_NAME))
    check_csrf(access, conn, principal)
    return principal

"""FastAPI dependencies for access control.

``CurrentUser``   the signed-in principal (cookie or ``Authorization: Bearer``); UNAUTHORIZED otherwise.
                  Cookie-authenticated requests that change state must also pass the Origin check and
                  carry the session's CSRF token in ``X-CSRF-Token`` (CSRF_FAILED); bearer requests are
                  exempt (a browser never adds that header by itself).
``AdminUser``     the same, and an admin (FORBIDDEN otherwise).
``AccessibleVm``  for routes with a ``{vm_id}`` path parameter: the VM, if the principal may act on it;
                  VM_NOT_FOUND otherwise, the same answer whether the VM is missing or someone else's.
                  Act on ``vm.uuid`` afterwards, not on the name.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from limen.api.deps import HypervisorDep
from limen.auth.access import Access
from limen.auth.browser_sessions import COOKIE_NAME, CSRF_HEADER
from limen.auth.principal import Principal, require_admin, require_vm_access
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.models import Vm

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_bearer = HTTPBearer(auto_error=False, description="An API token: `limen token create NAME --user USER`")
_cookie = APIKeyCookie(name=COOKIE_NAME, auto_error=False, description="Set by POST /api/login")


def access_of(conn: HTTPConnection) -> Access:
    access: Access = conn.app.state.access
    return access


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


# The principal of a request, once authenticated: by limen.api.authenticate_first before the body is read,
# or by the CurrentUser dependency. Whoever comes second takes it from there instead of authenticating again.
PRINCIPAL_SCOPE_KEY = "limen.principal"


def _access(request: Request) -> Access:
    return access_of(request)


AccessDep = Annotated[Access, Depends(_access)]


async def _current_user(
    request: Request,
    access: AccessDep,
    # These two only declare the credentials in the OpenAPI schema; authenticate_request reads the same
    # headers, so that limen.api.authenticate_first and this dependency decide alike.
    _bearer_credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _cookie_credentials: Annotated[str | None, Depends(_cookie)],
) -> Principal:
    principal: Principal | None = request.scope.get(PRINCIPAL_SCOPE_KEY)
    if principal is None:
        principal = await authenticate_request(access, request)
        request.scope[PRINCIPAL_SCOPE_KEY] = principal
    request.state.principal = principal
    return principal


CurrentUser = Annotated[Principal, Depends(_current_user)]


def needs_user(dependant: Dependant) -> bool:
    """Whether a route's dependencies include :data:`CurrentUser` (directly or through another one)."""
    return dependant.call is _current_user or any(needs_user(sub) for sub in dependant.dependencies)


async def _admin_user(principal: CurrentUser) -> Principal:
    require_admin(principal)
    return principal


AdminUser = Annotated[Principal, Depends(_admin_user)]


async def _accessible_vm(vm_id: str, principal: CurrentUser, hypervisor: HypervisorDep) -> Vm:
    vm = await hypervisor.get_vm(vm_id)
    require_vm_access(principal, vm_id, vm.owner)
    return vm


AccessibleVm = Annotated[Vm, Depends(_accessible_vm)]

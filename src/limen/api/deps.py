"""The FastAPI dependencies: the services the app was built with (:mod:`limen.api.services`), and access
control.

``CurrentUser``   the signed-in principal (cookie or ``Authorization: Bearer``, see
                  :mod:`limen.auth.credentials`); UNAUTHORIZED or CSRF_FAILED otherwise.
``AdminUser``     the same, and an admin (FORBIDDEN otherwise).
``AccessibleVm``  for routes with a ``{vm_id}`` path parameter: the VM, if the principal may act on it;
                  VM_NOT_FOUND otherwise, the same answer whether the VM is missing or someone else's.
                  Act on ``vm.uuid`` afterwards, not on the name.
``ConsoleVm``     the same answer for the first step of a console (its ticket): what a console needs of the
                  VM, read through the console admission's cache (:mod:`limen.hypervisor.console_cache`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyCookie, HTTPBearer
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute

from limen.api.services import Services, services_of
from limen.auth.access import Access
from limen.auth.browser_sessions import COOKIE_NAME
from limen.auth.credentials import authenticate_request
from limen.auth.principal import Principal, require_admin, require_vm_access
from limen.hypervisor import Hypervisor
from limen.hypervisor.models import Vm
from limen.recovery import Recovery
from limen.settings import Settings


async def _services(request: Request) -> Services:
    return services_of(request)


ServicesDep = Annotated[Services, Depends(_services)]


# The narrower ones, and the dependencies below, read their service straight off the request, not through
# another dependency: FastAPI walks a route's whole dependency tree on every request, the branches it has
# already solved included, computing each node's cache key anew (a console ticket's tree had 16 nodes, and
# they were most of its CPU in-process), and the services are one attribute away.
async def _hypervisor(request: Request) -> Hypervisor:
    return services_of(request).hypervisor


async def _settings(request: Request) -> Settings:
    return services_of(request).settings


async def _recovery(request: Request) -> Recovery:
    return services_of(request).recovery


RecoveryDep = Annotated[Recovery, Depends(_recovery)]
HypervisorDep = Annotated[Hypervisor, Depends(_hypervisor)]
SettingsDep = Annotated[Settings, Depends(_settings)]


def access_of(conn: HTTPConnection) -> Access:
    return services_of(conn).access


# The principal of a request, once authenticated: by limen.api.authenticate_first before the body is read,
# or by the CurrentUser dependency. Whoever comes second takes it from there instead of authenticating again.
PRINCIPAL_SCOPE_KEY = "limen.principal"


async def _access(request: Request) -> Access:
    return services_of(request).access


AccessDep = Annotated[Access, Depends(_access)]


async def current_user(request: Request) -> Principal:
    """The request's principal (the :data:`CurrentUser` dependency; the console ticket's shortcut calls it
    as it is)."""
    principal: Principal | None = request.scope.get(PRINCIPAL_SCOPE_KEY)
    if principal is None:
        principal = await authenticate_request(access_of(request), request)
        request.scope[PRINCIPAL_SCOPE_KEY] = principal
    request.state.principal = principal
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


def needs_user(dependant: Dependant) -> bool:
    """Whether a route's dependencies include :data:`CurrentUser` (directly or through another one)."""
    return dependant.call is current_user or any(needs_user(sub) for sub in dependant.dependencies)


# How a request proves who it is, as the OpenAPI document declares it (authenticate_request reads the same
# header and cookie). Not dependencies of CurrentUser: FastAPI would walk them on every request (twice for
# a route that reaches CurrentUser by two branches, as a console ticket's does) and run them, to read what
# authenticate_request reads anyway; a fifth of a ticket's CPU in-process (median 0.37 → 0.30 ms over 6
# interleaved pairs). document_credentials writes them into the document instead.
CREDENTIAL_SCHEMES: tuple[SecurityBase, ...] = (
    HTTPBearer(auto_error=False, description="An API token: `limen token create NAME --user USER`"),
    APIKeyCookie(name=COOKIE_NAME, auto_error=False, description="Set by POST /api/login"),
)


def document_credentials(document: dict[str, Any], routes: Iterable[BaseRoute]) -> None:
    """Adds :data:`CREDENTIAL_SCHEMES` to an OpenAPI ``document``, and to each operation of ``routes`` that
    needs a user (:func:`needs_user`) the requirement that one of them be met."""
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    for scheme in CREDENTIAL_SCHEMES:
        schemes[scheme.scheme_name] = scheme.model.model_dump(mode="json", by_alias=True, exclude_none=True)
    for route in routes:
        if not (isinstance(route, APIRoute) and route.include_in_schema and needs_user(route.dependant)):
            continue
        operations = document.get("paths", {}).get(route.path_format, {})
        for method in route.methods or ():
            operation = operations.get(method.lower())
            if operation is not None:
                operation["security"] = [{scheme.scheme_name: []} for scheme in CREDENTIAL_SCHEMES]  # either


async def _admin_user(principal: CurrentUser) -> Principal:
    require_admin(principal)
    return principal


AdminUser = Annotated[Principal, Depends(_admin_user)]


async def _accessible_vm(vm_id: str, principal: CurrentUser, request: Request) -> Vm:
    vm = await services_of(request).hypervisor.get_vm(vm_id)
    require_vm_access(principal, vm_id, vm.owner)
    return vm


AccessibleVm = Annotated[Vm, Depends(_accessible_vm)]


async def console_vm(vm_id: str, principal: CurrentUser, request: Request) -> Vm:
    """The VM a console (or its ticket) is for, if ``principal`` may open it (the :data:`ConsoleVm`
    dependency; the console ticket's shortcut calls it as it is)."""
    # A browser asks for a ticket and opens the console right after it: the one read serves both, and a
    # ticket costs no thread hop and no XML parse while the VM's answer is fresh.
    vm = await services_of(request).hypervisor.console_vm_recent(vm_id)
    require_vm_access(principal, vm_id, vm.owner)
    return vm


ConsoleVm = Annotated[Vm, Depends(console_vm)]

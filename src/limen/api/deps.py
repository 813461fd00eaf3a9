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

from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

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


async def _hypervisor(services: ServicesDep) -> Hypervisor:
    return services.hypervisor


async def _settings(services: ServicesDep) -> Settings:
    return services.settings


async def _recovery(services: ServicesDep) -> Recovery:
    return services.recovery


RecoveryDep = Annotated[Recovery, Depends(_recovery)]
HypervisorDep = Annotated[Hypervisor, Depends(_hypervisor)]
SettingsDep = Annotated[Settings, Depends(_settings)]

_bearer = HTTPBearer(auto_error=False, description="An API token: `limen token create NAME --user USER`")
_cookie = APIKeyCookie(name=COOKIE_NAME, auto_error=False, description="Set by POST /api/login")


def access_of(conn: HTTPConnection) -> Access:
    return services_of(conn).access


# The principal of a request, once authenticated: by limen.api.authenticate_first before the body is read,
# or by the CurrentUser dependency. Whoever comes second takes it from there instead of authenticating again.
PRINCIPAL_SCOPE_KEY = "limen.principal"


async def _access(services: ServicesDep) -> Access:
    return services.access


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


async def _console_vm(vm_id: str, principal: CurrentUser, hypervisor: HypervisorDep) -> Vm:
    # A browser asks for a ticket and opens the console right after it: the one read serves both, and a
    # ticket costs no thread hop and no XML parse while the VM's answer is fresh.
    vm = await hypervisor.console_vm_recent(vm_id)
    require_vm_access(principal, vm_id, vm.owner)
    return vm


ConsoleVm = Annotated[Vm, Depends(_console_vm)]

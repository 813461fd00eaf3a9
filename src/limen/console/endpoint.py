"""The console WebSocket routes: accept, hand the socket to a :class:`ConsoleSession`, nothing more.

The upgrade is always accepted; who may open the console is decided inside the session's check_vm
stage by a :class:`~limen.console.admission.ConsoleAdmission` (Origin, ``?ticket=`` / session cookie /
bearer token, the VM's owner), so a refusal is an error frame and a close code like any other.

``GET /api/vms/{vm_id}/console`` (``vm_id``: UUID or name) and ``/vnc/{vm_id}``, the path of the
original system, are the same endpoint. The subprotocol ``binary`` is echoed when offered, never
required (noVNC offers none). ``?notices=1`` asks for text notices during the proxy stage.

:class:`ConsoleRoute` is an ASGI middleware that sends WebSocket requests for exactly these two paths
straight to :func:`console`, past the router and the exception/exit-stack layers (measured: they were
a sixth of the set-up's samples); anything else, and every HTTP request, goes down the stack as before.
``limen.api.app.LimenApp`` puts it outside every middleware (each passes a WebSocket through untouched).
The router keeps the same routes, so an app without the middleware behaves the same, only slower.

The app provides what :class:`ConsoleServices` names at ``app.state.services`` (``create_app``'s
:class:`limen.api.services.Services` has it all).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from fastapi import APIRouter, WebSocket
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from limen import end_details
from limen.action_details import console_start_details
from limen.audit import AuditLog
from limen.auth.access import Access
from limen.auth.principal import Principal
from limen.console.admission import ConsoleAdmission
from limen.console.client_protocol import client_protocol_error
from limen.console.registry import ConsoleSessions
from limen.console.splice import SPLICE_EXTENSION, SpliceFn
from limen.console.vnc_session import ConsoleSession
from limen.errors import ErrorCode, LimenError
from limen.hypervisor import Hypervisor
from limen.hypervisor.models import Vm
from limen.metrics import Metrics
from limen.quota import Footprint, QuotaLedger
from limen.quota.ledger import owner_limited
from limen.settings import Settings

router = APIRouter()

BINARY_SUBPROTOCOL = "binary"


class StarletteChannel:
    """Adapts Starlette's WebSocket to :class:`limen.console.driver.ClientChannel`."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket
        self._gone = False
        # The fast path of the proxy stage, when the server offers it (limen's own uvicorn protocol).
        offered = (websocket.scope.get("extensions") or {}).get(SPLICE_EXTENSION) or {}
        self.splice: SpliceFn | None = offered.get("splice")
        # Several frames in one write (the status frames of instant stages), when the server offers it.
        self.send_frames: Callable[[Sequence[str | bytes]], Awaitable[None]] | None = offered.get("send_frames")

    async def send_text(self, text: str) -> None:
        await self._ws.send({"type": "websocket.send", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        await self._ws.send({"type": "websocket.send", "bytes": data})

    async def receive(self) -> bytes | str | None:
        if self._gone:
            return None
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            self._gone = True
            return None
        data: bytes | None = message.get("bytes")
        if data is not None:
            return data
        text: str | None = message.get("text")
        return text or ""

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)

    def protocol_error(self) -> LimenError | None:
        return client_protocol_error(self._ws.scope)


class Admitted(Protocol):
    """Who a console was admitted for (a :class:`ConsoleAdmission` once it has run; None before)."""

    @property
    def principal(self) -> Principal | None: ...


class QuotaCheckedStarts:
    """The hypervisor as a console uses it, its auto-start of a stopped VM checked against the quota and
    recorded in the audit trail as ``POST /api/vms/{id}/start`` is: a ``start`` row with who opened the
    console and ``details`` saying which console (QUOTA_EXCEEDED ends the console; the VM stays stopped).
    A start the console stopped waiting for (its stage's deadline, or the console ended) is recorded as
    VM_START_FAILED, as the console tells its user."""

    def __init__(self, hypervisor: Hypervisor, quota: QuotaLedger, admission: Admitted, audit: AuditLog,
                 *, console: str) -> None:
        self._hv = hypervisor
        self._quota = quota
        self._admission = admission
        self._audit = audit
        self._console = console  # worded only when a start happens: not on every console's admission

    async def get_vm(self, ident: str) -> Vm:
        return await self._hv.get_vm(ident)

    async def console_vm(self, ident: str) -> Vm:
        return await self._hv.console_vm(ident)

    async def console_vm_recent(self, ident: str) -> Vm:
        return await self._hv.console_vm_recent(ident)

    def watch(self, uuid: str) -> AbstractContextManager[Any]:
        return self._hv.watch(uuid)

    async def start_vm(self, ident: str) -> Vm:
        principal = self._admission.principal
        if principal is None:  # not admitted: the session never gets here
            raise LimenError(ErrorCode.FORBIDDEN, end_details.CONSOLE_NOT_ADMITTED)
        vm = await self._hv.get_vm(ident)  # the whole VM: its footprint, not only what a console needs
        # libvirt's start goes on when the console stops waiting for it (its client left, or the stage's
        # deadline passed): the start runs apart, and its row says what became of the VM when libvirt answers
        # (libvirt's own timeout bounds that), not the console's guess (VM_START_FAILED for a VM that ran).
        start = asyncio.ensure_future(self._recorded_start(principal, vm, ident))
        _STARTS_UNDER_WAY.add(start)
        start.add_done_callback(_start_done)
        return await asyncio.shield(start)

    async def _recorded_start(self, principal: Principal, vm: Vm, ident: str) -> Vm:
        async with self._audit.recording(principal.name, "start", vm.name, vm_uuid=vm.uuid,
                                         details=console_start_details(self._console)) as target:
            target.if_cancelled = ErrorCode.VM_START_FAILED  # the server stopped before libvirt answered
            async with self._quota.reserving(Footprint.of_vm(vm).started(), self._hv.list_vms,
                                             owner_limited=owner_limited(principal, vm.owner)):
                return await self._hv.start_vm(ident)


# Starts a console asked for, kept referenced until they end (a task nobody holds may be collected).
_STARTS_UNDER_WAY: set[asyncio.Future[Vm]] = set()


def _start_done(start: asyncio.Future[Vm]) -> None:
    _STARTS_UNDER_WAY.discard(start)
    if not start.cancelled():
        start.exception()  # retrieved: a failure nobody waited for any more is in its audit row


class ConsoleServices(Protocol):
    """What the console endpoint uses of the services its app was built with."""

    @property
    def settings(self) -> Settings: ...
    @property
    def hypervisor(self) -> Hypervisor: ...
    @property
    def access(self) -> Access: ...
    @property
    def quota(self) -> QuotaLedger: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def console_sessions(self) -> ConsoleSessions: ...


def console_services(app: Starlette) -> ConsoleServices:
    services: ConsoleServices = app.state.services
    return services


@router.websocket("/api/vms/{vm_id}/console")
@router.websocket("/vnc/{vm_id}")
async def console(websocket: WebSocket, vm_id: str) -> None:
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=BINARY_SUBPROTOCOL if BINARY_SUBPROTOCOL in offered else None)
    services = console_services(websocket.app)
    session_id = uuid.uuid4().hex
    registry = services.console_sessions
    admission = ConsoleAdmission(services.access, websocket, session_id, on_admitted=registry.admitted)
    session = ConsoleSession(
        ident=vm_id,
        client=StarletteChannel(websocket),
        hypervisor=QuotaCheckedStarts(services.hypervisor, services.quota, admission, services.access.audit,
                                      console="VNC"),
        settings=services.settings,
        notices=websocket.query_params.get("notices") == "1",
        session_id=session_id,
        observers=[services.metrics.console_observer(), admission],
        admission=admission,
    )
    admission.session = session
    with registry.track(session):
        await session.run()
    await admission.recorded()


# The router's own patterns for the two routes ({vm_id} is one path segment), as one expression.
CONSOLE_PATH = re.compile(r"^/(?:api/vms/([^/]+)/console|vnc/([^/]+))$")


class ConsoleRoute:
    """Routes the console's WebSocket requests to :func:`console` directly; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            match = CONSOLE_PATH.match(scope["path"])
            if match is not None:
                vm_id = match.group(1) or match.group(2)
                scope["path_params"] = {"vm_id": vm_id}
                await console(WebSocket(scope, receive, send), vm_id)
                return
        await self.app(scope, receive, send)

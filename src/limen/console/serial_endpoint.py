"""The serial console's WebSocket route: ``GET /api/vms/{vm_id}/serial`` (``vm_id``: UUID or name).

Accepts, then hands the socket to a :class:`~limen.console.serial_session.SerialSession` with the VNC
console's own admission (:class:`~limen.console.admission.ConsoleAdmission`, audit kind ``serial``), the
same registry (shutdown, revocation, an administrator's "End session") and the same quota-checked start.
``?force=1`` takes the serial port over from whoever holds it (that session ends with SESSION_TAKEN_OVER).

Frames: JSON text frames as the VNC console's (status, then error), and the guest's output as binary
frames; the client sends what is typed as text or binary frames, both reach the guest as bytes.

The app provides, besides what the VNC console uses, ``app.state.serial_ports`` (a
:class:`~limen.hypervisor.serial_stream.SerialPorts`) and ``app.state.serial_holders``; both are made
here on first use when the app did not set them.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from fastapi import APIRouter, WebSocket
from starlette.applications import Starlette

from limen.console.admission import ConsoleAdmission
from limen.console.driver import HypervisorLike
from limen.console.endpoint import BINARY_SUBPROTOCOL, ConsoleServices, QuotaCheckedStarts, StarletteChannel
from limen.console.serial_session import SerialHolders, SerialSession
from limen.hypervisor.serial_stream import SerialPorts

router = APIRouter()

AUDIT_KIND = "serial"


class SerialServices(ConsoleServices, Protocol):
    """What the serial endpoint uses of its app's services: the console's, and the serial ports."""

    @property
    def serial_ports(self) -> SerialPorts: ...
    @property
    def serial_holders(self) -> SerialHolders: ...


def serial_services(app: Starlette) -> SerialServices:
    services: SerialServices = app.state.services
    return services


@router.websocket("/api/vms/{vm_id}/serial")
async def serial_console(websocket: WebSocket, vm_id: str) -> None:
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=BINARY_SUBPROTOCOL if BINARY_SUBPROTOCOL in offered else None)
    services = serial_services(websocket.app)
    session_id = uuid.uuid4().hex
    registry = services.console_sessions
    admission = ConsoleAdmission(services.access, websocket, session_id, on_admitted=registry.admitted,
                                 kind=AUDIT_KIND)
    hypervisor: HypervisorLike = QuotaCheckedStarts(services.hypervisor, services.quota, admission,
                                                    services.access.audit, console="serial")
    session = SerialSession(
        ident=vm_id,
        client=StarletteChannel(websocket),
        hypervisor=hypervisor,
        ports=services.serial_ports,
        holders=services.serial_holders,
        settings=services.settings,
        force=websocket.query_params.get("force") == "1",
        session_id=session_id,
        observers=[admission],
        admission=admission,
    )
    admission.session = session
    with registry.track(session):
        await session.run()
    await admission.recorded()

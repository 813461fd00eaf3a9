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
from typing import Any

from fastapi import APIRouter, WebSocket

from limen.console.admission import ConsoleAdmission
from limen.console.endpoint import BINARY_SUBPROTOCOL, QuotaCheckedStarts, StarletteChannel, sessions_of
from limen.console.serial_session import SerialHolders, SerialSession
from limen.console.session import HypervisorLike
from limen.hypervisor.serial_stream import LibvirtSerialPorts, SerialPorts

router = APIRouter()

AUDIT_KIND = "serial"


def serial_ports_of(state: Any) -> SerialPorts:
    ports: SerialPorts | None = getattr(state, "serial_ports", None)
    if ports is None:
        ports = state.serial_ports = LibvirtSerialPorts(state.hypervisor.connection)
    return ports


def serial_holders_of(state: Any) -> SerialHolders:
    holders: SerialHolders | None = getattr(state, "serial_holders", None)
    if holders is None:
        holders = state.serial_holders = SerialHolders()
    return holders


@router.websocket("/api/vms/{vm_id}/serial")
async def serial_console(websocket: WebSocket, vm_id: str) -> None:
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=BINARY_SUBPROTOCOL if BINARY_SUBPROTOCOL in offered else None)
    state = websocket.app.state
    session_id = uuid.uuid4().hex
    registry = sessions_of(state)
    admission = ConsoleAdmission(state.access, websocket, session_id, on_admitted=registry.admitted, kind=AUDIT_KIND)
    quota = getattr(state, "quota", None)
    hypervisor: HypervisorLike = (QuotaCheckedStarts(state.hypervisor, quota, admission) if quota is not None
                                  else state.hypervisor)
    session = SerialSession(
        ident=vm_id,
        client=StarletteChannel(websocket),
        hypervisor=hypervisor,
        ports=serial_ports_of(state),
        holders=serial_holders_of(state),
        settings=state.settings,
        force=websocket.query_params.get("force") == "1",
        session_id=session_id,
        observers=[admission],
        admission=admission,
    )
    admission.session = session
    with registry.track(session):
        await session.run()
    await admission.recorded()

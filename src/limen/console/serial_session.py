"""The serial console's session: :class:`SerialSession`, the generic driver (``driver.py``) with the serial
machine (:class:`~limen.console.serial_handshake.SerialHandshake`) and how to perform its effects: look the
VM up (through the admission the first time), check its serial device, start it, find and take over the
port's holder, open the port (libvirt's console stream, ``hypervisor/serial_stream.py``), move the guest's
bytes to the client, and find out why the stream ended. No decisions here: the machine makes them all.

Bounds: each stage by its deadline (the stage table), every WebSocket write by ``console_write_timeout``
(SLOW_CLIENT), every write to the guest by the same (SERIAL_PORT_ERROR), memory by the port's bounded
buffers and one message in flight each way.

One session per VM's serial port: :class:`SerialHolders` (one per app) knows which session holds each.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from types import MappingProxyType
from typing import Any

from limen import end_details
from limen.console.driver import (
    Admission,
    ClientChannel,
    ConsoleDriver,
    HypervisorLike,
    SessionObserver,
)
from limen.console.handshake import ClientLeft, LookUpVm, Result, StartVm
from limen.console.serial_handshake import (
    CheckSerialDevice,
    ExplainStreamEnd,
    FindPortHolder,
    OpenSerial,
    PortHolder,
    PortTakenOver,
    RunSerialProxy,
    SerialDeviceChecked,
    SerialHandshake,
    SerialOpened,
    SerialStreamEnded,
    StreamEndExplained,
    TakeOverPort,
)
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.serial_stream import SerialPort, SerialPorts
from limen.settings import Settings

# How long a take-over waits for the session it ends to let go of the port (the stage deadline bounds it too).
TAKE_OVER_WAIT = 3.0


class SerialHolders:
    """Which session holds each VM's serial port (one per app, in its services)."""

    def __init__(self) -> None:
        self._holders: dict[str, SerialSession] = {}

    def holder(self, vm_uuid: str) -> SerialSession | None:
        return self._holders.get(vm_uuid)

    async def take_over(self, vm_uuid: str) -> None:
        """Ends the session holding ``vm_uuid``'s port with SESSION_TAKEN_OVER, and waits until it let go."""
        holder = self._holders.get(vm_uuid)
        if holder is None:
            return
        holder.request_end(LimenError(ErrorCode.SESSION_TAKEN_OVER, end_details.TAKEN_OVER))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TAKE_OVER_WAIT):
                await holder.port_released.wait()

    @contextlib.contextmanager
    def holding(self, vm_uuid: str, session: SerialSession) -> Iterator[None]:
        self._holders[vm_uuid] = session
        try:
            yield
        finally:
            if self._holders.get(vm_uuid) is session:
                del self._holders[vm_uuid]


class SerialSession(ConsoleDriver):
    """Serve one accepted serial console WebSocket. Create, then ``await run()`` once; it never raises."""

    log_label = "serial console"
    machine: SerialHandshake

    def __init__(
        self,
        *,
        ident: str,
        client: ClientChannel,
        hypervisor: HypervisorLike,
        ports: SerialPorts,
        holders: SerialHolders,
        settings: Settings,
        force: bool = False,
        clock: Callable[[], float] = time.monotonic,
        session_id: str | None = None,
        observers: Sequence[SessionObserver] = (),
        admission: Admission | None = None,
    ) -> None:
        super().__init__(
            machine=SerialHandshake(ident=ident, settings=settings, clock=clock, force=force),
            ident=ident, client=client, hypervisor=hypervisor, settings=settings, clock=clock,
            session_id=session_id, observers=observers,
        )
        self.force = force
        self.port_released = asyncio.Event()  # set once this session no longer holds the port
        self._admission = admission
        self._ports = ports
        self._holders = holders
        self._port: SerialPort | None = None
        self._holding = contextlib.ExitStack()

    # -- the effects ------------------------------------------------------------------------------------

    async def _check_serial_device(self, effect: CheckSerialDevice) -> Result:
        return SerialDeviceChecked(await self._ports.has_serial(effect.uuid))

    async def _find_port_holder(self, effect: FindPortHolder) -> Result:
        holder = self._holders.holder(effect.uuid)
        return PortHolder(held_by_another=holder is not None and holder is not self)

    async def _take_over_port(self, effect: TakeOverPort) -> Result:
        await self._holders.take_over(effect.uuid)
        return PortTakenOver()

    async def _open_serial(self, effect: OpenSerial) -> Result:
        self._port = await self._ports.open(effect.uuid, force=effect.force)
        self._holding.enter_context(self._holders.holding(effect.uuid, self))
        return SerialOpened()

    async def _run_proxy(self, effect: RunSerialProxy) -> Result:
        """Guest → client until the stream ends (the client reader does client → guest)."""
        port = self._port
        assert port is not None
        self.traffic.last_input = self._clock()
        self.reached_proxy = True
        self._proxy_ready.set()  # the client reader may write to the port; the idle watch starts
        for observer in self._observers:
            observer.proxy_started(self)
        while data := await port.read():
            await self._send_binary(data)
            self.traffic.to_client += len(data)
        return SerialStreamEnded(port.ended_by, port.released_for)

    async def _explain_stream_end(self, effect: ExplainStreamEnd) -> Result:
        stopped = await self._vm_stopped_within(effect.uuid, effect.grace)
        return StreamEndExplained(vm_stopped=stopped, how=self._how_the_vm_ended())

    EFFECTS = MappingProxyType({
        LookUpVm: ConsoleDriver._look_up_vm,
        CheckSerialDevice: _check_serial_device,
        StartVm: ConsoleDriver._start_vm,
        FindPortHolder: _find_port_holder,
        TakeOverPort: _take_over_port,
        OpenSerial: _open_serial,
        RunSerialProxy: _run_proxy,
        ExplainStreamEnd: _explain_stream_end,
    })

    # -- the client → guest direction -------------------------------------------------------------------

    async def _read_client(self) -> Result:
        """Until the port is open, only notices the client leaving (holding one message); then client → guest."""
        held = b""
        while not self._proxy_ready.is_set():
            message = await self._client.receive()
            if message is None:
                return ClientLeft()
            held = message.encode() if isinstance(message, str) else message
            if held:
                await self._proxy_ready.wait()  # backpressure: read nothing more until there is a port
        port = self._port
        assert port is not None
        limit = self.settings.console_write_timeout
        while True:
            if held:
                await port.write(held, timeout=limit)
                self.traffic.to_vnc += len(held)
            message = await self._client.receive()
            if message is None:
                return ClientLeft()
            self.traffic.last_input = self._clock()
            # xterm.js sends what is typed as text: the guest gets its UTF-8 bytes
            held = message.encode() if isinstance(message, str) else message

    async def _release_kind(self) -> None:
        try:
            port, self._port = self._port, None
            if port is not None:
                await port.close()
        finally:
            self._holding.close()
            self.port_released.set()

    def _kind_fields(self) -> dict[str, Any]:
        vm = self.machine.vm
        return {"kind": "serial", "vm_uuid": vm.uuid if vm else None, "vm_name": vm.name if vm else None}

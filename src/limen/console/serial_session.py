"""One serial console session: the I/O around :class:`~limen.console.serial_stages.SerialHandshake`.

:meth:`SerialSession.run` sends the first status frame before anything else, then runs side by side:
the work (check the VM and its serial device, start it if needed, open the serial port, then guest →
client), the client reader (client → guest once the port is open, and the client's leaving), the VM's
lifecycle watch (VM_STOPPED) and :meth:`SerialSession.request_end` (shutdown, revocation, a take-over).
The first to finish decides the end; the others are cancelled, the error frame and close are sent, each
within the write deadline, and the port is closed.

Bounds: each stage by its deadline (the table in ``serial_stages.py``), every WebSocket write by
``console_write_timeout`` (SLOW_CLIENT), every write to the guest by the same (SERIAL_PORT_ERROR), memory
by the port's bounded buffers (``hypervisor/serial_stream.py``) and one message in flight each way.

One session per VM's serial port: :class:`SerialHolders` knows who holds each. A second session is refused
with SERIAL_BUSY, or with ``force`` ends the holder with SESSION_TAKEN_OVER and opens the port with
libvirt's force flag (which also cuts off a client outside limen, e.g. ``virsh console``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid as uuid_module
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from limen.console.driver import Admission, ClientChannel, HypervisorLike
from limen.console.handshake import Action, Close, SendBinary, SendText
from limen.console.pump import Traffic
from limen.console.serial_stages import SerialHandshake, SerialStage
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.models import Vm
from limen.hypervisor.serial_stream import SerialPort, SerialPorts
from limen.settings import Settings

log = logging.getLogger("limen.console")

T = TypeVar("T")

CLIENT_CLOSED = "client_closed"
# After the serial stream ended: how long to wait for the VM to be reported stopped, and how often to ask.
STREAM_END_GRACE = 3.0
STREAM_END_POLL = 0.25
# How long a take-over waits for the session it ends to let go of the port.
TAKE_OVER_WAIT = 3.0


class SerialObserver(Protocol):
    def session_ended(self, session: Any) -> None: ...


class SerialHolders:
    """Which session holds each VM's serial port (kept at ``app.state.serial_holders``)."""

    def __init__(self) -> None:
        self._holders: dict[str, SerialSession] = {}

    def holder(self, vm_uuid: str) -> SerialSession | None:
        return self._holders.get(vm_uuid)

    async def take_over(self, vm_uuid: str) -> None:
        """Ends the session holding ``vm_uuid``'s port with SESSION_TAKEN_OVER, and waits until it let go."""
        holder = self._holders.get(vm_uuid)
        if holder is None:
            return
        holder.request_end(LimenError(ErrorCode.SESSION_TAKEN_OVER, "another client took over the serial console"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TAKE_OVER_WAIT):
                await holder.port_released.wait()

    @contextlib.contextmanager
    def holding(self, vm_uuid: str, session: SerialSession) -> Any:
        self._holders[vm_uuid] = session
        try:
            yield
        finally:
            if self._holders.get(vm_uuid) is session:
                del self._holders[vm_uuid]


class _StageTimeout(Exception):
    pass


class _ClientGone(Exception):
    pass


class SerialSession:
    """Serve one accepted serial console WebSocket. Create, then ``await run()`` once; it never raises."""

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
        observers: Sequence[SerialObserver] = (),
        admission: Admission | None = None,
    ) -> None:
        self.id = session_id or uuid_module.uuid4().hex[:12]
        self.ident = ident
        self.settings = settings
        self.force = force
        self.machine = SerialHandshake(settings, clock=clock)
        self.traffic = Traffic()
        self.vm: Vm | None = None
        self.end_reason: str | None = None
        self.finished = asyncio.Event()
        self.port_released = asyncio.Event()
        self._client = client
        self._hv = hypervisor
        self._ports = ports
        self._holders = holders
        self._clock = clock
        self._observers = tuple(observers)
        self._admission = admission
        self._end_request: LimenError | None = None
        self._end_requested = asyncio.Event()
        self._port: SerialPort | None = None
        self._port_open = asyncio.Event()
        self._watch: Any = None
        self._watch_cm: AbstractContextManager[Any] | None = None
        self._watch_open = asyncio.Event()
        self._holding: contextlib.ExitStack = contextlib.ExitStack()

    @property
    def stage(self) -> SerialStage | None:
        return self.machine.stage

    def request_end(self, error: LimenError) -> None:
        """Ends the session from outside (shutdown, revocation, take-over). Returns at once."""
        if self._end_request is None:
            self._end_request = error
        self._end_requested.set()

    async def run(self) -> None:
        try:
            error = await self._serve()
            await self._finish(self.machine.end(error))
        except Exception:
            log.exception("serial console failed unexpectedly", extra=self._fields("console_internal_error"))
            with contextlib.suppress(Exception):
                await self._finish(self.machine.end(LimenError(ErrorCode.INTERNAL_ERROR, "unexpected failure")))
        finally:
            await self._release()
            error = self.machine.error
            self.end_reason = error.code.name if error is not None else CLIENT_CLOSED
            log.info("serial console session ended: %s", self.end_reason,
                     extra=self._fields("console_end", reason=self.end_reason))
            for observer in self._observers:
                observer.session_ended(self)
            self.finished.set()

    # -- the race ---------------------------------------------------------------------------------------

    async def _serve(self) -> LimenError | None:
        """Runs the session; returns why it ended (None: the client left)."""
        try:
            await self._write(self._apply(self.machine.enter(SerialStage.CHECK_VM)))
        except _ClientGone:
            return None
        except LimenError as exc:
            return exc
        runners: list[Coroutine[Any, Any, None]] = [
            self._requested(), self._work(), self._vm_ended(), self._read_client(),
        ]
        tasks = [asyncio.create_task(runner, name=f"serial-{self.id}-{i}") for i, runner in enumerate(runners)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:  # list order breaks ties: a requested end is reported as such
            if not task.done() or task.cancelled():
                continue
            failure = task.exception()
            if failure is None or isinstance(failure, _ClientGone):
                return None
            if isinstance(failure, _StageTimeout):
                return self.machine.timeout_error()
            if isinstance(failure, LimenError):
                return failure if task is tasks[0] else self.machine.libvirt_failure(failure)
            log.error("serial console step failed", exc_info=failure, extra=self._fields("console_internal_error"))
            return LimenError(ErrorCode.INTERNAL_ERROR, f"{type(failure).__name__}: {failure}")
        return LimenError(ErrorCode.INTERNAL_ERROR, "the serial console was cancelled")

    async def _requested(self) -> None:
        await self._end_requested.wait()
        assert self._end_request is not None
        raise self._end_request

    async def _in_stage(self, work: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.machine.remaining()):
                return await work
        except TimeoutError:
            raise _StageTimeout() from None

    async def _enter(self, stage: SerialStage) -> None:
        await self._write(self._apply(self.machine.enter(stage)))
        log.info("serial console stage %s", stage.value, extra=self._fields("console_stage"))

    # -- the stages ---------------------------------------------------------------------------------------

    async def _work(self) -> None:
        def find_vm() -> Awaitable[Vm]:
            return self._hv.console_vm(self.ident)

        # CHECK_VM: who asks, the VM, and its serial device (before any start: a VM without one stays off)
        vm = await self._in_stage(self._admission(find_vm) if self._admission is not None else find_vm())
        self.vm = vm
        if not await self._in_stage(self._ports.has_serial(vm.uuid)):
            raise LimenError(ErrorCode.SERIAL_NOT_CONFIGURED, f"VM {vm.name!r} has no serial console device")
        if not vm.is_active:
            if not self.settings.console_auto_start:
                raise LimenError(ErrorCode.VM_NOT_RUNNING, f"VM {vm.name!r} is not running and auto-start is off")
            await self._enter(SerialStage.START_VM)
            try:
                vm = await self._in_stage(self._hv.start_vm(vm.uuid))
            except LimenError as exc:
                if exc.code is not ErrorCode.VM_ALREADY_RUNNING:  # someone else started it: fine
                    raise
            self.vm = vm
        # OPEN_SERIAL. Watch from here on: the VM runs, so an ending event means it stopped under us.
        self._open_watch(vm.uuid)
        await self._enter(SerialStage.OPEN_SERIAL)
        holder = self._holders.holder(vm.uuid)
        if holder is not None and holder is not self:
            if not self.force:
                raise LimenError(ErrorCode.SERIAL_BUSY, "another limen session holds this VM's serial console")
            await self._in_stage(self._holders.take_over(vm.uuid))
        self._port = await self._in_stage(self._ports.open(vm.uuid, force=self.force))
        self._holding.enter_context(self._holders.holding(vm.uuid, self))
        await self._enter(SerialStage.PROXY)
        self.traffic.last_input = self._clock()
        self._port_open.set()
        # PROXY, guest → client, until the stream ends
        port = self._port
        while True:
            data = await port.read()
            if not data:
                raise await self._why_stream_ended(port)
            await self._write(self._client.send_bytes(data))
            self.traffic.to_client += len(data)

    async def _why_stream_ended(self, port: SerialPort) -> LimenError:
        """The stream ended: the VM stopped (QEMU closed the pty), or another client forced the port."""
        vm_name = self.vm.name if self.vm else self.ident
        stopped = LimenError(ErrorCode.VM_STOPPED, f"VM {vm_name!r} stopped; its serial console closed")

        async def vm_inactive() -> None:
            assert self.vm is not None
            while True:
                with contextlib.suppress(LimenError):
                    if not (await self._hv.console_vm(self.vm.uuid)).is_active:
                        return
                await asyncio.sleep(STREAM_END_POLL)

        waits: list[Awaitable[Any]] = [vm_inactive()]
        if self._watch is not None:
            waits.append(self._watch.ended.wait())
        tasks = [asyncio.ensure_future(wait) for wait in waits]
        try:
            done, _ = await asyncio.wait(tasks, timeout=STREAM_END_GRACE, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if done:
            return stopped
        if port.ended_by is not None:  # libvirt aborted the stream while the VM runs: another client forced it
            return LimenError(ErrorCode.SESSION_TAKEN_OVER, f"the serial console was taken over ({port.ended_by})")
        return LimenError(ErrorCode.SERIAL_PORT_ERROR, "the serial console stream ended while the VM runs")

    def _open_watch(self, vm_uuid: str) -> None:
        cm = self._hv.watch(vm_uuid)
        self._watch = cm.__enter__()
        self._watch_cm = cm
        self._watch_open.set()

    # -- the other runners ----------------------------------------------------------------------------------

    async def _vm_ended(self) -> None:
        await self._watch_open.wait()
        await self._watch.ended.wait()
        vm_name = self.vm.name if self.vm else self.ident
        how = getattr(getattr(self._watch, "last", None), "value", "stopped")
        raise LimenError(ErrorCode.VM_STOPPED, f"VM {vm_name!r} {how} (libvirt lifecycle event)")

    async def _read_client(self) -> None:
        """Until the port is open, only notices the client leaving (holding one message); then client → guest."""
        held: bytes | None = None
        while not self._port_open.is_set():
            message = await self._client.receive()
            if message is None:
                raise _ClientGone()
            held = message.encode() if isinstance(message, str) else message
            if held:
                await self._port_open.wait()  # backpressure: read nothing more until there is a port
        port = self._port
        assert port is not None
        limit = self.settings.console_write_timeout
        while True:
            if held:
                await port.write(held, timeout=limit)
                self.traffic.to_vnc += len(held)
            message = await self._client.receive()
            if message is None:
                raise _ClientGone()
            self.traffic.last_input = self._clock()
            # xterm.js sends what is typed as text: the guest gets its UTF-8 bytes
            held = message.encode() if isinstance(message, str) else message

    # -- writing to the client --------------------------------------------------------------------------------

    async def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendText):
                await self._client.send_text(action.text)
            elif isinstance(action, SendBinary):
                await self._client.send_bytes(action.data)
            elif isinstance(action, Close):
                await self._client.close(action.code, action.reason)

    async def _write(self, write: Awaitable[None]) -> None:
        """One WebSocket write within the write deadline: SLOW_CLIENT past it, _ClientGone if it fails."""
        limit = self.settings.console_write_timeout
        try:
            async with asyncio.timeout(limit):
                await write
        except TimeoutError:
            raise LimenError(ErrorCode.SLOW_CLIENT, f"a WebSocket write did not complete within {limit:g} s") from None
        except LimenError:
            raise
        except Exception as exc:
            raise _ClientGone() from exc

    async def _finish(self, actions: list[Action]) -> None:
        """The final frames; a failed or late send skips to the close, which is still tried."""
        if self.machine.error is not None:
            error = self.machine.error
            log.warning("serial console error %s: %s", error.code.name, error.details,
                        extra=self._fields("console_error", code=error.code.name, details=error.details))
        for action in actions:
            try:
                await self._write(self._apply([action]))
            except _ClientGone:
                return
            except LimenError:
                continue

    async def _release(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            await port.close()
        self._holding.close()
        self.port_released.set()
        cm, self._watch_cm = self._watch_cm, None
        if cm is not None:
            with contextlib.suppress(Exception):
                cm.__exit__(None, None, None)

    def _fields(self, event: str, **more: Any) -> dict[str, Any]:
        vm = self.vm
        stage = self.machine.ended_in or self.machine.stage
        fields: dict[str, Any] = {
            "event": event, "kind": "serial", "session": self.id, "vm": self.ident,
            "vm_uuid": vm.uuid if vm else None, "vm_name": vm.name if vm else None,
            "stage": stage.value if stage is not None else None,
            "elapsed_ms": self.machine.elapsed_ms() if stage is not None else 0,
            "bytes_to_client": self.traffic.to_client, "bytes_to_vnc": self.traffic.to_vnc,
        }
        fields.update(more)
        return fields

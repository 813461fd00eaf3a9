"""One console session: the I/O around the pure stage machine (``stages.py``).

:meth:`ConsoleSession.run` sends the first status frame before anything else, then runs, side by side:

* the work: each stage in order (libvirt, TCP connect, banner), then the VNC → client direction;
* the client reader: the client → VNC direction (held until the proxy stage), and the client's leaving;
* the VM watch: a lifecycle event that ends the VM ends the session with VM_STOPPED;
* the idle watch (when an idle timeout is set), and :meth:`ConsoleSession.request_end` (shutdown, admin).

The first of them to finish decides how the session ends; the others are cancelled, then the machine's
final frames (error frame, close) are sent, each within the write deadline, and everything is released.
Every wait is bounded: libvirt calls and VNC I/O by the stage deadline, WebSocket writes by
``settings.console_write_timeout``, the proxy by the peers (backpressure) and the optional idle timeout.
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

from limen.console import messages
from limen.console.pump import Traffic, client_to_vnc, vnc_to_client
from limen.console.splice import SpliceEnd, SpliceFn
from limen.console.stages import (
    Action,
    BannerReceived,
    ClientLeft,
    Close,
    ConsoleHandshake,
    Event,
    Failed,
    PortAssigned,
    PortPending,
    SendBinary,
    SendText,
    Stage,
    StageTimeouts,
    TimedOut,
    VmIsRunning,
    VmIsStopped,
    VmStarted,
    VncConnected,
)
from limen.console.upstream import READ_SIZE, VncReader, open_vnc, read_banner
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.hosts import DEFAULT_HOST
from limen.hypervisor.models import Vm
from limen.settings import Settings

log = logging.getLogger("limen.console")

T = TypeVar("T")

# How often GET_PORT asks libvirt again while no port is assigned.
PORT_POLL_INTERVAL = 0.1
# After the VNC server closed: how long to wait for the VM to be reported stopped, and how often to ask.
VNC_EOF_GRACE = 3.0
VNC_EOF_POLL = 0.25


# -- what the session needs from its surroundings --------------------------------------------------


class ClientChannel(Protocol):
    """The browser's WebSocket, already accepted. Methods raise on a closed connection."""

    async def send_text(self, text: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def receive(self) -> bytes | str | None:
        """The next message; None once the client has gone."""
        ...

    async def close(self, code: int, reason: str) -> None: ...


class VmWatchLike(Protocol):
    @property
    def ended(self) -> asyncio.Event: ...


class HypervisorLike(Protocol):
    """The part of :class:`limen.hypervisor.Hypervisor` a console uses."""

    async def get_vm(self, ident: str) -> Vm: ...

    async def console_vm(self, ident: str) -> Vm:
        """Like get_vm, with only what a console needs (state, VNC endpoint, owner), read from libvirt now."""
        ...

    async def start_vm(self, ident: str) -> Vm: ...

    def watch(self, uuid: str) -> AbstractContextManager[Any]: ...


# -- internal signals ------------------------------------------------------------------------------


class SessionObserver(Protocol):
    """Told of a session's milestones (metrics, audit). Calls are cheap and never per frame."""

    def first_status_sent(self, session: ConsoleSession, seconds: float) -> None: ...

    def stage_ended(self, session: ConsoleSession, stage: Stage, seconds: float) -> None: ...

    def proxy_started(self, session: ConsoleSession) -> None: ...

    def session_ended(self, session: ConsoleSession) -> None: ...


class Admission(Protocol):
    """Decides who may open this console (Origin, credentials, ownership), as the first step of the
    check_vm stage, after the first status frame. It looks the VM up by awaiting ``find_vm`` and returns
    it; it refuses by raising a LimenError (UNAUTHORIZED, FORBIDDEN, ...), which ends the session like
    any other failure of the stage. Bounded by the stage's deadline."""

    async def __call__(self, find_vm: Callable[[], Awaitable[Vm]]) -> Vm: ...


class _ClientGone(Exception):
    """A write to the client failed because it is not there any more."""


class _StageTimeout(Exception):
    def __init__(self, in_libvirt: bool) -> None:
        super().__init__("stage deadline passed")
        self.in_libvirt = in_libvirt


class _MachineEnded(Exception):
    """The machine ended itself while handling an event (e.g. VM stopped and auto-start off)."""

    def __init__(self, actions: list[Action]) -> None:
        super().__init__("session ended by the stage machine")
        self.actions = actions


class _Verdict(Event):
    """Private to this module: an ending the machine already decided; carries its final actions."""

    def __init__(self, actions: list[Action]) -> None:
        self.actions = actions


class ConsoleSession:
    """Serve one accepted console WebSocket. Create, then ``await run()`` once; it never raises."""

    def __init__(
        self,
        *,
        ident: str,
        client: ClientChannel,
        hypervisor: HypervisorLike,
        settings: Settings,
        notices: bool = False,
        clock: Callable[[], float] = time.monotonic,
        session_id: str | None = None,
        observers: Sequence[SessionObserver] = (),
        admission: Admission | None = None,
    ) -> None:
        self.id = session_id or uuid_module.uuid4().hex[:12]
        self._admission = admission
        self._observers = tuple(observers)
        self._stage_began = clock()
        self.reached_proxy = False
        self.ident = ident
        self.settings = settings
        self._client = client
        self._hv = hypervisor
        self._clock = clock
        self.machine = ConsoleHandshake(
            timeouts=StageTimeouts.from_settings(settings),
            auto_start=settings.console_auto_start,
            clock=clock,
            notices=notices,
        )
        self.traffic = Traffic()
        self.vm: Vm | None = None
        self.end_reason: str | None = None  # the error code's name, or "client_closed"
        self.finished = asyncio.Event()
        self._end_request: LimenError | None = None
        self._end_requested = asyncio.Event()
        self._proxy_ready = asyncio.Event()
        self._watch: Any = None
        self._watch_cm: AbstractContextManager[Any] | None = None
        self._watch_open = asyncio.Event()
        self._vnc_writer: asyncio.StreamWriter | None = None
        self._held_input: bytes | None = None  # a client message that came before the proxy stage
        self._spliced = False  # the proxy stage runs in the WebSocket protocol (the fast path)

    # -- public ---------------------------------------------------------------------------------------

    @property
    def stage(self) -> Stage | None:
        return self.machine.stage

    def request_end(self, error: LimenError) -> None:
        """Ends the session from outside (server shutdown, an administrator). Returns at once."""
        if self._end_request is None:
            self._end_request = error
        self._end_requested.set()

    async def run(self) -> None:
        try:
            verdict = await self._serve()
            actions = verdict.actions if isinstance(verdict, _Verdict) else self.machine.handle(verdict)
            await self._finish(actions)
        except Exception:  # a bug; the session still ends cleanly and the client still gets a close
            log.exception("vnc console failed unexpectedly", extra=self._fields("console_internal_error"))
            if self.machine.live:
                error = LimenError(ErrorCode.INTERNAL_ERROR, "unexpected failure in the console")
                with contextlib.suppress(Exception):
                    await self._finish(self.machine.handle(Failed(error)))
        finally:
            await self._release()
            self._log_end()
            for observer in self._observers:
                observer.session_ended(self)
            self.finished.set()

    # -- the race ------------------------------------------------------------------------------------

    async def _serve(self) -> Event:
        # The first frame goes out before any libvirt call: the browser learns at once that it is through.
        first = await self._guard(self._apply(self.machine.start()))
        if first is not None:
            return first
        for observer in self._observers:
            observer.first_status_sent(self, self._clock() - self._stage_began)
        self._log_stage()
        runners: list[Coroutine[Any, Any, Any]] = [
            self._requested(),  # first in the list: wins ties, so a shutdown is reported as such
            self._work(),
            self._vm_ended(),
            self._read_client(),
        ]
        if self.settings.console_idle_timeout > 0:
            runners.append(self._idle_watch())
        tasks = [asyncio.create_task(self._guard(runner), name=f"console-{self.id}-{i}")
                 for i, runner in enumerate(runners)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is None:
                outcome = task.result()
                if outcome is not None:
                    return outcome
        # Every runner was cancelled at once: only happens when run() itself is being cancelled.
        return Failed(LimenError(ErrorCode.INTERNAL_ERROR, "the console was cancelled"))

    async def _guard(self, work: Awaitable[Any]) -> Event | None:
        """Runs one runner; turns how it ended into the machine's event (None: returned normally)."""
        try:
            await work
        except _MachineEnded as exc:
            return _Verdict(exc.actions)
        except _StageTimeout as exc:
            return TimedOut(in_libvirt=exc.in_libvirt)
        except _ClientGone:
            return ClientLeft()
        except LimenError as exc:
            return Failed(self._naming_host(exc))
        except Exception as exc:
            log.exception("vnc console step failed", extra=self._fields("console_internal_error"))
            return Failed(LimenError(ErrorCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"))
        return None

    def _naming_host(self, error: LimenError) -> LimenError:
        """The error with the VM's host in its details, when that is not the default host."""
        host = self.vm.host if self.vm is not None else None
        if host is None or host == DEFAULT_HOST or f"host {host!r}" in error.details:
            return error
        return LimenError(error.code, f"{error.details} (host {host!r})")

    async def _requested(self) -> None:
        await self._end_requested.wait()
        assert self._end_request is not None
        raise self._end_request

    # -- the stages ------------------------------------------------------------------------------------

    async def _work(self) -> None:
        # CHECK_VM: who is asking (when an admission is set), and the VM
        def find_vm() -> Awaitable[Vm]:
            return self._hv.console_vm(self.ident)

        looked_up = self._admission(find_vm) if self._admission is not None else find_vm()
        vm = await self._in_stage(looked_up, in_libvirt=True)
        self.vm = vm
        if vm.vnc is None:
            raise LimenError(ErrorCode.VNC_NOT_CONFIGURED, f"VM {vm.name!r} has no VNC graphics device")
        if vm.is_active:
            await self._advance(VmIsRunning())
        else:
            await self._advance(VmIsStopped(vm.name))
            # START_VM
            try:
                vm = await self._in_stage(self._hv.start_vm(vm.uuid), in_libvirt=False)
            except LimenError as exc:
                if exc.code is not ErrorCode.VM_ALREADY_RUNNING:  # someone else started it: fine
                    raise
                vm = await self._in_stage(self._hv.console_vm(vm.uuid), in_libvirt=True)
            self.vm = vm
            await self._advance(VmStarted())
        # GET_PORT. Watch from here on: the VM runs now, so an ending event means it stopped under us.
        self._open_watch(vm.uuid)
        while vm.vnc is None or vm.vnc.port is None:
            if vm.vnc is None:
                raise LimenError(ErrorCode.VNC_NOT_CONFIGURED, f"VM {vm.name!r} has no VNC graphics device")
            await self._advance(PortPending())
            await self._in_stage(asyncio.sleep(PORT_POLL_INTERVAL), in_libvirt=False)
            vm = await self._in_stage(self._hv.console_vm(vm.uuid), in_libvirt=True)
            self.vm = vm
        assert vm.vnc is not None and vm.vnc.port is not None  # the loop's exit condition
        host, port = vm.vnc.host, vm.vnc.port
        await self._advance(PortAssigned(host, port))
        # CONNECT
        where = f"{host}:{port}"
        reader, self._vnc_writer = await self._in_stage(open_vnc(host, port), in_libvirt=False)
        await self._advance(VncConnected())
        # READ_BANNER
        banner = await self._in_stage(read_banner(reader, where), in_libvirt=False)
        await self._advance(BannerReceived(banner))  # sends the last status frame, then the banner
        self.traffic.to_client += len(banner)
        self.traffic.last_input = self._clock()
        self._proxy_ready.set()
        self.reached_proxy = True
        for observer in self._observers:
            observer.proxy_started(self)
        # PROXY, VNC → client, until the VNC server closes
        await self._proxy(reader)

    async def _proxy(self, reader: VncReader) -> None:
        """The proxy stage until it ends: spliced when the WebSocket server offers it, else two tasks."""
        splice: SpliceFn | None = getattr(self._client, "splice", None)
        writer = self._vnc_writer
        if splice is None or writer is None or not reader.may_hand_over():
            await vnc_to_client(reader, self._send_binary, self.traffic, read_size=READ_SIZE)
            raise await self._why_vnc_closed()
        # Bytes the VNC server sent after its banner already: the read returns them without waiting, so
        # nothing else runs between _proxy_ready and the splice (the client reader sees _spliced on waking).
        unread = await reader.read(reader.unread) if reader.unread else b""
        held, self._held_input = self._held_input, None
        self._spliced = True
        pump = splice(writer.transport, self.traffic, initial=[held] if held is not None else [], unread=unread,
                      write_timeout=self.settings.console_write_timeout, clock=self._clock)
        try:
            outcome = await pump.ended
        finally:
            pump.stop()
        if isinstance(outcome, LimenError):
            raise outcome
        if outcome is SpliceEnd.CLIENT_GONE:
            raise _ClientGone()
        raise await self._why_vnc_closed()

    async def _advance(self, event: Event) -> None:
        before = self.machine.stage
        actions = self.machine.handle(event)
        if not self.machine.live:
            raise _MachineEnded(actions)
        if self.machine.stage is not before:
            self._stage_changed(before)
        await self._apply(actions)

    async def _in_stage(self, work: Awaitable[T], *, in_libvirt: bool) -> T:
        """Awaits ``work`` within what is left of the current stage."""
        try:
            async with asyncio.timeout(self.machine.remaining()):
                return await work
        except TimeoutError:
            raise _StageTimeout(in_libvirt) from None

    def _open_watch(self, vm_uuid: str) -> None:
        if self._watch_cm is not None:
            return
        cm = self._hv.watch(vm_uuid)
        self._watch = cm.__enter__()
        self._watch_cm = cm
        self._watch_open.set()

    async def _why_vnc_closed(self) -> LimenError:
        """The VNC server closed its side. Usually because the VM stopped; tell that apart.

        QEMU closes its sockets as it exits, before libvirt has finished with the domain (with TCG that
        can take seconds), so wait, up to VNC_EOF_GRACE, for the lifecycle event or for libvirt to
        report the VM inactive, whichever comes first.
        """
        vm_name = self.vm.name if self.vm else self.ident
        stopped = LimenError(ErrorCode.VM_STOPPED, f"VM {vm_name!r} stopped; its VNC server closed the connection")
        closed = LimenError(ErrorCode.VNC_CONNECTION_FAILED, "the VNC server closed the connection")

        async def vm_inactive() -> None:
            assert self.vm is not None
            while True:
                with contextlib.suppress(LimenError):
                    if not (await self._hv.console_vm(self.vm.uuid)).is_active:
                        return
                await asyncio.sleep(VNC_EOF_POLL)

        waits: list[Awaitable[Any]] = []
        if self._watch is not None:
            waits.append(self._watch.ended.wait())
        if self.vm is not None:
            waits.append(vm_inactive())
        if not waits:
            return closed
        tasks = [asyncio.ensure_future(wait) for wait in waits]
        try:
            done, _ = await asyncio.wait(tasks, timeout=VNC_EOF_GRACE, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return stopped if done else closed

    # -- the other runners ------------------------------------------------------------------------------

    async def _vm_ended(self) -> None:
        await self._watch_open.wait()
        await self._watch.ended.wait()
        vm_name = self.vm.name if self.vm else self.ident
        last = getattr(self._watch, "last", None)
        how = getattr(last, "value", "stopped")
        raise LimenError(ErrorCode.VM_STOPPED, f"VM {vm_name!r} {how} (libvirt lifecycle event)")

    async def _read_client(self) -> None:
        """Until the proxy stage, only notices the client leaving; then forwards client → VNC."""
        while not self._proxy_ready.is_set():
            message = await self._client.receive()
            if message is None:
                raise _ClientGone()
            if isinstance(message, bytes) and message:
                # An RFB client waits for the banner before it speaks, so this is rare; hold the message
                # and stop reading (backpressure) until there is a VNC server to give it to.
                self._held_input = message
                await self._proxy_ready.wait()
        if self._spliced:
            # The WebSocket protocol hands the client's messages to the VNC server itself now; only the
            # client's leaving still comes this way.
            while await self._client.receive() is not None:
                pass
            raise _ClientGone()
        writer = self._vnc_writer
        assert writer is not None
        first, self._held_input = self._held_input, None
        pending = [first] if first is not None else []

        async def receive() -> bytes | None:
            while True:
                if pending:
                    return pending.pop()
                message = await self._client.receive()
                if message is None or isinstance(message, bytes):
                    return message
                # Text carries nothing for the VNC server (noVNC sends binary only): drop it.

        await client_to_vnc(receive, writer, self.traffic, clock=self._clock,
                            write_timeout=self.settings.console_write_timeout)
        raise _ClientGone()

    async def _idle_watch(self) -> None:
        await self._proxy_ready.wait()
        timeout = self.settings.console_idle_timeout
        warning = min(self.settings.console_idle_warning, timeout)
        warned_for: float | None = None  # the last_input the warning was about
        while True:
            idle = self._clock() - self.traffic.last_input
            if idle >= timeout:
                raise LimenError(ErrorCode.IDLE_TIMEOUT, f"no input from the browser for {timeout:g} s")
            warn_at = timeout - warning
            if warning > 0 and idle >= warn_at and warned_for != self.traffic.last_input:
                warned_for = self.traffic.last_input
                await self._apply(self.machine.notice(messages.NOTICE_IDLE_WARNING,
                                                      messages.idle_warning_text(round(timeout - idle, 1))))
            next_check = warn_at if warning > 0 and idle < warn_at else timeout
            await asyncio.sleep(max(0.05, next_check - idle))

    # -- writing to the client ------------------------------------------------------------------------

    async def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendText):
                await self._write(self._client.send_text(action.text))
            elif isinstance(action, SendBinary):
                await self._write(self._client.send_bytes(action.data))
            elif isinstance(action, Close):
                await self._write(self._client.close(action.code, action.reason))

    async def _send_binary(self, data: bytes) -> None:
        await self._write(self._client.send_bytes(data))

    async def _write(self, write: Awaitable[None]) -> None:
        """One WebSocket write within the write deadline: SLOW_CLIENT past it, _ClientGone if it fails."""
        limit = self.settings.console_write_timeout
        try:
            async with asyncio.timeout(limit):
                await write
        except TimeoutError:
            raise LimenError(
                ErrorCode.SLOW_CLIENT, f"a WebSocket write did not complete within {limit:g} s"
            ) from None
        except LimenError:
            raise
        except Exception as exc:
            raise _ClientGone() from exc

    async def _finish(self, actions: list[Action]) -> None:
        """The final frames. A failed send skips the remaining sends; the close is still tried."""
        if self.machine.error is not None:
            self._log_error(self.machine.error)
        client_gone = False
        write_failed = False
        for action in actions:
            if client_gone:
                break
            if isinstance(action, SendText | SendBinary) and write_failed:
                continue
            try:
                await self._apply([action])
            except _ClientGone:
                client_gone = True
            except LimenError:  # SLOW_CLIENT on the error frame itself
                write_failed = True

    async def _release(self) -> None:
        writer, self._vnc_writer = self._vnc_writer, None
        if writer is not None:
            if writer.transport.get_write_buffer_size():
                writer.transport.abort()  # the VNC server does not read; nothing to wait for
            else:
                writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
            if not writer.transport.is_closing():
                writer.transport.abort()
        cm, self._watch_cm = self._watch_cm, None
        if cm is not None:
            with contextlib.suppress(Exception):
                cm.__exit__(None, None, None)

    # -- logs -------------------------------------------------------------------------------------------

    def _fields(self, event: str, **more: Any) -> dict[str, Any]:
        vm = self.vm
        port = vm.vnc.port if vm is not None and vm.vnc is not None else None
        stage = self.machine.ended_in or self.machine.stage
        fields: dict[str, Any] = {
            "event": event,
            "session": self.id,
            "vm": self.ident,
            "vm_uuid": vm.uuid if vm else None,
            "vm_name": vm.name if vm else None,
            "host": vm.host if vm else None,
            "port": self.machine.port or port,
            "stage": stage.value if stage is not None else None,
            "elapsed_ms": self.machine.elapsed_ms() if stage is not None else 0,
            "bytes_to_client": self.traffic.to_client,
            "bytes_to_vnc": self.traffic.to_vnc,
        }
        fields.update(more)
        return fields

    def _stage_changed(self, previous: Stage | None) -> None:
        now = self._clock()
        if previous is not None:
            for observer in self._observers:
                observer.stage_ended(self, previous, now - self._stage_began)
        self._stage_began = now
        self._log_stage()

    def _log_stage(self) -> None:
        stage = self.machine.stage
        if stage is not None and stage is not Stage.ENDED:
            log.info("vnc console stage %s", stage.value, extra=self._fields("console_stage"))

    def _log_error(self, error: LimenError) -> None:
        log.warning("vnc console error %s: %s", error.code.name, error.details,
                    extra=self._fields("console_error", code=error.code.name, details=error.details))

    def _log_end(self) -> None:
        error = self.machine.error
        self.end_reason = error.code.name if error is not None else "client_closed"
        log.info("vnc console session ended: %s", self.end_reason,
                 extra=self._fields("console_end", reason=self.end_reason))

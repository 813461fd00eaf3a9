"""One console session's I/O: a generic driver around the pure machine (``handshake.py``).

:meth:`ConsoleSession.run` sends the machine's first status frame before anything else, then runs,
side by side:

* the handshake: ``await`` the machine's pending effect within the stage's deadline, hand the result
  back (``machine.receive``), carry out what comes back, until the machine ends;
* the client reader: the client → VNC direction (held until the proxy stage), and the client's leaving;
* the VM watch (once the machine asks for it): a lifecycle event that ends the VM;
* the idle watch (when an idle timeout is set), and :meth:`ConsoleSession.request_end` (shutdown, admin).

Every one of them reports what happened to the machine as a :class:`~limen.console.handshake.Result`;
the machine alone decides whether and how that ends the session (the first ending it receives counts).
Once it has ended, the others are cancelled, the machine's final frames (error frame, close) are sent,
each within the write deadline, and everything is released. Every wait is bounded: effects by the
stage deadline, WebSocket writes by ``settings.console_write_timeout``, the proxy by the peers
(backpressure) and the optional idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid as uuid_module
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from limen.console import messages
from limen.console.handshake import (
    Action,
    BannerRead,
    ClientLeft,
    Close,
    ConnectVnc,
    Effect,
    EffectFailed,
    EndRequested,
    ExplainVncClose,
    LookUpVm,
    OpenWatch,
    Pause,
    Paused,
    ReadBanner,
    Result,
    RunProxy,
    SendBinary,
    SendText,
    StartVm,
    TimedOut,
    VmEnded,
    VmFound,
    VmStarted,
    VncClosed,
    VncCloseExplained,
    VncConnected,
    VncHandshake,
)
from limen.console.pump import Traffic, client_to_vnc, vnc_to_client
from limen.console.splice import SpliceEnd, SpliceFn
from limen.console.upstream import VNC_READ_SIZE, VncReader, open_vnc, read_banner
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.models import Vm
from limen.settings import Settings

log = logging.getLogger("limen.console")

# How often, after the VNC server closed, to ask libvirt whether the VM is still active.
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


class UpstreamOpener(Protocol):
    """Opens the connection to a VM's VNC server (:func:`limen.console.upstream.open_vnc`); refusals raise
    a LimenError. Tests pass one that needs no socket."""

    async def __call__(self, host: str, port: int) -> tuple[VncReader, asyncio.StreamWriter]: ...


class SessionObserver(Protocol):
    """Told of a session's milestones (metrics, audit). Calls are cheap and never per frame."""

    def first_status_sent(self, session: ConsoleSession, seconds: float) -> None: ...

    def stage_ended(self, session: ConsoleSession, stage: str, seconds: float) -> None: ...

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
        open_upstream: UpstreamOpener = open_vnc,
    ) -> None:
        self.id = session_id or uuid_module.uuid4().hex[:12]
        self._admission = admission
        self._open_upstream = open_upstream
        self._observers = tuple(observers)
        self._created = clock()
        self._stage_began = self._created
        self._stages_seen = 0  # entries of machine.history already logged and told to the observers
        self.reached_proxy = False
        self.ident = ident
        self.settings = settings
        self._client = client
        self._hv = hypervisor
        self._clock = clock
        self.machine = VncHandshake(ident=ident, settings=settings, clock=clock, notices=notices)
        self.traffic = Traffic()
        self.end_reason: str | None = None  # the error code's name, or "client_closed"
        self.finished = asyncio.Event()
        self._final: list[Action] | None = None  # the machine's last actions, once it has ended
        self._ended = asyncio.Event()
        self._early_end: LimenError | None = None  # an end requested before the first frame went out
        self._proxy_ready = asyncio.Event()
        self._watch: Any = None
        self._watch_cm: AbstractContextManager[Any] | None = None
        self._watch_open = asyncio.Event()
        self._vnc_reader: VncReader | None = None
        self._vnc_writer: asyncio.StreamWriter | None = None
        self._held_input: bytes | None = None  # a client message that came before the proxy stage
        self._spliced = False  # the proxy stage runs in the WebSocket protocol (the fast path)
        self._effects: dict[type[Effect], Callable[[Any], Awaitable[Result]]] = {
            LookUpVm: self._look_up_vm,
            StartVm: self._start_vm,
            Pause: self._pause,
            ConnectVnc: self._connect_vnc,
            ReadBanner: self._read_banner,
            RunProxy: self._run_proxy,
            ExplainVncClose: self._explain_vnc_close,
        }

    # -- public ---------------------------------------------------------------------------------------

    @property
    def stage(self) -> str | None:
        return self.machine.stage

    @property
    def vm(self) -> Vm | None:
        return self.machine.vm

    def request_end(self, error: LimenError) -> None:
        """Ends the session from outside (server shutdown, an administrator). Returns at once."""
        if self.machine.live:
            self._feed(EndRequested(error))
        elif self.machine.stage is None and self._early_end is None:
            self._early_end = error  # told to the machine right after the first frame

    async def run(self) -> None:
        try:
            await self._serve()
            await self._finish(self._final or [])
        except Exception:  # a bug; the session still ends cleanly and the client still gets a close
            log.exception("vnc console failed unexpectedly", extra=self._fields("console_internal_error"))
            if self.machine.live:
                error = LimenError(ErrorCode.INTERNAL_ERROR, "unexpected failure in the console")
                self._feed(EffectFailed(error))
                with contextlib.suppress(Exception):
                    await self._finish(self._final or [])
        finally:
            await self._release()
            self._log_end()
            for observer in self._observers:
                observer.session_ended(self)
            self.finished.set()

    # -- the machine ------------------------------------------------------------------------------------

    def _feed(self, result: Result) -> list[Action]:
        """Hands ``result`` to the machine. When that ends the session, its final actions are kept for
        :meth:`run` (and nothing is returned); otherwise the actions to carry out now."""
        actions = self.machine.receive(result)
        self._note_stages()
        if not self.machine.live:
            if self._final is None:
                self._final = actions
                self._ended.set()
            return []
        return actions

    async def _serve(self) -> None:
        # The first frame goes out before any libvirt call: the browser learns at once that it is through.
        first = self.machine.start()
        self._note_stages()
        effect = await self._guard(self._apply(first))
        if not self.machine.live:
            return
        for observer in self._observers:
            observer.first_status_sent(self, self._clock() - self._created)
        if self._early_end is not None:
            self._feed(EndRequested(self._early_end))
            return
        assert isinstance(effect, Effect)
        runners: list[Coroutine[Any, Any, Any]] = [self._handshake(effect), self._vm_ended(), self._read_client()]
        if self.settings.console_idle_timeout > 0:
            runners.append(self._idle_watch())
        tasks = [asyncio.create_task(self._guard(runner), name=f"console-{self.id}-{i}")
                 for i, runner in enumerate(runners)]
        ended = asyncio.create_task(self._ended.wait())
        try:
            pending: set[asyncio.Task[Any]] = {*tasks, ended}
            while not self._ended.is_set() and len(pending) > 1:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (*tasks, ended):
                task.cancel()
            await asyncio.gather(*tasks, ended, return_exceptions=True)
        if self.machine.live:  # every runner returned without an ending: a bug in one of them
            self._feed(EffectFailed(LimenError(ErrorCode.INTERNAL_ERROR, "the console's work ended early")))

    async def _guard(self, work: Awaitable[Any]) -> Any:
        """Runs one runner; how it ended, when that was not normally, goes to the machine as a result."""
        try:
            outcome = await work
        except _ClientGone:
            outcome = ClientLeft()
        except LimenError as exc:
            outcome = EffectFailed(exc)
        except Exception as exc:
            log.exception("vnc console step failed", extra=self._fields("console_internal_error"))
            outcome = EffectFailed(LimenError(ErrorCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"))
        if isinstance(outcome, Result):
            self._feed(outcome)
            return None
        return outcome

    async def _handshake(self, effect: Effect | None) -> None:
        """Effects out, results in, until the machine asks for nothing more (it has ended)."""
        while effect is not None:
            result = await self._perform(effect)
            effect = await self._apply(self._feed(result))

    async def _perform(self, effect: Effect) -> Result:
        """One effect within what is left of the current stage; its failure or timeout as a result."""
        run = self._effects[type(effect)]
        try:
            async with asyncio.timeout(self.machine.remaining()):
                return await run(effect)
        except TimeoutError:
            return TimedOut()
        except LimenError as exc:
            return EffectFailed(exc)

    # -- the effects ------------------------------------------------------------------------------------

    async def _look_up_vm(self, effect: LookUpVm) -> Result:
        def find_vm() -> Awaitable[Vm]:
            return self._hv.console_vm(effect.ident)

        if effect.admit and self._admission is not None:
            return VmFound(await self._admission(find_vm))
        return VmFound(await find_vm())

    async def _start_vm(self, effect: StartVm) -> Result:
        return VmStarted(await self._hv.start_vm(effect.uuid))

    async def _pause(self, effect: Pause) -> Result:
        await asyncio.sleep(effect.seconds)
        return Paused()

    async def _connect_vnc(self, effect: ConnectVnc) -> Result:
        self._vnc_reader, self._vnc_writer = await self._open_upstream(effect.host, effect.port)
        return VncConnected()

    async def _read_banner(self, effect: ReadBanner) -> Result:
        assert self._vnc_reader is not None
        return BannerRead(await read_banner(self._vnc_reader, effect.where))

    async def _run_proxy(self, effect: RunProxy) -> Result:
        """The proxy stage until it ends: spliced when the WebSocket server offers it, else two tasks."""
        reader, writer = self._vnc_reader, self._vnc_writer
        assert reader is not None
        self.traffic.last_input = self._clock()
        self._proxy_ready.set()
        self.reached_proxy = True
        for observer in self._observers:
            observer.proxy_started(self)
        splice: SpliceFn | None = getattr(self._client, "splice", None)
        if splice is None or writer is None or not reader.may_hand_over():
            await vnc_to_client(reader, self._send_binary, self.traffic, read_size=VNC_READ_SIZE)
            return VncClosed()
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
            return ClientLeft()
        return VncClosed()

    async def _explain_vnc_close(self, effect: ExplainVncClose) -> Result:
        """Waits, up to ``effect.grace``, for the lifecycle event or for libvirt to report the VM inactive.

        QEMU closes its sockets as it exits, before libvirt has finished with the domain (with TCG that
        can take seconds), so the VM may still look active for a while after its VNC server closed.
        """
        uuid = effect.uuid

        async def vm_inactive(uuid: str) -> None:
            while True:
                with contextlib.suppress(LimenError):
                    if not (await self._hv.console_vm(uuid)).is_active:
                        return
                await asyncio.sleep(VNC_EOF_POLL)

        waits: list[Awaitable[Any]] = []
        if self._watch is not None:
            waits.append(self._watch.ended.wait())
        if uuid is not None:
            waits.append(vm_inactive(uuid))
        if not waits:
            return VncCloseExplained(vm_stopped=False)
        tasks = [asyncio.ensure_future(wait) for wait in waits]
        try:
            done, _ = await asyncio.wait(tasks, timeout=effect.grace, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return VncCloseExplained(vm_stopped=bool(done))

    def _open_watch(self, vm_uuid: str) -> None:
        if self._watch_cm is not None:
            return
        cm = self._hv.watch(vm_uuid)
        self._watch = cm.__enter__()
        self._watch_cm = cm
        self._watch_open.set()

    # -- the other runners ------------------------------------------------------------------------------

    async def _vm_ended(self) -> Result:
        await self._watch_open.wait()
        await self._watch.ended.wait()
        last = getattr(self._watch, "last", None)
        return VmEnded(str(getattr(last, "value", "stopped")))

    async def _read_client(self) -> Result:
        """Until the proxy stage, only notices the client leaving; then forwards client → VNC."""
        while not self._proxy_ready.is_set():
            message = await self._client.receive()
            if message is None:
                return ClientLeft()
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
            return ClientLeft()
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
        return ClientLeft()

    async def _idle_watch(self) -> Result:
        await self._proxy_ready.wait()
        timeout = self.settings.console_idle_timeout
        warning = min(self.settings.console_idle_warning, timeout)
        warned_for: float | None = None  # the last_input the warning was about
        while True:
            idle = self._clock() - self.traffic.last_input
            if idle >= timeout:
                return EndRequested(LimenError(ErrorCode.IDLE_TIMEOUT, f"no input from the browser for {timeout:g} s"))
            warn_at = timeout - warning
            if warning > 0 and idle >= warn_at and warned_for != self.traffic.last_input:
                warned_for = self.traffic.last_input
                await self._apply(self.machine.notice(messages.NOTICE_IDLE_WARNING,
                                                      messages.idle_warning_text(round(timeout - idle, 1))))
            next_check = warn_at if warning > 0 and idle < warn_at else timeout
            await asyncio.sleep(max(0.05, next_check - idle))

    # -- carrying out actions -------------------------------------------------------------------------

    async def _apply(self, actions: list[Action]) -> Effect | None:
        """Sends the frames and runs the commands, in order; returns the effect to perform, if any."""
        for action in actions:
            if isinstance(action, SendText):
                await self._write(self._client.send_text(action.text))
            elif isinstance(action, SendBinary):
                await self._write(self._client.send_bytes(action.data))
                self.traffic.to_client += len(action.data)
            elif isinstance(action, Close):
                await self._write(self._client.close(action.code, action.reason))
            elif isinstance(action, OpenWatch):
                self._open_watch(action.uuid)
            elif isinstance(action, Effect):
                return action
        return None

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
        self._vnc_reader = None
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
        vm = self.machine.vm
        port = vm.vnc.port if vm is not None and vm.vnc is not None else None
        stage = self.machine.ended_in or self.machine.stage
        fields: dict[str, Any] = {
            "event": event,
            "session": self.id,
            "vm": self.ident,
            "vm_uuid": vm.uuid if vm else None,
            "vm_name": vm.name if vm else None,
            "port": self.machine.port or port,
            "stage": stage,
            "elapsed_ms": self.machine.elapsed_ms() if stage is not None else 0,
            "bytes_to_client": self.traffic.to_client,
            "bytes_to_vnc": self.traffic.to_vnc,
        }
        fields.update(more)
        return fields

    def _note_stages(self) -> None:
        """Logs the stages the machine entered since the last call and tells the observers how long the
        ones before them took."""
        history = self.machine.history
        for index in range(max(self._stages_seen, 0), len(history)):
            stage, _ = history[index]
            now = self._clock()
            if index > 0:
                for observer in self._observers:
                    observer.stage_ended(self, history[index - 1][0], now - self._stage_began)
            self._stage_began = now
            log.info("vnc console stage %s", stage, extra=self._fields("console_stage", stage=stage))
        self._stages_seen = len(history)

    def _log_error(self, error: LimenError) -> None:
        log.warning("vnc console error %s: %s", error.code.name, error.details,
                    extra=self._fields("console_error", code=error.code.name, details=error.details))

    def _log_end(self) -> None:
        error = self.machine.error
        self.end_reason = error.code.name if error is not None else "client_closed"
        log.info("vnc console session ended: %s", self.end_reason,
                 extra=self._fields("console_end", reason=self.end_reason))

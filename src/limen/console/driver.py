"""The generic console driver: the I/O around any console kind's pure machine (``handshake.py``).

:meth:`ConsoleDriver.run` sends the machine's first status frame before anything else, then runs,
side by side:

* the handshake: ``await`` the machine's pending effect within the stage's deadline, hand the result
  back (``machine.receive``), carry out what comes back, until the machine ends;
* the kind's client reader (:meth:`ConsoleDriver._read_client`): the client → VM direction once the
  stream runs, and the client's leaving;
* the VM watch (once the machine asks for it with :class:`OpenWatch`): a lifecycle event that ends the VM;
* the idle watch (when an idle timeout is set), and :meth:`ConsoleDriver.request_end` (shutdown, admin).

Every one of them reports what happened to the machine as a :class:`~limen.console.handshake.Result`;
the machine alone decides whether and how that ends the session (the first ending it receives counts).
Once it has ended, the others are cancelled, the machine's final frames (error frame, close) are sent,
each within the write deadline, and everything is released. Every wait is bounded: effects by the
stage deadline, WebSocket writes by ``settings.console_write_timeout``, the stream by the peers
(backpressure) and the optional idle timeout.

A console kind subclasses :class:`ConsoleDriver` with how to perform each of its effects
(``EFFECTS``), its client reader and what to release (``vnc_session.py`` for VNC, ``serial_session.py``
for the serial console).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid as uuid_module
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractContextManager
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

from limen import end_details
from limen.console import messages
from limen.console.handshake import (
    Action,
    ClientLeft,
    Close,
    Effect,
    EffectFailed,
    EndRequested,
    LookUpVm,
    OpenWatch,
    Result,
    SendBinary,
    SendText,
    StageMachine,
    StartVm,
    TimedOut,
    VmEnded,
    VmFound,
    VmStarted,
)
from limen.console.pacing import teardown_turn
from limen.console.pump import Traffic
from limen.db.database import database_unavailable
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.models import LifecycleKind, Vm
from limen.settings import Settings

log = logging.getLogger("limen.console")

# How often, after the VM's stream ended, to ask libvirt whether the VM is still active.
VM_STOPPED_POLL = 0.25
# How long, at most, the lifecycle event that says how a VM ended is awaited once libvirt reports it inactive.
EVENT_AFTER_INACTIVE = 1.0


# -- what a session needs from its surroundings ----------------------------------------------------


class ClientChannel(Protocol):
    """The browser's WebSocket, already accepted. Methods raise on a closed connection."""

    async def send_text(self, text: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def receive(self) -> bytes | str | None:
        """The next message; None once the client has gone."""
        ...

    async def close(self, code: int, reason: str) -> None: ...

    def protocol_error(self) -> LimenError | None:
        """Once the client has gone: CLIENT_PROTOCOL_ERROR when the server failed the connection because the
        client broke the WebSocket protocol; None when the client closed it or vanished."""
        ...


class VmWatchLike(Protocol):
    @property
    def ended(self) -> asyncio.Event: ...


class HypervisorLike(Protocol):
    """The part of :class:`limen.hypervisor.Hypervisor` a console uses."""

    async def get_vm(self, ident: str) -> Vm: ...

    async def console_vm(self, ident: str) -> Vm:
        """Like get_vm, with only what a console needs (state, VNC endpoint, owner), read from libvirt now."""
        ...

    async def console_vm_recent(self, ident: str) -> Vm:
        """:meth:`console_vm`, or its answer of the last seconds while nothing changed (admission only)."""
        ...

    async def start_vm(self, ident: str) -> Vm: ...

    def watch(self, uuid: str) -> AbstractContextManager[Any]: ...


class SessionObserver(Protocol):
    """Told of a session's milestones (metrics, audit). Calls are cheap and never per frame."""

    def first_status_sent(self, session: ConsoleDriver, seconds: float) -> None: ...

    def stage_ended(self, session: ConsoleDriver, stage: str, seconds: float) -> None: ...

    def proxy_started(self, session: ConsoleDriver) -> None: ...

    def session_ended(self, session: ConsoleDriver) -> None: ...


class Admission(Protocol):
    """Decides who may open this console (Origin, credentials, ownership), as the first step of the
    check_vm stage, after the first status frame. It looks the VM up by awaiting ``find_vm`` and returns
    it; it refuses by raising a LimenError (UNAUTHORIZED, FORBIDDEN, ...), which ends the session like
    any other failure of the stage. Bounded by the stage's deadline."""

    async def __call__(self, find_vm: Callable[[], Awaitable[Vm]]) -> Vm: ...


class _ClientGone(Exception):
    """A write to the client failed because it is not there any more."""


class ConsoleDriver(ABC):
    """Serve one accepted console WebSocket with ``machine``. Create, then ``await run()`` once; it never
    raises. ``log_label`` starts every log line (``grep -i vnc`` finds the VNC console's)."""

    log_label = "console"
    # How the kind performs each effect, by the effect's type: its methods' functions, called with the session.
    # One table for the class: a live session holds no bound methods of its own for it.
    EFFECTS: ClassVar[Mapping[type[Effect], Callable[[Any, Any], Awaitable[Result]]]] = MappingProxyType({})
    # Who may open it, asked around the VM's look-up (the endpoint's; None in tests that admit anyone).
    _admission: Admission | None = None

    def __init__(
        self,
        *,
        machine: StageMachine,
        ident: str,
        client: ClientChannel,
        hypervisor: HypervisorLike,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
        session_id: str | None = None,
        observers: Sequence[SessionObserver] = (),
    ) -> None:
        self.id = session_id or uuid_module.uuid4().hex[:12]
        self.machine = machine
        self.ident = ident
        self.settings = settings
        self._client = client
        self._hv = hypervisor
        self._clock = clock
        self._observers = tuple(observers)
        self._created = clock()
        self._stage_began = self._created
        self._stages_seen = 0  # entries of machine.history already told to the observers
        self._stages_logged = False  # the handshake's stages line was written
        self.reached_proxy = False  # the last stage (the stream) began
        self.traffic = Traffic()
        self.end_reason: str | None = None  # the error code's name, or "client_closed"
        self.finished = asyncio.Event()
        self._final: list[Action] | None = None  # the machine's last actions, once it has ended
        self._ended = asyncio.Event()
        self._early_end: LimenError | None = None  # an end requested before the first frame went out
        self._proxy_ready = asyncio.Event()  # set by the kind when its stream starts
        self._watch: Any = None
        self._watch_cm: AbstractContextManager[Any] | None = None
        self._vm_moved = False  # libvirt reported the VM running on another host after its stream ended
        self._tasks: list[asyncio.Task[Any]] = []  # the runners of the session (see _serve)
        self._running = 0  # how many of them have not returned yet
        self._wake: asyncio.Future[None] | None = None  # resolved by the first ending or the last runner

    # -- public ---------------------------------------------------------------------------------------

    @property
    def stage(self) -> str | None:
        return self.machine.stage

    @property
    def vm(self) -> Vm | None:
        """The session's VM once its machine has found it (a machine without one: None)."""
        found = getattr(self.machine, "vm", None)
        return found if isinstance(found, Vm) else None

    # -- the effects every kind has (its own are in its subclass) -------------------------------------------

    async def _look_up_vm(self, effect: LookUpVm) -> Result:
        if effect.admit and self._admission is not None:
            # The admission's read may come from the hypervisor's cache of running VMs (no thread hop);
            # every later look-up (after a start, while polling for the port) reads libvirt.
            return VmFound(await self._admission(lambda: self._hv.console_vm_recent(effect.ident)))
        return VmFound(await self._hv.console_vm(effect.ident))

    async def _start_vm(self, effect: StartVm) -> Result:
        return VmStarted(await self._hv.start_vm(effect.uuid))

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
            log.exception("%s failed unexpectedly", self.log_label, extra=self._fields("console_internal_error"))
            if self.machine.live:
                error = LimenError(ErrorCode.INTERNAL_ERROR, end_details.CONSOLE_FAILED)
                self._feed(EffectFailed(error))
                with contextlib.suppress(Exception):
                    await self._finish(self._final or [])
        finally:
            await self._release()
            if not self._stages_logged:
                self._log_stages()
            self._log_end()
            for observer in self._observers:
                observer.session_ended(self)
            self.finished.set()

    # -- what a kind provides ---------------------------------------------------------------------------

    @abstractmethod
    async def _read_client(self) -> Result:
        """Reads the client until it leaves (ClientLeft), forwarding its input once the stream runs."""

    async def _release_kind(self) -> None:
        """Releases the kind's own resources (its connection to the VM)."""
        return None  # a kind without resources of its own has nothing to release

    def _kind_fields(self) -> dict[str, Any]:
        """The kind's fields in every log line (VM, port, ...)."""
        return {}

    # -- the machine ------------------------------------------------------------------------------------

    def _feed(self, result: Result) -> list[Action]:
        """Hands ``result`` to the machine. When that ends the session, its final actions are kept for
        :meth:`run` (and nothing is returned); otherwise the actions to carry out now."""
        if isinstance(result, ClientLeft) and result.broke_protocol is None:
            result = ClientLeft(self._client.protocol_error())  # whichever part heard of the leaving
        elif isinstance(result, EffectFailed):
            _drop_tracebacks(result.error)
        actions = self.machine.receive(result)
        self._note_stages()
        if not self.machine.live:
            if self._final is None:
                self._final = actions
                self._ended.set()
                self._wake_up()
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
        # The session's tasks: the handshake and the client reader (and the idle watch when one is set).
        # The VM watch needs no task (a callback on its end), and the wait below is one future that the
        # first ending or the last runner's return resolves, not a task of its own.
        self._wake = asyncio.get_running_loop().create_future()
        self._spawn(self._handshake(effect))
        self._spawn(self._read_client())
        if self.settings.console_idle_timeout > 0:
            self._spawn(self._idle_watch())
        try:
            if not self._ended.is_set():
                await self._wake
            await teardown_turn()  # a storm of endings spreads over loop iterations (pacing.py)
        finally:
            tasks = self._tasks
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Done: a cancelled runner's error holds its frame, which holds this session (a cycle through
            # the list); let go of them so reference counting frees the session once it has ended.
            tasks.clear()
        if self.machine.live:  # every runner returned without an ending: a bug in one of them
            self._feed(EffectFailed(LimenError(ErrorCode.INTERNAL_ERROR, end_details.CONSOLE_WORK_ENDED_EARLY)))

    def _spawn(self, runner: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(runner), name=f"console-{self.id}-{len(self._tasks)}")
        self._tasks.append(task)
        self._running += 1
        task.add_done_callback(self._runner_done)

    def _runner_done(self, _: asyncio.Task[Any]) -> None:
        self._running -= 1
        if self._running == 0:
            self._wake_up()

    def _wake_up(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _guard(self, work: Awaitable[Any]) -> Any:
        """Runs one runner; how it ended, when that was not normally, goes to the machine as a result."""
        try:
            outcome = await work
        except _ClientGone:
            outcome = ClientLeft()
        except LimenError as exc:
            outcome = EffectFailed(self._failure(exc))
        except Exception as exc:
            unavailable = database_unavailable(exc)  # e.g. a token's look-up with PostgreSQL stopped
            if unavailable is not None:
                log.warning("%s step: %s", self.log_label, unavailable.details,
                            extra=self._fields("database_unavailable"))
                outcome = EffectFailed(unavailable)
            else:
                log.exception("%s step failed", self.log_label, extra=self._fields("console_internal_error"))
                outcome = EffectFailed(LimenError(ErrorCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"))
        if isinstance(outcome, Result):
            self._feed(outcome)
            return None
        return outcome

    def _failure(self, error: LimenError) -> LimenError:
        """A failed effect's error as the client sees it; a kind may add what it knows (e.g. the host)."""
        return error

    async def _handshake(self, effect: Effect | None) -> None:
        """Effects out, results in, until the machine asks for nothing more (it has ended)."""
        while effect is not None:
            result = await self._perform(effect)
            effect = await self._apply(self._feed(result))

    async def _perform(self, effect: Effect) -> Result:
        """One effect within what is left of the current stage; its failure or timeout as a result."""
        run = self.EFFECTS[type(effect)]
        try:
            async with asyncio.timeout(self.machine.remaining()):
                return await run(self, effect)
        except TimeoutError:
            return TimedOut()
        except LimenError as exc:
            return EffectFailed(self._failure(exc))

    # -- the VM watch and the idle watch ----------------------------------------------------------------

    def _open_watch(self, vm_uuid: str) -> None:
        if self._watch_cm is not None:
            return
        cm = self._hv.watch(vm_uuid)
        self._watch = cm.__enter__()
        self._watch_cm = cm
        on_end = getattr(self._watch, "on_end", None)
        if on_end is not None:
            on_end(self._watch_ended)
        else:  # a watch without the callback (a test's): a runner waits for its event
            self._spawn(self._vm_ended())

    def _watch_ended(self, kind: Any) -> None:
        if self.machine.live:
            self._feed(VmEnded(str(getattr(kind, "value", "stopped"))))

    async def _vm_ended(self) -> Result:
        await self._watch.ended.wait()
        return VmEnded(self._how_the_vm_ended())

    def _how_the_vm_ended(self) -> str:
        """The lifecycle event that ended the VM (``stopped``, ``reverted``, ...), when the watch saw one; else
        ``migrated`` when libvirt reported the VM running on another host (:meth:`_vm_stopped_within`)."""
        last = getattr(self._watch, "last", None) if self._watch is not None and self._watch.ended.is_set() else None
        if last is None and self._vm_moved:
            return LifecycleKind.MIGRATED.value
        return str(getattr(last, "value", "stopped"))

    async def _vm_stopped_within(self, uuid: str | None, grace: float) -> bool:
        """Whether, within ``grace`` seconds, the lifecycle watch sees the VM end or libvirt reports it inactive,
        or running on another host than the session's (it was migrated: the source's event may come later).

        For a stream that just ended (the VNC server's, the serial console's): QEMU closes its sockets and
        ptys as it exits, before libvirt has finished with the domain (with TCG that can take seconds), so
        the VM may still look active for a while after its stream closed.
        """
        here = self.vm.host if self.vm is not None else None
        asking = True

        async def vm_gone(uuid: str) -> None:
            # Not only the cancel below ends this: a cancel that meets the look-up's answer may be lost on the
            # way (Python 3.11's asyncio.wait_for returned the answer; limen's calls no longer use it), and a VM
            # that runs on (where it moved, or from the snapshot it was reverted to) would be asked for ever.
            while asking:
                with contextlib.suppress(LimenError):
                    vm = await self._hv.console_vm(uuid)
                    if not vm.is_active:
                        return
                    if here is not None and vm.host is not None and vm.host != here:
                        self._vm_moved = True
                        return
                await asyncio.sleep(VM_STOPPED_POLL)

        waits: list[Awaitable[Any]] = []
        if self._watch is not None:
            waits.append(self._watch.ended.wait())
        if uuid is not None:
            waits.append(vm_gone(uuid))
        if not waits:
            return False
        began = asyncio.get_running_loop().time()
        tasks = [asyncio.ensure_future(wait) for wait in waits]
        try:
            done, _ = await asyncio.wait(tasks, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        finally:
            asking = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if done and self._watch is not None and not self._watch.ended.is_set() and not self._vm_moved:
            # libvirt said inactive before its lifecycle event reached the watch (a loaded machine): the event
            # says how the VM ended (a revert is VM_REVERTED, not VM_STOPPED), so it gets a moment more.
            left = max(0.0, min(EVENT_AFTER_INACTIVE, grace - (asyncio.get_running_loop().time() - began)))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._watch.ended.wait()
        return bool(done)

    async def _idle_watch(self) -> Result:
        await self._proxy_ready.wait()
        timeout = self.settings.console_idle_timeout
        warning = min(self.settings.console_idle_warning, timeout)
        warned_for: float | None = None  # the last_input the warning was about
        while True:
            idle = self._clock() - self.traffic.last_input
            if idle >= timeout:
                return EndRequested(LimenError(ErrorCode.IDLE_TIMEOUT, end_details.idle(timeout)))
            warn_at = timeout - warning
            if warning > 0 and idle >= warn_at and warned_for != self.traffic.last_input:
                warned_for = self.traffic.last_input
                seconds_left = round(timeout - idle, 1)
                await self._apply(self.machine.notice(messages.NOTICE_IDLE_WARNING,
                                                      messages.idle_warning_text(seconds_left),
                                                      {"seconds_left": seconds_left}))
            next_check = warn_at if warning > 0 and idle < warn_at else timeout
            await asyncio.sleep(max(0.05, next_check - idle))

    # -- carrying out actions -------------------------------------------------------------------------

    async def _apply(self, actions: list[Action]) -> Effect | None:
        """Sends the frames and runs the commands, in order; returns the effect to perform, if any.

        Frames in a row go out in one write when the client channel can (``send_frames``): the machine
        returns them together only when the stages between them are instant (e.g. get_port's frame and
        connect's, proxy's frame and the banner), and they are always written before the effect that
        follows them starts, so the client still sees each stage's frame before its work begins."""
        frames: list[str | bytes] = []
        effect: Effect | None = None
        for action in actions:
            if isinstance(action, SendText):
                frames.append(action.text)
            elif isinstance(action, SendBinary):
                frames.append(action.data)
            elif isinstance(action, OpenWatch):
                self._open_watch(action.uuid)  # local and instant: need not wait for the frames
            elif isinstance(action, Close):
                await self._send_frames(frames)
                frames = []
                await self._write(self._client.close(action.code, action.reason))
            elif isinstance(action, Effect):
                effect = action
                break
        await self._send_frames(frames)
        return effect

    async def _send_frames(self, frames: list[str | bytes]) -> None:
        if not frames:
            return
        send_frames = getattr(self._client, "send_frames", None) if len(frames) > 1 else None
        if send_frames is not None:
            await self._write(send_frames(frames))
        else:
            for frame in frames:
                if isinstance(frame, str):
                    await self._write(self._client.send_text(frame))
                else:
                    await self._write(self._client.send_bytes(frame))
                    self.traffic.to_client += len(frame)
            return
        self.traffic.to_client += sum(len(frame) for frame in frames if isinstance(frame, bytes))

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
                ErrorCode.SLOW_CLIENT, end_details.slow_client(limit)
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
        with contextlib.suppress(Exception):
            await self._release_kind()
        cm, self._watch_cm = self._watch_cm, None
        if cm is not None:
            with contextlib.suppress(Exception):
                cm.__exit__(None, None, None)

    # -- logs -------------------------------------------------------------------------------------------

    def _fields(self, event: str, **more: Any) -> dict[str, Any]:
        stage = self.machine.ended_in or self.machine.stage
        fields: dict[str, Any] = {
            "event": event,
            "session": self.id,
            "vm": self.ident,
            **self._kind_fields(),
            "stage": stage,
            "elapsed_ms": self.machine.elapsed_ms() if stage is not None else 0,
            "bytes_to_client": self.traffic.to_client,
            "bytes_to_vnc": self.traffic.to_vnc,
        }
        fields.update(more)
        return fields

    def _note_stages(self) -> None:
        """Tells the observers how long the stages before the ones the machine entered since the last call
        took; once the session reaches its last stage (or ends before it), logs its stages in one line."""
        history = self.machine.history
        for index in range(max(self._stages_seen, 0), len(history)):
            now = self._clock()
            if index > 0:
                for observer in self._observers:
                    observer.stage_ended(self, history[index - 1][0], now - self._stage_began)
            self._stage_began = now
        self._stages_seen = len(history)
        if not self._stages_logged and (self.machine.in_last_stage or not self.machine.live):
            self._log_stages()

    def _log_stages(self) -> None:
        """One line for the handshake: every stage entered and when (ms since the upgrade), in order."""
        self._stages_logged = True
        history = self.machine.history
        if not history:
            return
        summary = ", ".join(f"{stage} {elapsed} ms" for stage, elapsed in history)
        log.info("%s stages: %s", self.log_label, summary, extra=self._fields(
            "console_stages", stage=history[-1][0], stages=[[stage, elapsed] for stage, elapsed in history]))

    def _log_error(self, error: LimenError) -> None:
        log.warning("%s error %s: %s", self.log_label, error.code.name, error.details,
                    extra=self._fields("console_error", code=error.code.name, details=error.details))

    def _log_end(self) -> None:
        error = self.machine.error
        self.end_reason = error.code.name if error is not None else "client_closed"
        log.info("%s session ended: %s", self.log_label, self.end_reason,
                 extra=self._fields("console_end", reason=self.end_reason))


def _drop_tracebacks(error: BaseException) -> None:
    """Lets go of the tracebacks of ``error`` and of what caused it. The machine keeps the error until the
    session ends (for its close and its audit row) and needs only its code and details; a traceback holds the
    frames it passed through, among them the session's own, a cycle that only the cyclic collector would
    free (tests/integration/test_console_garbage.py). Errors worth a traceback were logged where caught."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__

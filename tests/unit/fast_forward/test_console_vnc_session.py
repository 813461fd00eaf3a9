"""A VNC console session (the generic driver with the VNC effects) with fakes behind its Protocol
interfaces: no socket, no libvirt, milliseconds.

Each test runs a whole :class:`ConsoleSession` against a fake client channel, a fake hypervisor, a fake
admission and a fake VNC connection (a real ``VncReader`` fed by the test, over a transport that records
writes), and checks the frames, the close, what was asked of libvirt and what the observers heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from limen import end_details
from limen.console.driver import ConsoleDriver
from limen.console.handshake import PORT_POLL_INTERVAL, VNC_EOF_GRACE
from limen.console.stage_table import VNC_STAGES
from limen.console.upstream import VNC_READ_SIZE, VncReader
from limen.console.vnc_session import ConsoleSession
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.events import LifecycleHub, VmWatch
from limen.hypervisor.models import LifecycleKind, Vm, VmState, VncEndpoint
from limen.settings import Settings

BANNER = b"RFB 003.008\n"
UUID = "6f1c2e55-0000-4000-8000-000000000002"
RUNNING = Vm(UUID, "web", VmState.RUNNING, 1, 256, vnc=VncEndpoint("127.0.0.1", 5901))
STOPPED = replace(RUNNING, state=VmState.STOPPED, vnc=VncEndpoint("127.0.0.1", None))
WAIT = 2.0  # a bound for the test itself, far above what any of these sessions takes
# The deadline of the stage a test makes fail: a hang there ends this soon. The fakes answer without waiting,
# so a stage that does not hang cannot lose to it.
FAILING_STAGE_DEADLINE = 0.05

Frame = tuple[str, Any]  # ("text", dict) | ("bytes", bytes) | ("close", (code, reason))


class FakeClient:
    """The browser's side of the WebSocket (a ClientChannel)."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.inbox: asyncio.Queue[bytes | str | None] = asyncio.Queue()
        self.stall_writes = False  # a browser that stopped reading: every send waits forever

    async def _stall(self) -> None:
        if self.stall_writes:
            await asyncio.Event().wait()

    async def send_text(self, text: str) -> None:
        await self._stall()
        self.frames.append(("text", json.loads(text)))

    async def send_bytes(self, data: bytes) -> None:
        await self._stall()
        self.frames.append(("bytes", data))

    async def receive(self) -> bytes | str | None:
        return await self.inbox.get()

    async def close(self, code: int, reason: str) -> None:
        self.frames.append(("close", (code, reason)))

    def protocol_error(self) -> LimenError | None:
        return None  # the client-protocol failures: tests/integration/test_console_client_protocol.py

    def texts(self) -> list[dict[str, Any]]:
        return [payload for kind, payload in self.frames if kind == "text"]

    def statuses(self) -> list[str]:
        return [frame["message"] for frame in self.texts() if frame["type"] == "status"]

    def closed(self) -> tuple[int, str] | None:
        closes = [payload for kind, payload in self.frames if kind == "close"]
        assert len(closes) <= 1
        return closes[0] if closes else None


@dataclass
class FakeWatch:
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    last: Any = None


class FakeHypervisor:
    """``console_vm`` answers from ``looks`` in turn (a LimenError is raised; ``HANG`` never answers)."""

    HANG = object()

    def __init__(self, *looks: Any, start: Any = None) -> None:
        self.looks = list(looks)
        self.start = start
        self.calls: list[tuple[str, str]] = []
        self.watch_obj = FakeWatch()
        self.watch_open = False

    async def _answer(self, answer: Any) -> Vm:
        if answer is self.HANG:
            await asyncio.Event().wait()
        if isinstance(answer, LimenError):
            raise answer
        assert isinstance(answer, Vm)
        return answer

    async def get_vm(self, ident: str) -> Vm:
        raise AssertionError("a console reads VMs with console_vm")

    async def console_vm(self, ident: str) -> Vm:
        self.calls.append(("console_vm", ident))
        return await self._answer(self.looks.pop(0) if len(self.looks) > 1 else self.looks[0])

    async def console_vm_recent(self, ident: str) -> Vm:
        return await self.console_vm(ident)  # no cache here: the admission's read is a read like the others

    async def start_vm(self, ident: str) -> Vm:
        self.calls.append(("start_vm", ident))
        return await self._answer(self.start)

    @contextmanager
    def watch(self, uuid: str) -> Iterator[FakeWatch]:
        self.calls.append(("watch", uuid))
        self.watch_open = True
        try:
            yield self.watch_obj
        finally:
            self.watch_open = False


class RecordingTransport(asyncio.Transport):
    """Where the driver's VNC writes land."""

    def __init__(self, protocol: asyncio.StreamReaderProtocol) -> None:
        super().__init__()
        self.written = bytearray()
        self._protocol = protocol
        self._closing = False

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 64 * 1024)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._protocol.connection_lost(None)

    def abort(self) -> None:
        self.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class FakeVnc:
    """A VNC server without a socket: the test feeds what it says; ``refuse`` makes connecting fail."""

    def __init__(self, *, says: bytes = BANNER, refuse: LimenError | None = None, hang: bool = False) -> None:
        self.says = says
        self.refuse = refuse
        self.hang = hang  # a connect that never completes
        self.reader: VncReader | None = None
        self.transport: RecordingTransport | None = None
        self.connected_to: tuple[str, int] | None = None

    async def __call__(self, host: str, port: int) -> tuple[VncReader, asyncio.StreamWriter]:
        if self.hang:
            await asyncio.Event().wait()
        if self.refuse is not None:
            raise self.refuse
        self.connected_to = (host, port)
        loop = asyncio.get_running_loop()
        self.reader = VncReader(VNC_READ_SIZE)
        protocol = asyncio.StreamReaderProtocol(self.reader)
        self.transport = RecordingTransport(protocol)
        protocol.connection_made(self.transport)
        if self.says:
            self.reader.feed_data(self.says)
        return self.reader, asyncio.StreamWriter(self.transport, protocol, self.reader, loop)

    def send(self, data: bytes) -> None:
        assert self.reader is not None
        self.reader.feed_data(data)

    def close(self) -> None:
        assert self.reader is not None
        self.reader.feed_eof()


class Recorder:
    """A SessionObserver that writes down what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def first_status_sent(self, session: ConsoleDriver, seconds: float) -> None:
        self.events.append(("first_status", None))

    def stage_ended(self, session: ConsoleDriver, stage: str, seconds: float) -> None:
        self.events.append(("stage_ended", stage))

    def proxy_started(self, session: ConsoleDriver) -> None:
        self.events.append(("proxy_started", None))

    def session_ended(self, session: ConsoleDriver) -> None:
        self.events.append(("session_ended", session.end_reason))


def settings(**overrides: Any) -> Settings:
    fast = {"console_check_vm_timeout": 0.2, "console_start_vm_timeout": 0.2, "console_get_port_timeout": 0.3,
            "console_connect_timeout": 0.2, "console_banner_timeout": 0.2, "console_write_timeout": 0.2}
    return Settings.model_validate({**fast, **overrides})


@dataclass
class Run:
    session: ConsoleSession
    client: FakeClient
    hv: FakeHypervisor
    vnc: FakeVnc
    observer: Recorder
    task: asyncio.Task[None]

    async def until(self, check: Callable[[], bool]) -> None:
        """Lets the session run until ``check`` holds (the fakes have no event to wait on for most checks)."""
        async with asyncio.timeout(WAIT):
            for _ in iter(lambda: check(), True):
                await asyncio.sleep(0.001)

    async def ended(self) -> None:
        async with asyncio.timeout(WAIT):
            await self.task


def start(hv: FakeHypervisor, *, vnc: FakeVnc | None = None, admission: Any = None, **overrides: Any) -> Run:
    client, vnc, observer = FakeClient(), vnc or FakeVnc(), Recorder()
    session = ConsoleSession(ident="web", client=client, hypervisor=hv, settings=settings(**overrides),
                             observers=[observer], admission=admission, open_upstream=vnc,
                             clock=asyncio.get_running_loop().time)
    return Run(session, client, hv, vnc, observer, asyncio.create_task(session.run()))


async def test_a_running_vm_reaches_the_proxy_and_bytes_flow_both_ways() -> None:
    run = start(FakeHypervisor(RUNNING))
    await run.until(lambda: run.session.reached_proxy)
    assert run.client.statuses() == [
        "Connected, checking VM status...", "Getting VNC port...", "Connecting to VNC server on port 5901...",
        "VNC connection established, starting proxy...",
    ]
    assert run.client.frames[4] == ("bytes", BANNER)
    assert run.vnc.connected_to == ("127.0.0.1", 5901)
    run.vnc.send(b"\x00\x01 framebuffer")
    await run.until(lambda: ("bytes", b"\x00\x01 framebuffer") in run.client.frames)
    run.client.inbox.put_nowait(b"RFB 003.008\n")
    run.client.inbox.put_nowait("text is dropped")
    run.client.inbox.put_nowait(b"\x03key")
    assert run.vnc.transport is not None
    await run.until(lambda: bytes(run.vnc.transport.written) == b"RFB 003.008\n\x03key")  # type: ignore[union-attr]
    run.client.inbox.put_nowait(None)  # the browser leaves
    await run.ended()
    assert run.client.closed() is None  # a client that left gets nothing
    assert run.session.end_reason == "client_closed"
    assert (run.session.traffic.to_client, run.session.traffic.to_vnc) == (len(BANNER) + 14, 16)
    assert run.hv.calls == [("console_vm", "web"), ("watch", UUID)] and not run.hv.watch_open
    assert run.observer.events == [
        ("first_status", None), ("stage_ended", "check_vm"), ("stage_ended", "get_port"), ("stage_ended", "connect"),
        ("stage_ended", "read_banner"), ("proxy_started", None),
        ("session_ended", "client_closed"),
    ]
    assert run.vnc.transport.is_closing()  # released


async def test_a_stopped_vm_is_started_and_someone_else_starting_it_first_is_fine() -> None:
    hv = FakeHypervisor(STOPPED, RUNNING, start=LimenError(ErrorCode.VM_ALREADY_RUNNING, "already"))
    run = start(hv)
    await run.until(lambda: run.session.reached_proxy)
    assert run.client.statuses()[:3] == ["Connected, checking VM status...", "Starting VM...", "Getting VNC port..."]
    assert hv.calls[:3] == [("console_vm", "web"), ("start_vm", UUID), ("console_vm", UUID)]
    run.session.request_end(LimenError(ErrorCode.SERVER_SHUTDOWN, "bye"))
    await run.ended()
    assert run.client.closed() == (4402, "SERVER_SHUTDOWN")


async def test_a_port_not_yet_assigned_is_asked_again_within_the_stage() -> None:
    no_port = replace(RUNNING, vnc=VncEndpoint("127.0.0.1", None))
    hv = FakeHypervisor(no_port, no_port, no_port, RUNNING)
    run = start(hv, console_get_port_timeout=2)
    await run.until(lambda: run.session.reached_proxy)
    looks = [call for call in hv.calls if call[0] == "console_vm"]
    assert looks == [("console_vm", "web")] + [("console_vm", UUID)] * 3
    assert run.client.statuses().count("Getting VNC port...") == 1
    run.client.inbox.put_nowait(None)
    await run.ended()


@pytest.mark.parametrize(("hv", "vnc", "code", "stage"), [
    (FakeHypervisor(LimenError(ErrorCode.VM_NOT_FOUND, "no VM with name 'web'")), None, "VM_NOT_FOUND", "check_vm"),
    (FakeHypervisor(FakeHypervisor.HANG), None, "HYPERVISOR_UNAVAILABLE", "check_vm"),
    (FakeHypervisor(LimenError(ErrorCode.VM_OPERATION_FAILED, "get_vm: operation failed")), None,
     "VM_OPERATION_FAILED", "check_vm"),  # the VNC console names no generic refusal after its stage
    (FakeHypervisor(replace(RUNNING, vnc=None)), None, "VNC_NOT_CONFIGURED", "check_vm"),
    (FakeHypervisor(STOPPED, start=FakeHypervisor.HANG), None, "VM_START_FAILED", "start_vm"),
    (FakeHypervisor(STOPPED, start=LimenError(ErrorCode.QUOTA_EXCEEDED, "no room")), None, "QUOTA_EXCEEDED",
     "start_vm"),
    (FakeHypervisor(replace(RUNNING, vnc=VncEndpoint("127.0.0.1", None))), None, "VNC_PORT_ERROR", "get_port"),
    (FakeHypervisor(replace(RUNNING, vnc=VncEndpoint("127.0.0.1", None)), FakeHypervisor.HANG), None,
     "HYPERVISOR_UNAVAILABLE", "get_port"),
    (FakeHypervisor(RUNNING), FakeVnc(refuse=LimenError(ErrorCode.VNC_CONNECTION_FAILED, "refused")),
     "VNC_CONNECTION_FAILED", "connect"),
    (FakeHypervisor(RUNNING), FakeVnc(hang=True), "VNC_CONNECTION_FAILED", "connect"),
    (FakeHypervisor(RUNNING), FakeVnc(says=b""), "VNC_HANDSHAKE_FAILED", "read_banner"),
    (FakeHypervisor(RUNNING), FakeVnc(says=b"HTTP/1.1 400"), "VNC_HANDSHAKE_FAILED", "read_banner"),
])
async def test_every_failure_ends_with_its_error_frame_and_close_code(
    hv: FakeHypervisor, vnc: FakeVnc | None, code: str, stage: str
) -> None:
    deadline_setting = VNC_STAGES[stage].deadline_setting
    assert deadline_setting is not None
    # get_port looks again after PORT_POLL_INTERVAL: the case of a look again that hangs needs time for one,
    # and the hang must last most of the stage (LIBVIRT_HUNG_SHARE) to be libvirt's.
    deadline = FAILING_STAGE_DEADLINE + (2 * PORT_POLL_INTERVAL if stage == "get_port" else 0)
    run = start(hv, vnc=vnc, **{deadline_setting: deadline})
    await run.ended()
    (error,) = [frame for frame in run.client.texts() if frame["type"] == "error"]
    assert (error["code"], error["stage"]) == (code, stage)
    assert run.client.closed() == (ErrorCode[code].close_code, code)
    assert run.client.frames[-1][0] == "close" and ("bytes", BANNER) not in run.client.frames
    assert run.session.end_reason == code and not hv.watch_open
    assert run.observer.events[-1] == ("session_ended", code)


async def test_an_admission_refusal_ends_in_check_vm_before_any_libvirt_call() -> None:
    async def refuse(find_vm: Callable[[], Awaitable[Vm]]) -> Vm:
        raise LimenError(ErrorCode.UNAUTHORIZED, "no credential")

    run = start(FakeHypervisor(RUNNING), admission=refuse)
    await run.ended()
    assert run.client.statuses() == ["Connected, checking VM status..."]
    assert run.client.closed() == (4501, "UNAUTHORIZED") and run.hv.calls == []


async def test_the_admission_looks_the_vm_up_itself() -> None:
    seen: list[Vm] = []

    async def admit(find_vm: Callable[[], Awaitable[Vm]]) -> Vm:
        seen.append(await find_vm())
        return seen[-1]

    run = start(FakeHypervisor(RUNNING), admission=admit)
    await run.until(lambda: run.session.reached_proxy)
    assert seen == [RUNNING] and run.hv.calls[0] == ("console_vm", "web")
    run.client.inbox.put_nowait(None)
    await run.ended()


async def test_the_vm_stopping_during_the_proxy_ends_with_vm_stopped_in_the_close_frame_only() -> None:
    run = start(FakeHypervisor(RUNNING))
    await run.until(lambda: run.session.reached_proxy)
    run.hv.watch_obj.ended.set()
    await run.ended()
    assert run.client.closed() == (4102, "VM_STOPPED")
    assert [f for f in run.client.texts() if f["type"] == "error"] == []
    assert run.session.machine.error is not None
    assert run.session.machine.error.details == "VM 'web' stopped (libvirt lifecycle event)"


async def test_the_vnc_server_closing_while_libvirt_reports_the_vm_inactive_is_vm_stopped() -> None:
    hv = FakeHypervisor(RUNNING, replace(RUNNING, state=VmState.STOPPED))
    run = start(hv)
    await run.until(lambda: run.session.reached_proxy)
    run.vnc.close()
    await run.ended()
    assert run.client.closed() == (4102, "VM_STOPPED")


async def test_the_lifecycle_event_arriving_after_libvirt_said_inactive_still_says_how_the_vm_ended() -> None:
    """A revert under an open console ended it VM_STOPPED on a loaded machine: libvirt answered 'inactive'
    before its STOPPED/FROM_SNAPSHOT event reached the watch, and the event's kind was never read."""
    hv = FakeHypervisor(RUNNING, replace(RUNNING, state=VmState.STOPPED))
    run = start(hv)
    await run.until(lambda: run.session.reached_proxy)

    async def event_later() -> None:
        await asyncio.sleep(0.3)
        hv.watch_obj.last = LifecycleKind.REVERTED
        hv.watch_obj.ended.set()

    late = asyncio.ensure_future(event_later())
    run.vnc.close()
    await run.ended()
    await late
    assert run.client.closed() == (4107, "VM_REVERTED")


async def test_a_shutdown_during_a_hanging_start_is_reported_as_the_shutdown() -> None:
    run = start(FakeHypervisor(STOPPED, start=FakeHypervisor.HANG), console_start_vm_timeout=5)
    await run.until(lambda: ("start_vm", UUID) in run.hv.calls)
    run.session.request_end(LimenError(ErrorCode.SERVER_SHUTDOWN, "stopping"))
    run.session.request_end(LimenError(ErrorCode.SESSION_TERMINATED, "too late"))  # the first ending counts
    await run.ended()
    (error,) = [f for f in run.client.texts() if f["type"] == "error"]
    assert (error["code"], error["stage"]) == ("SERVER_SHUTDOWN", "start_vm")
    assert run.client.closed() == (4402, "SERVER_SHUTDOWN")


async def test_an_end_requested_before_the_session_runs_still_sends_the_first_frame_then_the_end() -> None:
    client, hv = FakeClient(), FakeHypervisor(RUNNING)
    session = ConsoleSession(ident="web", client=client, hypervisor=hv, settings=settings(), open_upstream=FakeVnc())
    session.request_end(LimenError(ErrorCode.SERVER_SHUTDOWN, "stopping"))
    async with asyncio.timeout(WAIT):
        await session.run()
    assert client.statuses() == ["Connected, checking VM status..."]
    assert client.closed() == (4402, "SERVER_SHUTDOWN") and hv.calls == []


async def test_a_bug_outside_the_sessions_steps_ends_it_as_an_internal_error_in_the_builders_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = start(FakeHypervisor(RUNNING))

    def broken(session: ConsoleDriver, seconds: float) -> None:
        raise RuntimeError("an observer's bug")

    monkeypatch.setattr(run.observer, "first_status_sent", broken)
    await run.ended()
    assert run.client.closed() == (ErrorCode.INTERNAL_ERROR.close_code, "INTERNAL_ERROR")
    assert run.session.machine.error is not None and run.session.machine.error.details == end_details.CONSOLE_FAILED


async def test_steps_that_all_return_without_an_end_end_the_session_in_the_builders_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = start(FakeHypervisor(RUNNING))

    async def returns_at_once(*_: Any) -> None:
        return None

    monkeypatch.setattr(run.session, "_handshake", returns_at_once)
    monkeypatch.setattr(run.session, "_read_client", returns_at_once)
    await run.ended()
    assert run.client.closed() == (ErrorCode.INTERNAL_ERROR.close_code, "INTERNAL_ERROR")
    error = run.session.machine.error
    assert error is not None and error.details == end_details.CONSOLE_WORK_ENDED_EARLY


async def test_a_client_that_leaves_mid_handshake_ends_the_session_quietly() -> None:
    run = start(FakeHypervisor(FakeHypervisor.HANG), console_check_vm_timeout=5)
    await run.until(lambda: bool(run.hv.calls))
    run.client.inbox.put_nowait(None)
    await run.ended()
    assert run.client.closed() is None and run.session.end_reason == "client_closed"


async def test_a_client_that_does_not_read_is_dropped_with_slow_client_and_no_frame() -> None:
    run = start(FakeHypervisor(RUNNING), console_write_timeout=FAILING_STAGE_DEADLINE)
    await run.until(lambda: run.session.reached_proxy)
    run.client.stall_writes = True
    run.vnc.send(b"a screen update")
    await run.ended()
    assert run.client.closed() == (4400, "SLOW_CLIENT")
    assert run.session.end_reason == "SLOW_CLIENT"


async def test_the_idle_timeout_warns_then_ends_the_session() -> None:
    run = start(FakeHypervisor(RUNNING), console_idle_timeout=0.15, console_idle_warning=0.1)
    run.session.machine.notices = True
    await run.ended()
    notices = [f for f in run.client.texts() if f["type"] == "notice"]
    assert [n["code"] for n in notices] == ["IDLE_WARNING"]
    # The seconds left come as a field too, for a page that says the warning in its own language.
    assert f"closes in {notices[0]['seconds_left']:g} s" in notices[0]["message"]
    assert run.client.closed() == (4401, "IDLE_TIMEOUT")


async def test_the_idle_timeout_ends_a_session_whose_browser_only_asks_for_screen_updates() -> None:
    """noVNC asks for the next screen by itself after each update: a guest whose screen keeps changing kept a
    console nobody used open for ever (a guest's output is not input)."""
    run = start(FakeHypervisor(RUNNING), console_idle_timeout=0.3, console_idle_warning=0)
    await run.until(lambda: run.session.reached_proxy)

    async def ask_for_updates() -> None:
        while True:
            run.client.inbox.put_nowait(bytes([3, 1, 0, 0, 0, 0, 4, 0, 3, 0]))
            await asyncio.sleep(0.02)

    asking = asyncio.create_task(ask_for_updates())
    try:
        await run.ended()
    finally:
        asking.cancel()
    assert run.client.closed() == (4401, "IDLE_TIMEOUT")
    assert run.session.traffic.to_vnc > 0  # the requests went on to the VNC server meanwhile


class BatchingClient(FakeClient):
    """A client channel that offers ``send_frames`` (as limen's WebSocket protocol does): it records which
    frames went out in which write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[list[str]] = []

    async def send_text(self, text: str) -> None:
        await super().send_text(text)
        self.writes.append([json.loads(text).get("stage", "?")])

    async def send_bytes(self, data: bytes) -> None:
        await super().send_bytes(data)
        self.writes.append(["bytes"])

    async def send_frames(self, frames: list[str | bytes]) -> None:
        await self._stall()
        write = []
        for frame in frames:
            if isinstance(frame, str):
                self.frames.append(("text", json.loads(frame)))
                write.append(json.loads(frame)["stage"])
            else:
                self.frames.append(("bytes", frame))
                write.append("bytes")
        self.writes.append(write)


async def test_the_frames_of_instant_stages_share_a_write_and_each_slow_stage_is_announced_before_it_runs() -> None:
    client, vnc, hv = BatchingClient(), FakeVnc(), FakeHypervisor(RUNNING)
    session = ConsoleSession(ident="web", client=client, hypervisor=hv, settings=settings(), open_upstream=vnc)
    run = Run(session, client, hv, vnc, Recorder(), asyncio.create_task(session.run()))
    await run.until(lambda: session.reached_proxy)
    # get_port is instant for a running VM (its port came with the look-up), so its frame goes out with
    # connect's; the banner goes with proxy's frame (read_banner has none). Each write goes out before the
    # slow work of its last stage (the look-up, the TCP connect) begins.
    assert client.writes == [["check_vm"], ["get_port", "connect"], ["proxy", "bytes"]]
    assert client.statuses() == [
        "Connected, checking VM status...", "Getting VNC port...", "Connecting to VNC server on port 5901...",
        "VNC connection established, starting proxy...",
    ]
    assert client.frames[4] == ("bytes", BANNER)
    assert session.traffic.to_client == len(BANNER)
    client.inbox.put_nowait(None)
    await run.ended()


class HubHypervisor(FakeHypervisor):
    """A FakeHypervisor whose watch is a real VmWatch of ``hub``: its end reaches the session as in limen (a
    callback, no task). Once the test set ``closed`` (it closes the VNC server), a look-up is under way for
    ``LOOK`` (``asked`` is set) and answers ``after_close``; cancelled meanwhile, it answers all the same, as
    LibvirtConnection.call does when libvirt's answer arrives with the cancellation (Python 3.11's
    ``asyncio.wait_for`` then returns the result instead of raising)."""

    LOOK = 0.01  # how long a look-up after the close is under way

    def __init__(self, hub: LifecycleHub, *, after_close: Vm) -> None:
        super().__init__(RUNNING)
        self.hub = hub
        self.after_close = after_close
        self.closed = False  # the test closed the VNC server: the look-ups from then on are the ones above
        self.asked = asyncio.Event()

    def watch(self, uuid: str) -> VmWatch:  # type: ignore[override]
        self.calls.append(("watch", uuid))
        return VmWatch(self.hub, uuid)

    async def console_vm(self, ident: str) -> Vm:
        if not self.closed:
            return await super().console_vm(ident)
        self.calls.append(("console_vm", ident))
        self.asked.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(self.LOOK)
        return self.after_close


async def test_the_vm_watch_costs_no_task_and_its_end_still_ends_the_session() -> None:
    hub = LifecycleHub()
    run = start(HubHypervisor(hub, after_close=RUNNING))
    await run.until(lambda: run.session.reached_proxy)
    # The handshake and the client reader; no task waits for the VM's lifecycle.
    assert len(run.session._tasks) == 2
    assert hub.watch_count == 1
    hub.publish(UUID, LifecycleKind.CRASHED)
    await run.ended()
    assert run.client.closed() == (4102, "VM_STOPPED")
    assert run.session.machine.error is not None
    assert run.session.machine.error.details == "VM 'web' crashed (libvirt lifecycle event)"
    assert hub.watch_count == 0


async def test_a_look_up_answering_as_it_is_cancelled_does_not_keep_the_session_from_closing() -> None:
    """The VNC server closed before the VM's lifecycle event came, and the event ended the session while a
    look-up asking whether the VM was still active was under way. Cancelled as its answer arrived, that look-up
    went on asking, and the VM ran on (from the snapshot; a VM migrated live runs on where it moved): the
    session waited for it for ever and sent no close (how a console of a VM migrated live can get none)."""
    hub = LifecycleHub()
    hv = HubHypervisor(hub, after_close=RUNNING)
    run = start(hv)
    await run.until(lambda: run.session.reached_proxy)
    hv.closed = True
    run.vnc.close()
    async with asyncio.timeout(WAIT):
        await hv.asked.wait()
    hub.publish(UUID, LifecycleKind.REVERTED)
    await run.ended()
    assert run.client.closed() == (4107, "VM_REVERTED")


async def test_the_vnc_server_closing_while_the_vm_runs_on_another_host_is_vm_migrated() -> None:
    """The source's lifecycle event may come seconds after the migration's end on a loaded machine (or never,
    from another limen's migration): libvirt reporting the VM running on another host than the console's says
    the same, so the console still ends with VM_MIGRATED and the page reconnects there."""
    hv = HubHypervisor(LifecycleHub(), after_close=replace(RUNNING, host="extra", vnc=VncEndpoint("127.0.2.1", 5901)))
    hv.looks = [replace(RUNNING, host="local")]
    run = start(hv)
    await run.until(lambda: run.session.reached_proxy)
    hv.closed = True
    run.vnc.close()
    async with asyncio.timeout(2 * VNC_EOF_GRACE):  # without the event, it ended at the grace's end
        await run.task
    assert run.client.closed() == (4109, "VM_MIGRATED")
    assert run.session.machine.error is not None
    assert run.session.machine.error.details == (
        "VM 'web' was migrated to another host; its VNC server closed the connection")

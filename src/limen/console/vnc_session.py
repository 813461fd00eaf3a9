"""The VNC console's session: :class:`ConsoleSession`, the generic driver (``driver.py``) with the VNC
machine (:class:`~limen.console.handshake.VncHandshake`) and how to perform its effects: look the VM up
(through the admission the first time), start it, pause, connect to its VNC server, read the banner,
proxy (spliced into the WebSocket protocol when the server offers it, else two tasks), and find out why
the VNC server closed. No decisions here: the machine makes them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any, Protocol

from limen.console.driver import (
    Admission,
    ClientChannel,
    ConsoleDriver,
    HypervisorLike,
    SessionObserver,
)
from limen.console.handshake import (
    BannerRead,
    ClientLeft,
    ConnectVnc,
    ExplainVncClose,
    LookUpVm,
    Pause,
    Paused,
    ReadBanner,
    Result,
    RunProxy,
    StartVm,
    VncClosed,
    VncCloseExplained,
    VncConnected,
    VncHandshake,
)
from limen.console.pump import client_to_vnc, vnc_to_client
from limen.console.splice import SpliceEnd, SpliceFn
from limen.console.upstream import VNC_READ_SIZE, VncReader, open_vnc, read_banner
from limen.errors import HypervisorUnavailable, LimenError
from limen.hypervisor.hosts import DEFAULT_HOST
from limen.settings import Settings


class UpstreamOpener(Protocol):
    """Opens the connection to a VM's VNC server (:func:`limen.console.upstream.open_vnc`); refusals raise
    a LimenError. Tests pass one that needs no socket."""

    async def __call__(self, host: str, port: int) -> tuple[VncReader, asyncio.StreamWriter]: ...


class ConsoleSession(ConsoleDriver):
    """Serve one accepted VNC console WebSocket. Create, then ``await run()`` once; it never raises."""

    log_label = "vnc console"
    machine: VncHandshake

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
        super().__init__(
            machine=VncHandshake(ident=ident, settings=settings, clock=clock, notices=notices),
            ident=ident, client=client, hypervisor=hypervisor, settings=settings, clock=clock,
            session_id=session_id, observers=observers,
        )
        self._admission = admission
        self._open_upstream = open_upstream
        self._vnc_reader: VncReader | None = None
        self._vnc_writer: asyncio.StreamWriter | None = None
        self._held_input: bytes | None = None  # a client message that came before the proxy stage
        self._spliced = False  # the proxy stage runs in the WebSocket protocol (the fast path)

    # -- the effects ------------------------------------------------------------------------------------

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
        stopped = await self._vm_stopped_within(effect.uuid, effect.grace)
        return VncCloseExplained(vm_stopped=stopped, how=self._how_the_vm_ended())

    EFFECTS = MappingProxyType({
        LookUpVm: ConsoleDriver._look_up_vm,
        StartVm: ConsoleDriver._start_vm,
        Pause: _pause,
        ConnectVnc: _connect_vnc,
        ReadBanner: _read_banner,
        RunProxy: _run_proxy,
        ExplainVncClose: _explain_vnc_close,
    })

    # -- the client → VNC direction --------------------------------------------------------------------

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

    async def _release_kind(self) -> None:
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

    def _failure(self, error: LimenError) -> LimenError:
        """The error with the VM's host in its details, when that is not the default host."""
        vm = self.machine.vm
        host = vm.host if vm is not None else None
        if host is None or host == DEFAULT_HOST or f"host {host!r}" in error.details:
            return error
        details = f"{error.details} (host {host!r})"
        if isinstance(error, HypervisorUnavailable):
            return HypervisorUnavailable(details, host=error.host)  # the session's end names the VM's host
        return LimenError(error.code, details)

    def _kind_fields(self) -> dict[str, Any]:
        vm = self.machine.vm
        port = vm.vnc.port if vm is not None and vm.vnc is not None else None
        return {
            "vm_uuid": vm.uuid if vm else None,
            "vm_name": vm.name if vm else None,
            "host": vm.host if vm else None,
            "port": self.machine.port or port,
            "bytes_to_client_by_kernel": self.traffic.to_client_by_kernel,
        }

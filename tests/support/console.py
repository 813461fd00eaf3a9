"""Running the console for real in a test: libvirt's test driver, uvicorn in the test's loop, a client.

* `node_xml` writes a test-driver node whose domains point their VNC graphics at fake servers.
* :class:`ConsoleServer` runs the app under uvicorn (limen's HTTP and WebSocket protocols and shutdown) on a free
  port, in the running loop, and checks on exit that no session, connection or task is left.
* :func:`read_console` collects what a client receives until the close frame, with timings.

Every console needs credentials now. A ConsoleServer makes an admin with an API token when it starts;
:func:`client` and :func:`read_console` send that token (``Authorization: Bearer``) to any ConsoleServer
URL unless the caller passes ``additional_headers`` itself (``{}`` for an anonymous client).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid as uuid_module
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from limen.api.app import create_app
from limen.api.services import services_of
from limen.auth.access import Access
from limen.console.registry import ConsoleSessions
from limen.console.ws_protocol import BoundedCloseWebSocketProtocol, uvicorn_ws_options
from limen.http_protocol import uvicorn_http_options
from limen.hypervisor import Hypervisor, Vm, VmSpec
from limen.server import LimenServer, uvicorn_config
from limen.settings import Settings
from tests.support.access import admin_token, make_access

CONSOLE_PATH = "/api/vms/{vm_id}/console"


# -- libvirt's test driver ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeDomain:
    """A test-driver domain. ``vnc``: a port number, "auto" (autoport, never assigned), or None."""

    name: str
    vnc: int | str | None
    running: bool = True
    uuid: str = field(default_factory=lambda: str(uuid_module.uuid4()))


def domain_xml(dom: FakeDomain) -> str:
    """One domain's XML: in a node file (:func:`node_xml`), or for ``defineXML`` as ``virsh define`` would."""
    if dom.vnc is None:
        graphics = ""
    elif dom.vnc == "auto":
        graphics = "<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>"
    else:
        graphics = f"<graphics type='vnc' port='{int(dom.vnc)}' autoport='no' listen='127.0.0.1'/>"
    runstate = "" if dom.running else "<test:runstate>5</test:runstate>"
    return (
        "<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
        f"<name>{dom.name}</name><uuid>{dom.uuid}</uuid><memory>65536</memory><vcpu>1</vcpu>"
        f"<os><type>hvm</type></os><devices>{graphics}</devices>{runstate}</domain>"
    )


def node_xml(domains: list[FakeDomain], *, cpus: int | None = None, memory_mib: int | None = None) -> str:
    """A test-driver node holding ``domains``; with ``cpus``/``memory_mib`` its hardware (else the driver's
    default, 16 CPUs and 3 GiB)."""
    hardware = ""
    if cpus is not None:
        hardware += (f"<cpu><nodes>1</nodes><sockets>1</sockets><cores>{cpus}</cores><threads>1</threads>"
                     f"<active>{cpus}</active><mhz>2000</mhz><model>x86_64</model></cpu>")
    if memory_mib is not None:
        hardware += f"<memory>{memory_mib * 1024}</memory>"
    return "<node>" + hardware + "".join(domain_xml(dom) for dom in domains) + "</node>"


def node_with_a_qcow2_vm(directory: Path, name: str) -> str:
    """A test-driver node whose one (stopped) VM has a qcow2 disk, so limen lets it have snapshots."""
    disk = (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{directory}/{name}.qcow2'/><target dev='vda' bus='virtio'/></disk>")
    xml = domain_xml(FakeDomain(name, None, running=False)).replace("<devices>", "<devices>" + disk)
    node = directory / "snapshot-node.xml"
    node.write_text(f"<node>{xml}</node>")
    return f"test://{node}"


def driver_uri(tmp_path: Path, domains: list[FakeDomain], *, cpus: int | None = None,
               memory_mib: int | None = None) -> str:
    path = tmp_path / f"node-{uuid_module.uuid4().hex[:8]}.xml"
    path.write_text(node_xml(domains, cpus=cpus, memory_mib=memory_mib))
    return f"test://{path}"


# -- the server ---------------------------------------------------------------------------------------


def open_fds() -> set[int]:
    """This process's open file descriptors (not the one listing the directory used for a moment)."""
    listed = {int(name) for name in os.listdir("/proc/self/fd")}
    return {fd for fd in listed if os.path.exists(f"/proc/self/fd/{fd}")}


def describe_fds(fds: set[int]) -> dict[int, str]:
    """What each descriptor is (socket:[inode], a path, ...), for a failure message; a socket is told with
    its family and addresses (a unix socket's path, a TCP socket's ends), which say whose it is."""
    found = {}
    for fd in sorted(fds):
        try:
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
    if any(what.startswith("socket:[") for what in found.values()):
        sockets = _sockets_by_inode()
        for fd, what in found.items():
            if what.startswith("socket:["):
                found[fd] = f"{what} {sockets.get(what[8:-1], '(not in /proc/net: netlink, or gone)')}"
    return found


def _sockets_by_inode() -> dict[str, str]:
    """Each socket inode of /proc/net/{unix,tcp,tcp6} → its family and ends (hex, as the kernel lists them)."""
    described: dict[str, str] = {}
    for table in ("unix", "tcp", "tcp6"):
        try:
            rows = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            columns = row.split()
            if table == "unix" and len(columns) >= 7:
                described[columns[6]] = f"unix {columns[7] if len(columns) > 7 else '(unnamed)'}"
            elif len(columns) >= 10:
                described[columns[9]] = f"{table} {columns[1]} -> {columns[2]} state {columns[3]}"
    return described


def console_app(settings: Settings, hypervisor: Hypervisor | None = None, access: Access | None = None) -> FastAPI:
    return create_app(settings, hypervisor, access)


# "127.0.0.1:port" of each running ConsoleServer → its admin's Authorization header.
_SERVER_AUTH: dict[str, dict[str, str]] = {}


class ConsoleServer:
    """The app under uvicorn on a free loopback port, in the running loop."""

    def __init__(self, settings: Settings, hypervisor: Hypervisor | None = None, access: Access | None = None,
                 *, as_served: bool = False) -> None:
        """``as_served``: uvicorn configured as ``limen serve`` configures it (:func:`limen.server.uvicorn_config`:
        HTTPS and WSS with the settings' LIMEN_TLS_CERT and KEY, among the rest)."""
        self.settings = settings
        self.access = access or make_access(settings)
        self.app = console_app(settings, hypervisor, self.access)
        self.auth_headers: dict[str, str] = {}
        config = uvicorn_config(self.app, settings, host="127.0.0.1", port=0, lifespan="on") if as_served else (
            uvicorn.Config(
                self.app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on",
                timeout_graceful_shutdown=5, **uvicorn_http_options(settings), **uvicorn_ws_options(settings),
            ))
        self.server = LimenServer(config)
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def sessions(self) -> ConsoleSessions:
        return services_of(self.app).console_sessions

    @property
    def hypervisor(self) -> Hypervisor:
        return services_of(self.app).hypervisor

    def url(self, vm_id: str, *, alias: bool = False, query: str = "") -> str:
        path = f"/vnc/{vm_id}" if alias else CONSOLE_PATH.format(vm_id=vm_id)
        return f"ws://127.0.0.1:{self.port}{path}{'?' + query if query else ''}"

    async def start(self) -> ConsoleServer:
        self._task = asyncio.create_task(self.server.serve())
        deadline = time.monotonic() + 10
        while not self.server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("uvicorn exited before starting")
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 10 s")
            await asyncio.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.auth_headers = {"Authorization": f"Bearer {await admin_token(self.access)}"}
        _SERVER_AUTH[f"127.0.0.1:{self.port}"] = self.auth_headers
        return self

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        _SERVER_AUTH.pop(f"127.0.0.1:{self.port}", None)
        self.server.should_exit = True
        await asyncio.wait_for(task, 20)

    async def wait_idle(self, timeout: float = 5.0) -> None:
        """Until no console session and no WebSocket connection is left (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while len(self.sessions) or self.server.server_state.connections or self.server.server_state.tasks:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"left behind after {timeout} s: {len(self.sessions)} sessions, "
                    f"{len(self.server.server_state.connections)} connections, "
                    f"{len(self.server.server_state.tasks)} tasks"
                )
            await asyncio.sleep(0.02)


def ws_protocols(server: ConsoleServer) -> list[BoundedCloseWebSocketProtocol]:
    """The server's open WebSocket connections (limen's own protocol)."""
    return [c for c in server.server.server_state.connections if isinstance(c, BoundedCloseWebSocketProtocol)]


@asynccontextmanager
async def running_console(settings: Settings, hypervisor: Hypervisor | None = None) -> AsyncIterator[ConsoleServer]:
    """A started :class:`ConsoleServer`; on exit, checks that nothing of any session is left, then stops."""
    server = await ConsoleServer(settings, hypervisor).start()
    try:
        yield server
        await server.wait_idle()
    finally:
        await server.stop()


class Records(logging.Handler):
    """Log records of the ``limen.console`` logger, kept for assertions (see the ``console_log`` fixture)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [vars(r) for r in self.records if getattr(r, "event", None) == name]


# -- the client ----------------------------------------------------------------------------------------


@dataclass
class ConsoleTranscript:
    """What a client got: text frames (decoded), binary frames, the close, and when each came."""

    texts: list[dict[str, Any]] = field(default_factory=list)
    binary: list[bytes] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # "text" / "binary", in arrival order
    close_code: int | None = None
    close_reason: str = ""
    first_frame_after: float | None = None  # seconds from the end of the upgrade to the first frame
    closed_after: float | None = None  # seconds from the end of the upgrade to the close
    subprotocol: str | None = None

    @property
    def statuses(self) -> list[str]:
        return [frame["message"] for frame in self.texts if frame.get("type") == "status"]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [frame for frame in self.texts if frame.get("type") == "error"]


def client(url: str, **kwargs: Any) -> Any:
    """A websockets client without compression or a size limit (what a test needs)."""
    options: dict[str, Any] = {"compression": None, "max_size": None, "open_timeout": 5, "close_timeout": 2,
                               "ping_interval": None}
    netloc = urlsplit(url).netloc
    if netloc in _SERVER_AUTH:
        options["additional_headers"] = _SERVER_AUTH[netloc]
    options.update(kwargs)
    return connect(url, **options)


async def read_frames(ws: ClientConnection, transcript: ConsoleTranscript, started: float, *,
                      until_binary: int | None = None, until_frames: int | None = None) -> None:
    """Appends frames to ``transcript`` until the close, or until it holds ``until_binary`` binary
    frames, or ``until_frames`` frames in all."""
    until = until_binary is not None or until_frames is not None
    try:
        while not (
            (until_binary is not None and len(transcript.binary) >= until_binary)
            or (until_frames is not None and len(transcript.order) >= until_frames)
        ):
            message = await ws.recv()
            if transcript.first_frame_after is None:
                transcript.first_frame_after = time.monotonic() - started
            if isinstance(message, str):
                transcript.texts.append(json.loads(message))
                transcript.order.append("text")
            else:
                transcript.binary.append(message)
                transcript.order.append("binary")
    except ConnectionClosed:
        pass
    if ws.close_code is not None or not until:
        transcript.closed_after = time.monotonic() - started
        transcript.close_code = ws.close_code
        transcript.close_reason = ws.close_reason or ""


async def read_until_status(ws: ClientConnection, transcript: ConsoleTranscript, prefix: str,
                            started: float | None = None) -> None:
    """Reads frames until a status frame whose message starts with ``prefix`` has arrived."""
    started = time.monotonic() if started is None else started
    while not any(status.startswith(prefix) for status in transcript.statuses):
        await read_frames(ws, transcript, started, until_frames=len(transcript.order) + 1)


async def read_console(url: str, *, timeout: float = 30.0, **kwargs: Any) -> ConsoleTranscript:
    """Opens the console and reads until the server closes it."""
    transcript = ConsoleTranscript()
    async with client(url, **kwargs) as ws:
        started = time.monotonic()
        transcript.subprotocol = ws.subprotocol
        await asyncio.wait_for(read_frames(ws, transcript, started), timeout)
    return transcript


async def running_vm_with_a_stopped_snapshot(hypervisor: Hypervisor, name: str, iso: str) -> Vm:
    """A running VM (1 GiB disk, ``iso`` in its CD-ROM) with snapshot ``off`` taken while it was stopped: a
    revert to it stops the VM "from snapshot"."""
    from limen.hypervisor.snapshots import take_snapshot

    vm = await hypervisor.create_vm(VmSpec(name=name, vcpus=1, memory_mib=64, disk_gib=1, iso=iso))
    await take_snapshot(hypervisor, vm.uuid, "off", "")
    return await hypervisor.start_vm(vm.uuid)

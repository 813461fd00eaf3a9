"""``limen doctor``: the checks a person would otherwise run by hand, in order, each with its fix.

For a VM: settings and log dir → libvirt → VM exists → running → VNC graphics → VNC port (as
``virsh vncdisplay``) → TCP connect (as ``telnet localhost 5900``) → RFB banner and security types →
a console WebSocket through the running limen server → the VM's last console errors in the log.
Without a VM: the host (libvirt, QEMU, KVM or TCG, the listen port, disk space, the database), then, when
the host registry holds hosts, each host apart (``host NAME``): its libvirt answers within
LIMEN_LIBVIRT_TIMEOUT, and the VNC server of one of its running VMs answers at the host's console address
with an RFB banner (the address limen's consoles dial). A host that fails does not stop the others' checks.

A check that cannot run because an earlier one failed is reported as skipped, never as passed.

The console WebSocket check signs in like the browser does: with an API token (``--token`` or
``LIMEN_TOKEN``; make one with ``limen token create doctor --user ADMIN``) it asks the server for a
one-time console ticket and opens ``?ticket=``. Without a token it opens the console anonymously, and
the server's UNAUTHORIZED becomes the check's failure, with that fix. The token and the ticket never
appear in the check's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import ssl
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import websockets

from limen.console.rfb import protocol_version
from limen.console.stage_table import VNC_STAGES, VncStage
from limen.console.upstream import open_vnc, read_banner
from limen.db.models import HypervisorHost
from limen.errors import LimenError
from limen.host_registry import list_hosts, sync_pool
from limen.hypervisor import Hypervisor, Vm, VmState
from limen.hypervisor.hosts import HostConfig
from limen.hypervisor.service import detect_virt_type
from limen.logs import LOG_FILE_NAME
from limen.private_files import PRIVATE_DIR_MODE
from limen.settings import Settings

MIN_FREE_BYTES = 1 << 30


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    INFO = "info"


@dataclass
class CheckResult:
    name: str
    outcome: Outcome
    detail: str
    seconds: float = 0.0
    fix: str = ""

    @property
    def mark(self) -> str:
        return {"pass": "✓", "fail": "✗", "skip": "-", "info": "i"}[self.outcome.value]


class CheckFailed(Exception):
    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


@dataclass
class Context:
    settings: Settings
    hypervisor: Hypervisor
    vm_id: str | None
    server_url: str
    token: str | None = None  # an API token for the server (the console check asks for a ticket with it)
    vm: Vm | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Check = tuple[str, Callable[[Context], Awaitable[str]]]


async def check_settings(ctx: Context) -> str:
    log_dir = ctx.settings.log_dir
    try:
        log_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)  # as limen serve makes it
        probe = log_dir / ".limen-doctor"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise CheckFailed(
            f"log dir {log_dir} is not writable: {exc.strerror}",
            f"create it and make it writable (mkdir -p {log_dir}), or set LIMEN_LOG_DIR",
        ) from None
    return f"settings valid; log dir {log_dir} writable"


async def check_libvirt(ctx: Context) -> str:
    try:
        cpus, memory = await ctx.hypervisor.host_info()
    except LimenError as exc:
        raise CheckFailed(
            exc.details,
            f"start libvirtd (libvirtd --daemon, or systemctl start libvirtd) and check "
            f"`virsh -c {ctx.settings.libvirt_uri} list`; or fix LIMEN_LIBVIRT_URI",
        ) from None
    return f"{ctx.settings.libvirt_uri} answers ({cpus} CPUs, {memory} MiB)"


async def check_vm_exists(ctx: Context) -> str:
    assert ctx.vm_id is not None
    try:
        ctx.vm = await ctx.hypervisor.get_vm(ctx.vm_id)
    except LimenError as exc:
        raise CheckFailed(exc.details, "list the VMs with `limen vm list` and use a name or UUID from it") from None
    return f"{ctx.vm.name} ({ctx.vm.uuid})"


async def check_vm_running(ctx: Context) -> str:
    assert ctx.vm is not None
    if ctx.vm.state is not VmState.RUNNING:
        raise CheckFailed(
            f"the VM is {ctx.vm.state.value}",
            f"start it: `limen vm start {ctx.vm.name}` (or open the console with auto-start on)",
        )
    return "running"


async def check_vnc_configured(ctx: Context) -> str:
    assert ctx.vm is not None
    if ctx.vm.vnc is None:
        raise CheckFailed(
            "the VM has no VNC graphics device",
            "add to its <devices> (virsh edit NAME): <graphics type='vnc' port='-1' autoport='yes' "
            "listen='127.0.0.1'/>, then restart the VM",
        )
    return f"VNC graphics, listening on {ctx.vm.vnc.host}"


async def check_vnc_port(ctx: Context) -> str:
    assert ctx.vm is not None
    assert ctx.vm.vnc is not None
    if ctx.vm.vnc.port is None:
        raise CheckFailed(
            "libvirt reports no VNC port (autoport not assigned)",
            "wait a moment after start; if it persists, restart the VM; `virsh vncdisplay NAME` should show :N",
        )
    return f"{ctx.vm.vnc.host}:{ctx.vm.vnc.port} (display :{ctx.vm.vnc.port - 5900})"


async def check_tcp(ctx: Context) -> str:
    assert ctx.vm is not None
    assert ctx.vm.vnc is not None
    assert ctx.vm.vnc.port is not None
    host, port = ctx.vm.vnc.host, ctx.vm.vnc.port
    fix = "check that QEMU runs and listens there (ss -ltnp | grep qemu) and that no firewall blocks it"
    limit = VNC_STAGES[VncStage.CONNECT].deadline(ctx.settings) or 0.0
    try:
        async with asyncio.timeout(limit):
            reader, writer = await open_vnc(host, port)  # the console's own connect
    except TimeoutError:
        raise CheckFailed(f"cannot connect to {host}:{port}: no answer within {limit:g} s", fix) from None
    except LimenError as exc:
        raise CheckFailed(exc.details, fix) from None
    ctx.extra["vnc_stream"] = (reader, writer)
    return f"TCP connection to {host}:{port} accepted"


async def check_rfb(ctx: Context) -> str:
    reader, writer = ctx.extra.pop("vnc_stream")
    assert ctx.vm is not None and ctx.vm.vnc is not None
    where = f"{ctx.vm.vnc.host}:{ctx.vm.vnc.port}"
    limit = VNC_STAGES[VncStage.READ_BANNER].deadline(ctx.settings) or 0.0
    try:
        try:
            async with asyncio.timeout(limit):
                banner = await read_banner(reader, where)  # the console's own banner check
        except TimeoutError:
            raise CheckFailed(f"no RFB banner within {limit:g} s",
                              "the port is not a VNC server, or it hangs: restart the VM") from None
        except LimenError as exc:
            raise CheckFailed(exc.details, "the port belongs to something else, or it hangs: restart the VM") from None
        major, minor = protocol_version(banner)
        # Past the banner the console only relays; the doctor goes one step further, to the security types.
        try:
            writer.write(b"RFB 003.008\n")
            await writer.drain()
            count = (await asyncio.wait_for(reader.readexactly(1), 2))[0]
            if count == 0:
                length = struct.unpack(">I", await asyncio.wait_for(reader.readexactly(4), 2))[0]
                reason = (await asyncio.wait_for(reader.readexactly(min(length, 1024)), 2)).decode(errors="replace")
                raise CheckFailed(f"server refused the handshake: {reason}", "check the VM's VNC password settings")
            types = list(await asyncio.wait_for(reader.readexactly(count), 2))
        except (asyncio.IncompleteReadError, TimeoutError, OSError) as exc:
            raise CheckFailed(f"no security types after the banner ({type(exc).__name__})",
                              "the VNC server hangs: restart the VM") from None
        names = {1: "None", 2: "VNC auth", 19: "VeNCrypt", 16: "Tight"}
        return f"RFB {major:03d}.{minor:03d}; security types: {', '.join(names.get(t, str(t)) for t in types)}"
    finally:
        writer.close()


TOKEN_FIX = "pass an API token: --token or LIMEN_TOKEN (make one with `limen token create doctor --user ADMIN`)"


def client_tls(settings: Settings) -> ssl.SSLContext:
    """What the doctor trusts when it talks to limen over HTTPS/WSS: the system's CAs and limen's own
    certificate (self-signed ones included)."""
    context = ssl.create_default_context()
    if settings.tls_cert is not None:
        with contextlib.suppress(OSError, ssl.SSLError):
            context.load_verify_locations(cafile=str(settings.tls_cert))
    return context


def _request_ticket(server_url: str, vm_uuid: str, token: str, timeout: float,
                    tls: ssl.SSLContext | None = None) -> str:
    """``POST /api/vms/{uuid}/console-ticket`` with the token; the ticket. CheckFailed on refusal."""
    request = urllib.request.Request(
        f"{server_url.rstrip('/')}/api/vms/{vm_uuid}/console-ticket", method="POST", data=b"",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=tls) as response:
            ticket: str = json.loads(response.read())["ticket"]
            return ticket
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
        except ValueError:
            body = {}
        code = body.get("code", f"HTTP {exc.code}")
        fix = TOKEN_FIX if exc.code == 401 else str(body.get("message", "see limen's log"))
        raise CheckFailed(f"the server refused a console ticket: {code}: {body.get('details', '')}", fix) from None
    except (OSError, ValueError, KeyError) as exc:
        raise CheckFailed(
            f"cannot ask {server_url} for a console ticket: {type(exc).__name__}",
            "start the server (`limen serve`) or pass --server with its URL",
        ) from None


async def check_console_websocket(ctx: Context) -> str:
    assert ctx.vm is not None
    url = f"{ctx.server_url.rstrip('/')}/api/vms/{ctx.vm.uuid}/console".replace("http", "ws", 1)
    statuses: list[str] = []
    bound = VNC_STAGES.worst_case(ctx.settings) + 2
    how = "anonymously (no --token)"
    target = url
    if ctx.token:
        ticket = await asyncio.to_thread(_request_ticket, ctx.server_url, ctx.vm.uuid, ctx.token, 5.0,
                                         client_tls(ctx.settings))
        target, how = f"{url}?ticket={ticket}", "with a console ticket"
    try:
        async with asyncio.timeout(bound):
            tls: dict[str, Any] = {"ssl": client_tls(ctx.settings)} if target.startswith("wss:") else {}
            async with websockets.connect(target, open_timeout=5, close_timeout=1, max_size=None, **tls) as ws:
                async for frame in ws:
                    if isinstance(frame, bytes):
                        raise CheckFailed("binary data before the last status frame", "upgrade limen")
                    message = json.loads(frame)
                    if message.get("type") == "error":
                        code = message.get("code")
                        fix = TOKEN_FIX if code == "UNAUTHORIZED" else str(message.get("message", ""))
                        raise CheckFailed(f"{code}: {message.get('details')} (opened {how})", fix)
                    statuses.append(str(message.get("message")))
                    if message.get("message") == VNC_STAGES[VncStage.PROXY].status:
                        return f"reached the proxy stage through {url} {how} ({len(statuses)} status frames)"
    except TimeoutError:
        raise CheckFailed(f"no verdict within {bound:g} s at {url}", "see limen's log for this session") from None
    except (OSError, websockets.WebSocketException) as exc:
        raise CheckFailed(
            f"cannot open {url}: {exc}",
            "start the server (`limen serve`) or pass --server with its URL",
        ) from None
    raise CheckFailed(f"the server closed after {statuses}", "see limen's log for this session")


def _console_errors(log_dir: Path, vm: Vm, limit: int = 5) -> list[dict[str, Any]]:
    """The last console error lines about ``vm`` in limen's JSON log (rotated files included)."""
    found: list[dict[str, Any]] = []
    files = sorted(log_dir.glob(f"{LOG_FILE_NAME}*"), key=lambda p: p.stat().st_mtime)
    for path in files:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if '"code"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("vm_uuid") != vm.uuid and entry.get("vm_name") != vm.name:
                continue
            if entry.get("code") and entry.get("code") != "OK" and str(entry.get("event", "")).startswith("console"):
                found.append(entry)
    return found[-limit:]


async def check_console_log(ctx: Context) -> str:
    assert ctx.vm is not None
    errors = _console_errors(ctx.settings.log_dir, ctx.vm)
    ctx.extra["console_errors"] = errors
    if not errors:
        return f"no console errors for this VM in {ctx.settings.log_dir / LOG_FILE_NAME}"
    summary = "; ".join(f"{e.get('ts', '?')} {e.get('code')}" for e in errors)
    return f"last console errors: {summary}"


async def check_qemu(ctx: Context) -> str:
    def capabilities(conn: Any) -> str:
        return str(conn.getCapabilities())

    caps = await ctx.hypervisor.connection.call("capabilities", capabilities)
    if "<domain type='qemu'" not in caps and "<domain type=\"qemu\"" not in caps:
        raise CheckFailed("libvirt offers no QEMU domain type", "install qemu-system-x86 and restart libvirtd")
    emulator = shutil.which("qemu-system-x86_64")
    return f"QEMU available{f' ({emulator})' if emulator else ''}"


async def check_acceleration(ctx: Context) -> str:
    kind = detect_virt_type()
    configured = ctx.settings.virt_type
    if kind == "kvm":
        return f"KVM usable (/dev/kvm); new VMs use {'kvm' if configured == 'auto' else configured}"
    if configured == "kvm":
        raise CheckFailed("LIMEN_VIRT_TYPE=kvm but /dev/kvm cannot be opened", "set LIMEN_VIRT_TYPE=auto or qemu")
    return "no usable /dev/kvm: new VMs use TCG (software emulation, slower)"


async def check_listen_port(ctx: Context) -> str:
    host, port = ctx.settings.host, ctx.settings.port
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        in_use = sock.connect_ex((host, port)) == 0
    if not in_use:
        return f"{host}:{port} is free for `limen serve`"
    try:
        async with asyncio.timeout(2):
            # Is it limen? Its own certificate need not be checked for that (it is not sent anything secret).
            unchecked = ssl.create_default_context() if ctx.settings.tls else None
            if unchecked is not None:
                unchecked.check_hostname, unchecked.verify_mode = False, ssl.CERT_NONE
            reader, writer = await asyncio.open_connection(host, port, ssl=unchecked)
            writer.write(f"GET /healthz HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            await writer.drain()
            answer = await reader.read(4096)
            writer.close()
    except (OSError, TimeoutError, ssl.SSLError):
        answer = b""
    if b'"status":"ok"' in answer:
        return f"limen already serves on {host}:{port}"
    raise CheckFailed(f"{host}:{port} is taken by another program", "set LIMEN_PORT or stop that program")


async def check_disk_space(ctx: Context) -> str:
    path = ctx.settings.data_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        raise CheckFailed(f"only {free / 2**30:.2f} GiB free under {path}", "free disk space for VM disks")
    return f"{free / 2**30:.1f} GiB free under {path}"


async def check_database(ctx: Context) -> str:
    from limen.db.database import Database

    database: Database | None = None
    try:
        database = Database(ctx.settings.db_url)
        await database.ping(ctx.settings.libvirt_timeout)
    except TimeoutError:
        raise CheckFailed(
            f"the database did not answer within {ctx.settings.libvirt_timeout:g} s",
            "check that the database server runs and LIMEN_DATABASE_URL points at it",
        ) from None
    except Exception as exc:  # any driver error: the database cannot be used
        raise CheckFailed(
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
            "fix LIMEN_DATABASE_URL (SQLite: its directory must exist and be writable)",
        ) from None
    finally:
        if database is not None:
            database.close()
    return f"{database.redacted_url} answers"


async def _vnc_answers(settings: Settings, host: str, port: int) -> str:
    """The RFB banner of the VNC server at ``host``:``port``, read as the console reads it (its connect and
    banner deadlines). CheckFailed when it does not come."""
    connect_limit = VNC_STAGES[VncStage.CONNECT].deadline(settings) or 0.0
    banner_limit = VNC_STAGES[VncStage.READ_BANNER].deadline(settings) or 0.0
    try:
        async with asyncio.timeout(connect_limit):
            reader, writer = await open_vnc(host, port)
    except TimeoutError:
        raise CheckFailed(f"no answer within {connect_limit:g} s", "") from None
    except LimenError as exc:
        raise CheckFailed(exc.details, "") from None
    try:
        async with asyncio.timeout(banner_limit):
            banner = await read_banner(reader, f"{host}:{port}")
    except TimeoutError:
        raise CheckFailed(f"no RFB banner within {banner_limit:g} s", "") from None
    except LimenError as exc:
        raise CheckFailed(exc.details, "") from None
    finally:
        writer.close()
    major, minor = protocol_version(banner)
    return f"RFB {major:03d}.{minor:03d}"


def host_check(name: str) -> Check:
    """``host NAME``: the registered host's libvirt answers, and its console address reaches its VNC servers."""

    async def check(ctx: Context) -> str:
        link = ctx.hypervisor.hosts.get(name)
        uri = link.config.uri
        try:
            vms = await ctx.hypervisor.list_vms_on(link)
        except LimenError as exc:
            raise CheckFailed(
                f"{uri}: {exc.code.name}: {exc.details}",
                f"start libvirtd on that host and check `virsh -c {uri} list` from here; or correct the URI "
                f"(`limen host remove {name}`, then `limen host add {name} URI`)",
            ) from None
        address = link.console_address or "this machine"
        tried = [vm for vm in vms if vm.state is VmState.RUNNING and vm.vnc is not None and vm.vnc.port is not None]
        if not tried:
            return f"{uri} answers ({len(vms)} VMs); no running VM with VNC to try the console address {address} on"
        vm = tried[0]
        assert vm.vnc is not None and vm.vnc.port is not None
        try:
            banner = await _vnc_answers(ctx.settings, vm.vnc.host, vm.vnc.port)
        except CheckFailed as exc:
            raise CheckFailed(
                f"{uri} answers, but the VNC server of {vm.name} at {vm.vnc.host}:{vm.vnc.port} does not: "
                f"{exc.detail}",
                f"consoles dial a host's VMs at its console address: make it an address of {name} that this "
                f"machine reaches and its VNC servers listen on (vnc_listen in its qemu.conf); change it with "
                f"`limen host remove {name}` and `limen host add {name} {uri} --console-address ADDRESS`",
            ) from None
        return f"{uri} answers ({len(vms)} VMs); VNC at {vm.vnc.host}:{vm.vnc.port} ({vm.name}) answers: {banner}"

    return f"host {name}", check


async def registered_host_checks(ctx: Context) -> list[Check]:
    """A ``host NAME`` check for every host, the default one included, when the registry holds any (a
    one-machine install has none and gets none). The registry is read as the server reads it; a database
    without limen's schema yet (``limen serve`` makes it) holds no hosts."""
    from sqlalchemy import inspect

    from limen.db.database import Database

    def read() -> list[HostConfig]:
        database = Database(ctx.settings.db_url)
        try:
            if not inspect(database.engine).has_table(HypervisorHost.__tablename__):
                return []
            return list_hosts(database)
        finally:
            database.close()

    async def unreadable(_ctx: Context) -> str:
        raise CheckFailed(ctx.extra["registry_error"], "see the database check; fix LIMEN_DATABASE_URL")

    try:
        async with asyncio.timeout(ctx.settings.libvirt_timeout):
            hosts = await asyncio.to_thread(read)
    except Exception as exc:  # the database check says what is wrong with it; this says what it costs
        ctx.extra["registry_error"] = f"cannot read the host registry: {type(exc).__name__}"
        return [("registered hosts", unreadable)]
    if not hosts:
        return []
    await sync_pool(ctx.hypervisor.hosts, hosts)
    return [host_check(link.name) for link in ctx.hypervisor.hosts.links]


VM_CHECKS: list[Check] = [
    ("settings and log dir", check_settings),
    ("libvirt reachable", check_libvirt),
    ("VM exists", check_vm_exists),
    ("VM running", check_vm_running),
    ("VNC graphics configured", check_vnc_configured),
    ("VNC port assigned", check_vnc_port),
    ("TCP connect to VNC", check_tcp),
    ("RFB banner", check_rfb),
    ("console WebSocket", check_console_websocket),
    ("console errors in log", check_console_log),
]

HOST_CHECKS: list[Check] = [
    ("settings and log dir", check_settings),
    ("libvirt reachable", check_libvirt),
    ("QEMU", check_qemu),
    ("acceleration", check_acceleration),
    ("listen port", check_listen_port),
    ("disk space", check_disk_space),
    ("database", check_database),
]

# Checks that still tell something when an earlier check failed.
_INDEPENDENT = {"console errors in log", "acceleration", "listen port", "disk space", "settings and log dir",
                "database"}


async def run_checks(
    checks: Iterable[Check], ctx: Context, *, deadline: float,
    progress: Callable[[str], None] | None = None,
) -> list[CheckResult]:
    results: list[CheckResult] = []
    blocked_by: str | None = None
    for name, check in checks:
        needs_vm_before = name == "console errors in log" and ctx.vm is None
        if (blocked_by is not None and name not in _INDEPENDENT) or needs_vm_before:
            results.append(CheckResult(name, Outcome.SKIP, f"needs '{blocked_by or 'VM exists'}' to pass"))
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            results.append(CheckResult(name, Outcome.SKIP, "the --timeout ran out before this check"))
            blocked_by = blocked_by or "--timeout"
            continue
        if progress is not None:
            progress(name)
        began = time.monotonic()
        try:
            async with asyncio.timeout(remaining):
                detail = await check(ctx)
            outcome = Outcome.PASS
            if name == "console errors in log" and ctx.extra.get("console_errors"):
                outcome = Outcome.INFO
            results.append(CheckResult(name, outcome, detail, time.monotonic() - began))
        except CheckFailed as exc:
            results.append(CheckResult(name, Outcome.FAIL, exc.detail, time.monotonic() - began, exc.fix))
            blocked_by = blocked_by or name
        except TimeoutError:
            results.append(CheckResult(name, Outcome.FAIL, "the --timeout ran out during this check",
                                       time.monotonic() - began, "raise --timeout, or see why this check hangs"))
            blocked_by = blocked_by or name
        except LimenError as exc:
            results.append(CheckResult(name, Outcome.FAIL, f"{exc.code.name}: {exc.details}",
                                       time.monotonic() - began, exc.code.user_message))
            blocked_by = blocked_by or name
    leftover = ctx.extra.pop("vnc_stream", None)
    if leftover is not None:
        leftover[1].close()
    return results


async def diagnose(settings: Settings, vm_id: str | None, *, server_url: str, timeout: float,
                   progress: Callable[[str], None] | None = None, token: str | None = None) -> list[CheckResult]:
    hypervisor = Hypervisor(settings)
    await hypervisor.open()
    try:
        ctx = Context(settings=settings, hypervisor=hypervisor, vm_id=vm_id, server_url=server_url, token=token)
        deadline = time.monotonic() + timeout
        if vm_id is not None:
            return await run_checks(VM_CHECKS, ctx, deadline=deadline, progress=progress)
        results = await run_checks(HOST_CHECKS, ctx, deadline=deadline, progress=progress)
        if any(result.name == "database" and result.outcome is Outcome.FAIL for result in results):
            return [*results, CheckResult("registered hosts", Outcome.SKIP, "needs 'database' to pass")]
        # Each host on its own: one that fails or hangs (for LIMEN_LIBVIRT_TIMEOUT) does not skip the others.
        for check in await registered_host_checks(ctx):
            results += await run_checks([check], ctx, deadline=deadline, progress=progress)
        return results
    finally:
        await hypervisor.close()


def all_passed(results: list[CheckResult]) -> bool:
    """Past errors in the log are information, not a failure of the VM's console now."""
    return all(result.outcome in (Outcome.PASS, Outcome.INFO) for result in results)


def render_table(results: list[CheckResult]) -> str:
    width = max(len(result.name) for result in results)
    lines = []
    for number, result in enumerate(results, 1):
        timing = " " * 10 if result.outcome is Outcome.SKIP else f"{result.seconds * 1000:7.1f} ms"
        lines.append(f"{number:>2}. {result.mark} {result.name.ljust(width)}  {timing}  {result.detail}")
        if result.fix:
            lines.append(f"{'':>5}{'':{width}}   fix: {result.fix}")
    return "\n".join(lines)


def render_json(results: list[CheckResult]) -> str:
    return json.dumps(
        {"ok": all_passed(results), "checks": [{**asdict(r), "outcome": r.outcome.value} for r in results]},
        indent=2,
    )


def default_server_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    scheme = "https" if settings.tls else "http"
    return os.environ.get("LIMEN_SERVER_URL", f"{scheme}://{host}:{settings.port}")

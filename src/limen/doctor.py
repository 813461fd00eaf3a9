"""``limen doctor``: the checks a person would otherwise run by hand, in order, each with its fix.

For a VM: settings and log dir → libvirt → VM exists → running → VNC graphics → VNC port (as
``virsh vncdisplay``) → TCP connect (as ``telnet localhost 5900``) → RFB banner and security types →
a console WebSocket through the running limen server → the VM's last console errors in the log.
Without a VM: the host (libvirt, QEMU, KVM or TCG, the listen port, the storage pool's directory, whether
QEMU's user can pass to the pool and the ISO library, disk space, the database), then, when the host registry
holds hosts, each host apart (``host NAME``): its libvirt answers within
LIMEN_LIBVIRT_TIMEOUT, and the VNC server of one of its running VMs answers at the host's console address
with an RFB banner (the address limen's consoles dial). A host that fails does not stop the others' checks.

A check that cannot run because an earlier one failed is reported as skipped, never as passed.

The console WebSocket check signs in like the browser does: with an API token (``--token`` or
``LIMEN_TOKEN``; make one with ``limen token create doctor --user ADMIN``) it asks the server for a
one-time console ticket and opens ``?ticket=``. Without a token it opens the console anonymously, and
the server's UNAUTHORIZED becomes the check's failure, with that fix. The token and the ticket never
appear in the check's output.

Every check name, result and fix is a catalogue text (``cli.doctor.*``, :class:`Said`): ``--json`` and
:class:`CheckResult`'s fields are English and stable (scripts read them); the table a person reads is in
their language (``LIMEN_LANG``/``LANG``). What came from elsewhere (libvirt's errors, paths, the server's
details) is passed through as it came.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import ipaddress
import json
import os
import shutil
import socket
import ssl
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import websockets

from limen.console.rfb import protocol_version
from limen.console.stage_table import VNC_STAGES, VncStage
from limen.console.upstream import open_vnc, read_banner
from limen.db.database import in_daemon_thread
from limen.errors import LimenError
from limen.host_registry import read_registered_hosts, sync_pool
from limen.hypervisor import Hypervisor, Vm, VmState
from limen.hypervisor.hosts import HostConfig
from limen.hypervisor.service import accelerated_virt_type
from limen.i18n import DEFAULT_LANGUAGE, display_width, error_keys, pad, translate
from limen.logs import LOG_FILE_NAME
from limen.private_files import PRIVATE_DIR_MODE
from limen.qemu_access import first_blocking, qemu_owner
from limen.settings import Settings, host_in_url
from limen.sizes import format_size

MIN_FREE_BYTES = 1 << 30


@dataclass(frozen=True)
class Said:
    """One of the doctor's texts by its catalogue key, said in any language; parameters that are ``Said``
    themselves are said in the same language. ``str()`` is English: the ``--json`` and log form."""

    key: str
    params: Mapping[str, object] = field(default_factory=dict)

    def __call__(self, lang: str) -> str:
        values = {name: value(lang) if isinstance(value, Said) else value for name, value in self.params.items()}
        return translate(lang, self.key, **values)

    def __str__(self) -> str:
        return self(DEFAULT_LANGUAGE)


def said(key: str, **params: object) -> Said:
    """``cli.doctor.<key>`` with its placeholders."""
    return Said(f"cli.doctor.{key}", params)


HOST_CHECK_PREFIX = "host "


def check_title(name: str) -> Said:
    """A check's name for people; ``name`` itself (English) is its stable id. ``host NAME`` (one per
    registered host) keeps the host's name as it is."""
    if name.startswith(HOST_CHECK_PREFIX):
        return said("check.host", name=name.removeprefix(HOST_CHECK_PREFIX))
    return said("check." + name.replace(" ", "_"))


@dataclass(frozen=True)
class AsItCame(Said):
    """A text from elsewhere (libvirt, the server, the OS), shown as it came in every language."""

    def __call__(self, lang: str) -> str:
        return self.key


def as_it_came(text: str) -> Said:
    return AsItCame(text)


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    INFO = "info"


@dataclass
class CheckResult:
    """``name``, ``detail`` and ``fix`` are English (the ``--json`` fields); ``said``/``said_fix`` say the
    same in the reader's language."""

    name: str
    outcome: Outcome
    detail: str
    seconds: float = 0.0
    fix: str = ""
    said: Said | None = field(default=None, repr=False, compare=False)
    said_fix: Said | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, name: str, outcome: Outcome, detail: Said, seconds: float = 0.0,
           fix: Said | None = None) -> CheckResult:
        return cls(name, outcome, str(detail), seconds, str(fix) if fix else "", detail, fix)

    @property
    def mark(self) -> str:
        return {"pass": "✓", "fail": "✗", "skip": "-", "info": "i"}[self.outcome.value]


class CheckFailed(Exception):
    def __init__(self, detail: Said, fix: Said) -> None:
        super().__init__(str(detail))
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


Check = tuple[str, Callable[[Context], Awaitable[Said]]]


async def check_settings(ctx: Context) -> Said:
    log_dir = ctx.settings.log_dir
    try:
        log_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)  # as limen serve makes it
        probe = log_dir / ".limen-doctor"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise CheckFailed(said("log_dir_not_writable", path=log_dir, reason=exc.strerror),
                          said("fix.log_dir", path=log_dir)) from None
    return said("settings_ok", path=log_dir)


async def check_libvirt(ctx: Context) -> Said:
    try:
        cpus, memory = await ctx.hypervisor.host_info()
    except LimenError as exc:
        raise CheckFailed(as_it_came(exc.details), said("fix.libvirt", uri=ctx.settings.libvirt_uri)) from None
    return said("libvirt_ok", uri=ctx.settings.libvirt_uri, cpus=cpus, memory=format_size(memory * 2**20))


async def check_storage_pool(ctx: Context) -> Said:
    """New disks go where the libvirt pool keeps them: a pool defined before (an earlier setting, another limen
    on the same libvirt) keeps its own directory, whatever LIMEN_STORAGE_POOL_DIR says now."""
    pool, configured = ctx.settings.storage_pool, ctx.settings.pool_dir
    try:
        kept = await ctx.hypervisor.storage_pool_directory()
    except LimenError as exc:
        raise CheckFailed(as_it_came(exc.details), said("fix.libvirt", uri=ctx.settings.libvirt_uri)) from None
    if kept is None:
        return said("pool_new", pool=pool, path=configured)
    if kept != configured:
        raise CheckFailed(said("pool_elsewhere", pool=pool, path=kept, configured=configured),
                          said("fix.pool", pool=pool, path=kept, configured=configured))
    return said("pool_ok", pool=pool, path=kept)


async def check_qemu_file_access(ctx: Context) -> Said:
    """QEMU runs as its own user (libvirt-qemu on Debian): every directory above the pool's disks and the ISO
    library must let it pass, or no VM starts. Judged on this host, so only when libvirt is on it."""
    if urlsplit(ctx.settings.libvirt_uri).netloc:
        return said("qemu_access_remote")

    caps = await host_capabilities(ctx)
    configured = ctx.settings.virt_type
    owner = qemu_owner(caps, accelerated_virt_type(caps) if configured == "auto" else configured)
    if owner is None:
        return said("qemu_access_unknown")
    if owner.uid == 0:
        return said("qemu_access_root")
    pool = await ctx.hypervisor.storage_pool_directory() or ctx.settings.pool_dir
    for target in (pool, ctx.settings.iso_dir):
        blocked = await asyncio.to_thread(first_blocking, target, owner)
        if blocked is not None:
            raise CheckFailed(said("qemu_blocked", user=owner.name, blocked=blocked, target=target),
                              said("fix.qemu_blocked", blocked=blocked))
    return said("qemu_access_ok", user=owner.name, pool=pool, isos=ctx.settings.iso_dir)


async def check_vm_exists(ctx: Context) -> Said:
    assert ctx.vm_id is not None
    try:
        ctx.vm = await ctx.hypervisor.get_vm(ctx.vm_id)
    except LimenError as exc:
        raise CheckFailed(as_it_came(exc.details), said("fix.vm_exists")) from None
    return said("vm_ok", name=ctx.vm.name, uuid=ctx.vm.uuid)


async def check_vm_running(ctx: Context) -> Said:
    assert ctx.vm is not None
    if ctx.vm.state is not VmState.RUNNING:
        raise CheckFailed(said("vm_state", state=Said(f"cli.state.{ctx.vm.state.value}")),
                          said("fix.vm_running", name=ctx.vm.name))
    return said("running")


async def check_vnc_configured(ctx: Context) -> Said:
    assert ctx.vm is not None
    if ctx.vm.vnc is None:
        raise CheckFailed(said("no_vnc"), said("fix.vnc_configured"))
    return said("vnc_ok", host=ctx.vm.vnc.host)


async def check_vnc_port(ctx: Context) -> Said:
    assert ctx.vm is not None
    assert ctx.vm.vnc is not None
    if ctx.vm.vnc.port is None:
        raise CheckFailed(said("no_vnc_port"), said("fix.vnc_port"))
    return said("vnc_port_ok", host=ctx.vm.vnc.host, port=ctx.vm.vnc.port, display=ctx.vm.vnc.port - 5900)


async def check_tcp(ctx: Context) -> Said:
    assert ctx.vm is not None
    assert ctx.vm.vnc is not None
    assert ctx.vm.vnc.port is not None
    host, port = ctx.vm.vnc.host, ctx.vm.vnc.port
    fix = said("fix.tcp")
    limit = VNC_STAGES[VncStage.CONNECT].deadline(ctx.settings) or 0.0
    try:
        async with asyncio.timeout(limit):
            reader, writer = await open_vnc(host, port)  # the console's own connect
    except TimeoutError:
        raise CheckFailed(said("tcp_no_answer", host=host, port=port, seconds=f"{limit:g}"), fix) from None
    except LimenError as exc:
        raise CheckFailed(as_it_came(exc.details), fix) from None
    ctx.extra["vnc_stream"] = (reader, writer)
    return said("tcp_ok", host=host, port=port)


async def check_rfb(ctx: Context) -> Said:
    reader, writer = ctx.extra.pop("vnc_stream")
    assert ctx.vm is not None and ctx.vm.vnc is not None
    where = f"{ctx.vm.vnc.host}:{ctx.vm.vnc.port}"
    limit = VNC_STAGES[VncStage.READ_BANNER].deadline(ctx.settings) or 0.0
    try:
        try:
            async with asyncio.timeout(limit):
                banner = await read_banner(reader, where)  # the console's own banner check
        except TimeoutError:
            raise CheckFailed(said("no_banner", seconds=f"{limit:g}"), said("fix.not_vnc")) from None
        except LimenError as exc:
            raise CheckFailed(as_it_came(exc.details), said("fix.not_vnc_server")) from None
        major, minor = protocol_version(banner)
        # Past the banner the console only relays; the doctor goes one step further, to the security types.
        try:
            writer.write(b"RFB 003.008\n")
            await writer.drain()
            async with asyncio.timeout(2):
                count = (await reader.readexactly(1))[0]
            if count == 0:
                async with asyncio.timeout(2):
                    length = struct.unpack(">I", await reader.readexactly(4))[0]
                    reason = (await reader.readexactly(min(length, 1024))).decode(errors="replace")
                raise CheckFailed(said("handshake_refused", reason=reason), said("fix.vnc_password"))
            async with asyncio.timeout(2):
                types = list(await reader.readexactly(count))
        except (asyncio.IncompleteReadError, TimeoutError, OSError) as exc:
            raise CheckFailed(said("no_security_types", error=type(exc).__name__), said("fix.vnc_hangs")) from None
        names = {1: "None", 2: "VNC auth", 19: "VeNCrypt", 16: "Tight"}
        return said("rfb_ok", version=f"{major:03d}.{minor:03d}", types=", ".join(names.get(t, str(t)) for t in types))
    finally:
        writer.close()


TOKEN_FIX = said("fix.token")
START_SERVER_FIX = said("fix.start_server")
# A console ticket's answer, or an error's, is a few hundred bytes; a server that sends more is not limen.
ANSWER_MAX_BYTES = 1 << 16
SEE_LOG_FIX = said("fix.see_log")


class _NamedTls(ssl.SSLContext):
    """A client context that checks the server's certificate against ``name`` (when set) whatever address it
    dials: urllib and asyncio give it the URL's host as ``server_hostname``."""

    name: str | None = None

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        if self.name is not None:
            kwargs["server_hostname"] = self.name
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        if self.name is not None:
            kwargs["server_hostname"] = self.name
        return super().wrap_bio(*args, **kwargs)


def certificate_name(settings: Settings, server_url: str) -> str | None:
    """The name limen's certificate must have, when it is not ``server_url``'s host: LIMEN_PUBLIC_URL's host
    when that is https and the doctor reaches this machine by an address or as localhost (its own way in,
    https://127.0.0.1:PORT, which a certificate for limen.example does not name: browsers use the public URL)."""
    public = urlsplit(settings.public_url or "")
    dialled = urlsplit(server_url).hostname
    if public.scheme != "https" or not public.hostname or dialled is None:
        return None
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(dialled)
        return public.hostname
    return public.hostname if dialled == "localhost" else None


def client_tls(settings: Settings, server_url: str = "") -> ssl.SSLContext:
    """What the doctor trusts when it talks to limen over HTTPS/WSS: the system's CAs and limen's own
    certificate (self-signed ones included); the certificate's name is checked as :func:`certificate_name`
    says, else as ``server_url``'s host."""
    context = _NamedTls(ssl.PROTOCOL_TLS_CLIENT)  # as ssl.create_default_context(): names and chain checked
    context.load_default_certs()
    context.name = certificate_name(settings, server_url)
    if settings.tls_cert is not None:
        with contextlib.suppress(OSError, ssl.SSLError):
            context.load_verify_locations(cafile=str(settings.tls_cert))
    return context


def _request_ticket(server_url: str, vm_uuid: str, token: str, timeout: float,
                    tls: ssl.SSLContext | None = None) -> str:
    """``POST /api/vms/{uuid}/console-ticket`` with the token; the ticket. CheckFailed on refusal."""
    try:
        request = urllib.request.Request(
            f"{server_url.rstrip('/')}/api/vms/{vm_uuid}/console-ticket", method="POST", data=b"",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout, context=tls) as response:
            ticket = _json_object(response.read(ANSWER_MAX_BYTES)).get("ticket")
    except urllib.error.HTTPError as exc:
        body = _json_object(_refusal_body(exc))
        code = body.get("code", f"HTTP {exc.code}")
        fix = TOKEN_FIX if exc.code == 401 else _server_advice(body)
        raise CheckFailed(said("ticket_refused", code=code, details=body.get("details", "")), fix) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        # URLError wraps the socket's own error ("Connection refused"): that is what tells the reader why.
        # ValueError: a URL urllib cannot use; HTTPException: something at that address that does not speak HTTP.
        reason = getattr(exc, "reason", None) or exc
        why = getattr(reason, "strerror", None) or str(reason)
        raise CheckFailed(said("ticket_unreachable", url=server_url, error=f"{type(exc).__name__}: {why}"[:200]),
                          _unreachable_fix(server_url, reason)) from None
    if not isinstance(ticket, str) or not ticket:
        # Another service at that address (a page, another API's JSON): not a server to start, a URL to correct.
        raise CheckFailed(said("no_ticket_in_answer", url=server_url), said("fix.server_url"))
    return ticket


def _refusal_body(refusal: urllib.error.HTTPError) -> bytes:
    """The body of a refusal, at most ANSWER_MAX_BYTES; empty when it cannot be read (a chunked body cut short or
    malformed): the refusal's status still says what happened."""
    try:
        return refusal.read(ANSWER_MAX_BYTES)
    except (OSError, http.client.HTTPException):
        return b""


def _json_object(raw: str | bytes) -> dict[str, Any]:
    """``raw`` as a JSON object; empty when it is none (an HTML page, a list, text that is not UTF-8, nesting
    deeper than Python's json reads): what the server said is then unknown, never a traceback."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _unreachable_fix(server_url: str, reason: object) -> Said:
    """What to do about a server the ticket request did not reach: an untrusted certificate, plain HTTP to a
    server that speaks TLS, or a URL that is none or leads to something that speaks no HTTP, is not a server
    to start (which was all the doctor said)."""
    if not server_url.lower().startswith(("http://", "https://")):  # "localhost:8080" is scheme "localhost"
        return said("fix.server_url")
    if isinstance(reason, ssl.SSLCertVerificationError):
        return _certificate_fix(reason)
    if server_url.startswith("http://") and isinstance(reason, ConnectionResetError | http.client.RemoteDisconnected):
        return said("fix.use_https", url="https://" + server_url.removeprefix("http://"))
    if isinstance(reason, ValueError | http.client.HTTPException):  # not a URL, or no HTTP server behind it
        return said("fix.server_url")
    return START_SERVER_FIX


# OpenSSL's verify codes (X509_V_ERR_*) that have a fix of their own; any other: the certificate is not trusted.
_CERTIFICATE_FIXES: Final = {9: "fix.certificate_not_yet_valid", 10: "fix.certificate_expired",
                             62: "fix.certificate_name", 64: "fix.certificate_name"}


def _certificate_fix(refusal: ssl.SSLCertVerificationError) -> Said:
    """What to do about the certificate the server showed, by why it was refused: an expired one or one for
    another name was told to be trusted (set LIMEN_TLS_CERT to it, which was already so)."""
    return said(_CERTIFICATE_FIXES.get(getattr(refusal, "verify_code", 0), "fix.trust_certificate"))


def _server_advice(answer: Mapping[str, Any]) -> Said:
    """What the server's error says to do: its English ``message``, in the reader's language by its code
    when the catalogue has that code; limen's log when it said nothing."""
    message = answer.get("message")
    if not message:
        return SEE_LOG_FIX
    code = answer.get("code")
    known = isinstance(code, str) and translate(DEFAULT_LANGUAGE, f"error.{code}.message") == message
    return Said(f"error.{code}.message") if known else as_it_came(str(message))


async def check_console_websocket(ctx: Context) -> Said:
    assert ctx.vm is not None
    url = f"{ctx.server_url.rstrip('/')}/api/vms/{ctx.vm.uuid}/console".replace("http", "ws", 1)
    statuses: list[str] = []
    bound = VNC_STAGES.worst_case(ctx.settings) + 2
    how = said("anonymously")
    target = url
    if ctx.token:
        ticket = await asyncio.to_thread(_request_ticket, ctx.server_url, ctx.vm.uuid, ctx.token, 5.0,
                                         client_tls(ctx.settings, ctx.server_url))
        target, how = f"{url}?ticket={ticket}", said("with_ticket")
    try:
        async with asyncio.timeout(bound):
            tls: dict[str, Any] = {"ssl": client_tls(ctx.settings, ctx.server_url)} if target.startswith("wss:") else {}
            async with websockets.connect(target, open_timeout=5, close_timeout=1, max_size=None, **tls) as ws:
                async for frame in ws:
                    if isinstance(frame, bytes):
                        raise CheckFailed(said("binary_early"), said("fix.upgrade"))
                    message = _json_object(frame)
                    if not message:  # a WebSocket server, but not limen's console
                        raise CheckFailed(said("not_limen_frame", url=url, frame=repr(frame[:80])),
                                          said("fix.server_url"))
                    if message.get("type") == "error":
                        code = message.get("code")
                        fix = TOKEN_FIX if code == "UNAUTHORIZED" else _server_advice(message)
                        raise CheckFailed(said("console_error", code=code, details=message.get("details"), how=how),
                                          fix)
                    statuses.append(str(message.get("message")))
                    if message.get("message") == VNC_STAGES[VncStage.PROXY].status:
                        return said("console_ok", url=url, how=how, count=len(statuses))
    except TimeoutError:
        raise CheckFailed(said("no_verdict", seconds=f"{bound:g}", url=url), said("fix.see_session_log")) from None
    except (OSError, websockets.WebSocketException) as exc:
        # As the ticket's request would have said (it is made only with a token): "localhost:8080" is a URL
        # to correct, not a server to start.
        raise CheckFailed(said("cannot_open", url=url, error=exc), _unreachable_fix(ctx.server_url, exc)) from None
    raise CheckFailed(said("closed_after", statuses=statuses), said("fix.see_session_log"))


# Console ends that someone chose (a restart, an administrator, the idle rule, a revocation, a second tab):
# not faults of the console, and a list of them hid the ones that were.
ORDINARY_ENDS: Final = frozenset({"OK", "SERVER_SHUTDOWN", "IDLE_TIMEOUT", "SESSION_TERMINATED",
                                  "SESSION_TAKEN_OVER", "ACCESS_REVOKED"})


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
            entry = _json_object(line)  # another program's lines in the log directory are skipped
            if entry.get("vm_uuid") != vm.uuid and entry.get("vm_name") != vm.name:
                continue
            if (entry.get("code") and entry.get("code") not in ORDINARY_ENDS
                    and str(entry.get("event", "")).startswith("console")):
                found.append(entry)
    return found[-limit:]


async def check_console_log(ctx: Context) -> Said:
    assert ctx.vm is not None
    errors = _console_errors(ctx.settings.log_dir, ctx.vm)
    ctx.extra["console_errors"] = errors
    if not errors:
        return said("no_console_errors", path=ctx.settings.log_dir / LOG_FILE_NAME)
    summary = "; ".join(f"{e.get('ts', '?')} {e.get('code')}" for e in errors)
    return said("console_errors", summary=summary)


async def host_capabilities(ctx: Context) -> str:
    """The host's libvirt capabilities XML, read once for every check (seconds to get on a busy host)."""

    def capabilities(conn: Any) -> str:
        return str(conn.getCapabilities())

    caps = ctx.extra.get("capabilities")
    if caps is None:
        caps = ctx.extra["capabilities"] = await ctx.hypervisor.connection.call("capabilities", capabilities)
    return str(caps)


async def check_qemu(ctx: Context) -> Said:
    caps = await host_capabilities(ctx)
    if "<domain type='qemu'" not in caps and "<domain type=\"qemu\"" not in caps:
        raise CheckFailed(said("no_qemu"), said("fix.qemu"))
    emulator = shutil.which("qemu-system-x86_64")
    return said("qemu_at", path=emulator) if emulator else said("qemu_ok")


async def check_acceleration(ctx: Context) -> Said:
    """Whether the host's libvirt offers KVM (its capabilities: QEMU opens /dev/kvm, not limen)."""
    kind = accelerated_virt_type(await host_capabilities(ctx))
    configured = ctx.settings.virt_type
    if kind == "kvm":
        return said("kvm_ok", kind="kvm" if configured == "auto" else configured)
    if configured == "kvm":
        raise CheckFailed(said("kvm_missing"), said("fix.virt_type"))
    return said("tcg")


def dialled_address(host: str) -> str:
    """Where this machine reaches a server listening on ``host``: a wildcard (0.0.0.0, ``::``) is no address to
    dial nor a Host limen answers to (HOST_NOT_ALLOWED), its loopback address is both."""
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host.strip(), host)


async def check_listen_port(ctx: Context) -> Said:
    host, port = ctx.settings.host, ctx.settings.port
    dialled = dialled_address(host)
    with socket.socket(socket.AF_INET6 if ":" in dialled else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        in_use = sock.connect_ex((dialled, port)) == 0
    if not in_use:
        return said("port_free", host=host, port=port)
    # Is it limen? Asked as these settings would serve first, then the other way: a limen serving with TLS,
    # asked by a doctor run without the TLS settings, was called "another program".
    configured = ctx.settings.tls
    for tls in (configured, not configured):
        if await _limen_answers(dialled, port, tls=tls):
            if tls == configured:
                return said("port_limen", host=host, port=port)
            return said("port_limen_tls" if tls else "port_limen_plain", host=host, port=port)
    raise CheckFailed(said("port_taken", host=host, port=port), said("fix.port"))


async def _limen_answers(host: str, port: int, *, tls: bool) -> bool:
    """Whether limen's /healthz answers on ``host``:``port``, over TLS or not."""
    try:
        async with asyncio.timeout(5):
            # Its own certificate need not be checked for that (it is not sent anything secret).
            unchecked = ssl.create_default_context() if tls else None
            if unchecked is not None:
                unchecked.check_hostname, unchecked.verify_mode = False, ssl.CERT_NONE
            reader, writer = await asyncio.open_connection(host, port, ssl=unchecked)
            writer.write(f"GET /healthz HTTP/1.0\r\nHost: {host_in_url(host)}\r\n\r\n".encode())
            await writer.drain()
            # Headers and body may come in separate reads (over TLS, separate records): read to the end.
            answer = b""
            while b'"status":"ok"' not in answer and len(answer) < 64 * 1024:
                if not (more := await reader.read(4096)):
                    break
                answer += more
            writer.close()
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    return b'"status":"ok"' in answer


async def check_disk_space(ctx: Context) -> Said:
    path = ctx.settings.data_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        raise CheckFailed(said("disk_low", size=format_size(free), path=path), said("fix.disk"))
    return said("disk_ok", size=format_size(free), path=path)


async def check_database(ctx: Context) -> Said:
    from limen.db.database import Database, DatabaseFault, database_fault, missing_sqlite_file

    not_made = missing_sqlite_file(ctx.settings.db_url)
    if not_made is not None:  # opening it would make an empty one, which a backup then took for limen's
        return said("db_not_made", path=str(not_made))
    database: Database | None = None
    try:
        database = Database(ctx.settings.db_url)
        await database.ping(ctx.settings.database_timeout)
        await asyncio.to_thread(database.check_schema_known)
    except LimenError as exc:  # it answers, with a newer limen's schema
        raise CheckFailed(as_it_came(exc.details), said("fix.db_schema")) from None
    except TimeoutError:
        raise CheckFailed(said("db_no_answer", seconds=f"{ctx.settings.database_timeout:g}"),
                          said("fix.db_down")) from None
    except Exception as exc:  # any driver error: the database cannot be used
        fault = database_fault(ctx.settings.db_url, ctx.settings.data_dir, exc)
        server = ctx.settings.db_url.startswith("postgresql")
        fix = {DatabaseFault.DRIVER_MISSING: said("fix.db_driver"),
               DatabaseFault.DATA_DIR: said("fix.db_data_dir", path=str(ctx.settings.data_dir))}.get(
                   fault, said("fix.db_postgresql" if server else "fix.db_url"))
        raise CheckFailed(as_it_came(f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"),
                          fix) from None
    finally:
        if database is not None:
            database.close()
    return said("db_ok", url=database.redacted_url)


async def _vnc_answers(settings: Settings, host: str, port: int) -> str:
    """The RFB banner of the VNC server at ``host``:``port``, read as the console reads it (its connect and
    banner deadlines). CheckFailed when it does not come."""
    connect_limit = VNC_STAGES[VncStage.CONNECT].deadline(settings) or 0.0
    banner_limit = VNC_STAGES[VncStage.READ_BANNER].deadline(settings) or 0.0
    try:
        async with asyncio.timeout(connect_limit):
            reader, writer = await open_vnc(host, port)
    except TimeoutError:
        raise CheckFailed(said("vnc_no_answer", seconds=f"{connect_limit:g}"), as_it_came("")) from None
    except LimenError as exc:
        raise CheckFailed(as_it_came(exc.details), as_it_came("")) from None
    try:
        async with asyncio.timeout(banner_limit):
            banner = await read_banner(reader, f"{host}:{port}")
    except TimeoutError:
        raise CheckFailed(said("vnc_no_banner", seconds=f"{banner_limit:g}"), as_it_came("")) from None
    except LimenError as exc:
        raise CheckFailed(as_it_came(exc.details), as_it_came("")) from None
    finally:
        writer.close()
    major, minor = protocol_version(banner)
    return f"RFB {major:03d}.{minor:03d}"


def host_check(name: str) -> Check:
    """``host NAME``: the registered host's libvirt answers, and its console address reaches its VNC servers."""

    async def check(ctx: Context) -> Said:
        link = ctx.hypervisor.hosts.get(name)
        uri = link.config.uri
        try:
            vms = await ctx.hypervisor.list_vms_on(link)
        except LimenError as exc:
            raise CheckFailed(as_it_came(f"{uri}: {exc.code.name}: {exc.details}"),
                              said("fix.host_down", uri=uri, name=name)) from None
        address: object = link.console_address or said("this_machine")
        tried = [vm for vm in vms if vm.state is VmState.RUNNING and vm.vnc is not None and vm.vnc.port is not None]
        if not tried:
            return said("host_no_vm_to_try", uri=uri, count=len(vms), address=address)
        vm = tried[0]
        assert vm.vnc is not None and vm.vnc.port is not None
        try:
            banner = await _vnc_answers(ctx.settings, vm.vnc.host, vm.vnc.port)
        except CheckFailed as exc:
            raise CheckFailed(
                said("host_vnc_silent", uri=uri, vm=vm.name, host=vm.vnc.host, port=vm.vnc.port, reason=exc.detail),
                said("fix.host_console_address", uri=uri, name=name),
            ) from None
        return said("host_ok", uri=uri, count=len(vms), vm=vm.name, host=vm.vnc.host, port=vm.vnc.port,
                    banner=banner)

    return f"{HOST_CHECK_PREFIX}{name}", check


async def read_host_registry(settings: Settings, deadline: float) -> list[HostConfig]:
    """The host registry as the server reads it: a database read, so within LIMEN_DATABASE_TIMEOUT as the
    database check asks (within libvirt's bound, a database slower than libvirt but in time for limen's
    requests was called unreadable), and within what is left of the run's --timeout; a hung database's
    read is left behind, not waited for when the run ends."""
    bound = max(0.0, min(settings.database_timeout, deadline - time.monotonic()))
    return await in_daemon_thread(functools.partial(read_registered_hosts, settings.db_url), bound,
                                  name="limen-host-registry")


async def registered_host_checks(ctx: Context, deadline: float) -> list[Check]:
    """A ``host NAME`` check for every host, the default one included, when the registry holds any (a
    one-machine install has none and gets none). The registry is read as the server reads it; a database
    without limen's schema yet (``limen serve`` makes it) holds no hosts."""

    async def unreadable(_ctx: Context) -> Said:
        raise CheckFailed(as_it_came(ctx.extra["registry_error"]), said("fix.registry"))

    try:
        hosts = await read_host_registry(ctx.settings, deadline)
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

async def check_redis(ctx: Context) -> Said:
    """With LIMEN_REDIS_URL: that Redis answers (it holds sign-in counts, console tickets, revocations)."""
    from limen.redis_client import check_redis_answers

    if not ctx.settings.redis_url:
        return said("redis_unused")
    try:
        await check_redis_answers(ctx.settings.redis_url)
    except LimenError as exc:
        raise CheckFailed(as_it_came(exc.details), said("fix.redis")) from None
    return said("redis_ok")


HOST_CHECKS: list[Check] = [
    ("settings and log dir", check_settings),
    ("libvirt reachable", check_libvirt),
    ("QEMU", check_qemu),
    ("acceleration", check_acceleration),
    ("listen port", check_listen_port),
    ("storage pool", check_storage_pool),
    ("QEMU file access", check_qemu_file_access),
    ("disk space", check_disk_space),
    ("database", check_database),
    ("Redis", check_redis),
]

# Checks that need one earlier check only (not every one before them) to pass.
_NEEDS_ONLY = {"storage pool": "libvirt reachable", "QEMU file access": "libvirt reachable"}
# Checks that still tell something when an earlier check failed.
_INDEPENDENT = {"console errors in log", "acceleration", "listen port", "disk space", "settings and log dir",
                "database", "Redis"}


async def run_checks(
    checks: Iterable[Check], ctx: Context, *, deadline: float,
    progress: Callable[[str], None] | None = None,
) -> list[CheckResult]:
    results: list[CheckResult] = []
    blocked_by: str | None = None
    failed: set[str] = set()
    for name, check in checks:
        needs_vm_before = name == "console errors in log" and ctx.vm is None
        if name in _NEEDS_ONLY:
            blocker = _NEEDS_ONLY[name] if _NEEDS_ONLY[name] in failed else None
        else:
            blocker = None if name in _INDEPENDENT else blocked_by
        if blocker == "--timeout":  # the run's deadline passed: said so, not as a check this one needs
            results.append(CheckResult.of(name, Outcome.SKIP, said("timeout_before")))
            continue
        if blocker is not None or needs_vm_before:
            results.append(CheckResult.of(name, Outcome.SKIP, said("needs", check=check_title(
                blocker or "VM exists"))))
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            results.append(CheckResult.of(name, Outcome.SKIP, said("timeout_before")))
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
            results.append(CheckResult.of(name, outcome, detail, time.monotonic() - began))
        except CheckFailed as exc:
            results.append(CheckResult.of(name, Outcome.FAIL, exc.detail, time.monotonic() - began, exc.fix))
            blocked_by = blocked_by or name
            failed.add(name)
        except TimeoutError:
            results.append(CheckResult.of(name, Outcome.FAIL, said("timeout_during"), time.monotonic() - began,
                                          said("fix.timeout")))
            blocked_by = blocked_by or name
            failed.add(name)
        except LimenError as exc:
            results.append(CheckResult.of(name, Outcome.FAIL, as_it_came(f"{exc.code.name}: {exc.details}"),
                                          time.monotonic() - began, Said(error_keys(exc.code)[1])))
            blocked_by = blocked_by or name
            failed.add(name)
    leftover = ctx.extra.pop("vnc_stream", None)
    if leftover is not None:
        leftover[1].close()
    return results


async def diagnose(settings: Settings, vm_id: str | None, *, server_url: str, timeout: float,
                   progress: Callable[[str], None] | None = None, token: str | None = None) -> list[CheckResult]:
    # The deadline starts now: opening connected to libvirt first, for up to LIMEN_LIBVIRT_TIMEOUT outside
    # it (a hung libvirt made `--timeout 1` a 9 s run); the checks connect, each within what is left.
    deadline = time.monotonic() + timeout
    hypervisor = Hypervisor(settings)
    await hypervisor.open(connect=False)
    try:
        ctx = Context(settings=settings, hypervisor=hypervisor, vm_id=vm_id, server_url=server_url, token=token)
        if vm_id is not None:
            # The VM may be on any host of the registry, as the server finds it ("VM exists" failed for a VM
            # `limen vm list` showed on another host). Unreadable: the default host only, as before.
            with contextlib.suppress(Exception):
                await sync_pool(hypervisor.hosts, await read_host_registry(settings, deadline))
            return await run_checks(VM_CHECKS, ctx, deadline=deadline, progress=progress)
        results = await run_checks(HOST_CHECKS, ctx, deadline=deadline, progress=progress)
        if any(result.name == "database" and result.outcome is Outcome.FAIL for result in results):
            skipped = said("needs", check=check_title("database"))
            return [*results, CheckResult.of("registered hosts", Outcome.SKIP, skipped)]
        # Each host on its own: one that fails or hangs (for LIMEN_LIBVIRT_TIMEOUT) does not skip the others.
        for check in await registered_host_checks(ctx, deadline):
            results += await run_checks([check], ctx, deadline=deadline, progress=progress)
        return results
    finally:
        await hypervisor.close()


def all_passed(results: list[CheckResult]) -> bool:
    """Past errors in the log are information, not a failure of the VM's console now."""
    return all(result.outcome in (Outcome.PASS, Outcome.INFO) for result in results)


def render_table(results: list[CheckResult], lang: str = DEFAULT_LANGUAGE) -> str:
    """The checks for a person, in ``lang``; columns counted in terminal columns (Hangul takes two)."""
    titles = [check_title(result.name)(lang) for result in results]
    width = max(display_width(title) for title in titles)
    fix_label = translate(lang, "cli.doctor.fix_label")
    lines = []
    for number, (result, title) in enumerate(zip(results, titles, strict=True), 1):
        timing = " " * 10 if result.outcome is Outcome.SKIP else f"{result.seconds * 1000:7.1f} ms"
        detail = result.said(lang) if result.said else result.detail
        lines.append(f"{number:>2}. {result.mark} {pad(title, width)}  {timing}  {detail}")
        if result.fix:
            fix = result.said_fix(lang) if result.said_fix else result.fix
            lines.append(f"{'':>5}{'':{width}}   {fix_label} {fix}")
    return "\n".join(lines)


def render_json(results: list[CheckResult]) -> str:
    """Stable English fields for scripts, whatever the language."""
    checks = [{"name": r.name, "outcome": r.outcome.value, "detail": r.detail, "seconds": r.seconds, "fix": r.fix}
              for r in results]
    return json.dumps({"ok": all_passed(results), "checks": checks}, indent=2)


def default_server_url(settings: Settings) -> str:
    host = dialled_address(settings.host)
    scheme = "https" if settings.tls else "http"
    return os.environ.get("LIMEN_SERVER_URL", f"{scheme}://{host_in_url(host)}:{settings.port}")

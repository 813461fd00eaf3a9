"""The hypervisor as limen sees it: VMs read from libvirt on every call, and the operations on them.

libvirt is the one source of truth. Nothing here caches a VM's state; every answer is read fresh.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
import time
import uuid as uuid_module
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import libvirt

from limen.errors import (
    CreateNotBegun,
    ErrorCode,
    HypervisorUnavailable,
    LimenError,
    Refusals,
    Rule,
    ValidationFailed,
    range_rule,
    rule,
)
from limen.hypervisor import migration, storage
from limen.hypervisor.connection import current_host
from limen.hypervisor.console_cache import ConsoleVmCache
from limen.hypervisor.domain_xml import (
    DomainPlan,
    ParsedDomain,
    build_domain_xml,
    parse_domain_xml,
    snapshot_domain_xml,
)
from limen.hypervisor.events import FeedSource, LifecycleHub, VmWatch, ensure_event_thread
from limen.hypervisor.hosts import DEFAULT_HOST, HostLink, HostPool
from limen.hypervisor.models import (
    Disk,
    DiskDevice,
    HostFigures,
    PendingChanges,
    Vm,
    VmSpec,
    VmState,
    VncEndpoint,
)
from limen.hypervisor.operations import Operations
from limen.hypervisor.serial_stream import held_for_migration, release_vm_streams
from limen.hypervisor.vm_feed import VmEventType, VmFacts, VmFeed
from limen.isos import CdromSource, resolve_iso
from limen.settings import Settings

# A live move copies the disks as the VM runs; a cold one streams them through limen.
MIGRATE_TIMEOUT = 600.0
# Moves under way at once; the others wait their turn. Each holds one of its source host's libvirt threads
# (limen.hypervisor.connection) for as long as it lasts: 9 at once left none for the host's prober, which
# marked the host unavailable (ending the consoles of its other VMs) until they were done.
MOVES_AT_ONCE = 2
VM_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MIN_MEMORY_MIB = 32
MAX_DISK_GIB = 2048
BOOT_DEVICES = ("cdrom", "hd")
log = logging.getLogger("limen.hypervisor")

_STATE_BY_LIBVIRT = {
    libvirt.VIR_DOMAIN_NOSTATE: VmState.UNKNOWN,
    libvirt.VIR_DOMAIN_RUNNING: VmState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: VmState.RUNNING,  # running, waiting on a resource
    libvirt.VIR_DOMAIN_PAUSED: VmState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: VmState.SHUTTING_DOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: VmState.STOPPED,
    libvirt.VIR_DOMAIN_CRASHED: VmState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: VmState.SUSPENDED,
}


def parse_vm_id(ident: str) -> tuple[str, str]:
    """('uuid', canonical uuid) or ('name', name); anything else is INVALID_VM_ID."""
    try:
        return "uuid", str(uuid_module.UUID(ident))
    except ValueError:
        pass
    if VM_NAME_PATTERN.fullmatch(ident):
        return "name", ident
    raise LimenError(ErrorCode.INVALID_VM_ID, f"{ident[:80]!r} is neither a UUID nor a valid VM name")


def vm_not_found(ident: str) -> LimenError:
    """VM_NOT_FOUND for ``ident`` as the request gave it (a UUID or a name). Also what a VM the asker may
    not see answers (:func:`limen.auth.principal.require_vm_access`): one message for both, byte for byte."""
    kind, value = parse_vm_id(ident)
    return LimenError(ErrorCode.VM_NOT_FOUND, f"no VM with {kind} {value!r}")


def accelerated_virt_type(capabilities_xml: str) -> str:
    """'kvm' when a host's libvirt offers KVM for full-virtualisation guests of the host's own architecture
    (its capabilities), else 'qemu' (TCG). Asked of libvirt, whose QEMU opens /dev/kvm, not of limen's own
    process: run as the service's user (not in the kvm group), limen could not open it, and every new VM got
    TCG on a host with KVM; a remote host's VMs were judged by limen's machine."""
    capabilities = ET.fromstring(capabilities_xml)
    host_arch = capabilities.findtext("host/cpu/arch")
    for guest in capabilities.iterfind("guest"):
        arch = guest.find("arch")
        if (guest.findtext("os_type") == "hvm" and arch is not None and arch.get("name") == host_arch
                and arch.find("domain[@type='kvm']") is not None):
            return "kvm"
    return "qemu"


def check_name(name: str, field: str = "name") -> None:
    if not VM_NAME_PATTERN.fullmatch(name):
        raise ValidationFailed(
            field, "must start with a letter or digit and hold only letters a–z, A–Z, digits, '_', '.', '-' "
            "(at most 63 characters)", rule=rule(Rule.VM_NAME)
        )


# Held from the moment a name is found free until a define or a rename has taken it, in this process: two VMs
# could both take names that differ only in case (libvirt itself refuses only the same spelling).
_naming = threading.Lock()


@contextmanager
def lock_held(lock: threading.Lock, timeout: float, busy: str) -> Iterator[None]:
    """Holds ``lock``; VM_OPERATION_FAILED (``busy``) when it is not free within ``timeout`` seconds (a libvirt
    call that hangs holds it: the callers after it are told, not parked for good)."""
    if not lock.acquire(timeout=timeout):
        raise LimenError(ErrorCode.VM_OPERATION_FAILED, busy)
    try:
        yield
    finally:
        lock.release()


def naming(timeout: float) -> AbstractContextManager[None]:
    """Holds the naming lock."""
    return lock_held(_naming, timeout, "another create or rename is still taking its name")


def act_on_running(dom: libvirt.virDomain, act: Callable[[], object]) -> None:
    """``act()`` on a running ``dom``; VM_NOT_RUNNING when it is not running, or stopped before ``act`` reached
    it (ten stops at once: the others found it running, then libvirt said "domain is not running")."""
    if not dom.isActive():
        raise LimenError(ErrorCode.VM_NOT_RUNNING, f"VM {dom.name()!r} is not running")
    try:
        act()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID and not dom.isActive():
            raise LimenError(ErrorCode.VM_NOT_RUNNING, f"VM {dom.name()!r} stopped meanwhile") from None
        raise


def refuse_taken_name(conn: libvirt.virConnect, name: str, *, own_uuid: str | None = None) -> None:
    """VM_ALREADY_EXISTS if a domain on ``conn`` other than ``own_uuid`` (a VM being renamed) is named
    ``name``, in any case: libvirt's names are case-sensitive, but ``web1`` beside ``WEB1`` invites acting
    on the wrong VM (user names are case-blind for the same reason)."""
    wanted = name.casefold()
    for dom in conn.listAllDomains(0):
        try:
            other, uuid = dom.name(), dom.UUIDString()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            continue  # undefined while we read it
        if other.casefold() == wanted and uuid != own_uuid:
            in_case = "" if other == name else " (names that differ only in case are one name)"
            raise LimenError(ErrorCode.VM_ALREADY_EXISTS, f"a VM named {other!r} exists{in_case}")


def check_boot_order(boot_order: tuple[str, ...]) -> None:
    for device in boot_order:
        if device not in BOOT_DEVICES:
            raise ValidationFailed("boot_order", f"{device[:40]!r} is not one of {', '.join(BOOT_DEVICES)}",
                                   rule=rule(Rule.ONE_OF, allowed=list(BOOT_DEVICES)))
    if len(set(boot_order)) != len(boot_order):
        raise ValidationFailed("boot_order", "names a device twice", rule=rule(Rule.NO_REPEAT))


def pending_changes(live: ParsedDomain, persistent: ParsedDomain) -> PendingChanges:
    """What a running VM's persistent definition changes once it restarts (see :class:`PendingChanges`)."""
    return PendingChanges(
        vcpus=persistent.vcpus if persistent.vcpus != live.vcpus else None,
        memory_mib=persistent.memory_mib if persistent.memory_mib != live.memory_mib else None,
        boot_order=persistent.boot_order if persistent.boot_order != live.boot_order else None,
    )


def _lookup(conn: libvirt.virConnect, ident: str) -> libvirt.virDomain:
    kind, value = parse_vm_id(ident)
    try:
        if kind == "uuid":
            return conn.lookupByUUIDString(value)
        return conn.lookupByName(value)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise vm_not_found(ident) from None
        raise


def _uptime_seconds(uri: str, name: str, state: VmState) -> float | None:
    """When QEMU runs on this host, the age of its pid file is the time since the VM started."""
    if state is not VmState.RUNNING or not uri.startswith("qemu:///"):
        return None
    pid_file = Path("/run/libvirt/qemu") / f"{name}.pid"
    try:
        started = pid_file.stat().st_mtime
    except OSError:
        return None
    return max(0.0, datetime.now(UTC).timestamp() - started)


def _delete_snapshots(conn: libvirt.virConnect, *, ident: str) -> None:
    """Stops the VM (a snapshot is deleted from a stopped VM's files without QEMU) and deletes every
    snapshot, its data in the disk files included."""
    dom = _lookup(conn, ident)
    roots = dom.listAllSnapshots(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS)
    if roots and dom.isActive():
        dom.destroy()
    for root in roots:
        root.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)


def _defines(conn: libvirt.virConnect, ident: str) -> bool:
    """Whether ``conn``'s host defines the VM ``ident`` (a UUID or name)."""
    try:
        _lookup(conn, ident)
    except LimenError:
        return False
    return True


# What a VNC listen address of loopback or a wildcard is dialled as (domain_xml.connect_host).
_LOOPBACK_DIALS = frozenset({"127.0.0.1", "::1", "localhost"})


def _migration_operation(source: str, target: str, state: str, progress: int | None, *,
                         error: str | None = None) -> dict[str, Any]:
    """The ``operation`` of a move's events: ``{"kind": "migrate", "state", "progress", "from_host",
    "to_host", "error"}``."""
    return {"kind": "migrate", "state": state, "progress": progress, "from_host": source, "to_host": target,
            "error": error}


def _cpus_and_memory(conn: libvirt.virConnect) -> tuple[int, int]:
    """(CPUs, memory MiB) of ``conn``'s host."""
    info = conn.getInfo()
    return int(info[2]), int(info[1])


def _free_memory_and_cpus(conn: libvirt.virConnect) -> tuple[int, int]:
    """(memory MiB not promised to VMs, CPUs) of ``conn``'s host: what placement weighs."""
    return _uncommitted_memory_mib(conn), int(conn.getInfo()[2])


def _uncommitted_memory_mib(conn: libvirt.virConnect) -> int:
    """The host's memory less what its VMs (defined ones too: they may start) are given, MiB."""
    return int(conn.getInfo()[1]) - _promised_mib(conn.listAllDomains(0))


def _promised_mib(domains: list[libvirt.virDomain]) -> int:
    promised_kib = 0
    for dom in domains:
        try:
            promised_kib += int(dom.maxMemory())
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
    return promised_kib // 1024


def _host_figures(conn: libvirt.virConnect) -> HostFigures:
    memory_mib = int(conn.getInfo()[1])
    domains = conn.listAllDomains(0)
    return HostFigures(memory_mib=memory_mib, free_memory_mib=memory_mib - _promised_mib(domains),
                       vm_count=len(domains))


# Where a host other than the default one keeps the disk volumes of its VMs (its own storage pool, of the
# name LIMEN_STORAGE_POOL, made there when missing).
REMOTE_POOL_DIR = Path("/var/lib/libvirt/images/limen")


def describe_domain(dom: libvirt.virDomain) -> VmFacts:
    """Name, state and owner of ``dom`` now; state None when the domain no longer exists."""
    uuid, name = dom.UUIDString(), dom.name()  # both kept by the binding: no call to libvirtd
    try:
        state_code, _reason = dom.state()
        owner = parse_domain_xml(dom.XMLDesc(0)).owner
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise
        return VmFacts(uuid=uuid, name=name, state=None, owner=None)
    return VmFacts(uuid=uuid, name=name, state=_STATE_BY_LIBVIRT.get(state_code, VmState.UNKNOWN), owner=owner)


class Hypervisor:
    """VM operations over one libvirt connection. Every method is async and bounded in time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Every host's connection; its ``call`` goes to the host of the VM the call is about.
        self.hosts = HostPool(settings.libvirt_uri, settings.libvirt_timeout, _defines)
        self.connection = self.hosts
        self.events = LifecycleHub()
        self.connection.on_open(self.events.register_on)
        # Every VM change, for the API's event stream; routes publish what libvirt does not announce.
        self.feed = VmFeed()
        self._feed_source = FeedSource(self.feed, describe_domain)
        self.connection.on_open(self._feed_source.register_on)
        self.events.listeners.append(self._feed_source.on_lifecycle)
        # Long operations (snapshots of running VMs) in the background, polled by id.
        self.operations = Operations()
        self._moves = asyncio.Semaphore(MOVES_AT_ONCE)
        self._virt_types: dict[str, str] = {}  # LIMEN_VIRT_TYPE=auto's answer, by host
        self.hosts.availability_listeners.append(self._announce_host)
        # The console admission's recent reads of running VMs, forgotten at every change (console_cache.py).
        self.console_cache = ConsoleVmCache()
        self.events.listeners.append(self.console_cache.forget_all)
        self.feed.listeners.append(self.console_cache.forget_all)
        self.hosts.observers.append(self.console_cache.call_ended)
        self.hosts.availability_listeners.append(self.console_cache.forget_all)

    async def open(self, *, require_connection: bool = False, connect: bool = True) -> None:
        """Starts libvirt's event thread and connects. Does not fail if libvirt is down, unless
        ``require_connection`` (a command that needs libvirt now: a host that does not answer then costs it
        one timeout, not one for each call it would make). ``connect`` False leaves connecting to the first
        call (``limen doctor``, whose checks connect within its own deadline)."""
        ensure_event_thread()
        self.hosts.start()
        if not connect:
            return
        try:
            await self.hosts.default.connection.call("connect", lambda conn: None)
        except LimenError:
            if require_connection:
                raise
            # else reported by the first real call, and by /readyz

    async def close(self) -> None:
        await self.operations.close()
        self.feed.close()
        self._feed_source.stop()
        await self.connection.close()

    async def announce(self, ident: str, event_type: VmEventType, *, operation: dict[str, Any] | None = None) -> None:
        """Publishes ``event_type`` for the VM to :attr:`feed`, with its name, state and owner read now.

        For changes libvirt does not announce itself (CD media of a stopped VM, a snapshot's progress), which
        is why it is ``share``-d: other limen instances hear nothing of it from libvirt either. Never raises:
        a failed read loses only the announcement, and the clients' next full reload shows the change anyway.
        """
        try:
            facts = await self.connection.call(
                "get_vm", lambda conn: describe_domain(_lookup(conn, ident)), subject=ident
            )
        except LimenError as exc:
            log.warning("cannot announce a VM change: %s", exc, extra={"event": "vm_feed_announce_failed"})
            return
        self.feed.publish(event_type, facts, operation=operation, share=True)

    def _announce_host(self, host: str, available: bool) -> None:
        """A host gone or back changes how its VMs show (``host_available``): each known one is announced
        as ``changed``, so pages and other clients reload them."""
        link = self.hosts.get(host)
        for vm in link.known_vms:
            self.feed.publish(VmEventType.CHANGED, VmFacts(uuid=vm.uuid, name=vm.name, state=vm.state, owner=vm.owner))

    def watch(self, uuid: str) -> VmWatch:
        """Lifecycle events of one VM; use as ``with hypervisor.watch(uuid) as watch:``."""
        return self.events.watch(uuid)

    # -- reading -----------------------------------------------------------------------------------

    def _snapshot(self, dom: libvirt.virDomain) -> Vm:
        state_code, _reason = dom.state()
        state = _STATE_BY_LIBVIRT.get(state_code, VmState.UNKNOWN)
        parsed = parse_domain_xml(dom.XMLDesc(0))
        pending = PendingChanges()
        if dom.isActive() and dom.isPersistent():
            pending = pending_changes(parsed, parse_domain_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
        disks = []
        conn = dom.connect()
        for disk in parsed.disks:
            capacity = allocation = None
            if disk.device is DiskDevice.DISK and disk.path:
                volume = storage.volume_at(conn, disk.path)
                try:
                    if volume is not None:
                        _kind, capacity, allocation = (int(value) for value in volume.info())
                    else:
                        # A disk no storage pool holds (a VM defined outside limen): its image's own figures.
                        # Unknown, it counted as 0 bytes, and its owner grew it past the disk quota.
                        capacity, allocation, _physical = (int(value) for value in dom.blockInfo(disk.target, 0))
                except libvirt.libvirtError:
                    capacity = allocation = None
            disks.append(Disk(device=disk.device, target=disk.target, path=disk.path, capacity_bytes=capacity,
                              allocation_bytes=allocation, bus=disk.bus))
        name = dom.name()
        try:
            autostart = bool(dom.autostart())
        except libvirt.libvirtError:
            autostart = False
        host = current_host() or DEFAULT_HOST
        return Vm(
            uuid=dom.UUIDString(),
            name=name,
            state=state,
            vcpus=parsed.vcpus,
            memory_mib=parsed.memory_mib,
            disks=tuple(disks),
            boot_order=parsed.boot_order,
            vnc=self._vnc_of(host, parsed.vnc),
            serial_console=parsed.serial_console,
            created_at=parsed.created_at,
            uptime_seconds=_uptime_seconds(self.hosts.uri_of(host), name, state),
            autostart=autostart,
            owner=parsed.owner,
            nics=parsed.nics,
            pending=pending,
            host=host,
        )

    def _vnc_of(self, host: str, vnc: VncEndpoint | None) -> VncEndpoint | None:
        """A VNC server on another host that listens on its loopback or wildcard address is reached at the
        host's console address."""
        address = self.hosts.console_address_of(host)
        if vnc is None or address is None or vnc.host not in _LOOPBACK_DIALS:
            return vnc
        return VncEndpoint(host=address, port=vnc.port)

    async def list_vms(self) -> list[Vm]:
        """Every host's VMs (read at once); with more than one host, one that does not answer shows the VMs
        it listed last with ``host_available`` False."""
        if not self.hosts.several:
            return await self.list_vms_on(self.hosts.default)
        return await self.hosts.gather_lists(self._list_on)

    async def list_vms_on(self, link: HostLink) -> list[Vm]:
        """The VMs of one host (remembered as its last known list)."""
        vms = await self._list_on(link)
        link.known_vms, link.listed = vms, True
        return vms

    async def _list_on(self, link: HostLink) -> list[Vm]:
        def run(conn: libvirt.virConnect) -> list[Vm]:
            vms = []
            for dom in conn.listAllDomains(0):
                try:
                    vms.append(self._snapshot(dom))
                except libvirt.libvirtError as exc:
                    # A domain undefined while we read it is simply gone from the list.
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                        raise
            return sorted(vms, key=lambda vm: vm.name)

        return await link.connection.call("list_vms", run)

    async def cdrom_sources(self) -> list[CdromSource]:
        """The file of every CD-ROM of every VM: in its running and in its saved configuration (a disc changed
        in a running VM may still be the one its next boot wants), and in each of its snapshots (a revert
        puts the snapshot's disc back in the drive)."""

        def run(conn: libvirt.virConnect) -> list[CdromSource]:
            sources: set[CdromSource] = set()
            for dom in conn.listAllDomains(0):
                try:
                    configs: list[tuple[str | None, str | None]] = [(dom.XMLDesc(0), None)]
                    if dom.isActive() and dom.isPersistent():
                        configs.append((dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), None))
                    snapshots = dom.listAllSnapshots(0)
                    name = dom.name()
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                        raise
                    continue  # undefined while we read it
                for snap in snapshots:
                    try:
                        configs.append((snapshot_domain_xml(snap.getXMLDesc(0)), snap.getName()))
                    except libvirt.libvirtError as exc:
                        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT, libvirt.VIR_ERR_NO_DOMAIN):
                            raise  # else deleted while we read it: it holds nothing any more
                for xml, snapshot in configs:
                    if xml is None:
                        continue
                    sources.update(
                        CdromSource(name, disk.path, snapshot) for disk in parse_domain_xml(xml).disks
                        if disk.device is DiskDevice.CDROM and disk.path
                    )
            return sorted(sources, key=lambda source: (source.vm, source.path, source.snapshot or ""))

        if not self.hosts.several:
            return await self.hosts.default.connection.call("cdrom_sources", run)
        # Every host sees the ISO directory at the same path: a disc held on any of them is in use.
        answers = await asyncio.gather(*(self.hosts.on_host(link.name, "cdrom_sources", run)
                                         for link in self.hosts.links))
        return sorted({source for answer in answers for source in answer})

    async def get_vm(self, ident: str) -> Vm:
        """The VM now; one on a host marked unavailable is what that host said last, with
        ``host_available`` False (acting on it is HYPERVISOR_UNAVAILABLE)."""
        parse_vm_id(ident)  # INVALID_VM_ID before any libvirt call
        try:
            return await self.connection.call(
                "get_vm", lambda conn: self._snapshot(_lookup(conn, ident)), subject=ident
            )
        except HypervisorUnavailable:
            known = self.hosts.last_known(ident)
            if known is None:
                raise
            return known

    async def console_vm(self, ident: str) -> Vm:
        """What a console needs of the VM, read from libvirt now (no cache): identity, state, VNC endpoint
        and owner. One lookup, ``state()`` and the live XML, as :meth:`get_vm`; none of its per-disk volume
        lookups, autostart or uptime, so ``disks`` is empty and ``autostart``/``uptime_seconds`` are unset.
        """
        parse_vm_id(ident)  # INVALID_VM_ID before any libvirt call

        def run(conn: libvirt.virConnect) -> Vm:
            dom = _lookup(conn, ident)
            state_code, _reason = dom.state()
            parsed = parse_domain_xml(dom.XMLDesc(0))
            host = current_host() or DEFAULT_HOST
            return Vm(
                uuid=dom.UUIDString(), name=dom.name(), state=_STATE_BY_LIBVIRT.get(state_code, VmState.UNKNOWN),
                vcpus=parsed.vcpus, memory_mib=parsed.memory_mib, boot_order=parsed.boot_order,
                vnc=self._vnc_of(host, parsed.vnc), created_at=parsed.created_at, owner=parsed.owner, host=host,
            )

        # Same operation name as get_vm: the metrics and logs count it as the read it is.
        return await self.connection.call("get_vm", run, subject=ident)

    async def console_vm_recent(self, ident: str) -> Vm:
        """:meth:`console_vm`, answered from :attr:`console_cache` when it read this running VM within its
        TTL and nothing changed since (no thread hop, no XML parse); for a console's admission only."""
        cache = self.console_cache
        vm = cache.get(ident)
        if vm is not None:
            return vm
        epoch, read_at = cache.epoch, time.monotonic()
        vm = await self.console_vm(ident)
        cache.keep(ident, vm, epoch, read_at)
        return vm

    async def host_info(self, host: str | None = None) -> tuple[int, int]:
        """(CPUs, memory MiB) of host ``host`` (None: the default host)."""
        return await self.hosts.on_host(host or DEFAULT_HOST, "host_info", _cpus_and_memory)

    async def largest_host(self) -> tuple[int, int]:
        """The most CPUs and the most memory (MiB) a host that answers has: a new VM placed by limen may go to
        any of them (placement then picks one that holds it, :meth:`place`)."""
        links = [link for link in self.hosts.links
                 if (link.available and not link.config.draining) or link.name == DEFAULT_HOST]
        answers = await asyncio.gather(*(link.connection.call("host_info", _cpus_and_memory) for link in links),
                                       return_exceptions=True)
        known = [answer for answer in answers if not isinstance(answer, BaseException)]
        if not known:  # not even the default host answers: its error, as one host alone would say
            raise next(answer for answer in answers if isinstance(answer, BaseException))
        return max(cpus for cpus, _ in known), max(memory for _, memory in known)

    async def storage_pool_directory(self) -> Path | None:
        """Where the default host's pool (LIMEN_STORAGE_POOL) keeps disks, or None before its first disk."""
        name = self.settings.storage_pool
        return await self.connection.call("storage_pool", lambda conn: storage.pool_directory(conn, name),
                                          subject=name)

    # -- creating and deleting ---------------------------------------------------------------------

    def _virt_type(self, conn: libvirt.virConnect, host: str) -> str:
        """The domain type of host ``host``'s new VMs (in its worker thread): LIMEN_VIRT_TYPE, or with ``auto``
        what its libvirt offers, read once per host (capabilities take a while on a busy host)."""
        if self.settings.virt_type != "auto":
            return self.settings.virt_type
        known = self._virt_types.get(host)
        if known is None:
            known = self._virt_types[host] = accelerated_virt_type(conn.getCapabilities())
        return known

    async def check_hardware(self, *, vcpus: int | None = None, memory_mib: int | None = None,
                             host: str | None = None, placed: bool = False) -> None:
        """VALIDATION_ERROR unless the vCPUs and memory given (None: not checked) fit host ``host`` (None: the
        default host; ``placed``: whichever host limen would place a new VM on, so the largest), naming each
        that does not."""
        if vcpus is None and memory_mib is None:
            return
        several = self.hosts.several
        if placed and host is None and several:
            host_cpus, host_memory_mib = await self.largest_host()
            whose = "the largest host's {}"
        else:
            host_cpus, host_memory_mib = await self.host_info(host)
            whose = f"the {{}} of host {host!r}" if several and host not in (None, DEFAULT_HOST) else "this host's {}"
        refusals = Refusals()
        with refusals.check():
            if vcpus is not None and not 1 <= vcpus <= host_cpus:
                raise ValidationFailed("vcpus", f"must be between 1 and {host_cpus} ({whose.format('CPUs')})",
                                       rule=range_rule(1, host_cpus, limit="host_cpus"))
        with refusals.check():
            if memory_mib is not None and not MIN_MEMORY_MIB <= memory_mib <= host_memory_mib:
                raise ValidationFailed(
                    "memory_mib",
                    f"must be between {MIN_MEMORY_MIB} and {host_memory_mib} MiB ({whose.format('memory')})",
                    rule=range_rule(MIN_MEMORY_MIB, host_memory_mib, unit="MiB", limit="host_memory"),
                )
        refusals.raise_any()

    async def validate_spec(self, spec: VmSpec, *, unchecked: Collection[str] = ()) -> Path | None:
        """Checks ``spec`` against the rules and this host's limits; returns the ISO path if any. Every field
        refused is named in one VALIDATION_ERROR, in the form's order (a form marks them all at once).
        ``unchecked``: fields not to check (a request's that failed its type check already)."""
        refusals = Refusals()
        with refusals.check():
            if "name" not in unchecked:
                check_name(spec.name)
        with refusals.check():
            await self.check_hardware(vcpus=None if "vcpus" in unchecked else spec.vcpus,
                                      memory_mib=None if "memory_mib" in unchecked else spec.memory_mib,
                                      host=None if "host" in unchecked else spec.host, placed=True)
        with refusals.check():
            if spec.disk_gib is not None and "disk_gib" not in unchecked and not 1 <= spec.disk_gib <= MAX_DISK_GIB:
                raise ValidationFailed("disk_gib", f"must be between 1 and {MAX_DISK_GIB} GiB",
                                       rule=range_rule(1, MAX_DISK_GIB, unit="GiB"))
        iso_path: Path | None = None
        with refusals.check():
            if spec.iso is not None and "iso" not in unchecked:
                iso_path = resolve_iso(self.settings.iso_dir, spec.iso)
        with refusals.check():
            if "boot_order" not in unchecked:
                check_boot_order(spec.boot_order)
        refusals.raise_any()
        return iso_path

    def _free_volume_name(self, conn: libvirt.virConnect, name: str, token: str) -> str:
        """The disk volume name a new VM named ``name`` gets on ``conn``'s pool: its plain one, unless a volume
        has it (a disk kept when a VM was deleted, or the disk of a VM renamed from ``name``): then the one
        ``token`` marks."""
        plain = storage.disk_volume_name(name)
        taken = storage.find_volume(conn, self.settings.storage_pool, plain) is not None
        return storage.disk_volume_name(name, token) if taken else plain

    async def free_volume_name(self, name: str, token: str) -> str:
        """:meth:`_free_volume_name` over every host that answers (a VM may be placed on any of them)."""
        links = [link for link in self.hosts.links if link.available or link.name == DEFAULT_HOST]
        names = await asyncio.gather(*(link.connection.call(
            "check_volume", functools.partial(self._free_volume_name, name=name, token=token), subject=name)
            for link in links))
        return storage.disk_volume_name(name) if set(names) == {storage.disk_volume_name(name)} \
            else storage.disk_volume_name(name, token)

    def _refuse_taken_volume(self, conn: libvirt.virConnect, volume_name: str) -> None:
        """The volume chosen for a new VM must still be free (it is, unless another create took it meanwhile)."""
        if storage.find_volume(conn, self.settings.storage_pool, volume_name) is not None:
            raise LimenError(ErrorCode.VM_OPERATION_FAILED, f"the disk volume {volume_name!r} chosen for this VM "
                                                            f"appeared in pool {self.settings.storage_pool!r} "
                                                            "meanwhile: create it again")

    async def check_name_free(self, name: str, *, own_uuid: str | None = None) -> None:
        """VM_ALREADY_EXISTS if a VM of that name exists (other than ``own_uuid``, a VM being renamed).
        :meth:`create_vm` checks the same again; asking first lets a caller record its intent knowing that
        whatever appears under the name afterwards is its own work (its disk volume too:
        :meth:`free_volume_name`)."""
        check = functools.partial(refuse_taken_name, name=name, own_uuid=own_uuid)
        if not self.hosts.several:
            await self.hosts.default.connection.call("check_name", check, subject=name)
            return
        # Names are unique across hosts: every host that answers is asked, and what the others listed last.
        for link in self.hosts.links:
            if not link.available and any(vm.name.casefold() == name.casefold() and vm.uuid != own_uuid
                                          for vm in link.known_vms):
                raise LimenError(ErrorCode.VM_ALREADY_EXISTS,
                                 f"a VM named {name!r} is on host {link.name!r} (unavailable now)")
        for link in self.hosts.never_listed_unavailable():
            raise link.unavailable(f"host {link.name!r} has not answered since this limen started "
                                   f"({link.last_error}): a VM named {name!r} may be there; try again when it "
                                   "answers, or drain it if it is gone for good")
        links = [link for link in self.hosts.links if link.available or link.name == DEFAULT_HOST]
        answers = await asyncio.gather(
            *(link.connection.call("check_name", check, subject=name) for link in links), return_exceptions=True)
        for link, answer in zip(links, answers, strict=True):
            if isinstance(answer, LimenError) and answer.code is ErrorCode.VM_ALREADY_EXISTS:
                raise LimenError(ErrorCode.VM_ALREADY_EXISTS, f"{answer.details} on host {link.name!r}")
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer

    async def create_vm(self, spec: VmSpec, *, create_token: str | None = None, volume_name: str | None = None) -> Vm:
        """Creates (defines) a VM. Atomic for the caller: on any failure no domain and no volume remain.

        ``create_token`` goes into the domain's metadata, so that a create lost with its server is
        recognised afterwards (:mod:`limen.hypervisor.leftovers`); ``volume_name`` is its disk's, as the
        create recorded it (:meth:`free_volume_name`), else chosen here."""
        iso_path = await self.validate_spec(spec)
        boot_order = spec.boot_order or (("cdrom", "hd") if iso_path else ("hd",))
        # Whether run() began its work, and whether the caller stopped waiting for it: decided under one
        # lock, so that a create the caller was told never began cannot begin afterwards.
        cancelled = threading.Event()
        progress = threading.Lock()
        began = False

        def run(conn: libvirt.virConnect) -> Vm:
            nonlocal began
            with progress:
                if cancelled.is_set():
                    raise HypervisorUnavailable("the create was given up before it began")
                began = True
            with naming(self.settings.libvirt_timeout):
                refuse_taken_name(conn, spec.name)
                volume: libvirt.virStorageVol | None = None
                domain: libvirt.virDomain | None = None
                try:
                    disk_path = None
                    if spec.disk_gib is not None:
                        pool = storage.ensure_pool(conn, self.settings.storage_pool, pool_dir)
                        chosen = volume_name or self._free_volume_name(conn, spec.name,
                                                                       create_token or uuid_module.uuid4().hex)
                        self._refuse_taken_volume(conn, chosen)
                        volume = pool.createXML(storage.volume_xml(chosen, spec.disk_gib), 0)
                        disk_path = volume.path()
                    plan = DomainPlan(
                        name=spec.name,
                        virt_type=self._virt_type(conn, link.name),
                        vcpus=spec.vcpus,
                        memory_mib=spec.memory_mib,
                        vnc_listen=vnc_listen,
                        created_at=datetime.now(UTC).replace(microsecond=0),
                        disk_path=disk_path,
                        iso_path=str(iso_path) if iso_path else None,
                        boot_order=boot_order,
                        owner=spec.owner,
                        create_token=create_token,
                    )
                    domain = conn.defineXML(build_domain_xml(plan))
                    if iso_path is not None and not iso_path.is_file():
                        # Deleted since it was checked: that delete read the CD-ROMs before this definition.
                        # (A delete parks the image, then reads them again: it meets this VM, or this sees it gone.)
                        raise ValidationFailed("iso", f"no image named {spec.iso!r}", rule=rule(Rule.ISO_MISSING))
                    if cancelled.is_set():  # the caller gave up waiting: it was told this failed
                        raise LimenError(ErrorCode.HYPERVISOR_UNAVAILABLE, "create timed out")
                    return self._snapshot(domain)
                except BaseException:
                    if domain is not None:
                        try:
                            domain.undefine()
                        except libvirt.libvirtError:
                            pass
                    if volume is not None:
                        try:
                            volume.delete(0)
                        except libvirt.libvirtError:
                            pass
                    raise

        try:
            link = await self.place(spec)  # a host that holds the vCPUs and memory checked above
            if self.hosts.several:
                await self.check_name_free(spec.name)  # names are unique across hosts
            local = link.name == DEFAULT_HOST
            pool_dir = self.settings.pool_dir if local else REMOTE_POOL_DIR
            vnc_listen = self.settings.vnc_listen if local else (link.console_address or self.settings.vnc_listen)
            # Creating a pool and a volume is slower than a lookup; allow it more than one call's time.
            vm = await self.hosts.on_host(
                link.name, "create_vm", run, subject=spec.name, timeout=self.settings.libvirt_timeout * 3
            )
        except BaseException as exc:
            # The caller stops waiting (a timeout, a cancelled request, Ctrl-C): a create that has not begun
            # never will, and one under way undoes itself once it sees this (run() above).
            with progress:
                cancelled.set()
                never_began = not began
            if never_began and isinstance(exc, LimenError) and exc.code is ErrorCode.HYPERVISOR_UNAVAILABLE:
                raise CreateNotBegun(exc.details, host=getattr(exc, "host", None)) from exc
            raise
        self.hosts.note_made(vm, link.name)
        return vm

    async def place(self, spec: VmSpec) -> HostLink:
        """The host a new VM goes to: the one asked for, else the available, not draining host with the
        most memory not promised to its VMs (all of them, running or not) that still holds the new one and has
        as many CPUs as it asks for. So the host it picks has the VM's vCPUs and memory, and a create that
        checked them against the largest host (:meth:`check_hardware`, ``placed``) need not check them again."""
        if spec.host is not None:
            link = self.hosts.get(spec.host)
            if link.config.draining:
                raise LimenError(ErrorCode.NO_HOST_FITS, f"host {link.name!r} is draining: it takes no new VMs")
            if not link.available and link.name != DEFAULT_HOST:
                raise link.unavailable(f"host {link.name!r} is unavailable ({link.last_error})")
            return link
        if not self.hosts.several:
            return self.hosts.default
        candidates = [link for link in self.hosts.links if link.available and not link.config.draining]
        answers = await asyncio.gather(
            *(link.connection.call("free_memory", _free_memory_and_cpus) for link in candidates),
            return_exceptions=True)
        room = sorted(((answer[0], link.name) for link, answer in zip(candidates, answers, strict=True)
                       if isinstance(answer, tuple) and answer[0] >= spec.memory_mib and answer[1] >= spec.vcpus),
                      key=lambda pair: (-pair[0], pair[1]))
        if not room:
            raise LimenError(ErrorCode.NO_HOST_FITS, f"no available host that takes new VMs has {spec.memory_mib} "
                             f"MiB not promised to its VMs and {spec.vcpus} CPUs")
        return self.hosts.get(room[0][1])

    async def host_figures(self, links: list[HostLink] | None = None) -> dict[str, HostFigures]:
        """The figures of every host (or of ``links``) that answers now, asked at once: read from libvirt,
        not from what this process listed last, so every replica gives the same. A host marked unavailable
        is not asked; one that hangs unmarked holds the answer for at most LIMEN_LIBVIRT_TIMEOUT."""
        asked = [link for link in (self.hosts.links if links is None else links)
                 if link.available or link.name == DEFAULT_HOST]
        answers = await asyncio.gather(*(link.connection.call("host_figures", _host_figures) for link in asked),
                                       return_exceptions=True)
        return {link.name: answer for link, answer in zip(asked, answers, strict=True)
                if isinstance(answer, HostFigures)}

    async def migrate_vm(self, ident: str, host: str) -> Vm:
        """Moves the VM to ``host`` (:mod:`limen.hypervisor.migration`): live when it runs, cold when not;
        at most :data:`MOVES_AT_ONCE` at a time."""
        async with self._moves:
            return await self._move(ident, host)

    async def _move(self, ident: str, host: str) -> Vm:
        parse_vm_id(ident)
        target = self.hosts.get(host)
        if target.config.draining:
            raise LimenError(ErrorCode.NO_HOST_FITS, f"host {host!r} is draining: it takes no VMs")
        self.hosts.check_usable(target, "migrate_vm")
        source = await self.hosts.locate(ident)
        if source == host:
            # Named as the user knows it: the route hands over the UUID.
            name = await self.hosts.on_host(source, "migrate_vm", lambda conn: _lookup(conn, ident).name(),
                                            subject=ident)
            raise LimenError(ErrorCode.VM_ALREADY_ON_HOST, f"VM {name!r} is on host {host!r} already")
        departure = await self.hosts.on_host(
            source, "migrate_vm", lambda conn: migration.read_departure(conn, _lookup(conn, ident)), subject=ident)
        local = host == DEFAULT_HOST
        arrival = migration.Arrival(
            uri=target.config.uri, pool_name=self.settings.storage_pool,
            pool_dir=self.settings.pool_dir if local else REMOTE_POOL_DIR,
            address=target.console_address or "127.0.0.1", host=host)
        vnc_listen = self.settings.vnc_listen if local else (target.console_address or self.settings.vnc_listen)
        paths = await self.hosts.on_host(
            host, "migrate_vm", lambda conn: migration.make_volumes(conn, departure, arrival),
            timeout=self.settings.libvirt_timeout * 3)
        xml = migration.arrival_xml(departure.xml, paths, vnc_listen)
        log.info("VM moving", extra={"event": "vm_migrate_begin", "vm_uuid": departure.uuid, "vm_name": departure.name,
                                     "host": source, "to_host": host, "live": departure.running})
        facts = VmFacts(uuid=departure.uuid, name=departure.name,
                        state=VmState.RUNNING if departure.running else VmState.STOPPED,
                        owner=parse_domain_xml(departure.xml).owner)
        progress = asyncio.get_running_loop().create_task(self._report_migration(facts, source, host))
        try:
            if departure.running:
                # Its serial consoles are released first, and none opens until it runs on the target: libvirt
                # deadlocks when a console stream's abort meets the migration's end (limen.hypervisor.serial_stream).
                async with held_for_migration(departure.uuid) as hold:
                    await self.hosts.on_host(
                        source, "migrate_vm",
                        lambda conn: migration.migrate_live(_lookup(conn, departure.uuid), departure, arrival, xml),
                        subject=ident, timeout=MIGRATE_TIMEOUT)
                    self._remember_moved(departure, host)  # before the hold ends: a console opens on the target
                    hold.moved = True
            else:
                await self.hosts.on_host(
                    source, "migrate_vm", lambda conn: migration.copy_cold(conn, departure, arrival, xml, paths),
                    subject=ident, timeout=MIGRATE_TIMEOUT)
                try:
                    await self.hosts.on_host(source, "migrate_vm",
                                             lambda conn: migration.leave_source(conn, departure), subject=ident)
                except LimenError as exc:
                    # Still the source's (it changed, or could not be undefined): the target's copy goes. Not
                    # after a timeout: the source's undefine may have gone through, and the VM would be nowhere.
                    if exc.code is not ErrorCode.HYPERVISOR_UNAVAILABLE:
                        await self._quietly(host, "migrate_cleanup",
                                            lambda conn: migration.undefine_arrival(conn, departure))
                    raise
                self._remember_moved(departure, host)
        except LimenError as exc:
            # A timeout leaves the outcome unknown (libvirt may still finish): then nothing is removed.
            if exc.code is not ErrorCode.HYPERVISOR_UNAVAILABLE:
                await self._quietly(host, "migrate_cleanup",
                                    lambda conn: migration.remove_volumes(conn, list(paths.values())))
            self.feed.publish(VmEventType.CHANGED, facts, share=True, operation=_migration_operation(
                source, host, "failed", None, error=exc.code.name))
            raise
        finally:
            progress.cancel()
        self.feed.publish(VmEventType.CHANGED, facts, share=True,
                          operation=_migration_operation(source, host, "done", 100))
        # The target has it now (and a cold move's source definition is gone): the source's disks go.
        await self._quietly(source, "migrate_cleanup",
                            lambda conn: migration.remove_volumes(conn, [disk.path for disk in departure.disks]))
        if departure.autostart:  # it arrived with autostart off, and stayed so unnoticed
            await self._quietly(host, "migrate_autostart",
                                lambda conn: _lookup(conn, departure.uuid).setAutostart(1))
        log.info("VM moved", extra={"event": "vm_migrate_end", "vm_uuid": departure.uuid, "vm_name": departure.name,
                                    "host": host})
        return await self.get_vm(departure.uuid)

    def _remember_moved(self, departure: migration.Departure, host: str) -> None:
        for key in (departure.uuid, departure.name):
            self.hosts.remember(key, host)

    async def _report_migration(self, facts: VmFacts, source: str, target: str) -> None:
        """Publishes the move's progress to the event stream every half second, as libvirt's job reports it
        (bytes of memory and disks sent of those to send); nothing when there is no job (a cold move)."""
        def read(conn: libvirt.virConnect) -> int | None:
            stats = _lookup(conn, facts.uuid).jobStats(0)
            total = int(stats.get("data_total", 0)) + int(stats.get("disk_total", 0))
            done = int(stats.get("data_processed", 0)) + int(stats.get("disk_processed", 0))
            return min(99, done * 100 // total) if total else None

        while True:
            await asyncio.sleep(0.5)
            try:
                percent = await self.hosts.on_host(source, "migrate_progress", read, subject=facts.uuid)
            except LimenError:
                continue
            self.feed.publish(VmEventType.CHANGED, facts, share=True,
                              operation=_migration_operation(source, target, "running", percent))

    async def _quietly(self, host: str, operation: str, func: Callable[[libvirt.virConnect], object]) -> None:
        """Clean-up that may fail without failing what it follows (it is logged)."""
        try:
            await self.hosts.on_host(host, operation, func)
        except LimenError as exc:
            log.warning("%s on host %s failed: %s", operation, host, exc.details,
                        extra={"event": "migrate_cleanup_failed", "host": host})

    async def delete_vm(self, ident: str, *, delete_disks: bool = False) -> list[str]:
        """Stops (if needed) and undefines the VM; with ``delete_disks`` also deletes its pool volumes.

        Its snapshots go with it: kept disks lose the snapshots stored inside them first (that can take a
        while, so it is a call of its own), deleted disks take theirs along. Returns the paths of the
        volumes deleted. ISOs are never deleted.
        """
        if not delete_disks:
            await self.connection.call("delete_vm_snapshots", functools.partial(_delete_snapshots, ident=ident),
                                       subject=ident, timeout=self.settings.libvirt_timeout * 24)

        def stop(conn: libvirt.virConnect) -> str:
            dom = _lookup(conn, ident)
            if dom.isActive():
                try:
                    dom.destroy()
                except libvirt.libvirtError as exc:
                    # Stopped since we looked (a parallel delete destroys it first): deleting goes on, and
                    # finds it gone (VM_NOT_FOUND) if that delete undefined it meanwhile.
                    if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID or dom.isActive():
                        raise
            return str(dom.UUIDString())

        def run(conn: libvirt.virConnect) -> list[str]:
            dom = _lookup(conn, ident)
            parsed = parse_domain_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            flags = (
                libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            )
            try:
                dom.undefineFlags(flags)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                    raise
                dom.undefine()
            deleted = []
            if delete_disks:
                for disk in parsed.disks:
                    if disk.device is not DiskDevice.DISK or not disk.path:
                        continue
                    volume = storage.volume_at(conn, disk.path)
                    if volume is not None:
                        volume.delete(0)
                        deleted.append(disk.path)
            return deleted

        timeout = self.settings.libvirt_timeout * 2  # a destroy, or a volume's delete, can take a while
        vm_uuid = await self.connection.call("delete_vm", stop, subject=ident, timeout=timeout)
        # The serial consoles of the VM, which read their end after the destroy, are released before the
        # undefine: libvirt deadlocks when the two meet (limen.hypervisor.serial_stream's rules).
        await release_vm_streams(vm_uuid)
        return await self.connection.call("delete_vm", run, subject=ident, timeout=timeout)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start_vm(self, ident: str) -> Vm:
        """Starts a stopped VM; returns once libvirt reports it running."""

        def run(conn: libvirt.virConnect) -> Vm:
            dom = _lookup(conn, ident)
            if dom.isActive():
                raise LimenError(ErrorCode.VM_ALREADY_RUNNING, f"VM {dom.name()!r} is already running")
            try:
                dom.create()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() in (libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INVALID_CONN,
                                            libvirt.VIR_ERR_RPC):
                    raise
                raise LimenError(
                    ErrorCode.VM_START_FAILED, exc.get_error_message() or str(exc)
                ) from None
            return self._snapshot(dom)

        return await self.connection.call(
            "start_vm", run, subject=ident, timeout=self.settings.console_start_vm_timeout
        )

    async def stop_vm(self, ident: str, *, force: bool = False) -> Vm:
        """ACPI shutdown (the guest decides when), or with ``force`` an immediate power-off."""

        def run(conn: libvirt.virConnect) -> Vm:
            dom = _lookup(conn, ident)
            act_on_running(dom, dom.destroy if force else dom.shutdown)
            return self._snapshot(dom)

        return await self.connection.call("stop_vm", run, subject=ident)

    async def reboot_vm(self, ident: str, *, force: bool = False) -> Vm:
        """ACPI reboot, or with ``force`` a hardware reset (for guests that ignore ACPI, like GRUB)."""

        def run(conn: libvirt.virConnect) -> Vm:
            dom = _lookup(conn, ident)
            act_on_running(dom, functools.partial(dom.reset, 0) if force else functools.partial(dom.reboot, 0))
            return self._snapshot(dom)

        return await self.connection.call("reboot_vm", run, subject=ident)

    async def screenshot(self, ident: str) -> tuple[str, bytes]:
        """(mime type, image bytes) of the VM's screen, via libvirt's screenshot call."""

        def run(conn: libvirt.virConnect) -> tuple[str, bytes]:
            dom = _lookup(conn, ident)
            if not dom.isActive():
                raise LimenError(ErrorCode.VM_NOT_RUNNING, f"VM {dom.name()!r} is not running")
            stream = conn.newStream(0)
            try:
                mime = dom.screenshot(stream, 0, 0)
                chunks = []
                while True:
                    chunk = stream.recv(256 * 1024)
                    if chunk in (-2, None):
                        continue
                    if not chunk:
                        break
                    chunks.append(chunk)
                stream.finish()
            except BaseException:
                try:
                    stream.abort()
                except libvirt.libvirtError:
                    pass
                raise
            return str(mime), b"".join(chunks)

        return await self.connection.call("screenshot", run, subject=ident)

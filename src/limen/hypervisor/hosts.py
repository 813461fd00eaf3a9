"""The libvirt hosts limen manages, and which one a call about a VM goes to.

The default host is ``LIMEN_LIBVIRT_URI`` (named :data:`DEFAULT_HOST`); more come from the host registry
(:mod:`limen.host_registry`). Each host has its own :class:`LibvirtConnection` (its own worker threads and
timeout), so a host that hangs holds only its own threads. A host whose call passes the timeout is marked
unavailable by a prober that asks every host, every second, a host-wide question (only when there is more
than one host: a one-machine install behaves as it always did). Calls about an unavailable host then fail at
once instead of waiting (the default host's excepted), and the prober retries it with growing pauses until
it answers again.
Each host remembers the VMs it listed last, so the merged list shows a missing host's VMs as unavailable
instead of dropping them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar
from urllib.parse import urlsplit

import libvirt

from limen.cancellation import cancel_and_wait
from limen.errors import ErrorCode, HypervisorUnavailable, LimenError
from limen.hypervisor.connection import LibvirtConnection
from limen.hypervisor.models import Vm

T = TypeVar("T")
log = logging.getLogger("limen.hypervisor")

DEFAULT_HOST = "local"
# A prober asks each host this often whether it still answers (only with more than one host).
PROBE_INTERVAL = 1.0
# Pauses between retries of an unavailable host: doubling from the first to the last.
RETRY_FIRST, RETRY_MAX = 1.0, 8.0


@dataclass(frozen=True, slots=True)
class HostConfig:
    name: str
    uri: str
    console_address: str | None = None
    draining: bool = False


def default_console_address(uri: str) -> str | None:
    """The address of a remote URI's server (``qemu+tcp://10.0.0.5/system`` → 10.0.0.5); None for a local
    URI (its VMs' VNC servers are on this machine)."""
    parts = urlsplit(uri)
    return parts.hostname or None


@dataclass
class HostLink:
    """One host: its connection and what limen knows of its health."""

    config: HostConfig
    connection: LibvirtConnection
    available: bool = True
    last_error: str | None = None
    unavailable_since: float | None = None
    # The VMs it listed last, shown (marked) while it is unavailable.
    known_vms: list[Vm] = field(default_factory=list)
    # Whether it has listed its VMs since this process started: until then known_vms says nothing (a limen
    # started while the host was down took its VMs' names for new ones, and removed the host as empty).
    listed: bool = False
    retry_at: float = 0.0
    retry_pause: float = RETRY_FIRST
    probing: bool = False
    probed_at: float = 0.0

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def console_address(self) -> str | None:
        return self.config.console_address or default_console_address(self.config.uri)

    def unavailable(self, details: str) -> HypervisorUnavailable:
        """HYPERVISOR_UNAVAILABLE for what this host, known not to answer now, is not asked (its calls' own
        errors name it already: :meth:`LibvirtConnection.call`)."""
        return HypervisorUnavailable(details, host=self.name)


class HostPool:
    """Every host's connection, their health, and the routing of calls (the ``connection`` of
    :class:`~limen.hypervisor.service.Hypervisor`: it has :class:`LibvirtConnection`'s ``call``).

    ``find`` tells whether a VM (UUID or name) is defined on a connection; it runs in a worker thread.
    """

    def __init__(self, default_uri: str, timeout: float,
                 find: Callable[[libvirt.virConnect, str], bool]) -> None:
        self.timeout = timeout
        self.uri = default_uri
        self._find = find
        self.observers: list[Callable[[str, float, str | None], None]] = []
        # (host name, available) on every change of a host's health.
        self.availability_listeners: list[Callable[[str, bool], None]] = []
        self._on_open: list[Callable[[libvirt.virConnect], Callable[[], None] | None]] = []
        self._links: dict[str, HostLink] = {}
        self._where: dict[str, str] = {}  # VM UUID or name → the host it was last seen on
        self._prober: asyncio.Task[None] | None = None
        self._closed = False
        self.add(HostConfig(DEFAULT_HOST, default_uri))

    # -- the hosts ------------------------------------------------------------------------------------

    @property
    def default(self) -> HostLink:
        return self._links[DEFAULT_HOST]

    @property
    def links(self) -> list[HostLink]:
        return list(self._links.values())

    @property
    def several(self) -> bool:
        return len(self._links) > 1

    def get(self, name: str) -> HostLink:
        link = self._links.get(name)
        if link is None:
            raise LimenError(ErrorCode.HOST_NOT_FOUND, f"no host named {name[:80]!r}")
        return link

    def add(self, config: HostConfig) -> HostLink:
        """Adds a host (or updates the console address and draining flag of a known one)."""
        known = self._links.get(config.name)
        if known is not None and known.config.uri == config.uri:
            known.config = config
            return known
        if known is not None:
            raise LimenError(ErrorCode.HOST_ALREADY_EXISTS, f"host {config.name!r} has another URI")
        connection = LibvirtConnection(config.uri, self.timeout, host=config.name)
        for callback in self._on_open:
            connection.on_open(callback)
        link = HostLink(config, connection)
        connection.observers.append(lambda operation, seconds, failure: self._observe(link, operation, seconds,
                                                                                      failure))
        self._links[config.name] = link
        return link

    async def discard(self, name: str) -> None:
        link = self._links.pop(name, None)
        if link is None:
            return
        self._where = {ident: host for ident, host in self._where.items() if host != name}
        await link.connection.close()

    def on_open(self, callback: Callable[[libvirt.virConnect], Callable[[], None] | None]) -> None:
        """As :meth:`LibvirtConnection.on_open`, for every host's connection, those added later too."""
        self._on_open.append(callback)
        for link in self._links.values():
            link.connection.on_open(callback)

    def console_address_of(self, name: str) -> str | None:
        link = self._links.get(name)
        return link.console_address if link is not None and name != DEFAULT_HOST else None

    def uri_of(self, name: str) -> str:
        link = self._links.get(name)
        return link.config.uri if link is not None else self.uri

    # -- health ---------------------------------------------------------------------------------------

    def _observe(self, link: HostLink, operation: str, seconds: float, failure: str | None) -> None:
        for observe in self.observers:
            observe(operation, seconds, failure)
        # Only the prober's host-wide question marks a host down: a call about one VM may wait on that VM
        # (libvirt holds a VM while it saves its memory) with the host well. Any answer marks it up.
        if failure != ErrorCode.HYPERVISOR_UNAVAILABLE.name:
            self._mark(link, available=True, error=None)

    def _mark(self, link: HostLink, *, available: bool, error: str | None) -> None:
        if link.available == available:
            return
        link.available = available
        if available:
            link.unavailable_since, link.last_error, link.retry_pause = None, None, RETRY_FIRST
            log.info("host %s answers again", link.name, extra={"event": "host_available", "host": link.name})
        else:
            link.unavailable_since, link.last_error = time.monotonic(), error
            link.retry_at = time.monotonic() + link.retry_pause
            log.warning("host %s unavailable: %s", link.name, error,
                        extra={"event": "host_unavailable", "host": link.name, "details": error})
        for listener in self.availability_listeners:
            try:
                listener(link.name, available)
            except Exception:  # a listener's bug must not stop the others
                log.exception("host availability listener failed")

    def start(self) -> None:
        if self._prober is None:
            self._prober = asyncio.get_running_loop().create_task(self._probe_forever())

    async def _probe_forever(self) -> None:
        while not self._closed:
            await asyncio.sleep(PROBE_INTERVAL / 2)
            if not self.several:
                continue
            now = time.monotonic()
            for link in self.links:
                if link.probing or (not link.available and now < link.retry_at):
                    continue
                if link.available and now - link.probed_at < PROBE_INTERVAL:
                    continue
                link.probing = True
                asyncio.get_running_loop().create_task(self._probe(link))

    async def _probe(self, link: HostLink) -> None:
        link.probed_at = time.monotonic()
        try:
            await link.connection.call("probe", lambda conn: conn.getLibVersion())
        except LimenError as exc:
            if exc.code is not ErrorCode.HYPERVISOR_UNAVAILABLE:
                return  # it answered, if with an error: it is there
            if not link.available:
                link.last_error = exc.details
                link.retry_pause = min(link.retry_pause * 2, RETRY_MAX)
                link.retry_at = time.monotonic() + link.retry_pause
            else:
                self._mark(link, available=False, error=exc.details)
        finally:
            link.probing = False

    async def close(self) -> None:
        self._closed = True
        if self._prober is not None:
            await cancel_and_wait(self._prober, "the hosts' prober")
        await asyncio.gather(*(link.connection.close() for link in self.links), return_exceptions=True)

    # -- routing --------------------------------------------------------------------------------------

    def check_usable(self, link: HostLink, operation: str) -> None:
        """Fails at once for a registered host known to be down (its prober brings it back)."""
        if not link.available and link.name != DEFAULT_HOST:
            raise link.unavailable(f"{operation}: host {link.name!r} is unavailable ({link.last_error})")

    async def on_host(self, name: str, operation: str, func: Callable[[libvirt.virConnect], T], *,
                      subject: str = "", timeout: float | None = None) -> T:
        link = self.get(name)
        self.check_usable(link, operation)
        return await link.connection.call(operation, func, subject=subject, timeout=timeout)

    async def call(self, operation: str, func: Callable[[libvirt.virConnect], T], *,
                   subject: str = "", timeout: float | None = None) -> T:
        """Runs ``func`` on the host of the VM that ``subject`` starts with (a UUID or name), else on the
        default host. A VM not found where it was last seen is looked for again everywhere."""
        ident = subject.split(" ", 1)[0]
        if not self.several or not ident:
            return await self.default.connection.call(operation, func, subject=subject, timeout=timeout)
        remembered = self._where.get(ident)
        host = remembered or await self.locate(ident)
        try:
            return await self.on_host(host, operation, func, subject=subject, timeout=timeout)
        except LimenError as exc:
            if exc.code is not ErrorCode.VM_NOT_FOUND or remembered is None:
                raise
            self._where.pop(ident, None)  # moved, renamed or deleted since: look again
            host = await self.locate(ident)
            return await self.on_host(host, operation, func, subject=subject, timeout=timeout)

    async def locate(self, ident: str) -> str:
        """The host that defines the VM ``ident``, asking every available host at once. A VM only an
        unavailable host is known to have is HYPERVISOR_UNAVAILABLE; one nowhere, VM_NOT_FOUND."""
        found = await self.find(ident)
        if found is not None:
            return found
        for link in self.links:
            if not link.available and any(ident in (vm.uuid, vm.name) for vm in link.known_vms):
                raise link.unavailable(f"host {link.name!r} of VM {ident!r} is unavailable ({link.last_error})")
        unknown = self.never_listed_unavailable()
        if unknown:
            raise unknown[0].unavailable(f"no available host has VM {ident!r}, and host {unknown[0].name!r} has "
                                         f"not answered since this limen started ({unknown[0].last_error}): it "
                                         "may be there")
        raise LimenError(ErrorCode.VM_NOT_FOUND, f"no VM with name or UUID {ident!r} on any host")

    def never_listed_unavailable(self) -> list[HostLink]:
        """Unavailable hosts that have not listed their VMs since this process started: what they hold is
        unknown (not none). A draining one is left out: an administrator said it is going away."""
        return [link for link in self.links if not link.available and not link.listed and not link.config.draining]

    def last_known(self, ident: str) -> Vm | None:
        """The VM ``ident`` as a host marked unavailable listed it last (``host_available`` False), or None."""
        for link in self.links:
            if not link.available:
                for vm in link.known_vms:
                    if ident in (vm.uuid, vm.name):
                        return replace(vm, host_available=False)
        return None

    async def find(self, ident: str) -> str | None:
        """The host that defines ``ident`` among the available ones, or None."""
        links = [link for link in self.links if link.available or link.name == DEFAULT_HOST]

        async def ask(link: HostLink) -> str | None:
            try:
                found = await link.connection.call("locate_vm", lambda conn: self._find(conn, ident), subject=ident)
            except LimenError:
                return None
            return link.name if found else None

        # The first host that has it answers for all: a hung host does not hold up a VM found elsewhere.
        tasks = [asyncio.ensure_future(ask(link)) for link in links]
        try:
            for next_answer in asyncio.as_completed(tasks):
                host = await next_answer
                if host is not None:
                    self.remember(ident, host)
                    return host
        finally:
            for task in tasks:
                task.cancel()
        return None

    def remember(self, ident: str, host: str) -> None:
        if len(self._where) > 100_000:  # bounded: forget everything rather than grow without end
            self._where.clear()
        self._where[ident] = host

    def note_made(self, vm: Vm, host: str) -> None:
        """``vm``, just made on ``host`` by this process, joins that host's last known list until the host
        lists its VMs again: a host that hangs right after a create still shows it (as unavailable) rather
        than losing it, and its name stays taken meanwhile."""
        link = self.get(host)
        link.known_vms = [*(known for known in link.known_vms if known.uuid != vm.uuid), vm]
        self.remember(vm.uuid, link.name)
        self.remember(vm.name, link.name)

    def forget(self, *idents: str) -> None:
        for ident in idents:
            self._where.pop(ident, None)

    # -- the merged list ------------------------------------------------------------------------------

    async def gather_lists(self, read: Callable[[HostLink], Awaitable[list[Vm]]]) -> list[Vm]:
        """Every host's VMs, read at once; a host that cannot answer gives its last known VMs, marked."""
        links = self.links
        answers: Sequence[list[Vm] | BaseException] = await asyncio.gather(
            *(self._list_one(link, read) for link in links), return_exceptions=True)
        merged: dict[str, tuple[Vm, str]] = {}  # VM UUID → the VM, the host that listed it
        listed: list[tuple[Vm, str]] = []
        for link, answer in zip(links, answers, strict=True):
            if isinstance(answer, list):
                link.known_vms, link.listed = answer, True
                listed.extend((vm, link.name) for vm in answer)
            elif isinstance(answer, LimenError) and answer.code is ErrorCode.HYPERVISOR_UNAVAILABLE:
                listed.extend((replace(vm, host_available=False), link.name) for vm in link.known_vms)
            else:
                raise answer
        for vm, host in listed:
            # One VM on two hosts: during a live move, the target's incoming copy (paused) beside the VM; it
            # was listed twice, to its owner too. The host it was last seen on is the one it is on until the
            # move ends (limen.hypervisor.service remembers the target then).
            shown = merged.get(vm.uuid)
            if shown is None or (shown[1] != host and self._where.get(vm.uuid) == host):
                merged[vm.uuid] = (vm, host)
        for vm, host in merged.values():
            if vm.host_available:
                self.remember(vm.uuid, host)
                self.remember(vm.name, host)
        return sorted((vm for vm, _host in merged.values()), key=lambda vm: vm.name)

    async def _list_one(self, link: HostLink, read: Callable[[HostLink], Awaitable[list[Vm]]]) -> list[Vm]:
        self.check_usable(link, "list_vms")
        return await read(link)


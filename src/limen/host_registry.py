"""The host registry: the libvirt hosts limen manages besides the default one, kept in the database.

The database is the list's one home (so every limen process on it sees the same hosts); the running
:class:`~limen.hypervisor.hosts.HostPool` follows it (:func:`sync_pool`). The default host is
``LIMEN_LIBVIRT_URI`` and is never stored: a one-machine install has an empty table.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from limen.cancellation import cancel_and_wait
from limen.db.database import Database, missing_sqlite_file
from limen.db.models import HypervisorHost
from limen.errors import ErrorCode, LimenError, Refusals, Rule, ValidationFailed, rule
from limen.hypervisor.hosts import DEFAULT_HOST, HostConfig, HostPool
from limen.url_redaction import holds_password

log = logging.getLogger("limen.hypervisor")
# How often a running limen reads the registry again (hosts added by `limen host add` or another replica).
HOST_SYNC_INTERVAL = 5.0

HOST_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# The URI schemes libvirt's remote and local drivers take that limen manages VMs on.
_SCHEMES = re.compile(r"^(qemu|test)(\+(ssh|tcp|tls|unix|libssh2?|ext))?$")


def check_host(name: str | None, uri: str | None, console_address: str | None) -> None:
    """VALIDATION_ERROR naming each of a host's name, URI and console address limen cannot use, all at once
    (None: not given, or refused already by a request's type check)."""
    refusals = Refusals()
    with refusals.check():
        if name is not None and not HOST_NAME_PATTERN.fullmatch(name):
            raise ValidationFailed("name", "must start with a letter or digit and hold only letters a–z, A–Z, "
                                           "digits, '_', '.', '-' (at most 63 characters)", rule=rule(Rule.HOST_NAME))
        if name is not None and name.casefold() == DEFAULT_HOST:  # host names are one name in any case
            raise ValidationFailed("name", f"{DEFAULT_HOST!r} is the default host (LIMEN_LIBVIRT_URI)")
    with refusals.check():
        if uri is not None and not _is_libvirt_uri(uri):
            raise ValidationFailed("uri", "must be a libvirt URI such as qemu+tcp://host/system, "
                                          "qemu+ssh://user@host/system or test:///default")
        if uri is not None and holds_password(uri):
            raise ValidationFailed("uri", "must not hold a password: libvirt takes none from the URI "
                                          "(use SSH keys, SASL or TLS)")
    with refusals.check():
        if console_address is not None and (not console_address or len(console_address) > 255
                                            or not re.fullmatch(r"[A-Za-z0-9.:_-]+", console_address)):
            raise ValidationFailed("console_address", "must be a host name or an IP address")
    refusals.raise_any()


def _is_libvirt_uri(uri: str) -> bool:
    try:
        scheme = urlsplit(uri).scheme
    except ValueError:  # "qemu+tcp://[h/system": no URI at all (an unclosed IPv6 address)
        return False
    return len(uri) <= 1000 and bool(_SCHEMES.fullmatch(scheme)) and uri.isprintable() and " " not in uri


def _config(row: HypervisorHost) -> HostConfig:
    return HostConfig(row.name, row.uri, row.console_address, row.draining)


def list_hosts(db: Database) -> list[HostConfig]:
    def read(session: Session) -> list[HostConfig]:
        return [_config(row) for row in session.scalars(select(HypervisorHost).order_by(HypervisorHost.name))]

    return db.run_sync(read)


def add_host(db: Database, name: str, uri: str, console_address: str | None = None, *,
             default_uri: str) -> HostConfig:
    """Registers a host; HOST_ALREADY_EXISTS for a name or a URI limen has already (``default_uri``: the
    default host's). One libvirt twice would list every VM of it twice, each VM then "on" both hosts, and
    neither host could be removed (it has VMs)."""
    check_host(name, uri, console_address)

    def add(session: Session) -> HostConfig:
        taken = next((row.name for row in session.scalars(select(HypervisorHost))
                      if row.name.casefold() == name.casefold()), None)
        if taken is not None:  # "H2" beside "h2" invites acting on the wrong host, as VM names do
            raise LimenError(ErrorCode.HOST_ALREADY_EXISTS, f"a host named {taken!r} exists")
        same = _same_uri(uri)
        if same == _same_uri(default_uri):
            raise LimenError(ErrorCode.HOST_ALREADY_EXISTS,
                             f"{uri} is the default host {DEFAULT_HOST!r} (LIMEN_LIBVIRT_URI)")
        holder = next((row.name for row in session.scalars(select(HypervisorHost)) if _same_uri(row.uri) == same),
                      None)
        if holder is not None:
            raise LimenError(ErrorCode.HOST_ALREADY_EXISTS, f"{uri} is host {holder!r} already")
        row = HypervisorHost(name=name, uri=uri, console_address=console_address, draining=False,
                             created_at=datetime.now(UTC))
        session.add(row)
        return _config(row)

    return db.run_sync(add)


# The port each remote transport uses when a URI names none: written out, it is the same daemon.
_DEFAULT_PORTS = {"tcp": 16509, "tls": 16514, "ssh": 22, "libssh": 22, "libssh2": 22}
# Query parameters that choose another daemon on the same host; the others (keepalive_interval, no_verify,
# pkipath, ...) only say how to reach the same one.
_DAEMON_CHOOSING = frozenset({"socket", "mode", "proxy"})


def _same_uri(uri: str) -> str:
    """A URI as libvirt reads it, for comparing: scheme and host are case-blind, a trailing slash, the user,
    the transport's default port and the connection options say nothing (``qemu+tcp://H:16509/system`` is
    ``qemu+tcp://h/system``: registered twice, one host listed every VM twice and could not be removed)."""
    parts = urlsplit(uri.strip())
    scheme = parts.scheme.lower()
    transport = scheme.partition("+")[2]
    try:
        port = parts.port
    except ValueError:
        port = None
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS.get(transport)) else f"{host}:{port}"
    query = "&".join(sorted(pair for pair in parts.query.split("&") if pair.split("=", 1)[0] in _DAEMON_CHOOSING))
    return parts._replace(scheme=scheme, netloc=netloc, path=parts.path.rstrip("/") or "/", query=query,
                          fragment="").geturl()


def remove_host(db: Database, name: str) -> None:
    def remove(session: Session) -> None:
        row = session.get(HypervisorHost, name)
        if row is None:
            raise LimenError(ErrorCode.HOST_NOT_FOUND, f"no host named {name[:80]!r}")
        session.delete(row)

    db.run_sync(remove)


def set_draining(db: Database, name: str, draining: bool) -> HostConfig:
    def change(session: Session) -> HostConfig:
        row = session.get(HypervisorHost, name)
        if row is None:
            raise LimenError(ErrorCode.HOST_NOT_FOUND, f"no host named {name[:80]!r}")
        row.draining = draining
        return _config(row)

    return db.run_sync(change)


def read_registered_hosts(db_url: str) -> list[HostConfig]:
    """The registry as a process without a database of its own reads it (a command, ``doctor``): a database
    without limen's schema yet (``limen serve`` makes it) holds no hosts, and one not made yet is not made
    here: an empty SQLite file made by reading it let `limen backup` (with a data directory that had none, in
    a cron job without the service's settings) back it up as if it were limen's, and exit 0."""
    from sqlalchemy import inspect

    if missing_sqlite_file(db_url) is not None:
        return []
    database = Database(db_url)
    try:
        if not inspect(database.engine).has_table(HypervisorHost.__tablename__):
            return []
        return list_hosts(database)
    finally:
        database.close()


async def sync_pool(pool: HostPool, hosts: list[HostConfig]) -> None:
    """Makes the pool hold the default host and exactly ``hosts`` (added, changed, or closed)."""
    wanted = {host.name: host for host in hosts}
    for link in pool.links:
        if link.name != DEFAULT_HOST and (link.name not in wanted or wanted[link.name].uri != link.config.uri):
            await pool.discard(link.name)
    for host in hosts:
        pool.add(host)


class HostSync:
    """Keeps a running limen's host pool equal to the registry: at start, then every HOST_SYNC_INTERVAL."""

    def __init__(self, db: Database, pool: HostPool) -> None:
        self._db = db
        self._pool = pool
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.sync_once()
        self._task = asyncio.get_running_loop().create_task(self._forever())

    async def sync_once(self) -> None:
        try:
            hosts = await self._db.in_thread(functools.partial(list_hosts, self._db))
        except Exception as exc:  # the database's own health shows on /readyz; keep the hosts we have
            log.warning("cannot read the host registry: %s", exc, extra={"event": "host_sync_failed"})
            return
        await sync_pool(self._pool, hosts)

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(HOST_SYNC_INTERVAL)
            await self.sync_once()

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task, "the host registry's sync")

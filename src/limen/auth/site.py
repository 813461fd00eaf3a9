"""Where limen is reached: the origins of its own pages, and the host names it answers to.

Both come from the settings alone, never from a request: a request's ``Host`` header is whatever the
client (or a DNS-rebinding page) chose to write. Built once at start-up (:meth:`Site.of`)::

    own origins   LIMEN_PUBLIC_URL's origin; without it, http://NAME:PORT for each NAME of the listen
                  address (below) and each of LIMEN_ALLOWED_HOSTS. LIMEN_ALLOWED_ORIGINS, when set,
                  replaces them (limen.auth.http.check_origin).
    host names    LIMEN_PUBLIC_URL's host, LIMEN_ALLOWED_HOSTS ("*" turns the check off) and the names
                  of the listen address; on a loopback listen also any loopback IP literal (127.0.0.2,
                  [::1]); anything else is HOST_NOT_ALLOWED. Checked on loopback too: only this machine
                  can connect there, but a browser on it runs any page, and a page whose name its DNS
                  re-points at 127.0.0.1 (DNS rebinding) would otherwise read limen under its own origin.
                  An IP literal is no such name: the page it opens is limen's own.

The names of the listen address (``LIMEN_HOST``): a loopback address is itself and ``localhost``
(``127.0.0.1`` gives http://127.0.0.1:PORT and http://localhost:PORT); a wildcard (``0.0.0.0``, ``::``)
is every address of this machine's interfaces (read at start), the loopback names and the machine's own
name; any other address or name is itself. The port of a Host header is not compared.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from limen.client_text import header_text, quoted
from limen.errors import ErrorCode, LimenError
from limen.settings import Settings

WILDCARDS = frozenset({"0.0.0.0", "::", ""})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
ANY_HOST = "*"
_SIOCGIFADDR = 0x8915


def normalize_host(host: str) -> str:
    """A host name or address as compared: lower case, no brackets, no trailing dot, IPs in canonical form."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host))
    return host


def host_of(header: str) -> str:
    """The host part of a ``Host`` header (``name:port``, ``[v6]:port``, or either without a port)."""
    header = header.strip()
    if header.startswith("["):
        return normalize_host(header[: header.find("]") + 1] if "]" in header else header)
    if header.count(":") == 1:
        header = header.split(":", 1)[0]
    return normalize_host(header)


def is_loopback(host: str) -> bool:
    host = normalize_host(host)
    return host == "localhost" or _is_loopback_ip(host)


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def interface_addresses() -> list[str]:
    """Every address of this machine's interfaces (IPv4 by ioctl, IPv6 from /proc; link-local IPv6 left out:
    a browser cannot use it without a zone). Best effort: what cannot be read is left out."""
    found: list[str] = []
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            with contextlib.suppress(OSError):
                request = struct.pack("256s", name.encode()[:15])
                answer = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, request)
                found.append(socket.inet_ntoa(answer[20:24]))
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            address = ipaddress.IPv6Address(bytes.fromhex(raw))
            if not address.is_link_local:
                found.append(str(address))
    return found


def machine_names() -> list[str]:
    return [name for name in {socket.gethostname(), socket.getfqdn()} if name]


def listen_names(host: str, *, addresses: Callable[[], Iterable[str]] = interface_addresses,
                 names: Callable[[], Iterable[str]] = machine_names) -> list[str]:
    """The names a browser may use for the listen address ``host`` (see the module docstring)."""
    if host.strip() in WILDCARDS:
        return list(dict.fromkeys(normalize_host(name) for name in (*LOOPBACK_NAMES, *names(), *addresses())))
    if is_loopback(host):
        own = normalize_host(host)
        return list(dict.fromkeys([own, "localhost"] if own != "localhost" else ["localhost", "127.0.0.1"]))
    return [normalize_host(host)]


def _origin(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{shown}" if port == default else f"{scheme}://{shown}:{port}"


@dataclass(frozen=True, slots=True)
class Site:
    origins: frozenset[str]  # normalized, as limen.auth.http.normalize_origin makes them
    hosts: frozenset[str] | None  # None: any Host is answered ("*" allowed)
    loopback_listen: bool  # then any loopback IP literal is a name of this server too

    @classmethod
    def of(cls, settings: Settings, *, addresses: Callable[[], Iterable[str]] = interface_addresses,
           names: Callable[[], Iterable[str]] = machine_names) -> Site:
        listen = listen_names(settings.host, addresses=addresses, names=names)
        allowed = [normalize_host(host) for host in settings.allowed_hosts if host != ANY_HOST]
        if settings.public_url is not None:
            public = urlsplit(settings.public_url)
            assert public.hostname is not None  # checked by the settings
            origins = frozenset({settings.public_url})
            public_host = [normalize_host(public.hostname)]
        else:
            scheme = "https" if settings.tls else "http"
            origins = frozenset(_origin(scheme, host, settings.port) for host in [*listen, *allowed])
            public_host = []
        loopback_listen = settings.host.strip() not in WILDCARDS and is_loopback(settings.host)
        if ANY_HOST in settings.allowed_hosts:
            return cls(origins, None, loopback_listen)
        return cls(origins, frozenset([*public_host, *allowed, *listen]), loopback_listen)

    def check_host_headers(self, host_headers: Sequence[str]) -> None:
        """:meth:`check_host` for a request's Host header lines: more than one is HOST_NOT_ALLOWED too (HTTP/1.1
        says 400): this server would read the first, and a proxy in front of it might route by another."""
        if self.hosts is not None and len(host_headers) > 1:
            shown = ", ".join(quoted(header_text(value)) for value in host_headers[:3])
            raise LimenError(ErrorCode.HOST_NOT_ALLOWED, f"the request has {len(host_headers)} Host headers ({shown}); "
                             "it must have one")
        self.check_host(host_headers[0] if host_headers else None)

    def check_host(self, host_header: str | None) -> None:
        """HOST_NOT_ALLOWED unless the Host header names this server (always passes when unchecked)."""
        if self.hosts is None:
            return
        host = host_of(host_header) if host_header else ""
        if host in self.hosts or (self.loopback_listen and _is_loopback_ip(host)):
            return
        raise LimenError(ErrorCode.HOST_NOT_ALLOWED,
                         f"the Host header {quoted(header_text(host_header or ''))} names no address of this server "
                         "(LIMEN_PUBLIC_URL, LIMEN_ALLOWED_HOSTS)")

"""What a request tells about where it came from: its Origin, the client's address, and HTTPS.

Proxies are believed only when the peer is one of ``trusted_proxies``: then ``X-Forwarded-For`` is read
from the right, skipping trusted hops, and the first address that is not a trusted proxy is the client
(anything to the left of it could have been written by the client itself). ``X-Forwarded-Proto`` is read
from a trusted peer only. limen runs uvicorn with its own proxy-header handling off, so these functions
see the real peer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Sequence
from urllib.parse import urlsplit

from limen.client_text import header_text, quoted
from limen.errors import ErrorCode, LimenError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HTTP_SCHEME = {"ws": "http", "wss": "https"}


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _address(text: str) -> IPAddress | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: IPAddress | None, networks: Sequence[IPNetwork]) -> bool:
    return address is not None and any(address in network for network in networks)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]) -> str:
    """The client's IP address as text; ``peer`` is the socket's, ``forwarded_for`` the header's value."""
    if not peer:
        return "unknown"
    current = _address(peer)
    if current is None:
        return peer[:64]
    if not forwarded_for or not _trusted(current, trusted):
        return str(current)
    for hop in reversed(forwarded_for.split(",")):
        address = _address(hop)
        if address is None:
            break  # garbage: the trusted hop that received it is the best we know
        current = address
        if not _trusted(current, trusted):
            break
    return str(current)


def is_https(scheme: str, peer: str | None, forwarded_proto: str | None, trusted: Sequence[IPNetwork]) -> bool:
    if scheme in ("https", "wss"):
        return True
    if forwarded_proto and _trusted(_address(peer or ""), trusted):
        return forwarded_proto.split(",")[0].strip().lower() == "https"
    return False


def is_local_client(peer: str | None, forwarded_for: str | None, forwarded: str | None,
                    trusted: Sequence[IPNetwork]) -> bool:
    """The request's client is on this machine: its connection comes from loopback and no proxy forwarded
    it from elsewhere. A proxy on this machine (nginx, HAProxy) connects from loopback for every client
    it carries, so a request naming a forwarded client counts only when that proxy is trusted and the
    client it names is itself on loopback. ``Forwarded`` (RFC 7239) is not read: a request carrying it
    is not counted as local."""
    address = _address(peer or "")
    if address is None or not address.is_loopback:
        return False
    if forwarded:
        return False
    if not forwarded_for:
        return True
    if not _trusted(address, trusted):
        return False
    client = _address(client_address(peer, forwarded_for, trusted))
    return client is not None and client.is_loopback


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case with default ports dropped; None if it is not an origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = _HTTP_SCHEME.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"


def check_origin(origin: str | None, *, own: Collection[str], allowed: Sequence[str]) -> None:
    """ORIGIN_NOT_ALLOWED unless ``origin`` is allowed: one of ``allowed`` or, when that is empty, one of
    ``own`` (the server's own origins, from its settings: :class:`limen.auth.site.Site`; never from the
    request's Host header, which the client writes).

    A missing Origin passes: browsers always send one on WebSocket upgrades and on cross-site writes,
    so its absence means a non-browser client, which has no ambient cookie to abuse.
    """
    if origin is None:
        return
    normalized = normalize_origin(origin)
    permitted = {normalize_origin(item) for item in allowed} if allowed else set(own)
    if normalized is None or normalized not in permitted:
        raise LimenError(ErrorCode.ORIGIN_NOT_ALLOWED, f"origin {quoted(header_text(origin))} is not allowed")

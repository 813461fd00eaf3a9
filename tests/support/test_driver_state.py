"""libvirt's ``test:///default`` put back as a fresh one between test modules.

The driver is one per process and lives as long as any connection to it is open, so what a module's tests
change there (a VM defined, the VM ``test`` stopped, given an owner, a snapshot, a volume) was seen by the
modules that ran after it in the same process, and which those are depends on the file order and on which
forked worker took which file. :func:`put_back_fresh_state` compares the driver with the state a fresh one
has (read on the first connection of the process, before any test ran) and undoes every difference.
Opening a connection while another is open costs no parse of the default XML; a module that left nothing
costs about 0.2 ms.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import libvirt

URI = "test:///default"

# What is compared of each object: its inactive XML, whether it runs, autostart, and what it holds
# (a domain's snapshot names, an active pool's volume names).
Description = tuple[str, bool, bool, frozenset[str]]
DriverState = Mapping[str, Mapping[str, Description]]  # kind ("domain", "network", "pool") -> name -> it


@dataclass(frozen=True)
class _Kind:
    name: str
    list_all: Callable[[libvirt.virConnect], list[Any]]
    xml: Callable[[Any], str]
    held: Callable[[Any], frozenset[str]]
    drop_held: Callable[[Any, str], None]
    define: Callable[[libvirt.virConnect, str], Any]
    undefine: Callable[[Any], None]


def _volumes(pool: libvirt.virStoragePool) -> frozenset[str]:
    return frozenset(pool.listVolumes()) if pool.isActive() else frozenset()


_KINDS = (
    _Kind("domain", lambda conn: conn.listAllDomains(), lambda dom: dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE),
          lambda dom: frozenset(dom.snapshotListNames()), lambda dom, name: dom.snapshotLookupByName(name).delete(0),
          lambda conn, xml: conn.defineXML(xml),
          lambda dom: dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)),
    _Kind("network", lambda conn: conn.listAllNetworks(), lambda net: net.XMLDesc(0), lambda _net: frozenset(),
          lambda _net, _name: None, lambda conn, xml: conn.networkDefineXML(xml), lambda net: net.undefine()),
    _Kind("pool", lambda conn: conn.listAllStoragePools(), lambda pool: pool.XMLDesc(0), _volumes,
          lambda pool, name: pool.storageVolLookupByName(name).delete(0),
          lambda conn, xml: conn.storagePoolDefineXML(xml), lambda pool: pool.undefine()),
)


def _describe(kind: _Kind, item: Any) -> Description:
    return kind.xml(item), bool(item.isActive()), bool(item.autostart()), kind.held(item)


def read_state(conn: libvirt.virConnect) -> DriverState:
    return {kind.name: {item.name(): _describe(kind, item) for item in kind.list_all(conn)} for kind in _KINDS}


def differences(fresh: DriverState, now: DriverState) -> list[str]:
    """What differs, a line each (empty when ``now`` is ``fresh``)."""
    found: list[str] = []
    for kind in _KINDS:
        want, have = fresh[kind.name], now[kind.name]
        found += [f"{kind.name} {name!r} added" for name in sorted(have.keys() - want.keys())]
        found += [f"{kind.name} {name!r} removed" for name in sorted(want.keys() - have.keys())]
        found += [f"{kind.name} {name!r} changed" for name in sorted(want.keys() & have.keys())
                  if want[name] != have[name]]
    return found


@functools.cache
def fresh_state() -> DriverState:
    """The driver as this process first saw it (called before any test of the process ran)."""
    conn = libvirt.open(URI)
    try:
        return read_state(conn)
    finally:
        conn.close()


def put_back_fresh_state() -> list[str]:
    """Puts the driver back as :func:`fresh_state` saw it; returns what differed (as :func:`differences`
    words it)."""
    conn = libvirt.open(URI)
    try:
        fresh = fresh_state()
        found = differences(fresh, read_state(conn))
        for kind in _KINDS if found else ():
            _put_back(conn, kind, fresh[kind.name])
        left = differences(fresh, read_state(conn))
        if left:
            raise AssertionError(f"test:///default could not be put back as fresh: {left}")
        return found
    finally:
        conn.close()


def _put_back(conn: libvirt.virConnect, kind: _Kind, fresh: Mapping[str, Description]) -> None:
    # What is extra or changed goes first: a VM renamed from a fresh one's name holds its UUID until it is gone.
    for item in kind.list_all(conn):
        want = fresh.get(item.name())
        for name in kind.held(item) - (want[3] if want is not None else frozenset()):
            kind.drop_held(item, name)
        if _describe(kind, item) == want:
            continue
        if item.isActive():
            item.destroy()
        kind.undefine(item)
    present = {item.name() for item in kind.list_all(conn)}
    for name, (xml, active, autostart, _held) in fresh.items():
        if name not in present:
            item = kind.define(conn, xml)
            item.setAutostart(int(autostart))
            if active:
                item.create()

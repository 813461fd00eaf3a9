"""A VM's owner, kept in limen's ``<metadata>`` element of the domain so libvirt stays the one source of
truth. Setting it rewrites the element (keeping the creation time) in the persistent definition, and in
the live one too when the VM runs.
"""

from __future__ import annotations

import libvirt

from limen.hypervisor.domain_xml import METADATA_NS, METADATA_PREFIX, metadata_xml, parse_domain_xml
from limen.hypervisor.models import Vm
from limen.hypervisor.service import Hypervisor, _lookup


async def set_owner(hypervisor: Hypervisor, ident: str, owner: str | None) -> Vm:
    """Makes ``owner`` (a user name; None for nobody) the owner of the VM ``ident``; returns the VM."""

    def run(conn: libvirt.virConnect) -> Vm:
        dom = _lookup(conn, ident)
        parsed = parse_domain_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        write_owner(dom, parsed.created_at.isoformat() if parsed.created_at else None, owner)
        return hypervisor._snapshot(dom)

    return await hypervisor.connection.call("set_owner", run, subject=ident)


def owner_facts(dom: libvirt.virDomain) -> tuple[str | None, str | None]:
    """(creation time, owner) as the VM's persistent definition holds them now."""
    parsed = parse_domain_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    return (parsed.created_at.isoformat() if parsed.created_at else None), parsed.owner


def write_owner(dom: libvirt.virDomain, created_at: str | None, owner: str | None) -> None:
    """Rewrites limen's <metadata> element in the persistent definition, and the live one when it runs."""
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if dom.isActive():
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    dom.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT, metadata_xml(created_at, owner), METADATA_PREFIX, METADATA_NS, flags
    )

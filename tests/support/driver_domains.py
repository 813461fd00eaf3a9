"""Domains for libvirt's in-process test driver, defined behind limen's back as ``virsh`` would."""

from __future__ import annotations

import uuid


def running_domain_xml(name: str, vnc_port: int = 5977) -> str:
    """A domain with a VNC port: once started, a running VM a console's admission may keep in its cache."""
    return f"""<domain type='test'><name>{name}</name><uuid>{uuid.uuid4()}</uuid>
      <memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os>
      <devices><graphics type='vnc' port='{vnc_port}' autoport='no' listen='127.0.0.1'/></devices></domain>"""

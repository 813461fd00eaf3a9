"""A second, real libvirt host on this machine for tests: :class:`ExtraHost` (scripts/cluster_parts) on a
loopback address and VNC port range picked at random, so parallel test runs do not meet."""

from __future__ import annotations

import random

from scripts.cluster_parts.libvirt_hosts import ExtraHost

__all__ = ["ExtraHost", "pick_address"]


def pick_address() -> tuple[str, tuple[int, int]]:
    """A loopback address in 127.0.1.100–249 and a VNC range in 26000–32749 unlikely to meet another test
    run's (helpers run in parallel on one machine): below the kernel's ephemeral ports (32768 up), which a
    test's free port, picked before its server binds it, comes from, and above the real libvirtd's 5900+."""
    address = f"127.0.1.{random.randint(100, 249)}"
    first = 26000 + random.randint(0, 134) * 50
    return address, (first, first + 49)

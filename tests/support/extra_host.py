"""A second, real libvirt host on this machine for tests: :class:`ExtraHost` (scripts/cluster_parts) on a
loopback address and VNC port range picked at random, so parallel test runs do not meet."""

from __future__ import annotations

import random
from pathlib import Path

from scripts.cluster_parts.libvirt_hosts import ExtraHost

__all__ = ["ExtraHost", "pick_address"]


# The lowest VNC port an extra host gets: above the real libvirtd's 5900+; ranges of RANGE_PORTS ports.
VNC_FLOOR = 26000
RANGE_PORTS = 50


def ephemeral_floor() -> int:
    """The lowest of the kernel's ephemeral ports on this machine (Linux's default when it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def pick_address() -> tuple[str, tuple[int, int]]:
    """A loopback address in 127.0.1.100–249 and a VNC range from VNC_FLOOR up unlikely to meet another test
    run's (helpers run in parallel on one machine): below the kernel's ephemeral ports (here 32768 up: ranges in
    26000–32749), which a test's free port, picked before its server binds it, comes from. A machine whose
    ephemeral ports start at VNC_FLOOR or lower has no such room: its ranges are those of the default's."""
    address = f"127.0.1.{random.randint(100, 249)}"
    slots = (ephemeral_floor() - VNC_FLOOR) // RANGE_PORTS
    first = VNC_FLOOR + random.randrange(slots if slots > 0 else (32768 - VNC_FLOOR) // RANGE_PORTS) * RANGE_PORTS
    return address, (first, first + RANGE_PORTS - 1)

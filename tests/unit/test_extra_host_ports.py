"""The VNC ranges the tests' extra libvirt hosts get stay clear of the ports other things on this machine take:
the real libvirtd's 5900+ and the kernel's ephemeral ports, where a test's free port (picked, then bound by its
server a moment later) comes from. A QEMU bound there between the two failed that server's start."""

from __future__ import annotations

import pytest

from tests.support.extra_host import RANGE_PORTS, VNC_FLOOR, ephemeral_floor, pick_address


def test_every_range_lies_between_the_real_libvirtds_ports_and_the_ephemeral_ones() -> None:
    ephemeral_low = ephemeral_floor()
    if ephemeral_low <= VNC_FLOOR + RANGE_PORTS:
        pytest.skip(f"this machine's ephemeral ports start at {ephemeral_low}: no range lies below them")
    for _ in range(2000):
        address, (first, last) = pick_address()
        assert address.startswith("127.0.1.")
        assert 5999 < first <= last < ephemeral_low, (first, last, ephemeral_low)

"""The QEMU process behind a running VM of the local ``qemu:///system``, for the tests and benchmarks that
act on it directly (SIGSTOP as a hung hypervisor, SIGKILL as a crashed VM) or measure its CPU."""

from __future__ import annotations

from pathlib import Path

# Where the system driver writes each running domain's pid (/run/libvirt/qemu/NAME.pid).
QEMU_RUN_DIR = Path("/run/libvirt/qemu")


def qemu_pid(domain_name: str) -> int:
    """The pid of the running domain ``domain_name``'s QEMU, from libvirt's pid file for it."""
    return int((QEMU_RUN_DIR / f"{domain_name}.pid").read_text().strip())


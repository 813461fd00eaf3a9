"""The test VMs' virtual CPUs at the lowest priority (nice 19), so that guests spinning in a loop do not
slow the tests' own processes.

Why: the demo ISO's GRUB waits for a key by polling it in a loop; under TCG its virtual CPU keeps a whole
host core busy for as long as the VM runs (measured: 100 % of a core on an idle machine). In a forked run of
the slow tiers about 40 % of the CPU sampled went to QEMU, with two or three such VMs at once on 2 cores: the
limen servers, Chromium and the tests waited for the CPU, and a console that must end within a second of a
revocation ended after 1.9 s. At nice 19 a virtual CPU still takes any core nobody else wants and yields it
as soon as a test, a server or the browser has work: the guests' idle loops stop competing, and a guest that
has real work (echoing a key) gets a core whenever one is free.

Only QEMU processes of test VMs (``guest=limen-test-…`` on their command line) are touched, and only their
virtual CPU threads (``CPU 0/TCG``, ``CPU 0/KVM``): QEMU's main thread, which serves VNC and the monitor,
keeps its priority. New VMs are found by polling ``/proc`` (a VM's first fraction of a second runs at normal
priority); one poller per process, started by :func:`guests_kept_idle`, the session fixture the integration
and e2e tiers' conftest files import.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from pathlib import Path

import pytest

POLL_SECONDS = 0.25
NICE = 19
TEST_GUEST = b"guest=limen-test-"
VCPU_THREAD = re.compile(r"^CPU \d+/")
PROC = Path("/proc")

_started = threading.Lock()
_poller: threading.Thread | None = None


@pytest.fixture(scope="session", autouse=True)
def guests_kept_idle() -> None:
    """Autouse in the tiers whose conftest imports it: their test VMs' virtual CPUs yield to the tests."""
    keep_test_guests_idle()


def keep_test_guests_idle() -> None:
    """Starts this process's poller (once): every test VM's virtual CPUs are moved to nice 19."""
    global _poller
    with _started:
        if _poller is None:
            _poller = threading.Thread(target=_poll, name="idle-guests", daemon=True)
            _poller.start()


def _poll() -> None:
    # QEMU pid -> None if not a test VM's, else the ids of its vCPU threads already at NICE
    known: dict[int, set[int] | None] = {}
    while True:
        time.sleep(POLL_SECONDS)
        alive = _qemu_pids()
        for pid in alive:
            if pid not in known:
                known[pid] = set() if _is_test_guest(pid) else None
            niced = known[pid]
            if niced is None:
                continue
            for tid in _vcpu_threads(pid):
                if tid not in niced:
                    with contextlib.suppress(OSError):  # the thread or the VM is gone already
                        os.setpriority(os.PRIO_PROCESS, tid, NICE)
                        niced.add(tid)
        for pid in set(known) - set(alive):
            del known[pid]


def _qemu_pids() -> list[int]:
    pids = []
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (PROC / entry.name / "comm").read_bytes().startswith(b"qemu-system"):
                    pids.append(int(entry.name))
    return pids


def _is_test_guest(pid: int) -> bool:
    try:
        return TEST_GUEST in (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False


def _vcpu_threads(pid: int) -> list[int]:
    threads = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(PROC / str(pid) / "task"):
            with contextlib.suppress(OSError):
                if VCPU_THREAD.match((PROC / str(pid) / "task" / entry.name / "comm").read_text()):
                    threads.append(int(entry.name))
    return threads

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

A guest a test types into is the exception (:func:`typed_into`): at nice 19 it got a core only when nothing
else wanted one, nor more of it than the idle guests beside it, and GRUB read its keys late: keys typed
while the firmware's 15-key buffer was full were lost (a CI run of 2026-12-05 lost the Enter of a 17-key
line). No person's VM waits behind everything else while they type. Every worker's poller nices every test
guest it finds, so the exception is a file named after the guest, which all of them read.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

POLL_SECONDS = 0.25
NICE = 19
TEST_GUEST = re.compile(rb"guest=(limen-test-[^,\x00]*)")
VCPU_THREAD = re.compile(r"^CPU \d+/")
PROC = Path("/proc")
TYPED_INTO = Path(tempfile.gettempdir()) / "limen-test-guests-typed-into"  # one empty file per guest's name

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


@contextlib.contextmanager
def typed_into(vm_name: str) -> Iterator[None]:
    """The guest ``vm_name`` at normal priority while the block runs (from now: its threads are set here
    too, not at the pollers' next round), at nice 19 again after it."""
    TYPED_INTO.mkdir(exist_ok=True)
    mark = TYPED_INTO / vm_name
    mark.touch()
    try:
        for pid in _qemu_pids():
            if _test_guest_name(pid) == vm_name:
                _set_vcpu_priority(pid, 0, {})
        yield
    finally:
        mark.unlink(missing_ok=True)


def _poll() -> None:
    known: dict[int, tuple[str, dict[int, int]] | None] = {}
    while True:
        time.sleep(POLL_SECONDS)
        settle_guests(known)


def settle_guests(known: dict[int, tuple[str, dict[int, int]] | None]) -> None:
    """One round of the poller: each test guest's vCPU threads at nice 19, or 0 while typed into.
    ``known``, kept from round to round: QEMU pid -> None if not a test VM's, else its name and the nice
    this poller gave each vCPU thread."""
    alive = _qemu_pids()
    for pid in alive:
        if pid not in known:
            name = _test_guest_name(pid)
            known[pid] = None if name is None else (name, {})
        guest = known[pid]
        if guest is not None:
            name, given = guest
            _set_vcpu_priority(pid, 0 if (TYPED_INTO / name).exists() else NICE, given)
    for pid in set(known) - set(alive):
        del known[pid]


def _set_vcpu_priority(pid: int, nice: int, given: dict[int, int]) -> None:
    """Each vCPU thread of ``pid`` at ``nice``, unless ``given`` (what was set before) says it is."""
    for tid in _vcpu_threads(pid):
        if given.get(tid) != nice:
            with contextlib.suppress(OSError):  # the thread or the VM is gone already
                os.setpriority(os.PRIO_PROCESS, tid, nice)
                given[tid] = nice


def _qemu_pids() -> list[int]:
    pids = []
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (PROC / entry.name / "comm").read_bytes().startswith(b"qemu-system"):
                    pids.append(int(entry.name))
    return pids


def _test_guest_name(pid: int) -> str | None:
    try:
        found = TEST_GUEST.search((PROC / str(pid) / "cmdline").read_bytes())
    except OSError:
        return None
    return found.group(1).decode() if found else None


def _vcpu_threads(pid: int) -> list[int]:
    threads = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(PROC / str(pid) / "task"):
            with contextlib.suppress(OSError):
                if VCPU_THREAD.match((PROC / str(pid) / "task" / entry.name / "comm").read_text()):
                    threads.append(int(entry.name))
    return threads

"""The test guests' priority (tests/support/idle_guests.py), on a stand-in for QEMU: a process named like
one, with a test guest's ``guest=`` argument and a thread named like a virtual CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import idle_guests

# The stand-in: its command name and a thread's as QEMU's (what the poller reads in /proc); it prints the
# thread's id and waits for stdin to close.
STAND_IN = """
import sys, threading
from pathlib import Path
Path("/proc/self/comm").write_text("qemu-system-x86")
def vcpu():
    Path(f"/proc/self/task/{threading.get_native_id()}/comm").write_text("CPU 0/TCG")
    print(threading.get_native_id(), flush=True)
    sys.stdin.read()
thread = threading.Thread(target=vcpu)
thread.start()
thread.join()
"""


@pytest.fixture
def guest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    """A stand-in test guest: its name and its vCPU thread's id; the marks in a directory of this test."""
    monkeypatch.setattr(idle_guests, "TYPED_INTO", tmp_path / "typed-into")
    name = f"limen-test-{os.getpid()}-{threading.get_native_id()}"
    process = subprocess.Popen([sys.executable, "-c", STAND_IN, f"guest={name},debug-threads=on"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdin is not None
    try:
        yield name, int(process.stdout.readline())
    finally:
        process.stdin.close()
        process.wait(timeout=10)


def test_a_test_guest_idles_at_nice_19_but_not_while_typed_into(guest: tuple[str, int]) -> None:
    name, vcpu = guest
    known: dict[int, tuple[str, dict[int, int]] | None] = {}
    idle_guests.settle_guests(known)
    assert os.getpriority(os.PRIO_PROCESS, vcpu) == idle_guests.NICE

    with idle_guests.typed_into(name):
        assert os.getpriority(os.PRIO_PROCESS, vcpu) == 0, "set at once, not at the pollers' next round"
        idle_guests.settle_guests(known)  # another worker's poller, which niced it before, leaves it so
        assert os.getpriority(os.PRIO_PROCESS, vcpu) == 0
        idle_guests.settle_guests({})  # as does one that had not seen it yet
        assert os.getpriority(os.PRIO_PROCESS, vcpu) == 0

    idle_guests.settle_guests(known)
    assert os.getpriority(os.PRIO_PROCESS, vcpu) == idle_guests.NICE
    assert not list(idle_guests.TYPED_INTO.iterdir()), "the mark is removed after the block"

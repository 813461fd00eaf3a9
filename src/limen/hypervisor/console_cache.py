"""What a console's admission read of a running VM lately: :class:`ConsoleVmCache`.

A console to a running VM asks libvirt for the VM (state, VNC endpoint, owner) as its first step: one
thread hop and one XML parse per console, the largest libvirt part of admitting one (a storm of consoles
to a few VMs reads the same answer thousands of times). The cache keeps that answer for at most
``CONSOLE_VM_TTL`` seconds, and only while nothing could have changed it:

* only a running VM with a VNC port is kept (a stopped one is read afresh every time, so a console to a
  stopped VM is refused, or starts it, as before);
* every change forgets everything: libvirt's lifecycle events (in its event thread, as they arrive), every
  VM event of the feed (tray, devices, metadata such as the owner, and limen's own announcements), every
  libvirt call of limen that is not a read (start, stop, edits, owner changes, snapshots, ...: when it
  returns, whether it succeeded or not), and a host going down or coming back;
* an answer is kept only if no such change came while it was being read (an epoch taken before the read).

What remains is the time a change made outside limen takes to arrive as an event (milliseconds): a console
opened in that window to a VM that was just stopped finds its VNC server gone (VNC_CONNECTION_FAILED or
VM_STOPPED) instead of VM_NOT_RUNNING. Only a console's admission uses the cache (its ticket's ``POST`` and
its WebSocket); revocation's re-check and the "did the VM stop" check after a VNC close always read libvirt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Final

from limen.hypervisor.models import Vm

# How long an answer is kept at most (seconds), changes or not.
CONSOLE_VM_TTL: Final = 2.0
# Idents kept at most (a storm of consoles to many VMs does not grow it without bound).
MAX_ENTRIES: Final = 4096
# libvirt calls (their operation names, as metrics count them) that change nothing; every other call forgets.
READ_OPERATIONS: Final = frozenset({
    "get_vm", "list_vms", "locate_vm", "host_info", "host_figures", "host_stats", "sample_stats",
    "free_memory", "capabilities", "cdrom_sources", "check_name", "check_snapshot", "list_snapshots",
    "screenshot", "open_console", "probe", "connect",
})


class ConsoleVmCache:
    """Thread-safe: changes arrive from libvirt's event thread and the feed's reader."""

    def __init__(self, *, ttl: float = CONSOLE_VM_TTL, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[str, tuple[Vm, float, int]] = {}
        self._lock = threading.Lock()
        self.epoch = 0  # how many changes so far; an answer read across one is not kept

    def get(self, ident: str) -> Vm | None:
        """The VM ``ident`` (UUID or name) as read within the TTL with no change since; else None."""
        entry = self._entries.get(ident)
        if entry is None:
            return None
        vm, read_at, epoch = entry
        if epoch != self.epoch or self._clock() - read_at > self.ttl:
            self._entries.pop(ident, None)
            return None
        return vm

    def keep(self, ident: str, vm: Vm, epoch: int, read_at: float) -> None:
        """Keeps ``vm``, read from ``read_at`` on with :attr:`epoch` ``epoch`` taken before the read, when it is
        running with a VNC port and nothing changed since."""
        if not vm.is_active or vm.vnc is None or vm.vnc.port is None:
            return
        with self._lock:
            if epoch != self.epoch:
                return
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[ident] = (vm, read_at, epoch)

    def forget_all(self, *_: Any) -> None:
        """Something changed (any VM): nothing kept counts any more. Any thread; any arguments (a listener)."""
        with self._lock:
            self.epoch += 1
            self._entries.clear()

    def call_ended(self, operation: str, _seconds: float, _failure: str | None) -> None:
        """A libvirt call of limen returned (an observer of the host pool): a write forgets everything."""
        if operation not in READ_OPERATIONS:
            self.forget_all()

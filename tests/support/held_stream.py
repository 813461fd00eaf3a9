"""A stand-in for libvirt's console ``virStream`` under a real :class:`LibvirtSerialPort` (the test driver has
no consoles): its abort waits until the test lets it go, as the daemon's answer does."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from limen.hypervisor.serial_stream import LibvirtSerialPort


class HeldStream:
    """A virStream whose abort waits for ``may_finish`` (set at once with ``answered``)."""

    _o: Any = None  # no native handle to free

    def __init__(self, *, answered: bool = False) -> None:
        self.may_finish = threading.Event()
        if answered:
            self.may_finish.set()
        self.aborted = threading.Event()

    def eventAddCallback(self, events: int, callback: Any, opaque: Any) -> None:
        return None

    def eventRemoveCallback(self) -> None:
        return None

    def abort(self) -> None:
        self.aborted.set()
        self.may_finish.wait(5)


def held_stream_port(vm_uuid: str, *, answered: bool = True) -> tuple[LibvirtSerialPort, HeldStream]:
    """An open serial port of the VM ``vm_uuid`` over a :class:`HeldStream` (counted in OPEN_STREAMS)."""
    port = LibvirtSerialPort(asyncio.get_running_loop(), vm_uuid)
    stream = HeldStream(answered=answered)
    port.attach(stream)  # type: ignore[arg-type]
    return port, stream

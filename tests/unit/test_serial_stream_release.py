"""A VM's serial console streams are released on demand before the VM is undefined
(limen.hypervisor.serial_stream.release_vm_streams): libvirt 9.0 deadlocks when a stream's abort meets the
undefine. Over a stand-in for libvirt's stream (the test driver has no consoles)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from limen.hypervisor.serial_stream import OPEN_STREAMS, LibvirtSerialPort, release_vm_streams


class HeldStream:
    """A virStream whose abort waits until the test lets it go, as a daemon's answer does."""

    _o: Any = None  # no native handle to free

    def __init__(self) -> None:
        self.may_finish = threading.Event()
        self.aborted = threading.Event()

    def eventAddCallback(self, events: int, callback: Any, opaque: Any) -> None:
        return None

    def eventRemoveCallback(self) -> None:
        return None

    def abort(self) -> None:
        self.aborted.set()
        self.may_finish.wait(5)


def open_port(vm_uuid: str) -> tuple[LibvirtSerialPort, HeldStream]:
    port = LibvirtSerialPort(asyncio.get_running_loop(), vm_uuid)
    stream = HeldStream()
    port.attach(stream)  # type: ignore[arg-type]
    return port, stream


async def test_releasing_a_vms_streams_ends_its_readers_and_waits_for_each_abort() -> None:
    port, stream = open_port("vm-a")
    other, other_stream = open_port("vm-b")
    reading = asyncio.ensure_future(port.read())
    releasing = asyncio.ensure_future(release_vm_streams("vm-a"))
    assert await asyncio.wait_for(reading, 2) == b""  # the session reads the end at once
    await asyncio.to_thread(stream.aborted.wait, 2)
    await asyncio.sleep(0.05)
    assert not releasing.done()  # the abort has not been answered yet
    stream.may_finish.set()
    assert await asyncio.wait_for(releasing, 2) == 1
    assert port not in OPEN_STREAMS and other in OPEN_STREAMS  # another VM's stream is left alone
    assert not other_stream.aborted.is_set()
    other_stream.may_finish.set()
    await other.close()
    assert other not in OPEN_STREAMS


async def test_a_second_close_waits_for_the_first_ones_release() -> None:
    port, stream = open_port("vm-c")
    first = asyncio.ensure_future(port.close())  # the session's own close
    await asyncio.to_thread(stream.aborted.wait, 2)
    second = asyncio.ensure_future(port.close())  # the delete's release, while the abort runs
    await asyncio.sleep(0.05)
    assert not second.done()
    stream.may_finish.set()
    await asyncio.wait_for(asyncio.gather(first, second), 2)
    assert port not in OPEN_STREAMS

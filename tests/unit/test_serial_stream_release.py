"""A VM's serial console streams are released on demand before the VM is undefined or migrated live
(limen.hypervisor.serial_stream.release_vm_streams, held_for_migration): libvirt 9.0 deadlocks when a stream's
abort meets the free of its VM. Over a stand-in for libvirt's stream (the test driver has no consoles)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from limen.hypervisor.models import StreamRelease
from limen.hypervisor.serial_stream import (
    OPEN_STREAMS,
    LibvirtSerialPort,
    LibvirtSerialPorts,
    held_for_migration,
    release_vm_streams,
)
from tests.support.held_stream import HeldStream, held_stream_port

T = TypeVar("T")


def open_port(vm_uuid: str) -> tuple[LibvirtSerialPort, HeldStream]:
    return held_stream_port(vm_uuid, answered=False)


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


class SlowConsoles:
    """A connection whose ``virDomainOpenConsole`` waits for ``may_open`` (it is its own VM, too)."""

    def __init__(self) -> None:
        self.may_open = threading.Event()
        self.asked = threading.Event()
        self.streams: list[HeldStream] = []

    async def call(self, operation: str, func: Callable[[Any], T], *, subject: str = "",
                   timeout: float | None = None) -> T:
        return await asyncio.to_thread(func, self)

    def newStream(self, flags: int) -> HeldStream:
        self.streams.append(HeldStream(answered=True))
        return self.streams[-1]

    def lookupByUUIDString(self, uuid: str) -> SlowConsoles:
        return self

    def openConsole(self, device: str | None, stream: HeldStream, flags: int) -> None:
        self.asked.set()
        self.may_open.wait(5)


async def test_a_migration_waits_for_an_open_under_way_and_releases_what_it_opened_first() -> None:
    """An open that libvirt was answering as the migration began would hold a stream through its end."""
    consoles = SlowConsoles()
    opening = asyncio.ensure_future(LibvirtSerialPorts(consoles).open("vm-d", force=False))
    await asyncio.to_thread(consoles.asked.wait, 2)
    held: list[bool] = []

    async def migrate() -> None:
        async with held_for_migration("vm-d") as hold:
            held.append(consoles.streams[0].aborted.is_set())  # what the migration's libvirt call would see
            hold.moved = True

    migrating = asyncio.ensure_future(migrate())
    await asyncio.sleep(0.05)
    assert not held  # the migration has not begun: an open is under way
    consoles.may_open.set()
    port = await asyncio.wait_for(opening, 2)
    await asyncio.wait_for(migrating, 2)
    assert held == [True]
    assert await port.read() == b"" and port.released_for is StreamRelease.MIGRATED
    assert port not in OPEN_STREAMS

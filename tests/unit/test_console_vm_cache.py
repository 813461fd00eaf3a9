"""The console admission's cache of running VMs (hypervisor/console_cache.py): what it keeps, and that
every change forgets it, against libvirt's in-process test driver for the hypervisor's wiring."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import libvirt

from limen.hypervisor import Hypervisor, VmState
from limen.hypervisor.console_cache import ConsoleVmCache
from limen.hypervisor.models import Vm, VncEndpoint
from limen.hypervisor.vm_feed import VmEventType, VmFacts
from tests.support.console import FakeDomain, domain_xml

RUNNING = Vm("6f1c2e55-0000-4000-8000-0000000000c1", "web", VmState.RUNNING, 1, 256,
             vnc=VncEndpoint("127.0.0.1", 5901))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_running_vm_with_a_port_is_kept_until_its_ttl() -> None:
    clock = Clock()
    cache = ConsoleVmCache(ttl=2.0, clock=clock)
    cache.keep("web", RUNNING, cache.epoch, clock())
    assert cache.get("web") is RUNNING
    assert cache.get(RUNNING.uuid) is None  # kept under the ident it was asked by
    clock.now += 2.5
    assert cache.get("web") is None


def test_a_stopped_vm_or_one_without_a_port_is_never_kept() -> None:
    cache = ConsoleVmCache()
    for vm in (replace(RUNNING, state=VmState.STOPPED), replace(RUNNING, vnc=None),
               replace(RUNNING, vnc=VncEndpoint("127.0.0.1", None))):
        cache.keep("web", vm, cache.epoch, 0.0)
        assert cache.get("web") is None


def test_a_change_during_the_read_keeps_nothing_and_a_change_after_forgets_it() -> None:
    clock = Clock()
    cache = ConsoleVmCache(clock=clock)
    epoch = cache.epoch  # taken before the read
    cache.forget_all()  # an event while libvirt was being asked
    cache.keep("web", RUNNING, epoch, clock())
    assert cache.get("web") is None
    cache.keep("web", RUNNING, cache.epoch, clock())
    assert cache.get("web") is RUNNING
    cache.call_ended("get_vm", 0.001, None)  # a read changes nothing
    assert cache.get("web") is RUNNING
    cache.call_ended("set_owner", 0.001, "HYPERVISOR_UNAVAILABLE")  # a write, even a failed one
    assert cache.get("web") is None


def test_it_stays_bounded() -> None:
    cache = ConsoleVmCache(max_entries=10)
    for index in range(25):
        cache.keep(f"vm-{index}", RUNNING, cache.epoch, 0.0)
    assert len(cache._entries) <= 10


async def test_the_hypervisor_reads_a_running_vm_once_and_any_change_makes_it_read_again(
        test_hypervisor: Hypervisor) -> None:
    name = f"limen-cache-{uuid.uuid4().hex[:8]}"
    reads: list[str] = []
    test_hypervisor.hosts.observers.append(lambda operation, _s, _f: reads.append(operation))
    other = libvirt.open("test:///default")  # someone else on the same host (virsh)
    dom = other.defineXML(domain_xml(FakeDomain(name, 5977)))
    feed = test_hypervisor.feed.subscribe(lambda event: event.vm.name == name)

    async def until(event_type: VmEventType) -> None:
        async with asyncio.timeout(5):
            while (event := await feed.next_event(5)) is None or event.type is not event_type:
                pass

    try:
        dom.create()
        await until(VmEventType.STARTED)  # the changes of its start have all been told
        first = await test_hypervisor.console_vm_recent(name)
        assert first.state is VmState.RUNNING and first.vnc is not None and first.vnc.port == 5977
        assert await test_hypervisor.console_vm_recent(name) is first
        assert reads.count("get_vm") == 1  # the second came from the cache: no libvirt call

        # limen's own change (a feed announcement, here published directly) forgets it
        test_hypervisor.feed.publish(VmEventType.CHANGED, VmFacts(uuid=first.uuid, name=name,
                                                                  state=first.state, owner=None))
        assert await test_hypervisor.console_vm_recent(name) is not first
        assert reads.count("get_vm") == 2

        # a VM destroyed behind limen's back: libvirt's lifecycle event forgets it
        dom.destroy()
        await until(VmEventType.STOPPED)
        after = await test_hypervisor.console_vm_recent(name)
        assert after.state is VmState.STOPPED and not after.is_active  # the console refuses it, as before
        assert reads.count("get_vm") == 3
        assert await test_hypervisor.console_vm_recent(name) is not after  # a stopped VM is never kept
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefine()
        other.close()
        feed.__exit__(None, None, None)

"""The VM feed without libvirt: order, replay by cursor, resync, per-reader filter, bounds, shutdown."""

from __future__ import annotations

import asyncio
import threading

import libvirt
import pytest

from limen.console.handshake import vm_ended_error
from limen.errors import ErrorCode
from limen.hypervisor.events import FeedSource, lifecycle_kind
from limen.hypervisor.models import LifecycleKind, VmState
from limen.hypervisor.vm_feed import (
    Subscription,
    SubscriptionEnded,
    VmEvent,
    VmEventType,
    VmFacts,
    VmFeed,
    event_type_of,
)


def facts(name: str, owner: str | None = "alice", state: VmState | None = VmState.RUNNING) -> VmFacts:
    return VmFacts(uuid=f"uuid-{name}", name=name, state=state, owner=owner)


def everything(_event: VmEvent) -> bool:
    return True


async def drain(subscription: Subscription, count: int) -> list[VmEvent]:
    got = []
    for _ in range(count):
        event = await subscription.next_event(1.0)
        assert event is not None
        got.append(event)
    return got


async def test_events_arrive_in_order_with_increasing_cursors() -> None:
    feed = VmFeed()
    with feed.subscribe(everything) as subscription:
        feed.publish(VmEventType.STARTED, facts("a"))
        feed.publish(VmEventType.STOPPED, facts("a", state=VmState.STOPPED))
        first, second = await drain(subscription, 2)
    assert (first.type, second.type) == (VmEventType.STARTED, VmEventType.STOPPED)
    assert second.seq == first.seq + 1
    assert second.payload() == {"type": "stopped", "uuid": "uuid-a", "name": "a", "state": "stopped",
                                "owner": "alice", "at": second.at.isoformat()}
    assert feed.subscriber_count == 0


def test_only_events_published_shared_go_to_the_sharers() -> None:
    # What other limen processes hear from libvirt themselves must not reach them twice through Redis.
    feed = VmFeed()
    shared: list[VmEvent] = []
    feed.sharers.append(shared.append)
    feed.publish(VmEventType.STARTED, facts("a"))
    moving = feed.publish(VmEventType.CHANGED, facts("a"), share=True, operation={"kind": "migrate"})
    assert shared == [moving]


async def test_a_woken_reader_returns_at_once_with_nothing_and_reads_on() -> None:
    feed = VmFeed()
    with feed.subscribe(everything) as subscription:
        threading.Thread(target=subscription.wake).start()  # from any thread, as a timeout would
        assert await asyncio.wait_for(subscription.next_event(60.0), 5) is None
        feed.publish(VmEventType.STARTED, facts("a"))
        (event,) = await drain(subscription, 1)
    assert event.type is VmEventType.STARTED


async def test_publishing_from_other_threads_keeps_one_order_for_every_reader() -> None:
    feed = VmFeed(queue_size=1000)
    with feed.subscribe(everything) as one, feed.subscribe(everything) as two:
        threads = [threading.Thread(target=lambda: [feed.publish(VmEventType.CHANGED, facts("x"))
                                                     for _ in range(100)]) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seen_one = [event.seq for event in await drain(one, 400)]
        seen_two = [event.seq for event in await drain(two, 400)]
    assert seen_one == seen_two == sorted(seen_one) == list(range(1, 401))


async def test_a_reader_sees_only_what_it_may() -> None:
    feed = VmFeed()
    with feed.subscribe(lambda event: event.vm.owner == "bob") as bob:
        feed.publish(VmEventType.STARTED, facts("alices"))
        feed.publish(VmEventType.STARTED, facts("unowned", owner=None))
        feed.publish(VmEventType.STARTED, facts("bobs", owner="bob"))
        (only,) = await drain(bob, 1)
        assert await bob.next_event(0.05) is None
    assert only.vm.name == "bobs"


async def test_a_cursor_replays_what_came_after_it_even_filtered() -> None:
    feed = VmFeed()
    with feed.subscribe(everything) as first:
        cursor = first.cursor
    feed.publish(VmEventType.STARTED, facts("a"))
    feed.publish(VmEventType.STARTED, facts("b", owner="bob"))
    feed.publish(VmEventType.STOPPED, facts("a"))
    with feed.subscribe(lambda event: event.vm.owner == "alice", cursor) as again:
        assert not again.resync
        assert [(e.type, e.vm.name) for e in again.replay] == [(VmEventType.STARTED, "a"), (VmEventType.STOPPED, "a")]
        assert again.cursor == feed.cursor_of(3)
        feed.publish(VmEventType.UNDEFINED, facts("a", state=None))
        (live,) = await drain(again, 1)  # nothing replayed comes twice
    assert live.type is VmEventType.UNDEFINED


@pytest.mark.parametrize("cursor", ["0123abcd-1", "garbage", "", "-5", "x" * 60])
async def test_a_cursor_from_another_process_or_unreadable_asks_to_resync(cursor: str) -> None:
    feed = VmFeed()
    feed.publish(VmEventType.STARTED, facts("a"))
    with feed.subscribe(everything, cursor) as subscription:
        assert subscription.resync and subscription.replay == []


async def test_a_cursor_older_than_the_ring_or_from_the_future_asks_to_resync() -> None:
    feed = VmFeed(ring_size=3)
    for _ in range(5):
        feed.publish(VmEventType.CHANGED, facts("a"))
    with feed.subscribe(everything, feed.cursor_of(1)) as too_old:
        assert too_old.resync
    with feed.subscribe(everything, feed.cursor_of(2)) as just_kept:  # 3, 4, 5 are still in the ring
        assert not just_kept.resync and [e.seq for e in just_kept.replay] == [3, 4, 5]
    with feed.subscribe(everything, feed.cursor_of(9)) as future:
        assert future.resync


async def test_a_reader_that_falls_behind_is_dropped_not_buffered() -> None:
    feed = VmFeed(queue_size=4)
    with feed.subscribe(everything) as slow:
        for _ in range(50):
            feed.publish(VmEventType.CHANGED, facts("a"))
        received = await drain(slow, 4)
        with pytest.raises(SubscriptionEnded, match="behind"):
            await slow.next_event(1.0)
    assert [event.seq for event in received] == [1, 2, 3, 4]


async def test_closing_the_feed_ends_every_reader_and_later_ones_at_once() -> None:
    feed = VmFeed()
    with feed.subscribe(everything) as reader:
        feed.close()
        with pytest.raises(SubscriptionEnded, match="shutting down"):
            await reader.next_event(1.0)
        with pytest.raises(SubscriptionEnded):  # and stays ended
            await reader.next_event(1.0)
    with feed.subscribe(everything) as late, pytest.raises(SubscriptionEnded):
        await late.next_event(1.0)


@pytest.mark.parametrize(("event", "detail", "expected"), [
    (libvirt.VIR_DOMAIN_EVENT_UNDEFINED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED_REMOVED, VmEventType.UNDEFINED),
    # A rename undefines the old name: the VM itself goes on, so its pages re-read it instead of giving it up.
    (libvirt.VIR_DOMAIN_EVENT_UNDEFINED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED_RENAMED, VmEventType.CHANGED),
    (libvirt.VIR_DOMAIN_EVENT_DEFINED, libvirt.VIR_DOMAIN_EVENT_DEFINED_RENAMED, VmEventType.DEFINED),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED, VmEventType.CRASHED),
    (libvirt.VIR_DOMAIN_EVENT_CRASHED, libvirt.VIR_DOMAIN_EVENT_CRASHED_PANICKED, VmEventType.CRASHED),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED, VmEventType.STOPPED),
    # A revert stops the VM "from snapshot": the list says stopped (a "started" follows if it runs on).
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT, VmEventType.STOPPED),
    # Migrated away, it runs on elsewhere: "stopped" went to every page of it (a running VM said stopped).
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED, VmEventType.CHANGED),
])
def test_libvirt_lifecycle_events_become_feed_events(event: int, detail: int, expected: VmEventType) -> None:
    assert event_type_of(lifecycle_kind(event, detail)) is expected


def test_a_revert_is_its_own_kind_and_ends_consoles() -> None:
    kind = lifecycle_kind(libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT)
    assert kind is LifecycleKind.REVERTED and kind.ends_console


def test_a_migration_is_its_own_kind_and_ends_consoles_saying_so() -> None:
    kind = lifecycle_kind(libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED)
    assert kind is LifecycleKind.MIGRATED and kind.ends_console
    assert vm_ended_error("web", kind).code is ErrorCode.VM_MIGRATED


class _SlowConnection:
    """Stands in for a libvirt connection whose domain listing blocks until ``release`` is set."""

    def __init__(self) -> None:
        self.listing = threading.Event()
        self.release = threading.Event()

    def listAllDomains(self, _flags: int) -> list[object]:
        self.listing.set()
        self.release.wait(5)
        return []

    def domainEventRegisterAny(self, *_args: object) -> int:
        return 1

    def domainEventDeregisterAny(self, _callback_id: int) -> None:
        pass


class _Domain:
    def __init__(self, conn: _SlowConnection) -> None:
        self.conn = conn

    def connect(self) -> _SlowConnection:
        return self.conn


def test_closing_a_connection_waits_for_the_readers_call_on_it_and_retires_it() -> None:
    """The cleanup a connection runs before it closes waits while the reader is inside a libvirt call on
    it (closing under that call crashed the process in listAllDomains), and later events of that
    connection are not read at all."""
    described: list[_Domain] = []

    def describe(dom: _Domain) -> VmFacts:
        described.append(dom)
        return facts("x")

    source = FeedSource(VmFeed(), describe)  # type: ignore[arg-type]
    conn = _SlowConnection()
    unregister = source.register_on(conn)  # type: ignore[arg-type]
    assert unregister is not None
    assert conn.listing.wait(5), "the reader lists the connection's domains when it opens"
    cleaned = threading.Event()

    def clean_up() -> None:
        unregister()
        cleaned.set()

    threading.Thread(target=clean_up, daemon=True).start()
    assert not cleaned.wait(0.1), "the cleanup must wait for the call in flight"
    conn.release.set()
    assert cleaned.wait(5)
    source.on_lifecycle(_Domain(conn), LifecycleKind.STARTED)
    other = _SlowConnection()
    other.release.set()
    source.on_lifecycle(_Domain(other), LifecycleKind.STARTED)
    source.stop()
    assert source._thread is not None
    source._thread.join(5)
    assert [dom.connect() for dom in described] == [other]

"""The board of operations (limen.vm_event_relay) on a Redis stand-in: what this instance leaves there again
when it reads the shared stream again after Redis was down, and what it reads there of another's operation
whose end it may not have heard meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.exceptions

from limen.errors import ErrorCode
from limen.hypervisor.operations import Operation, Operations
from limen.hypervisor.vm_feed import VmFeed
from limen.vm_event_relay import VmEventRelay, operation_key
from tests.support.redis_stand_in import OutageRedis, until


@asynccontextmanager
async def relay_on(fake: OutageRedis,
                   monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Operations, VmEventRelay]]:
    """This instance's operations, relayed through ``fake`` (stream and board at once), reconnecting at once."""
    monkeypatch.setattr("limen.redis_stream.RECONNECT_DELAY", 0.01)
    operations = Operations()
    relay = VmEventRelay(VmFeed(), operations, "redis://localhost:1", instance_id="this-one")
    relay._stream._redis = fake
    relay._board = fake
    await relay.start()
    try:
        yield operations, relay
    finally:
        await relay.close()
        await operations.close()


async def test_operations_started_or_ended_while_redis_was_down_are_on_the_board_once_it_is_back(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # A snapshot started while Redis was down was never on the board: once Redis was back (restarted, empty),
    # the other replicas answered OPERATION_NOT_FOUND for it until it ended, and its page lost track of it.
    fake = OutageRedis()
    release = asyncio.Event()

    async def until_released(_operation: Operation) -> None:
        await release.wait()

    async def fails(_operation: Operation) -> None:
        raise LookupError("a bug")

    async with relay_on(fake, monkeypatch) as (operations, _relay):

        def start(vm: str, work: Any) -> Any:
            return operations.start(kind="snapshot", vm_uuid=f"{vm}-uuid", vm_name=vm, vm_owner="bob", user="bob",
                                    subject="first", work=work, busy=ErrorCode.SNAPSHOT_IN_PROGRESS)

        await until(lambda: fake.reads >= 2)
        fake.down = True
        await until(lambda: fake.reads >= 4)
        running = await start("pictured", until_released)
        await operations.post_start(running)  # Redis down: logged, not left
        ended = await start("broken", fails)
        await ended.ended.wait()  # its end's event was dropped as well
        async with operations.running(kind="delete", vm_uuid="gone-uuid", vm_name="gone", vm_owner=None,
                                      user="bob", subject="gone", busy=ErrorCode.SNAPSHOT_IN_PROGRESS):
            assert fake.board == {}
            fake.down = False  # back, empty
            await until(lambda: len(fake.board) == 2)
        release.set()
    posted = {key: record["operation"]["state"] for key, record in fake.board.items()}
    assert posted == {operation_key("limen", running.id): "running", operation_key("limen", ended.id): "failed"}
    assert {record["instance"] for record in fake.board.values()} == {"this-one"}
    assert fake.board[operation_key("limen", running.id)]["vm_owner"] == "bob"


async def test_an_operation_heard_running_whose_end_went_unheard_is_read_ended_from_the_board(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another replica's snapshot that ended while Redis was down: its end's event was dropped, and this
    # replica, which had heard it start, answered "running" for an hour though its end was on the board again.
    fake = OutageRedis()
    started = {"id": "f00d", "kind": "snapshot", "vm_uuid": "u", "vm_name": "web", "subject": "s", "user": "bob",
               "state": "running", "progress": 40, "error": None, "started_at": "2026-12-06T10:00:00+00:00",
               "finished_at": None}
    ended = {**started, "state": "done", "progress": 100, "finished_at": "2026-12-06T10:01:00+00:00"}
    key = operation_key("limen", "f00d")

    async with relay_on(fake, monkeypatch) as (operations, relay):

        async def state() -> str | None:
            found = await operations.find("f00d")
            return found.state.value if found is not None else None

        relay._receive({"type": "snapshot_progress", "uuid": "u", "name": "web", "state": "running",
                        "owner": "bob", "former_owner": None, "operation": started, "instance": "that-one"})
        assert (await state(), fake.gets) == ("running", 0)  # heard: the board is not read
        fake.down = True
        await until(lambda reads=fake.reads: fake.reads >= reads + 2)  # a read failed since
        assert (await state(), fake.gets) == ("running", 0)  # not asked while it cannot be read
        fake.down = False  # back, empty: the other replica has not left the end there again yet
        await until(lambda reads=fake.reads: fake.reads >= reads + 2)  # a read worked since
        assert (await state(), fake.gets) == ("running", 1)
        fake.board[key] = {"operation": ended, "vm_owner": "bob", "instance": "that-one"}  # left there again
        assert (await state(), fake.gets) == ("done", 2)
        assert (await state(), fake.gets) == ("done", 2)  # kept as heard: not read again



class _RedisTurningCancelIntoItsError(OutageRedis):
    """As redis-py may: a command cancelled midway raises a ConnectionError of its own instead."""

    def __init__(self) -> None:
        super().__init__()
        self.adding = asyncio.Event()

    async def xadd(self, *_args: Any, **_kwargs: Any) -> None:
        self.adding.set()
        try:
            await asyncio.Event().wait()  # Redis does not answer
        except asyncio.CancelledError:
            raise redis.exceptions.ConnectionError("Connection closed by server.") from None


async def test_closing_ends_the_sender_whose_redis_command_reports_the_cancellation_as_its_own_error(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # The relay's sender took the error for Redis failing, dropped the event and waited for the next one: a
    # replica's shutdown waited for it until the test's own deadline (110 s in a test run).
    fake = _RedisTurningCancelIntoItsError()
    async with relay_on(fake, monkeypatch) as (_operations, relay):
        relay._enqueue({"type": "state", "uuid": "u"})  # a VM event for the others
        await asyncio.wait_for(fake.adding.wait(), 5)  # it is being sent when the relay closes
        closing = asyncio.create_task(relay.close())
        done, _ = await asyncio.wait({closing}, timeout=5)  # not wait_for: cancelling close() proves nothing
        if not done:
            closing.cancel()
        assert done, "the relay's close() still waits for its sender"

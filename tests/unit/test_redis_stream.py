"""The shared Redis stream's reader, on a Redis stand-in: what its log lines say when Redis fails, comes back
and hands over an entry that is not one."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis.exceptions

from limen.auth.revocation import Revocation
from limen.auth.revocation_bus import RedisRevocationBus
from limen.errors import ErrorCode, LimenError
from limen.redis_stream import SharedStream
from tests.support.redis_stand_in import OutageRedis, until


class _FlakyRedis:
    """Fails one read, then gives one malformed entry, then nothing."""

    def __init__(self) -> None:
        self.reads = 0
        self.served = asyncio.Event()

    async def xrevrange(self, key: str, count: int) -> list[Any]:
        return []

    async def xread(self, streams: dict[str, str], block: int, count: int) -> list[Any]:
        self.reads += 1
        if self.reads == 1:
            raise redis.exceptions.ConnectionError("Error 111 connecting to localhost:1")
        if self.reads == 2:
            return [(b"limen:vm-events", [(b"1-0", {b"data": b"not json"})])]
        self.served.set()
        await asyncio.sleep(0.01)
        return []

    async def aclose(self) -> None:
        return None


class _DownRedis(_FlakyRedis):
    async def xrevrange(self, key: str, count: int) -> list[Any]:
        raise redis.exceptions.ConnectionError("Error 111 connecting to localhost:1")


@pytest.mark.parametrize(("what", "entries"), [("vm_event", "VM events"), ("revocation", "revocations")])
async def test_the_readers_log_lines_name_what_the_stream_holds_and_keep_their_event_names(
    what: str, entries: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # They read "vm_event from other instances cannot be read": the event name's stem pasted into a sentence.
    monkeypatch.setattr("limen.redis_stream.RECONNECT_DELAY", 0)
    stream = SharedStream("redis://localhost:1", "limen:x", lambda entry: None, what=what, entries=entries,
                          length=10)
    fake = _FlakyRedis()
    stream._redis = fake
    with caplog.at_level(logging.INFO, logger="limen.auth"):
        await stream.start()
        await asyncio.wait_for(fake.served.wait(), 5)
        await stream.close()
    said = {getattr(record, "event", None): record.getMessage() for record in caplog.records}
    assert said == {
        f"{what}_read_failed": f"{entries} from the other limen instances cannot be read (Redis ConnectionError); "
                               "retrying",
        f"{what}_read_ok": f"reading {entries} from the other limen instances again",
        f"{what}_malformed": f"ignored a malformed entry among the {entries} from the other limen instances",
    }


async def test_the_reader_tells_when_it_stops_and_starts_hearing_the_others(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("limen.redis_stream.RECONNECT_DELAY", 0.01)
    told: list[bool] = []
    stream = SharedStream("redis://localhost:1", "limen:x", lambda entry: None, what="revocation",
                          entries="revocations", length=10, on_hearing=told.append)
    fake = OutageRedis()
    stream._redis = fake
    await stream.start()
    try:
        await until(lambda: fake.reads >= 3)
        assert told == []  # nothing to tell while it hears
        fake.down = True
        await until(lambda: told == [False])
        reads = fake.reads
        await until(lambda: fake.reads >= reads + 3)
        assert told == [False]  # told once, not on every failed read
        fake.down = False
        await until(lambda: told == [False, True])
    finally:
        await stream.close()
    assert told == [False, True]  # closing is no news


async def test_a_stream_that_cannot_start_is_redis_unavailable_naming_what_it_holds() -> None:
    stream = SharedStream("redis://localhost:1", "limen:x", lambda entry: None, what="vm_event",
                          entries="VM events", length=10)
    stream._redis = _DownRedis()
    with pytest.raises(LimenError) as refused:
        await stream.start()
    assert refused.value.code is ErrorCode.REDIS_UNAVAILABLE
    assert refused.value.details == "stream of VM events (Redis) start failed: ConnectionError"
    await stream.close()



async def _bus_on(fake: OutageRedis) -> tuple[RedisRevocationBus, list[Revocation]]:
    bus = RedisRevocationBus("redis://localhost:1")
    heard: list[Revocation] = []
    bus.subscribe(heard.append)
    bus._stream._redis = fake
    await bus.start()
    await until(lambda: fake.reads >= 3)
    return bus, heard


async def test_while_revocations_cannot_be_heard_the_bus_has_this_instance_recheck_every_interval(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # Replica B could not hear replica A (Redis down): what A revoked meanwhile held on B only once Redis was
    # back (its remembered principals for up to 30 s more; its consoles until then).
    monkeypatch.setattr("limen.redis_stream.RECONNECT_DELAY", 0.01)
    monkeypatch.setattr("limen.auth.revocation_bus.UNHEARD_RECHECK_INTERVAL", 0.02)
    fake = OutageRedis()
    bus, heard = await _bus_on(fake)
    try:
        assert heard == []  # nothing while it hears: no cost on the normal path
        fake.down = True
        await until(lambda: len(heard) >= 3)
    finally:
        await bus.close()
    assert set(heard) == {Revocation.unheard()}
    count = len(heard)
    await asyncio.sleep(0.1)
    assert len(heard) == count  # closing stops it


async def test_the_bus_has_this_instance_recheck_at_once_when_it_stops_hearing_and_once_when_it_hears_again(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("limen.redis_stream.RECONNECT_DELAY", 0.01)
    monkeypatch.setattr("limen.auth.revocation_bus.UNHEARD_RECHECK_INTERVAL", 3600)
    fake = OutageRedis()
    bus, heard = await _bus_on(fake)
    try:
        fake.down = True
        await until(lambda: len(heard) == 1)
        fake.down = False
        await until(lambda: len(heard) == 2)
        reads = fake.reads
        await until(lambda: fake.reads >= reads + 5)
    finally:
        await bus.close()
    assert heard == [Revocation.unheard()] * 2

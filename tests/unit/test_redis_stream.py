"""The shared Redis stream's reader, on a Redis stand-in: what its log lines say when Redis fails, comes back
and hands over an entry that is not one."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis.exceptions

from limen.errors import ErrorCode, LimenError
from limen.redis_stream import SharedStream


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


async def test_a_stream_that_cannot_start_is_redis_unavailable_naming_what_it_holds() -> None:
    stream = SharedStream("redis://localhost:1", "limen:x", lambda entry: None, what="vm_event",
                          entries="VM events", length=10)
    stream._redis = _DownRedis()
    with pytest.raises(LimenError) as refused:
        await stream.start()
    assert refused.value.code is ErrorCode.REDIS_UNAVAILABLE
    assert refused.value.details == "stream of VM events (Redis) start failed: ConnectionError"
    await stream.close()

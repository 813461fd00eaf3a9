"""Byte-exact transport: 200 MB each way through the proxy at once, compared by SHA-256."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from limen.settings import Settings
from tests.support.console import ConsoleTranscript, FakeDomain, client, driver_uri, read_frames, running_console
from tests.support.fake_vnc import BANNER, StreamServer, deterministic_chunk

TOTAL = 200 * 10**6
CHUNK = 256 * 1024

# The database is read only at admission; what is tested is the proxy stage after it.
pytestmark = pytest.mark.same_on_any_database


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("no_leaks")
async def test_200_mb_both_ways_arrive_byte_exact(tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    async with StreamServer(send_bytes=TOTAL) as vnc:
        vnc.expect_bytes = TOTAL
        settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("vm", vnc.port)]))
        async with running_console(settings) as server, client(server.url("vm")) as ws:
            t = ConsoleTranscript()
            await read_frames(ws, t, time.monotonic(), until_binary=1)
            assert t.binary == [BANNER]
            received = hashlib.sha256(BANNER)
            sent = hashlib.sha256()

            async def upload() -> None:
                index = offset = 0
                while offset < TOTAL:
                    chunk = deterministic_chunk(10**6 + index, min(CHUNK, TOTAL - offset))
                    sent.update(chunk)
                    await ws.send(chunk)
                    index += 1
                    offset += len(chunk)

            async def download() -> int:
                count = 0
                while count < TOTAL:
                    message = await ws.recv()
                    assert isinstance(message, bytes)
                    received.update(message)
                    count += len(message)
                return count

            started = time.monotonic()
            _, downloaded = await asyncio.gather(upload(), download())
            await asyncio.wait_for(vnc.receive_done.wait(), 60)
            took = time.monotonic() - started
    assert downloaded == TOTAL
    assert received.hexdigest() == vnc.expected_send_digest() == vnc.sent_digest
    assert vnc.received_bytes == TOTAL
    assert vnc.received_digest == sent.hexdigest()
    print(f"400 MB through the console proxy in {took:.1f} s ({2 * TOTAL / took / 1e6:.0f} MB/s)")

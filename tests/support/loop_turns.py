"""Counting the iterations ("turns") of the running event loop, for tests of what runs in which one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class LoopTurns:
    """``count`` is the running loop's iterations since :meth:`counting` began: a task takes one step each."""

    def __init__(self) -> None:
        self.count = 0

    @contextlib.asynccontextmanager
    async def counting(self) -> AsyncIterator[LoopTurns]:
        async def tick() -> None:
            while True:
                await asyncio.sleep(0)
                self.count += 1

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)  # the ticker steps first in every iteration from now on
        try:
            yield self
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

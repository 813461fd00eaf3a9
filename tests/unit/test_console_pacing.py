"""The teardown pacer: a storm of session endings spreads over loop iterations, none is lost."""

from __future__ import annotations

import asyncio

from limen.console.pacing import TeardownPacer


async def test_at_most_per_turn_teardowns_run_in_one_loop_iteration_and_every_one_runs() -> None:
    loop = asyncio.get_running_loop()
    pacer = TeardownPacer(loop, per_turn=4)
    iteration = 0
    ran_in: list[int] = []

    async def tick() -> None:  # counts loop iterations: one step per iteration
        nonlocal iteration
        while True:
            await asyncio.sleep(0)
            iteration += 1

    async def teardown() -> None:
        await pacer.turn()
        ran_in.append(iteration)

    ticker = asyncio.create_task(tick())
    try:
        async with asyncio.timeout(2):
            await asyncio.gather(*(teardown() for _ in range(30)))
    finally:
        ticker.cancel()
    assert len(ran_in) == 30
    per_iteration = {turn: ran_in.count(turn) for turn in set(ran_in)}
    assert max(per_iteration.values()) <= 4
    assert len(per_iteration) >= 8  # 30 teardowns, 4 a turn
    assert ran_in == sorted(ran_in)  # in the order they asked


async def test_a_teardown_cancelled_while_waiting_gives_its_place_away() -> None:
    pacer = TeardownPacer(asyncio.get_running_loop(), per_turn=1)
    first, waiting, after = (asyncio.create_task(pacer.turn()) for _ in range(3))
    await asyncio.sleep(0)  # all three asked in this iteration: the first got the place, two wait
    assert first.done() and not waiting.done() and not after.done()
    waiting.cancel()
    async with asyncio.timeout(2):
        await after
    assert waiting.cancelled()

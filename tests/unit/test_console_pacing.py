"""The pacer: a storm of lost connections and session endings spreads over loop iterations, none is lost."""

from __future__ import annotations

import asyncio
from collections import Counter

from limen.console import pacing
from limen.console.pacing import TurnPacer
from tests.support.loop_turns import LoopTurns


async def test_at_most_per_turn_teardowns_run_in_one_loop_iteration_and_every_one_runs() -> None:
    loop = asyncio.get_running_loop()
    pacer = TurnPacer(loop, per_turn=4)
    turns = LoopTurns()
    ran_in: list[int] = []

    async def teardown() -> None:
        await pacer.turn()
        ran_in.append(turns.count)

    async with turns.counting(), asyncio.timeout(2):
        await asyncio.gather(*(teardown() for _ in range(30)))
    assert len(ran_in) == 30
    per_iteration = {turn: ran_in.count(turn) for turn in set(ran_in)}
    assert max(per_iteration.values()) <= 4
    assert len(per_iteration) >= 8  # 30 teardowns, 4 a turn
    assert ran_in == sorted(ran_in)  # in the order they asked


async def test_a_teardown_cancelled_while_waiting_gives_its_place_away() -> None:
    pacer = TurnPacer(asyncio.get_running_loop(), per_turn=1)
    first, waiting, after = (asyncio.create_task(pacer.turn()) for _ in range(3))
    await asyncio.sleep(0)  # all three asked in this iteration: the first got the place, two wait
    assert first.done() and not waiting.done() and not after.done()
    waiting.cancel()
    async with asyncio.timeout(2):
        await after
    assert waiting.cancelled()


async def test_callbacks_run_at_most_per_turn_an_iteration_in_order_and_a_failing_one_stops_none() -> None:
    loop = asyncio.get_running_loop()
    pacer = TurnPacer(loop, per_turn=3)
    turns = LoopTurns()
    ran_in: list[tuple[int, int]] = []
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))

    all_ran = asyncio.Event()

    def callback(index: int) -> None:
        ran_in.append((index, turns.count))
        if len(ran_in) == 20:
            all_ran.set()
        if index == 4:
            raise RuntimeError("a broken callback")

    try:
        async with turns.counting():
            for index in range(20):
                pacer.call(lambda index=index: callback(index))
            assert [index for index, _ in ran_in] == [0, 1, 2]  # this turn's places: called at once
            async with asyncio.timeout(2):
                await all_ran.wait()
    finally:
        loop.set_exception_handler(None)
    assert [index for index, _ in ran_in] == list(range(20))
    per_iteration = Counter(turn for _, turn in ran_in)
    assert max(per_iteration.values()) <= 3 and len(per_iteration) >= 7
    assert [str(context["exception"]) for context in reported] == ["a broken callback"]


async def test_the_lanes_of_a_loop_wait_apart() -> None:
    loop = asyncio.get_running_loop()
    lost, teardowns = pacing.pacer(pacing.CONNECTIONS_LOST, loop), pacing.pacer(pacing.TEARDOWNS, loop)
    assert lost is not teardowns and lost is pacing.pacer(pacing.CONNECTIONS_LOST, loop)
    called: list[int] = []
    all_called = asyncio.Event()

    def call(index: int) -> None:
        called.append(index)
        if len(called) == pacing.CONNECTIONS_LOST_PER_TURN * 3:
            all_called.set()

    for index in range(pacing.CONNECTIONS_LOST_PER_TURN * 3):  # a backlog in one lane ...
        pacing.when_paced(loop, pacing.CONNECTIONS_LOST, lambda index=index: call(index))
    async with asyncio.timeout(1):
        await pacing.teardown_turn()  # ... does not hold up the other
    assert len(called) == pacing.CONNECTIONS_LOST_PER_TURN
    async with asyncio.timeout(2):
        await all_called.wait()

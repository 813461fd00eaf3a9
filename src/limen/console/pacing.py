"""At most a few console endings per turn of the event loop: :func:`teardown_turn`, :func:`when_paced`.

When thousands of clients vanish together (a close storm), the event loop learns of all of them in one
poll: uvloop reads up to 48 × 1,024 socket events before it runs any callback, so every connection's
``connection_lost`` ran in the same iteration, each waking the session's tasks, whose teardowns (cancel the
runners, release the VNC socket, log, queue the audit end) then ran together in the next ones. A live
session's next read waited for all of them: measured with 9,000 consoles dropped at once, loop iterations of
100–490 ms (bench/RESULTS.md, round 25), and earlier, with only the teardowns paced, a live probe's p99 of
2–4 s during a 1,200-session storm.

Two lanes, each with its own places per turn, so that neither waits behind the other's backlog:

* :data:`CONNECTIONS_LOST`: what a WebSocket connection does when its socket is gone
  (:meth:`limen.console.ws_protocol.BoundedCloseWebSocketProtocol.connection_lost`), through
  :func:`when_paced`;
* :data:`TEARDOWNS`: a console session's teardown, through :func:`teardown_turn`.

A turn is one loop iteration: past a lane's ``per_turn`` places, the rest wait for later turns, in order,
so every iteration polls the sockets between batches. Nothing is dropped: each waiter gets its turn.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Callable
from typing import Final

# Places per loop iteration and lane (a teardown costs ≈ 0.15–0.5 ms of CPU, a connection's loss ≈ 0.05).
TEARDOWNS_PER_TURN: Final = 8
CONNECTIONS_LOST_PER_TURN: Final = 8

TEARDOWNS: Final = "teardowns"
CONNECTIONS_LOST: Final = "connections lost"
_PER_TURN = {TEARDOWNS: TEARDOWNS_PER_TURN, CONNECTIONS_LOST: CONNECTIONS_LOST_PER_TURN}


def _grant(place: asyncio.Future[None]) -> bool:
    if place.done():  # cancelled while waiting: its place goes to the next one
        return False
    place.set_result(None)
    return True


class TurnPacer:
    """The turns of one lane of one event loop. Only used from that loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, per_turn: int = TEARDOWNS_PER_TURN) -> None:
        self._loop = loop
        self.per_turn = per_turn
        self._taken = 0  # places taken in the current turn
        # Each waiter's grant: runs it (or wakes it) and says whether it took the place.
        self._waiting: deque[Callable[[], bool]] = deque()
        self._reset_scheduled = False

    def _place_now(self) -> bool:
        if self._taken < self.per_turn and not self._waiting:
            self._taken += 1
            self._schedule_reset()
            return True
        return False

    async def turn(self) -> None:
        """Returns at once while this turn has a place; otherwise when a later turn gives it one."""
        if self._place_now():
            return
        place = self._loop.create_future()
        self._waiting.append(lambda: _grant(place))
        self._schedule_reset()
        await place  # cancelled while waiting: the next turn skips it

    def call(self, callback: Callable[[], object]) -> None:
        """Calls ``callback`` now while this turn has a place; otherwise in a later turn's."""
        if self._place_now():
            callback()
            return
        self._waiting.append(lambda: self._run(callback))
        self._schedule_reset()

    def _run(self, callback: Callable[[], object]) -> bool:
        try:
            callback()
        except Exception as exc:  # as the loop treats a failing callback: reported, the others still run
            self._loop.call_exception_handler({"message": "paced callback failed", "exception": exc})
        return True

    def _schedule_reset(self) -> None:
        if not self._reset_scheduled:
            self._reset_scheduled = True
            self._loop.call_soon(self._next_turn)

    def _next_turn(self) -> None:
        """A new iteration: its places go to the waiters first (a woken task runs in the iteration after
        this one, a callback now)."""
        self._reset_scheduled = False
        self._taken = 0
        while self._waiting and self._taken < self.per_turn:
            if self._waiting.popleft()():
                self._taken += 1
        if self._waiting or self._taken:
            self._schedule_reset()


_pacers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, TurnPacer]] = weakref.WeakKeyDictionary()


def pacer(lane: str, loop: asyncio.AbstractEventLoop | None = None) -> TurnPacer:
    """``lane``'s pacer on ``loop`` (default: the running one)."""
    loop = loop or asyncio.get_running_loop()
    lanes = _pacers.get(loop)
    if lanes is None:
        lanes = _pacers[loop] = {}
    found = lanes.get(lane)
    if found is None:
        found = lanes[lane] = TurnPacer(loop, _PER_TURN[lane])
    return found


async def teardown_turn() -> None:
    """Waits for a place among this loop iteration's teardowns (see the module docstring)."""
    await pacer(TEARDOWNS).turn()


def when_paced(loop: asyncio.AbstractEventLoop, lane: str, callback: Callable[[], object]) -> None:
    """Calls ``callback`` now, or in a later iteration of ``loop`` when ``lane``'s places for this one are taken."""
    pacer(lane, loop).call(callback)

"""The tests of code that waits on deadlines: the console sessions' stages, their idle and write deadlines, the
splice's flow control and the HTTP protocol's read deadlines. The async tests of each module here run on one
event loop of their own, made by looptime, whose clock jumps to the next timer whenever the loop has nothing
else to do: a 0.1 s deadline is still 0.1 s to the code under test, and no test waits it out in real time
(~3.9 s of a serial run were such waits). The code under test reads that clock too: the session helpers hand
it ``loop.time``.

Only these loops are looptime's: its pytest plugin, which would patch every pytest-asyncio loop of the run
(~6 % more CPU in the others' event loops), is turned off in pyproject.toml.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import looptime
import pytest


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, Callable[[], Any]]:
    return {"fast_forward": looptime.new_event_loop}


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Module | pytest.Class, name: str, obj: object) -> None:
    """Gives each async test the module's loop before pytest-asyncio parametrizes it with the factory above (a
    module-wide ``pytestmark`` would mark the synchronous tests too, which pytest-asyncio warns about)."""
    if inspect.iscoroutinefunction(obj) and collector.funcnamefilter(name):
        pytest.mark.asyncio(loop_scope="module")(obj)

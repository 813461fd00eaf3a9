"""The garbage collector's policy of ``limen serve`` (limen.collector): the start's objects frozen out of every
collection, full collections spaced out and then by the heap they walk, young ones unchanged, and cycles made
later still freed."""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Callable, Iterator

import pytest
import uvicorn

from limen.collector import (
    FULL_COLLECTION_EVERY,
    MAX_STRETCH,
    CollectorState,
    FullCollectionSpacing,
    next_full_spacing,
    tune_collector,
)
from limen.settings import Settings


@pytest.fixture
def restored_collector() -> Iterator[None]:
    """A collector no server has tuned yet, and the test run's thresholds and callbacks back afterwards
    (tests/unit/conftest.py tunes it too). A server that an earlier test of the same process started left its
    spacing callback in gc.callbacks, which would move the thresholds at tune_collector's first collection.
    What a test froze stays frozen, as what the conftest froze after collection does: the run's own objects."""
    thresholds = gc.get_threshold()
    callbacks = list(gc.callbacks)
    gc.callbacks[:] = [callback for callback in callbacks if not isinstance(callback, FullCollectionSpacing)]
    yield
    gc.callbacks[:] = callbacks
    gc.set_threshold(*thresholds)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> tuple[Node, Node]:
    first, second = Node(), Node()
    first.other, second.other = second, first
    return first, second


def test_the_start_is_frozen_full_collections_are_spaced_and_later_cycles_are_still_freed(
    restored_collector: None,
) -> None:
    gc.set_threshold(700, 10, 10)  # CPython's defaults, as a server starts with
    made_at_start = [Node() for _ in range(1_000)]
    state = tune_collector()
    assert state.frozen >= len(made_at_start)  # what this call froze, not what earlier freezes (the conftest's) hold
    # Frozen: no collection walks them again (get_objects lists the collected generations only).
    assert not {id(node) for node in made_at_start} & {id(obj) for obj in gc.get_objects()}
    assert state.thresholds_before == (700, 10, 10)
    assert gc.get_threshold() == state.thresholds == (700, 10, FULL_COLLECTION_EVERY)  # young ones as before

    first, _ = cycle()
    gone = weakref.ref(first)
    del first, _
    assert gone() is not None  # a cycle: reference counting alone cannot free it
    gc.collect(0)
    assert gone() is None  # a young collection frees it, as without the tuning


def test_after_a_full_collection_the_next_waits_for_as_many_new_objects_as_it_left_alive(
    restored_collector: None,
) -> None:
    """An admission storm grows the heap by live sessions: with a fixed spacing each full collection walked
    it all again, finding almost nothing (bench/RESULTS.md, round 17)."""
    gc.set_threshold(100, 10, 10)  # a small young generation, so that a small heap is many of its collections
    made_before = [Node() for _ in range(100)]
    first = tune_collector()
    second = tune_collector()  # a second server in the same process...
    assert first.frozen >= len(made_before) > second.frozen  # ...freezes only what was made since
    assert sum(isinstance(callback, FullCollectionSpacing) for callback in gc.callbacks) == 1
    assert gc.get_threshold() == (100, 10, FULL_COLLECTION_EVERY)
    alive = [[] for _ in range(200_000)]  # tracked objects that stay: the sessions of a storm
    gc.collect()
    assert gc.get_threshold()[2] >= 200_000 // (100 * 10)  # the next full one after as many new objects
    del alive
    gc.collect()
    assert gc.get_threshold()[2] < 200_000 // (100 * 10)  # the heap is small again: so is the spacing
    assert gc.get_threshold()[:2] == (100, 10)  # young collections untouched


def test_a_heap_that_grew_by_live_objects_stretches_the_next_full_collection_and_one_full_of_garbage_does_not(
    restored_collector: None,
) -> None:
    """An admission storm's heap is its live sessions: a full collection that finds almost no garbage among
    what arrived since the last one is followed by one MAX_STRETCH times later (bench/RESULTS.md, round 26);
    one that finds the arrivals were garbage waits only as many objects as it left alive, as before."""
    gc.set_threshold(100, 10, 10)
    tune_collector()
    gc.collect()  # the previous full collection: what is alive now is what the next one starts from
    alive = [[] for _ in range(100_000)]  # tracked objects that stay: the sessions of a storm
    gc.collect()
    assert gc.get_threshold()[2] >= MAX_STRETCH * 100_000 // (100 * 10)

    garbage = [cycle() for _ in range(100_000)]  # 400,000 tracked objects (two nodes and their dicts)...
    gc.collect(1)  # ...that reach the oldest generation with the live ones...
    del garbage  # ...and die there as cycles
    gc.collect()
    threshold = gc.get_threshold()[2]
    assert 100_000 // (100 * 10) <= threshold < 2 * len(gc.get_objects(generation=2)) // (100 * 10)
    del alive


def test_the_next_full_collection_waits_for_the_garbage_expected_to_match_the_heap_left_alive() -> None:
    # Nothing found among what arrived: the longest stretch.
    assert next_full_spacing(alive=160_000, found=0, arrived=160_000) == MAX_STRETCH * 160_000
    # About 1 % garbage (an admission storm's first full collection): still the longest stretch.
    assert next_full_spacing(alive=160_000, found=2_000, arrived=162_000) == MAX_STRETCH * 160_000
    # A quarter garbage: the garbage expected after four times the heap is the heap.
    assert next_full_spacing(alive=100_000, found=25_000, arrived=100_000) == 400_000
    # All of it garbage, or more garbage than arrived: as many as it left alive, never sooner.
    assert next_full_spacing(alive=100_000, found=100_000, arrived=100_000) == 100_000
    assert next_full_spacing(alive=100_000, found=50_000, arrived=10_000) == 100_000
    # The heap shrank since the last one (sessions ended, freed by reference counting): nothing to go by.
    assert next_full_spacing(alive=10_000, found=5_000, arrived=-1_000_000) == 10_000
    assert next_full_spacing(alive=10_000, found=0, arrived=-1_000_000) == MAX_STRETCH * 10_000


def test_a_larger_setting_of_full_collections_is_kept(restored_collector: None) -> None:
    gc.set_threshold(50_000, 20, 200)
    assert tune_collector().thresholds == (50_000, 20, 200)


async def test_the_server_tunes_the_collector_once_it_has_started_and_logs_it(
    restored_collector: None, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from limen.api.app import create_app
    from limen.server import LimenServer, uvicorn_config

    started: list[bool] = []

    async def uvicorn_startup(self: uvicorn.Server, sockets: object = None) -> None:
        started.append(True)  # uvicorn's own start (lifespan, listening sockets) is not this test's

    monkeypatch.setattr(uvicorn.Server, "startup", uvicorn_startup)
    tuned: list[CollectorState] = []
    monkeypatch.setattr("limen.server.tune_collector", lambda: tuned.append(tune_collector()) or tuned[-1])
    server = LimenServer(uvicorn_config(create_app(make_settings()), make_settings()))
    with caplog.at_level(logging.INFO, logger="limen.server"):
        await server.startup()
    assert started == [True] and len(tuned) == 1
    (line,) = [record for record in caplog.records if getattr(record, "event", None) == "gc_tuned"]
    assert line.__dict__["frozen"] == tuned[0].frozen > 0

    # A start that failed (uvicorn set should_exit) does not tune anything.
    server.should_exit = True
    await server.startup()
    assert len(tuned) == 1

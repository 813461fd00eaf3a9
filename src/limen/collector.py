"""How ``limen serve`` runs CPython's cyclic garbage collector: the start's objects frozen, full
collections spaced by the heap they walk and the garbage they find.

Why: a collection walks every tracked object of the generations it collects. A started server holds
≈ 160,000 of them (modules, routes, SQLAlchemy, pydantic, i18n catalogues), which live as long as the
process, and each console session holds ≈ 190 more while it lives. During an admission storm the heap
grows fast, and CPython runs a full collection whenever the oldest generation has grown by a quarter
since the last one (and the middle generation has been collected ``threshold2`` times): measured over
2,000 admissions (bench/RESULTS.md, round 3/4), 5 full collections walked it all, found 1,382 objects to
free, and took 0.72 s of the admission's 4.3 s of CPU, each a 100–150 ms pause of the event loop.

What, once the server has started (:func:`tune_collector`):

1. collect once, then ``gc.freeze()`` what is left: the start's objects move to the permanent generation,
   which no collection walks again. They are the process's own for its whole life; what the start left
   as garbage is freed by the collection before the freeze.
2. ``threshold2`` 10 → :data:`FULL_COLLECTION_EVERY`: a full collection is considered after that many
   collections of the middle generation instead of 10 (CPython's quarter rule still applies on top).
   Young collections are unchanged, so a cycle that dies young is freed as soon as before. (A console
   leaves none: what refers back to a session, a connection or a protocol is let go when it is over,
   tests/integration/test_console_garbage.py.)
3. after every full collection, :class:`FullCollectionSpacing` sets ``threshold2`` so that the next one
   waits until the cyclic garbage expected by then is as much as the heap the last one left alive, at the
   rate that collection found garbage among what had reached the oldest generation since the one before
   (:func:`next_full_spacing`): never sooner than as many allocated tracked objects as it left alive, never
   later than :data:`MAX_STRETCH` times that, and never sooner than (2). With a fixed spacing, a heap that
   grows by live objects (9,000 consoles admitted, bench/RESULTS.md round 17) was walked whole every
   350,000 objects: 5 full collections, 0.2 s to 1 s each as the heap grew, 20 % of the admission's CPU,
   each finding about a thousand objects to free. Spaced by the heap alone (rounds 17–25: the next after as
   many objects as the last left alive, Go's default pacing), such a storm still ran four, walking 2.5
   million objects in 1.4 s (0.16 ms of CPU an admitted console, the longest 0.75 s) and finding ≈ 2,000
   objects each: Go's collector must walk the heap to free any garbage at all, CPython's full collection
   only frees the cycles that outlived the young generations, which reference counting and the young
   collections leave rare. So the garbage such a collection finds is measured, and sets the next one's
   spacing: after the first full collection of a storm (≈ 1 % garbage) the next waits for 16 times the heap
   it left (bench/RESULTS.md, round 26).

The memory this may hold: cyclic garbage that reached the oldest generation (the cycles of sessions that
ended after living through two young collections) waits for the next full collection, which comes once
the tracked objects allocated and not freed since the last one reach ``700 × 10 × 50`` = 350,000 (≈ 100 MB
at the ≈ 290 B a tracked object costs here, buffers included) or the spacing above, whichever is more. At
the rate the last collection found, that is as much garbage as the live heap (at worst the collected heap
doubles, as CPython's own quarter rule allows more often); should everything allocated from then on be
garbage that outlives the young generations, at most :data:`MAX_STRETCH` times the heap the last one left.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

# Collections of the middle generation between two full collections, at least (CPython's default: 10).
FULL_COLLECTION_EVERY = 50
# The most a full collection that found little garbage may stretch the next one's spacing, as a multiple of the
# heap it left alive: the bound on the garbage that may wait, should what arrives next be all garbage.
MAX_STRETCH = 16


@dataclass(frozen=True)
class CollectorState:
    """What :func:`tune_collector` found and did (for its log line)."""

    frozen: int  # objects this call moved to the permanent generation
    thresholds_before: tuple[int, int, int]
    thresholds: tuple[int, int, int]


def tune_collector() -> CollectorState:
    """Frees the start's garbage, freezes what is left and spaces out full collections (module docstring).

    Call it once the server has started and before it admits anyone: every object frozen here is never
    collected, which is right only for what lives as long as the process.
    """
    gc.collect()
    # What the freeze moves: the collected generations' objects. Counted before it rather than by
    # gc.get_freeze_count() after, which walks the whole permanent generation, what earlier freezes put there
    # included (a process that froze a million objects before, as the unit tests' does, paid ~40 ms a call).
    frozen = len(gc.get_objects())
    gc.freeze()
    before = gc.get_threshold()
    young, middle, _ = before
    floor = max(FULL_COLLECTION_EVERY, before[2])
    gc.set_threshold(young, middle, floor)
    if not any(isinstance(callback, FullCollectionSpacing) for callback in gc.callbacks):
        gc.callbacks.append(FullCollectionSpacing(floor))
    return CollectorState(frozen=frozen, thresholds_before=before, thresholds=gc.get_threshold())


class FullCollectionSpacing:
    """A ``gc.callbacks`` entry: after each full collection, the next waits for the (net) allocations of tracked
    objects given by :func:`next_full_spacing`, and at least ``floor`` middle collections (module docstring, 3)."""

    def __init__(self, floor: int) -> None:
        self.floor = floor
        self.alive_after_last = 0  # what the previous full collection left (after the freeze: nothing)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase != "stop" or info["generation"] != 2:
            return
        young, middle, _ = gc.get_threshold()
        # Listing the generation costs about 1 % of the collection that just walked it.
        alive = len(gc.get_objects(generation=2))
        found = info["collected"] + info["uncollectable"]
        arrived = alive + found - self.alive_after_last
        self.alive_after_last = alive
        spacing = next_full_spacing(alive=alive, found=found, arrived=arrived)
        gc.set_threshold(young, middle, max(self.floor, spacing // max(1, young * middle)))


def next_full_spacing(*, alive: int, found: int, arrived: int) -> int:
    """How many tracked objects to allocate before the next full collection (module docstring, 3).

    ``alive``: what this full collection left; ``found``: the cyclic garbage it freed; ``arrived``: how much
    more the oldest generation held for it than the previous one left, i.e. what reached it since, the garbage
    included (less what reference counting freed there meanwhile, which only makes the rate found higher).
    At the rate this collection found garbage among what arrived, the next waits until the garbage expected
    by then is as much as the heap left alive: never sooner than ``alive`` allocations (every one of them
    garbage), never later than :data:`MAX_STRETCH` × ``alive``.
    """
    arrived = max(arrived, 0)  # the heap shrank since the last one: nothing to go by but what it found
    if found * MAX_STRETCH <= arrived:
        return alive * MAX_STRETCH
    return max(alive, alive * arrived // found)

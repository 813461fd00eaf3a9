"""How ``limen serve`` runs CPython's cyclic garbage collector: the start's objects frozen, full
collections spaced by the heap they walk.

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
   Young collections are unchanged, so a cycle that dies young (most do: a session's handshake leaves
   ≈ 20 objects of cyclic garbage, collected in the youngest generations) is freed as soon as before.
3. after every full collection, :class:`FullCollectionSpacing` sets ``threshold2`` so that the next one
   waits until as many tracked objects have been allocated (and not freed) as the last one left alive,
   and never sooner than (2). With a fixed spacing, a heap that grows by live objects (9,000 consoles
   admitted, bench/RESULTS.md round 17) was walked whole every 350,000 objects: 5 full collections,
   0.2 s to 1 s each as the heap grew, 20 % of the admission's CPU, each finding about a thousand
   objects to free. Spaced by the heap, the walks cost a bounded share of the allocations whatever the
   heap's size (Go's collector paces itself the same way by default).

The memory this may hold: cyclic garbage that reached the oldest generation (the cycles of sessions that
ended after living through two young collections) waits for the next full collection, which now comes
once the tracked objects allocated and not freed since the last one reach the larger of what that one
left alive and ``700 × 10 × 50`` = 350,000 (≈ 100 MB at the ≈ 290 B a tracked object costs here, buffers
included); with CPython's defaults that was 70,000 objects or a quarter of the heap. So the garbage
waiting is bounded by the live heap: at worst the collected heap doubles before it is freed.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

# Collections of the middle generation between two full collections, at least (CPython's default: 10).
FULL_COLLECTION_EVERY = 50


@dataclass(frozen=True)
class CollectorState:
    """What :func:`tune_collector` found and did (for its log line)."""

    frozen: int  # objects moved to the permanent generation
    thresholds_before: tuple[int, int, int]
    thresholds: tuple[int, int, int]


def tune_collector() -> CollectorState:
    """Frees the start's garbage, freezes what is left and spaces out full collections (module docstring).

    Call it once the server has started and before it admits anyone: every object frozen here is never
    collected, which is right only for what lives as long as the process.
    """
    gc.collect()
    gc.freeze()
    before = gc.get_threshold()
    young, middle, _ = before
    floor = max(FULL_COLLECTION_EVERY, before[2])
    gc.set_threshold(young, middle, floor)
    if not any(isinstance(callback, FullCollectionSpacing) for callback in gc.callbacks):
        gc.callbacks.append(FullCollectionSpacing(floor))
    return CollectorState(frozen=gc.get_freeze_count(), thresholds_before=before, thresholds=gc.get_threshold())


class FullCollectionSpacing:
    """A ``gc.callbacks`` entry: after each full collection, the next waits for as many (net) allocations of
    tracked objects as the collection left alive in the oldest generation, and at least ``floor`` middle
    collections (module docstring, 3)."""

    def __init__(self, floor: int) -> None:
        self.floor = floor

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase != "stop" or info["generation"] != 2:
            return
        young, middle, _ = gc.get_threshold()
        # Listing the generation costs about 1 % of the collection that just walked it.
        alive = len(gc.get_objects(generation=2))
        gc.set_threshold(young, middle, max(self.floor, alive // max(1, young * middle)))

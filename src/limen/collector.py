"""How ``limen serve`` runs CPython's cyclic garbage collector: the start's objects frozen, full
collections less often.

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

The memory this may hold: cyclic garbage that reached the oldest generation (the cycles of sessions that
ended after living through two young collections) waits for the next full collection, which now comes
after at most ``700 × 10 × 50`` = 350,000 tracked objects allocated and not freed (≈ 100 MB at the
≈ 290 B a tracked object costs here, buffers included), or a quarter of the heap, whichever is larger;
with CPython's defaults that was 70,000 objects or a quarter of the heap. On a large server the quarter
rule decides in both cases (9,000 live sessions are ≈ 1.7 million objects); the bound is still a bound.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

# Collections of the middle generation between two full collections (CPython's default: 10).
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
    gc.set_threshold(young, middle, max(FULL_COLLECTION_EVERY, before[2]))
    return CollectorState(frozen=gc.get_freeze_count(), thresholds_before=before, thresholds=gc.get_threshold())


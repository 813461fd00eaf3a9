"""What only CPython's cyclic collector would free: limen's objects left in reference cycles."""

from __future__ import annotations

import contextlib
import gc
from collections import Counter
from collections.abc import Iterator


@contextlib.contextmanager
def cyclic_garbage() -> Iterator[Counter[str]]:
    """Counts, by type, of limen's objects that became cyclic garbage within the block (filled on exit)."""
    found: Counter[str] = Counter()
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds unreachable goes to gc.garbage, not away
    try:
        yield found
        gc.collect()
        found.update(f"{type(obj).__module__}.{type(obj).__qualname__}" for obj in gc.garbage
                     if type(obj).__module__.startswith("limen"))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()

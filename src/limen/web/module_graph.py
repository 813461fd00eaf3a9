"""The static import graph of an ES module, so a page can have the browser fetch another page's modules ahead.

A browser finds a module's imports only once the module has arrived (noVNC's ``core/rfb.js``: 52 modules,
4 levels); the VM details page names every module of the console page (``<link rel="prefetch">``) so the
console finds them cached. Only relative specifiers (``./x.js``,
``../y.js``) are followed: the libraries limen serves use nothing else, and a bare specifier could not be
fetched without an import map anyway.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

# `import … from "x"`, `export … from "x"` and `import "x"`; not `import("x")` (loaded on demand).
_STATIC_IMPORT = re.compile(r"""^\s*(?:import|export)\s(?:[^;'"]*?\sfrom\s*)?["'](\.{1,2}/[^"']+)["']""", re.M)


@lru_cache(maxsize=16)
def module_graph(directory: Path, entry: str) -> tuple[str, ...]:
    """Every module ``entry`` (a path relative to ``directory``) imports statically, transitively, as paths
    relative to ``directory``: ``entry`` first, then in the order they are first met. Modules outside
    ``directory`` or missing are left out (the browser reports those itself)."""
    root = directory.resolve()
    order: list[str] = []
    pending = [root / entry]
    while pending:
        module = pending.pop(0).resolve()
        if not module.is_relative_to(root) or not module.is_file():
            continue
        name = module.relative_to(root).as_posix()
        if name in order:
            continue
        order.append(name)
        text = module.read_text(encoding="utf-8", errors="replace")
        pending.extend(module.parent / spec for spec in _STATIC_IMPORT.findall(text))
    return tuple(order)

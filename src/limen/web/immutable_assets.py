"""noVNC under an address that names its content, cached by browsers for good.

The console page imports 52 noVNC modules; asking limen for each of them on every console open (or
revalidating each) is most of the time from a click to a live screen. Served under
``/static/novnc-<digest>/`` — the digest covers every file's path, size and modification time — they can be
``immutable``: another noVNC is another address, so a browser never keeps a stale copy. The VM details page
asks for them ahead (``<link rel="prefetch">``) while its user reads it, so the console finds them cached.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

IMMUTABLE = "public, max-age=31536000, immutable"


@lru_cache(maxsize=8)
def content_digest(directory: Path) -> str:
    """A short digest of every file under ``directory`` (path, size, modification time): files are read once,
    at start-up, not hashed byte by byte (a few hundred stat calls)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(directory).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


class ImmutableStaticFiles(StaticFiles):
    """Static files whose address changes with their content: cached a year, never revalidated."""

    def file_response(self, full_path: PathLike, stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = IMMUTABLE
        return response

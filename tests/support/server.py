"""A real ``limen serve`` process for tests, started and stopped by the test that needs it: the cluster's
:class:`~scripts.cluster_parts.limen_process.LimenProcess` on the tests' database (SQLite in its data dir,
or its own PostgreSQL database under ``LIMEN_TEST_DATABASE=postgresql``) and with an admin's headers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scripts.cluster_parts import limen_process
from scripts.cluster_parts.limen_process import LIMEN_BIN

from tests.support.databases import database_url_for, on_postgresql

__all__ = ["LIMEN_BIN", "LimenProcess"]


class LimenProcess(limen_process.LimenProcess):
    def __init__(self, env: Mapping[str, str], log_path: Path, **options: Any) -> None:
        merged = {**os.environ, **env}
        chosen = dict(env)
        if on_postgresql() and "LIMEN_DATABASE_URL" not in env and "LIMEN_DATA_DIR" in merged:
            chosen["LIMEN_DATABASE_URL"] = database_url_for(Path(merged["LIMEN_DATA_DIR"]))
        super().__init__(chosen, log_path, **options)
        # The database this server uses (what tests provision users and tokens into).
        self.database_url = self._env.get("LIMEN_DATABASE_URL") or database_url_for(
            Path(self._env.get("LIMEN_DATA_DIR", "/var/lib/limen")))
        # Set by the limen_server fixture: an admin's "Authorization: Bearer …" for API requests.
        self.auth_headers: dict[str, str] = {}

"""The browser scripts' own tests (node's test runner, web/tests/*.test.mjs), run as part of the Python suite.

All the files run in one node process (web/tests/all.mjs imports them; ``node --test web/tests`` would start
one per file: ~2.4 s of CPU against ~0.3 s). The run still takes ~0.5 s, so when a session's arguments take in
this file, node starts as collection starts (tests/unit/conftest.py calls :func:`start_node_tests`) and runs
on the core collection leaves idle; collection's end waits for its result (:meth:`NodeRun.finish`) and the
test reads it. The scripts are given the server's console stage table (what ``GET /api/console-stages``
answers), so the page's stage labels are checked against it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from limen.console.stage_table import CONSOLE_KINDS
from limen.settings import load_settings

WEB_TESTS = Path(__file__).resolve().parents[2] / "web" / "tests"
NODE_TIMEOUT = 120


@dataclass(frozen=True)
class NodeResult:
    returncode: int
    tap: str


@dataclass
class NodeRun:
    process: subprocess.Popen[bytes]
    output: IO[bytes]

    def finish(self) -> NodeResult:
        """Waits for node (killed after :data:`NODE_TIMEOUT`) and reads what it printed."""
        try:
            returncode = self.process.wait(timeout=NODE_TIMEOUT)
        except subprocess.TimeoutExpired:
            returncode = -9
        finally:
            self._stop()
        self.output.seek(0)
        tap = self.output.read().decode(errors="replace")
        self.output.close()
        return NodeResult(returncode, tap)

    def discard(self) -> None:
        """Ends a run whose result nobody reads (its test was not chosen, or collection failed)."""
        self._stop()
        self.output.close()

    def _stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def console_stage_table() -> str:
    settings = load_settings()
    return json.dumps({kind: stages.describe(settings) for kind, stages in CONSOLE_KINDS.items()})


def start_node_tests() -> NodeRun | None:
    """``node web/tests/all.mjs`` in the background, printing TAP as ``node --test`` does (its output in a
    temporary file, so a full pipe never stalls it); None without node."""
    node = shutil.which("node")
    if node is None:
        return None
    output = tempfile.TemporaryFile()  # noqa: SIM115 -- it outlives this function: finish() closes it
    environment = {**os.environ, "WEB_TESTS_CONSOLE_STAGES": console_stage_table()}
    process = subprocess.Popen([node, "--test-reporter=tap", str(WEB_TESTS / "all.mjs")], stdout=output,
                               stderr=subprocess.STDOUT, env=environment)
    return NodeRun(process, output)


def test_browser_scripts(request: pytest.FixtureRequest) -> None:
    result = request.config.stash.get(NODE_RESULT, None)
    if result is None:  # node was not started with collection (no node then, or an argument not recognised)
        run = start_node_tests()
        if run is None:
            pytest.fail("node is needed for the web UI (make install runs npm ci in web/)")
        result = run.finish()
    assert result.returncode == 0, result.tap[-6000:]
    assert "# fail 0" in result.tap


NODE_RUN = pytest.StashKey[NodeRun | None]()
NODE_RESULT = pytest.StashKey[NodeResult | None]()

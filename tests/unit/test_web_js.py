"""The browser scripts' own tests (node's test runner, web/tests/*.test.mjs), run as part of the Python suite.

All the files run in one node process (web/tests/all.mjs imports them; ``node --test web/tests`` would start
one per file: ~2.4 s of CPU against ~0.3 s). The run still takes wall time, so it starts as soon as collection
has chosen this test (tests/unit/conftest.py calls :func:`start_node_tests`) and runs beside the Python tests;
the test collects its result. The scripts are given the server's console stage table (what
``GET /api/console-stages`` answers), so the page's stage labels are checked against it.
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


@dataclass
class NodeRun:
    process: subprocess.Popen[bytes]
    output: IO[bytes]


def console_stage_table() -> str:
    settings = load_settings()
    return json.dumps({kind: stages.describe(settings) for kind, stages in CONSOLE_KINDS.items()})


def start_node_tests() -> NodeRun | None:
    """``node web/tests/all.mjs`` in the background, printing TAP as ``node --test`` does (its output in a
    temporary file, so a full pipe never stalls it); None without node."""
    node = shutil.which("node")
    if node is None:
        return None
    output = tempfile.TemporaryFile()  # noqa: SIM115 -- it outlives this function: the test closes it
    environment = {**os.environ, "WEB_TESTS_CONSOLE_STAGES": console_stage_table()}
    process = subprocess.Popen([node, "--test-reporter=tap", str(WEB_TESTS / "all.mjs")], stdout=output,
                               stderr=subprocess.STDOUT, env=environment)
    return NodeRun(process, output)


def stop_node_tests(run: NodeRun | None) -> None:
    """Ends a run the test did not collect (the session stopped first)."""
    if run is not None and run.process.poll() is None:
        run.process.kill()
        run.process.wait()


def test_browser_scripts(request: pytest.FixtureRequest) -> None:
    run = request.config.stash.get(NODE_RUN, None) or start_node_tests()
    if run is None:
        pytest.fail("node is needed for the web UI (make install runs npm ci in web/)")
    try:
        returncode = run.process.wait(timeout=NODE_TIMEOUT)
    finally:
        run.process.kill()
        run.output.seek(0)
        text = run.output.read().decode(errors="replace")
        run.output.close()
    assert returncode == 0, text[-6000:]
    assert "# fail 0" in text


NODE_RUN = pytest.StashKey[NodeRun | None]()

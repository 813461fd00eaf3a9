"""A small suite of timed tests run under tests/support/forked_workers.py in a pytest of its own: each test
records its worker's pid, its start and its end (tests/integration/test_forked_workers*.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]

TIMED_TEST = """
import os, time, pytest

@pytest.fixture
def timed(request, tmp_path_factory):
    began = time.monotonic()
    yield
    with open(tmp_path_factory.getbasetemp() / "intervals", "a") as file:
        file.write(f"{request.node.name} {os.getpid()} {began} {time.monotonic()}\\n")
"""


def run_timed_suite(directory: Path, suite: dict[str, str], *options: str) -> dict[str, tuple[str, float, float]]:
    """Runs ``suite`` (files of TIMED_TEST tests) under the plugin; each test's worker pid, start and end."""
    for name, text in suite.items():
        (directory / name).write_text(text)
    base = directory / "base"
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.forked_workers", f"--basetemp={base}", *options],
        cwd=directory, env=environment, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return {name: (pid, float(began), float(ended)) for name, pid, began, ended in
            (line.split() for line in (base / "intervals").read_text().splitlines())}

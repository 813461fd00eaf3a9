"""The browser scripts' own tests (node's test runner), run as part of the Python suite."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

WEB_TESTS = Path(__file__).resolve().parents[2] / "web" / "tests"


def test_console_client_state_machine() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed for the web UI (make install runs npm ci in web/)")
    result = subprocess.run(
        [node, "--test", str(WEB_TESTS)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout

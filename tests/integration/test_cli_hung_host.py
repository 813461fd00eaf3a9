"""A command line whose libvirt host accepts the connection and never answers: it says so after one timeout
and ends. It printed the error and then never exited (Python joins the thread stuck in libvirt at exit), so
`limen doctor`, a script or a cron job hung on exactly the host it was asked about."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.databases import cli_env
from tests.support.hanging_libvirt import hanging_libvirt
from tests.support.server import LIMEN_BIN

# Python processes that wait out libvirt timeouts: slow for the unit tier. No libvirtd needed.
pytestmark = [pytest.mark.integration, pytest.mark.same_on_any_database]

TIMEOUT = 1.0


@pytest.mark.parametrize("command", [["vm", "list"], ["doctor", "--timeout", "3"]], ids=["vm list", "doctor"])
def test_a_command_on_a_host_that_never_answers_says_so_and_ends(tmp_path: Path, command: list[str]) -> None:
    with hanging_libvirt() as fake:
        fake.armed = True
        env = cli_env({**os.environ, "LIMEN_LANG": "en", "LIMEN_DATA_DIR": str(tmp_path / "data"),
                       "LIMEN_LOG_DIR": str(tmp_path / "log"), "LIMEN_LIBVIRT_URI": fake.uri,
                       "LIMEN_LIBVIRT_TIMEOUT": str(TIMEOUT)})
        began = time.monotonic()
        done = subprocess.run([str(LIMEN_BIN), *command], env=env, capture_output=True, text=True, timeout=60)
        took = time.monotonic() - began
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "no answer from libvirt" in done.stdout + done.stderr
    print(f"limen {' '.join(command)}: ended after {took:.1f} s")


def test_doctors_timeout_bounds_the_whole_run_and_must_be_above_zero(tmp_path: Path) -> None:
    """Opening connected to libvirt before the deadline started, for up to LIMEN_LIBVIRT_TIMEOUT: a hung host
    made `--timeout 1` a 9 s run (here it would be 30 s and more). And -1, 0 or nan skipped every check."""
    with hanging_libvirt() as fake:
        fake.armed = True
        env = cli_env({**os.environ, "LIMEN_LANG": "en", "LIMEN_DATA_DIR": str(tmp_path / "data"),
                       "LIMEN_LOG_DIR": str(tmp_path / "log"), "LIMEN_LIBVIRT_URI": fake.uri,
                       "LIMEN_LIBVIRT_TIMEOUT": "30"})
        began = time.monotonic()
        done = subprocess.run([str(LIMEN_BIN), "--json", "doctor", "--timeout", "2"], env=env, capture_output=True,
                              text=True, timeout=120)
        took = time.monotonic() - began
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert took < 20, f"doctor --timeout 2 ran {took:.1f} s against a host that never answers"
        for bad in ("-1", "0", "nan", "inf"):
            refused = subprocess.run([str(LIMEN_BIN), "doctor", "--timeout", bad], env=env, capture_output=True,
                                     text=True, timeout=60)
            assert refused.returncode == 2 and "not a number of seconds above 0" in refused.stderr, refused.stderr

"""Feedback while a command works: a spinner with the seconds on a terminal (a real pseudo-terminal here),
one plain line in a pipe, nothing with --json; the work's own output is untouched. ``limen doctor`` (on
libvirt's test driver) and ``limen vm snapshot create`` (a real QEMU VM) show it the same way."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import QEMU_URI, TEST_POOL, TEST_POOL_DIR
from tests.support.databases import cli_env
from tests.support.server import LIMEN_BIN

# Slow for the unit tier (Python processes, one working for over a second); the snapshot test needs libvirtd.
pytestmark = pytest.mark.integration

SCRIPT = """
import sys, time
from limen.cli_progress import working
with working("copying things", as_json=sys.argv[1] == "json"):
    time.sleep(1.6)
print("result")
"""


def run(mode: str, *, tty: bool) -> tuple[str, str]:
    return run_command([sys.executable, "-c", SCRIPT, mode], tty=tty)


def run_command(command: list[str], *, tty: bool, env: dict[str, str] | None = None,
                timeout: float = 30) -> tuple[str, str]:
    """stdout (a pipe) and stderr: a pipe, or a pseudo-terminal when ``tty``."""
    env = {**os.environ, "LIMEN_LANG": "en", **(env or {})}  # English unless the test names a language
    if not tty:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        return done.stdout, done.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=follower,
                            env={**env, "TERM": "xterm", "COLUMNS": "100"})
    os.close(follower)
    out, _ = proc.communicate(timeout=timeout)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal's other end closed: all read
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    return out.decode(), seen.decode(errors="replace")


def test_a_terminal_gets_a_spinner_with_the_seconds() -> None:
    out, err = run("text", tty=True)
    assert out == "result\n"
    assert "copying things" in err and "copying things (1 s)" in err


def test_a_pipe_gets_one_plain_line_and_json_gets_nothing() -> None:
    assert run("text", tty=False) == ("result\n", "copying things…\n")
    assert run("json", tty=False) == ("result\n", "")


def doctor(tmp_path: Path, *args: str, tty: bool, lang: str = "C.UTF-8") -> tuple[str, str]:
    env = {"LIMEN_LIBVIRT_URI": "test:///default", "LIMEN_DATA_DIR": str(tmp_path / "data"),
           "LIMEN_LOG_DIR": str(tmp_path / "log"), "LIMEN_STORAGE_POOL_DIR": str(tmp_path / "pool"),
           "LANG": lang, "LIMEN_LANG": "", "LC_ALL": "", "LC_MESSAGES": ""}
    # Port 9 (discard) on loopback: nothing serves there, so the server checks fail at once.
    return run_command([str(LIMEN_BIN), *args, "doctor", "--server", "http://127.0.0.1:9", "--timeout", "20"],
                       tty=tty, env=cli_env(env), timeout=60)


def test_doctor_names_each_check_in_a_pipe_and_nothing_extra_with_json(tmp_path: Path) -> None:
    out, err = doctor(tmp_path, tty=False)
    lines = err.splitlines()
    assert lines[0] == "checking the host…"
    assert "  libvirt reachable…" in lines and "  database…" in lines
    assert "libvirt reachable" in out  # the table itself is on stdout, unchanged
    out, err = doctor(tmp_path, "--json", tty=False)
    assert err == ""
    assert any(check["name"] == "libvirt reachable" for check in json.loads(out)["checks"])


def test_doctor_names_its_checks_in_korean_on_a_korean_terminal(tmp_path: Path) -> None:
    out, err = doctor(tmp_path, tty=False, lang="ko_KR.UTF-8")
    lines = err.splitlines()
    assert lines[0] == "호스트 점검 중…"
    assert "  libvirt 연결…" in lines and "  데이터베이스…" in lines
    assert " libvirt 연결 " in out and "libvirt reachable" not in out
    out, err = doctor(tmp_path, "--json", tty=False, lang="ko_KR.UTF-8")
    assert err == "" and any(check["name"] == "libvirt reachable" for check in json.loads(out)["checks"])


def test_doctor_spins_on_a_terminal(tmp_path: Path) -> None:
    out, err = doctor(tmp_path, tty=True)
    assert "checking the host" in err
    assert "  libvirt reachable…" not in err  # the checks are named beside the spinner, not as lines
    assert "libvirt reachable" in out


def test_snapshot_create_spins_on_a_terminal_and_says_one_line_in_a_pipe(
    vm_names: Callable[[], str], tmp_path: Path
) -> None:
    env = cli_env({"LIMEN_LIBVIRT_URI": QEMU_URI, "LIMEN_STORAGE_POOL": TEST_POOL,
                   "LIMEN_STORAGE_POOL_DIR": str(TEST_POOL_DIR), "LIMEN_DATA_DIR": str(tmp_path),
                   "LIMEN_LOG_DIR": str(tmp_path / "log"), "LIMEN_VIRT_TYPE": "qemu"})
    name = vm_names()
    create = [str(LIMEN_BIN), "vm", "create", name, "--memory", "64", "--disk", "1"]
    assert run_command(create, tty=False, env=env, timeout=120)[1].startswith(f"creating {name}")
    snapshot = [str(LIMEN_BIN), "vm", "snapshot", "create", name]
    out, err = run_command([*snapshot, "one"], tty=False, env=env, timeout=120)
    assert err == f"taking snapshot one of {name}…\n  saving its disks…\n"
    assert "one" in out
    out, err = run_command([*snapshot, "two"], tty=True, env=env, timeout=120)
    assert f"taking snapshot two of {name}" in err and "…\n" not in err.replace("\r\n", "\n")
    assert "two" in out
    out, err = run_command([str(LIMEN_BIN), "--json", *snapshot[1:], "three"], tty=False, env=env, timeout=120)
    assert err == "" and json.loads(out)["name"] == "three"

"""Feedback while a command works: a spinner with the seconds on a terminal (a real pseudo-terminal here),
one plain line in a pipe, nothing with --json; the work's own output is untouched."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

# Slow for the unit tier (three Python processes, one working for over a second), no daemon needed.
pytestmark = pytest.mark.integration

SCRIPT = """
import sys, time
from limen.cli_progress import working
with working("copying things", as_json=sys.argv[1] == "json"):
    time.sleep(1.6)
print("result")
"""


def run(mode: str, *, tty: bool) -> tuple[str, str]:
    if not tty:
        done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=30)
        return done.stdout, done.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, mode], stdout=subprocess.PIPE, stderr=follower,
                            env={**os.environ, "TERM": "xterm", "COLUMNS": "100"})
    os.close(follower)
    out, _ = proc.communicate(timeout=30)
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

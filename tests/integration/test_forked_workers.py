"""tests/support/forked_workers.py, which ``make test-unit`` runs with: a small suite in a pytest of its own,
in two forked workers, with a test that fails, one that warns, one whose worker is killed under it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.timed_suite import REPOSITORY, TIMED_TEST, run_timed_suite

# They run pytest itself in subprocesses (the unit tier's runner), reaching no database.
pytestmark = [pytest.mark.integration, pytest.mark.same_on_any_database]

SUITE = {
    "pytest.ini": "[pytest]\n",
    "test_first.py": '''
import warnings
import pytest

class OddWarning(UserWarning):
    pass

@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    yield
    with open(tmp_path_factory.getbasetemp() / "teardowns", "a") as file:
        file.write(f"first {__import__('os').getpid()}\\n")

def test_passes(shared):
    pass

def test_fails_with_its_output(shared):
    print("said-by-the-failing-test")
    assert 1 + 1 == 3

def test_warns(shared):
    warnings.warn("an odd thing", OddWarning)
''',
    "test_killed.py": '''
import os, signal

def test_its_worker_is_killed():
    os.kill(os.getpid(), signal.SIGKILL)

def test_after_the_kill():
    pass
''',
    "test_others.py": "".join(f"def test_other_{n}():\n    pass\n\n" for n in range(6)),
}


def test_a_small_suite_in_two_forked_workers(tmp_path: Path) -> None:
    for name, text in SUITE.items():
        (tmp_path / name).write_text(text)
    base = tmp_path / "base"
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
                   "COLUMNS": "300"}  # pytest's own plugins only; the summary unshortened
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.forked_workers", "--forked-workers", "2",
         "-rfE", f"--basetemp={base}", "-o", "cache_dir=.cache"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60)
    output = finished.stdout
    assert finished.returncode == 1, output + finished.stderr
    assert "3 failed, 8 passed, 1 warning" in output
    assert "FAILED test_first.py::test_fails_with_its_output - assert (1 + 1) == 3" in output
    assert "said-by-the-failing-test" in output  # the worker's own capture, replayed in the report
    assert "OddWarning: an odd thing" in output  # its category found again in the parent
    assert "FAILED test_killed.py::test_its_worker_is_killed - its forked worker ended (signal SIGKILL) " \
        "while it ran" in output
    assert "FAILED test_killed.py::test_after_the_kill - its forked worker ended (signal SIGKILL) " \
        "before it ran" in output
    assert len((base / "teardowns").read_text().splitlines()) == 1  # the module's fixture ended once
    cached = json.loads((tmp_path / ".cache" / "v" / "forked_workers" / "test_durations").read_text())
    assert {"test_others.py::test_other_5", "test_first.py::test_warns"} <= set(cached)


def test_quiet_tests_run_after_the_others_two_at_a_time_and_alone_tests_last_in_one_worker(tmp_path: Path) -> None:
    suite = {
        "pytest.ini": "[pytest]\nmarkers =\n    runs_quiet: one beside it\n    runs_alone: nothing beside it\n",
        "test_shared.py": TIMED_TEST + "".join(
            f"def test_shared_{n}(timed):\n    time.sleep(0.2)\n\n" for n in range(4))
        + "@pytest.mark.runs_alone\ndef test_alone_in_a_shared_file(timed):\n    time.sleep(0.2)\n\n"
        + "@pytest.mark.runs_quiet\ndef test_quiet_in_a_shared_file(timed):\n    time.sleep(0.2)\n",
        "test_more.py": TIMED_TEST + "".join(f"def test_more_{n}(timed):\n    time.sleep(0.2)\n\n" for n in range(4)),
        "test_whole_file.py": TIMED_TEST + "pytestmark = pytest.mark.runs_alone\n\n" + "".join(
            f"def test_alone_{n}(timed):\n    time.sleep(0.1)\n\n" for n in range(2)),
        **{f"test_quiet_{letter}.py": TIMED_TEST + "pytestmark = pytest.mark.runs_quiet\n\n" + "".join(
            f"def test_quiet_{letter}{n}(timed):\n    time.sleep(0.2)\n\n" for n in range(2)) for letter in "ab"},
    }
    intervals = run_timed_suite(tmp_path, suite, "--forked-workers", "3", "-p", "no:cacheprovider")
    phases = {kind: {name: interval for name, interval in intervals.items() if kind in name}
              for kind in ("alone", "quiet")}
    phases["shared"] = {name: interval for name, interval in intervals.items()
                        if not any(kind in name for kind in ("alone", "quiet"))}
    assert [len(phases[kind]) for kind in ("shared", "quiet", "alone")] == [8, 5, 3]

    def pids(kind: str) -> set[str]:
        return {pid for pid, _, _ in phases[kind].values()}

    assert len(pids("shared")) > 1  # the others ran side by side
    assert len(pids("quiet")) == 2 and len(pids("alone")) == 1
    assert pids("shared").isdisjoint(pids("quiet")) and pids("quiet").isdisjoint(pids("alone"))
    for earlier, later in (("shared", "quiet"), ("quiet", "alone")):
        assert min(began for _, began, _ in phases[later].values()) > max(
            ended for _, _, ended in phases[earlier].values()), (earlier, later)
    # At most two quiet tests at any moment: at each start, how many others had begun and not ended.
    quiet = list(phases["quiet"].values())
    assert max(sum(1 for _, began, ended in quiet if began <= start < ended) for _, start, _ in quiet) <= 2

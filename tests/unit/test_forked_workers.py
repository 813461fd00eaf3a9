"""tests/support/forked_workers.py, which ``make test-unit`` runs with: a small suite in a pytest of its own,
in two forked workers, with a test that fails, one that warns, one whose worker is killed under it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]

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


def test_a_fresh_clone_hands_out_the_files_the_checked_in_figures_say_are_longest_first(tmp_path: Path) -> None:
    # test_b.py not in it: counted as long
    seed = {"test_c.py::test_c": 90.0, "test_d.py::test_d": 120.0, "test_a.py::test_a": 1.0}
    suite = {
        "pytest.ini": "[pytest]\n",
        "seed.json": json.dumps(seed),
        **{f"test_{letter}.py": TIMED_TEST + f"def test_{letter}(timed):\n    time.sleep(0.3)\n" for letter in "abcde"},
    }
    intervals = run_timed_suite(tmp_path, suite, "--forked-workers", "2", "--forked-durations", "seed.json",
                                "-o", "cache_dir=.cache")
    began = {name: start for name, (_, start, _) in intervals.items()}
    # Handed out: the files never timed (b, e), then the seed's longest (d, c), the shortest (a) last; in
    # collection order, without the seed, a would have been first.
    order = sorted(began, key=began.__getitem__)
    assert order[0] in ("test_b", "test_e") and order[-1] == "test_a", order


def test_a_file_counts_as_long_as_the_tests_this_run_takes_of_it(tmp_path: Path) -> None:
    """The PostgreSQL pass leaves out a file's long tests: the file is then short, whatever it is in full
    (figures per file, which the two passes overwrote in turn, handed a 170-second file out last)."""
    seed = {"test_a.py::test_long": 100.0, "test_a.py::test_short": 0.1, "test_b.py::test_b": 50.0,
            "test_c.py::test_c": 10.0, "test_d.py::test_d": 5.0, "test_e.py::test_e": 3.0}
    suite = {
        "pytest.ini": "[pytest]\n",
        "seed.json": json.dumps(seed),
        "test_a.py": TIMED_TEST + "".join(f"def test_{n}(timed):\n    time.sleep(0.2)\n\n" for n in ("long", "short")),
        **{f"test_{letter}.py": TIMED_TEST + f"def test_{letter}(timed):\n    time.sleep(0.2)\n" for letter in "bcde"},
    }
    intervals = run_timed_suite(tmp_path, suite, "--forked-workers", "2", "--forked-durations", "seed.json",
                                "--deselect", "test_a.py::test_long", "-p", "no:cacheprovider")
    # Handed out b, c, d, e, then a (short now): a worker ran other files before it. In full, a would have
    # been handed out first, the first test of a worker. (Not "began last": a worker forked late on a
    # loaded machine may ask for its first file once the other has taken four.)
    pid, began, _ = intervals["test_short"]
    assert any(other_pid == pid and other_began < began for name, (other_pid, other_began, _) in intervals.items()
               if name != "test_short"), intervals


def test_the_checked_in_figures_keep_the_tests_that_matter_and_each_files_longest() -> None:
    from tests.support.forked_workers import seed_from

    seed = seed_from({"a.py::long": 3.0, "a.py::tiny": 0.04, "b.py::tiny": 0.03, "b.py::tinier": 0.02})
    # The short tests' seconds go to their file's longest; b.py is known (short), not counted as new.
    assert seed == {"a.py::long": 3.04, "b.py::tiny": 0.05}

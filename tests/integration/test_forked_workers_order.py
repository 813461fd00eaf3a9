"""The order tests/support/forked_workers.py hands test files out in: the longest first, from the figures of
the tests a run takes, and the checked-in figures a fresh clone starts from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.timed_suite import TIMED_TEST, run_timed_suite

# They run pytest itself in subprocesses (the unit tier's runner), reaching no database.
pytestmark = [pytest.mark.integration, pytest.mark.same_on_any_database]


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
    # collection order, without the seed, a would have been first. A worker holds one file ahead, so the
    # second worker's first file (d) may start a moment before the first worker's (b) on a busy machine:
    # one of b and e is among the first two started.
    order = sorted(began, key=began.__getitem__)
    assert {"test_b", "test_e"} & set(order[:2]) and order[-1] == "test_a", order


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

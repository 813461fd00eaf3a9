"""A pytest plugin that runs the collected tests in forked processes, a whole test file at a time
(``python -m pytest -p tests.support.forked_workers --forked-workers N``): how ``make test`` runs every tier.

Why not pytest-xdist, which it replaced there: each xdist worker is a new interpreter that imports and
collects every test again (~2 s of CPU each for tests/unit), and its controller spends ~2 s more on execnet,
a third of the tier's CPU on a 2-core machine. Here the process that collected forks the workers, which
start with everything imported and collected (tests/unit/conftest.py freezes the collected objects out of
the garbage collector's walks first, so their pages stay shared). A worker asks for a file at a time (the
longest first: the sum of its selected tests' last durations, from pytest's cache, or on a fresh clone from
the figures of ``--forked-durations FILE``; per test, since two runs may take different tests of one file,
as the PostgreSQL pass does) and sends back, per test, what an xdist worker sends: its start, its reports
(pytest's own serialisable form), its warnings, its end. The parent replays them into its own hooks, so the
terminal, the exit status and ``--lf`` see one ordinary run.

A worker that dies (a crash, ``kill -9``) fails the test it was running and the rest of its file, naming
the signal or status it ended with; the other workers carry on.

Two marks hold tests back from the shared workers. Tests marked ``runs_quiet`` (a wall-clock bound of about a
second, which a machine loaded by the other workers misses) run once the others have ended, in two workers
forked then: beside at most one other such test. Tests marked ``runs_alone`` (a count of what the whole host
holds, or a storm of their own) run last, in one worker: with nothing of this run beside them, as in a run
without workers.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import threading
import warnings
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Pipe, wait
from pathlib import Path
from typing import Any

import pytest

DURATIONS_KEY = "forked_workers/test_durations"  # seconds per test id
QUIET_MARKER = "runs_quiet"
QUIET_WORKERS = 2
ALONE_MARKER = "runs_alone"

# What a worker sends: ("next",) for a file; ("events", events) when a test has ended, its events being
# ("logstart", nodeid, location), ("report", data) and ("logfinish", nodeid, location); ("events", [warning]).
Event = tuple[Any, ...]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--forked-workers", type=int, default=0, metavar="N",
                     help="run the tests in N forked processes, a test file at a time (0 or 1: in this one)")
    parser.addoption("--forked-durations", default=None, metavar="FILE",
                     help="a JSON file of seconds per test id: the order of the files for the tests this "
                          "machine's cache has not timed yet (a fresh clone's), the longest first")


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    count = session.config.getoption("forked_workers")
    if count < 2 or session.config.option.collectonly or not session.items:
        return None  # pytest's own loop
    if session.testsfailed and not session.config.option.continue_on_collection_errors:
        raise session.Interrupted(f"{session.testsfailed} error(s) during collection")
    _ForkedRun(session, count).run()
    return True


@dataclass
class _Worker:
    pid: int
    connection: Connection
    unfinished: list[int] = field(default_factory=list)  # indices of the items handed to it, in its order


class _ForkedRun:
    def __init__(self, session: pytest.Session, count: int) -> None:
        self.session = session
        self.config = session.config
        shared: list[int] = []
        quiet: list[int] = []
        alone: list[int] = []
        for index, item in enumerate(session.items):
            if item.get_closest_marker(ALONE_MARKER):
                alone.append(index)
            else:
                (quiet if item.get_closest_marker(QUIET_MARKER) else shared).append(index)
        last = _last_durations(self.config)
        # (workers, files) in turn: each phase's workers are forked once the last phase's have all ended.
        self.phases = [(count, _files_longest_first(session, shared, last)),
                       (min(count, QUIET_WORKERS), _files_longest_first(session, quiet, last)),
                       (1, _files_longest_first(session, alone, last))]
        self.files: list[tuple[str, list[int]]] = []  # the running phase's, not handed out yet
        self.durations: dict[str, float] = {}  # this run's, per test id
        self.index_of = {item.nodeid: index for index, item in enumerate(session.items)}

    def run(self) -> None:
        # Made before the fork, so that the workers make their tests' directories in one base.
        self.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
        for count, files in self.phases:
            self.files = files
            self._run_workers(count)
        # The tests this run did not take (-k, a path, another pass's marks) keep their last figures.
        if getattr(self.config, "cache", None) is not None:  # None under -p no:cacheprovider
            cached = self.config.cache.get(DURATIONS_KEY, {})
            self.config.cache.set(DURATIONS_KEY, {**cached, **self.durations})

    def _run_workers(self, count: int) -> None:
        """Forks ``count`` workers and serves them ``self.files`` until all have ended."""
        if not self.files:
            return
        if threading.active_count() > 1:  # a fork copies no thread, only the locks they may be holding
            raise pytest.UsageError("--forked-workers: threads are running after collection: "
                                    f"{[thread.name for thread in threading.enumerate()]}")
        live = {worker.connection: worker for worker in (self._fork() for _ in range(min(count, len(self.files))))}
        while live:
            for ready in wait(list(live)):
                assert isinstance(ready, Connection)
                worker = live[ready]
                try:
                    message = ready.recv()
                except (EOFError, OSError):
                    del live[ready]
                    self._ended(worker)
                    continue
                if message[0] == "next":
                    self._hand_a_file(worker)
                else:
                    self._replay(worker, message[1])

    def _fork(self) -> _Worker:
        parent_end, worker_end = Pipe()
        pid = os.fork()
        if pid == 0:  # the worker: it never returns into pytest's own loop
            status = 1
            try:
                parent_end.close()
                _WorkerRun(self.session, worker_end).run()
                status = 0
            finally:
                os._exit(status)
        worker_end.close()
        return _Worker(pid, parent_end)

    def _hand_a_file(self, worker: _Worker) -> None:
        indices: list[int] | None = None
        if self.files and not (self.session.shouldstop or self.session.shouldfail):
            indices = self.files.pop(0)[1]
            worker.unfinished.extend(indices)
        worker.connection.send(indices)

    def _replay(self, worker: _Worker, events: list[Event]) -> None:
        hook = self.config.hook
        for event in events:
            kind = event[0]
            if kind == "logstart":
                hook.pytest_runtest_logstart(nodeid=event[1], location=event[2])
            elif kind == "report":
                report = hook.pytest_report_from_serializable(config=self.config, data=event[1])
                self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration
                hook.pytest_runtest_logreport(report=report)
            elif kind == "warning":
                _, text, module, name, filename, lineno, when, nodeid, location = event
                category = getattr(importlib.import_module(module), name, UserWarning)
                warning = warnings.WarningMessage(text, category, filename, lineno)
                hook.pytest_warning_recorded.call_historic(
                    kwargs={"warning_message": warning, "when": when, "nodeid": nodeid, "location": location})
            elif kind == "logfinish":
                worker.unfinished.remove(self.index_of[event[1]])
                hook.pytest_runtest_logfinish(nodeid=event[1], location=event[2])

    def _ended(self, worker: _Worker) -> None:
        _, status = os.waitpid(worker.pid, 0)
        if status == 0 and not worker.unfinished:
            return
        how = (f"signal {signal.Signals(os.WTERMSIG(status)).name}" if os.WIFSIGNALED(status)
               else f"exit status {os.WEXITSTATUS(status)}")
        for position, index in enumerate(worker.unfinished):
            self._fail(self.session.items[index], f"its forked worker ended ({how}) "
                       + ("while it ran" if position == 0 else "before it ran"))

    def _fail(self, item: pytest.Item, text: str) -> None:
        hook = self.config.hook
        hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        report = pytest.TestReport(item.nodeid, item.location, {}, "failed", text, "call")
        hook.pytest_runtest_logreport(report=report)
        hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


class _WorkerRun:
    """One forked worker: asks for a file, runs its tests, sends each test's events when it ends."""

    def __init__(self, session: pytest.Session, connection: Connection) -> None:
        self.session = session
        self.config = session.config
        self.connection = connection

    def run(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # ^C is the parent's to report
        manager = self.config.pluginmanager
        manager.unregister(name="terminalreporter")  # the parent's terminal shows what is sent to it
        manager.register(_Forwarding(self.config, self.connection), "forked-worker-forwarding")
        capture = manager.getplugin("capturemanager")
        if capture is not None:  # its capture files are the parent's (one file offset); the worker takes its own
            capture.stop_global_capturing()
            capture.start_global_capturing()
        pending: pytest.Item | None = None  # run when the next item is known: it decides the fixtures' teardown
        while True:
            self.connection.send(("next",))
            indices: list[int] | None = self.connection.recv()
            if indices is None:
                break
            for index in indices:
                item = self.session.items[index]
                if pending is not None:
                    self.config.hook.pytest_runtest_protocol(item=pending, nextitem=item)
                pending = item
        if pending is not None:  # the last: nextitem None tears every fixture down after it
            self.config.hook.pytest_runtest_protocol(item=pending, nextitem=None)
        self.connection.close()


class _Forwarding:
    """The worker's end of the reporting: a test's events, sent in one message when it ends."""

    def __init__(self, config: pytest.Config, connection: Connection) -> None:
        self.config = config
        self.connection = connection
        self.events: list[Event] = []

    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self.events.append(("logstart", nodeid, location))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.events.append(("report", self.config.hook.pytest_report_to_serializable(config=self.config,
                                                                                     report=report)))

    def pytest_warning_recorded(self, warning_message: warnings.WarningMessage, when: str, nodeid: str,
                                location: tuple[str, int, str] | None) -> None:
        # Sent at once: pytest records a test's warnings after its logfinish.
        category = warning_message.category
        self.connection.send(("events", [("warning", str(warning_message.message), category.__module__,
                                          category.__qualname__, warning_message.filename, warning_message.lineno,
                                          when, nodeid, location)]))

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self.events.append(("logfinish", nodeid, location))
        self.connection.send(("events", self.events))
        self.events = []


def _file_of(nodeid: str) -> str:
    return nodeid.split("::")[0]


def _files_longest_first(session: pytest.Session, indices: list[int],
                         durations: dict[str, float]) -> list[tuple[str, list[int]]]:
    """The items at ``indices`` (in collection order) by file, the files whose tests took longest first."""
    by_file: dict[str, list[int]] = {}
    for index in indices:
        by_file.setdefault(_file_of(session.items[index].nodeid), []).append(index)

    def expected(entry: tuple[str, list[int]]) -> float:
        known = [durations[nodeid] for nodeid in (session.items[index].nodeid for index in entry[1])
                 if nodeid in durations]
        # A file none of whose tests was timed counts as long (it is new, or the cache was cleared): handed
        # out first, it cannot be the one a worker is left alone with at the end.
        return sum(known) if known else 1e6 + len(entry[1])

    return sorted(by_file.items(), key=lambda entry: -expected(entry))


def _last_durations(config: pytest.Config) -> dict[str, float]:
    """Seconds per test id: the last run's on this machine (pytest's cache), else the checked-in figures."""
    seed: dict[str, float] = {}
    seed_name = config.getoption("forked_durations")
    if seed_name:
        with contextlib.suppress(OSError, ValueError):
            seed = json.loads(Path(seed_name).read_text())
    if getattr(config, "cache", None) is None:  # -p no:cacheprovider
        return seed
    durations: dict[str, float] = config.cache.get(DURATIONS_KEY, {})
    return {**seed, **durations}


SEED_FLOOR = 0.05  # seconds: a test shorter than that is counted in its file's longest one


def seed_from(durations: dict[str, float]) -> dict[str, float]:
    """What ``--forked-durations`` is refreshed with: the tests of SEED_FLOOR or more; the shorter ones'
    seconds are added to their file's longest test, which is always kept, so that every file is known (a
    file none of whose tests is known counts as new, and long) and sums to its whole length (a unit test
    file of 200 short tests takes seconds)."""
    kept: dict[str, float] = {}
    longest: dict[str, str] = {}
    left_out: dict[str, float] = {}
    for nodeid, seconds in durations.items():
        path = _file_of(nodeid)
        if path not in longest or seconds > durations[longest[path]]:
            longest[path] = nodeid
        if seconds >= SEED_FLOOR:
            kept[nodeid] = seconds
        else:
            left_out[path] = left_out.get(path, 0.0) + seconds
    for path, nodeid in longest.items():  # left_out holds the longest itself when it is short
        kept[nodeid] = kept.get(nodeid, 0.0) + left_out.get(path, 0.0)
    return {nodeid: round(kept[nodeid], 2) for nodeid in sorted(kept)}


if __name__ == "__main__":  # python -m tests.support.forked_workers CACHE_FILE SEED_FILE
    import sys

    figures = seed_from(json.loads(Path(sys.argv[1]).read_text()))
    Path(sys.argv[2]).write_text("{\n" + ",\n".join(f"  {json.dumps(k)}: {v}" for k, v in figures.items()) + "\n}\n")

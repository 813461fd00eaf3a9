"""Interleaved set-up runs of source trees on SQLite and on PostgreSQL: issue 16's target 5 (PostgreSQL's
set-up within 1.2× SQLite's), measured so that the machine's drift does not decide it.

``python -m bench.database_ab --tree A=/tmp/base/src --tree B=src --rounds 3 --count 300`` starts one
PostgreSQL server (the Debian package, in a temporary directory, as ``make bench`` does) and one fake VNC
server; then per round, for each tree and database in a rotated order (reversed every other round), a fresh
``limen serve`` of that tree, ``--count`` set-ups on each sign-in path, and the server stopped. One JSON line a
run: set-up p50 (ms) per path; limen's CPU per console in all its threads and in its main thread alone (the
event loop's; the rest is the audit writer and libvirt's threads); on PostgreSQL, the commits a console
(``pg_stat_database``, which a backend reports at most once a second: a run's figure may lag by a few).
A summary per tree at the end: the medians and PostgreSQL's ratio to SQLite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sqlalchemy
from scripts.cluster_parts.postgres_process import running_postgres

from bench import procstat
from bench.ab import rotated
from bench.run import LimenSystem, load_client, raise_fd_limit
from bench.systems import FakeVnc, Processes, start_fake_vnc

PATHS = ("ticket", "cookie", "bearer")
DATABASES = ("sqlite", "postgresql")


def commits(engine: sqlalchemy.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT sum(xact_commit) FROM pg_stat_database").scalar() or 0)


def one_run(label: str, src: str, database: str, url: str, engine: sqlalchemy.Engine, processes: Processes,
            fake: FakeVnc, work: Path, count: int) -> dict[str, Any]:
    os.environ["LIMEN_BENCH_SRC"] = str(Path(src).resolve())
    on_postgresql = database == "postgresql"
    system = LimenSystem(processes, fake, work, "limen", database_url=url if on_postgresql else None)
    result: dict[str, Any] = {"tree": label, "database": database, "load": round(os.getloadavg()[0], 2)}
    try:
        target = system.url("idle")
        pid = system.pgid("idle")
        for path in PATHS:
            cpu, main_cpu = procstat.cpu_seconds(pid), procstat.main_thread_cpu_seconds(pid)
            committed = commits(engine) if on_postgresql else 0
            setup = load_client(processes, f"database-ab-{label}-{path}", [
                "setup", "--target", target, "--status-frames", "--auth", path, "--count", str(count)], timeout=600)
            result[path] = setup["setup_ms"]["p50"]
            result[f"{path}_cpu_ms"] = round((procstat.cpu_seconds(pid) - cpu) * 1000 / count, 2)
            main_cpu = procstat.main_thread_cpu_seconds(pid) - main_cpu
            result[f"{path}_main_cpu_ms"] = round(main_cpu * 1000 / count, 2)
            if on_postgresql:  # less this query's own commit
                result[f"{path}_commits"] = round((commits(engine) - committed - 1) / count, 2)
    finally:
        system.close()
    return result


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    medians: dict[str, Any] = {}
    for tree in dict.fromkeys(run["tree"] for run in runs):
        for path in PATHS:
            figures = {database: statistics.median(run[path] for run in runs
                                                   if run["tree"] == tree and run["database"] == database)
                       for database in DATABASES}
            medians[f"{tree} {path}"] = {**figures,
                                         "ratio": round(figures["postgresql"] / figures["sqlite"], 2)}
    return medians


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, metavar="LABEL=SRC",
                        help="a source tree (its src directory); give one or more")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=300, help="set-ups per sign-in path and run")
    parser.add_argument("--out", type=Path, default=Path("bench/out/database_ab.json"))
    args = parser.parse_args(argv)
    trees = [tuple(item.split("=", 1)) for item in args.tree]
    raise_fd_limit()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="limen-database-ab-") as temporary, \
            Processes(Path(temporary) / "logs") as processes, running_postgres() as (_, url):
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool)
        fake = start_fake_vnc(processes)
        combinations = [(label, src, database) for label, src in trees for database in DATABASES]
        for round_index in range(args.rounds):
            for label, src, database in rotated(combinations, round_index):
                work = Path(temporary) / f"{label}-{database}-{round_index}"
                run = one_run(label, src, database, url, engine, processes, fake, work, args.count)
                runs.append(run)
                print(json.dumps(run), flush=True)
        engine.dispose()
    medians = summary(runs)
    print(json.dumps(medians, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs, "medians": medians}, indent=2) + "\n")


if __name__ == "__main__":
    main()

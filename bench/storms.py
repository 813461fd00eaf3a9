"""Admission rate, the close storm and the reconnect storm (issue 16, targets 2 and 3).

Run from ``bench.run`` against one system, in its process (the load itself is in ``load_client``
idle-worker processes):

1. **Admission.** ``sessions`` consoles opened by ``openers`` concurrent openers (spread over worker
   processes), each worker giving up at ``window`` seconds: consoles admitted in the window, the rate, and
   the proxy's CPU seconds over the opening phase ÷ consoles. For limen, the audit rows are then counted
   in its database (live rows = admitted + the probe), waiting up to ``audit_wait`` seconds for them.
2. **Close storm.** Every worker drops all its sessions at once (TCP abort, as browsers closing). The
   time until every audit row is closed (limen), and the round trip of a separate live *probe* session
   (``echo-update``) during the storm and right after it, beside its quiet value measured before.
3. **Reconnect storm** (when ``restart`` is given): the sessions are opened again, the server is
   restarted, and each client reconnects with the console page's backoff (1, 2, 4, 8, 15, 30 s): how many
   are back, when the last one was admitted (from the moment the server answers again), and what
   failed, by kind.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy

from bench import procstat, rfb
from bench.load_client import Session, Target, WorkerSet, _merge, ask_small_update, open_session, percentiles


@dataclass(frozen=True)
class StormPlan:
    sessions: int = 9000
    openers: int = 32
    workers: int = 4
    window: float = 20.0
    audit_wait: float = 15.0
    quiet_rtts: int = 300
    after_seconds: float = 2.0
    timeout: float = 10.0


class AuditRows:
    """Counts limen's console audit rows in its database (SQLite or PostgreSQL, by its SQLAlchemy URL); reads
    only, from the benchmark's process."""

    def __init__(self, database_url: str) -> None:
        self._engine = sqlalchemy.create_engine(database_url)

    def _count(self, where: str) -> int:
        query = sqlalchemy.text(f"SELECT count(*) FROM console_sessions{where}")
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def live(self) -> int:
        return self._count(" WHERE ended_at IS NULL")

    def total(self) -> int:
        return self._count("")

    def close(self) -> None:
        self._engine.dispose()


class Probe:
    """One live session asking for a small update in a loop; keeps (time, round trip ms) samples."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.samples: list[tuple[float, float]] = []
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def quiet(self, count: int) -> dict[str, Any]:
        parser = rfb.UpdateParser(self.session.server_init.bits_per_pixel)
        quiet: list[float] = []
        for _ in range(count):
            started = time.perf_counter()
            await ask_small_update(self.session, parser)
            quiet.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.002)
        return percentiles(quiet)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        parser = rfb.UpdateParser(self.session.server_init.bits_per_pixel)
        try:
            while True:
                started = time.perf_counter()
                async with asyncio.timeout(10):
                    await ask_small_update(self.session, parser)
                self.samples.append((started, (time.perf_counter() - started) * 1000))
                await asyncio.sleep(0.002)  # ~ 400 samples a second, without hogging the client's loop
        except (Exception, asyncio.CancelledError) as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self.error = f"{type(exc).__name__}: {exc}"

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def between(self, start: float, end: float) -> dict[str, Any]:
        chosen = [rtt for at, rtt in self.samples if start <= at < end]
        return {"count": len(chosen), **percentiles(chosen)}


async def _wait_rows(rows: AuditRows, want: Callable[[int], bool], seconds: float) -> tuple[int, float]:
    """Polls the live-row count until ``want(count)`` or ``seconds`` pass; (last count, seconds waited)."""
    started = time.perf_counter()
    while True:
        count = await asyncio.to_thread(rows.live)
        waited = time.perf_counter() - started
        if want(count) or waited >= seconds:
            return count, round(waited, 3)
        await asyncio.sleep(0.05)


async def _settled_live_rows(rows: AuditRows, seconds: float = 10.0) -> int:
    """The live-row count once it stops changing (the probe's row written, earlier sessions' rows closed)."""
    deadline = time.perf_counter() + seconds
    last = await asyncio.to_thread(rows.live)
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.3)
        count = await asyncio.to_thread(rows.live)
        if count == last:
            return count
        last = count
    return last


async def measure_storms(
    target: Target, probe_target: Target, plan: StormPlan, proxy_pgid: int, database_url: str | None,
    restart: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {"sessions": plan.sessions, "openers": plan.openers, "window_s": plan.window}
    async with asyncio.timeout(plan.timeout):
        probe_session = await open_session(probe_target)
    probe = Probe(probe_session)
    audit = AuditRows(database_url) if database_url else None
    live_before = await _settled_live_rows(audit) if audit else None
    workers = max(1, min(plan.workers, plan.sessions))
    counts = [plan.sessions // workers + (1 if index < plan.sessions % workers else 0) for index in range(workers)]
    parallel = max(1, math.ceil(plan.openers / workers))
    cpu0 = procstat.cpu_seconds(proxy_pgid) if proxy_pgid else None
    rows0 = await asyncio.to_thread(audit.total) if audit else None
    worker_set = WorkerSet(target, counts, parallel, plan.timeout, deadline=plan.window)
    try:
        started = time.perf_counter()
        opened = await worker_set.read_all(plan.window + plan.timeout + 60)
        open_seconds = time.perf_counter() - started
        cpu1 = procstat.cpu_seconds(proxy_pgid) if proxy_pgid else None
        admitted = sum(o.get("opened", 0) for o in opened)
        result["admission"] = {
            "admitted": admitted, "open_seconds": round(open_seconds, 2),
            "per_second": round(admitted / max(max(o.get("seconds", 0) for o in opened), 1e-3), 1),
            "failures": _merge([o.get("failures", {}) for o in opened]),
            "proxy_cpu_s": None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 2),
            "proxy_cpu_ms_per_console": None if cpu0 is None or cpu1 is None or not admitted
            else round((cpu1 - cpu0) * 1000 / admitted, 3),
        }
        if audit is not None and live_before is not None and rows0 is not None:
            want = live_before + admitted
            live, waited = await _wait_rows(audit, lambda n: n >= want, plan.audit_wait)
            rows = await asyncio.to_thread(audit.total)
            result["admission"]["audit"] = {"live_rows": live, "expected": want, "new_rows": rows - rows0,
                                            "all_written": live >= want and rows - rows0 >= admitted,
                                            "waited_s": waited}
        print(f"    admission {result['admission']}", flush=True)

        result["rtt_quiet_ms"] = await probe.quiet(plan.quiet_rtts)
        probe.start()
        await asyncio.sleep(0.5)
        storm_at = time.perf_counter()
        worker_set.tell("close")
        closed = await worker_set.read_all(60)
        storm: dict[str, Any] = {"client_closed_s": round(time.perf_counter() - storm_at, 3),
                                 "closed": sum(c.get("closed", 0) for c in closed)}
        if audit is not None and live_before is not None:
            live, waited = await _wait_rows(audit, lambda n: n <= live_before, 60)
            storm["audit_all_closed_s"] = round(time.perf_counter() - storm_at, 3) if live <= live_before else None
            storm["live_rows_left"] = live - live_before
            end = time.perf_counter()
        else:
            end = time.perf_counter()
        await asyncio.sleep(plan.after_seconds)
        await probe.stop()
        storm["rtt_during_ms"] = probe.between(storm_at, end)
        storm["rtt_after_ms"] = probe.between(end, end + plan.after_seconds)
        storm["probe_error"] = probe.error
        result["close_storm"] = storm
        print(f"    close storm {storm}", flush=True)
    finally:
        worker_set.stop()
        await probe_session.connection.close(abort=True)
        if audit is not None:
            audit.close()

    if restart is not None:
        result["reconnect_storm"] = await _reconnect_storm(target, plan, counts, parallel, restart)
        print(f"    reconnect storm {result['reconnect_storm']}", flush=True)
    return result


async def _reconnect_storm(target: Target, plan: StormPlan, counts: list[int], parallel: int,
                           restart: Callable[[], Any]) -> dict[str, Any]:
    worker_set = WorkerSet(target, counts, parallel, plan.timeout)
    try:
        opened = await worker_set.read_all(plan.timeout * (max(counts) / parallel + 2) + 60)
        held = sum(o.get("opened", 0) for o in opened)
        stopped_at = time.perf_counter()
        # The clients learn of the restart when their sockets close; they start their backoff at once.
        restart_task = asyncio.get_running_loop().run_in_executor(None, restart)
        worker_set.tell("reconnect")
        up_at_holder = await restart_task
        up_at = up_at_holder if isinstance(up_at_holder, float) else time.perf_counter()
        reports = await worker_set.read_all(300)
        last = max((r.get("last_admitted_s") or 0.0) for r in reports)
        return {
            "held_before": held,
            "reconnected": sum(r.get("reconnected", 0) for r in reports),
            "attempts": sum(r.get("attempts", 0) for r in reports),
            "server_down_s": round(up_at - stopped_at, 2),
            "all_back_after_restart_s": round(stopped_at + last - up_at, 2),
            "failures": _merge([r.get("failures", {}) for r in reports]),
        }
    finally:
        worker_set.tell("close")
        worker_set.stop()

"""The console benchmark: raw TCP, websockify and limen against the same fake VNC server, in one run.

``python -m bench.run`` (or ``python bench/run.py``) measures, for each system: set-up time (and, for
limen, time to the first status frame), throughput of 1 and of 8 streams, the proxy's CPU seconds per GB,
small round trips, and the most concurrent idle sessions held (each one checked to still answer) with
the proxy's memory per session. It prints a table and writes JSON (``--out``). ``--smoke`` is a
seconds-long run with tiny sizes, for tests. Every process it starts is stopped when it ends, also on
an exception or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.cluster_parts.postgres_process import running_postgres

from bench.load_client import Target
from bench.procstat import time_wait_sockets
from bench.storms import StormPlan, measure_storms
from bench.systems import (
    FakeVnc,
    Limen,
    Process,
    Processes,
    StartError,
    start_fake_vnc,
    start_limen,
    start_pump,
    start_websockify,
)

SYSTEMS = ("raw", "websockify", "limen", "limen-postgresql")
# limen on a PostgreSQL server the run starts (issue 16, target 5): only what the database is part of, the
# set-up on every sign-in path and the admission and storms; streams and idle sessions never touch it.
ON_POSTGRESQL = "limen-postgresql"
# Prototypes, measured only when asked for (--systems): the raw asyncio-Protocol pump, on uvloop and on
# the standard loop. They show the ceiling of a Python proxy; they are not limen.
PROTOTYPES = ("pump", "pump-asyncio")
# limen's app with one thing swapped (bench/limen_variant.py): name → (WebSocket layer, loop).
LIMEN_VARIANTS = {
    "limen-console": ("console", "uvloop"),
    "limen-console-asyncio": ("console", "asyncio"),
    "limen-websockets": ("websockets", "uvloop"),
    "limen-sansio": ("websockets-sansio", "uvloop"),
    "limen-wsproto": ("wsproto", "uvloop"),
    # An experiment: the console's VNC StreamReader swapped for one that hands chunks back whole.
    "limen-chunk-reader": ("console+chunk-reader", "uvloop"),
}


@dataclass(frozen=True)
class Plan:
    setup_count: int = 200
    rtt_count: int = 2000
    rtt_warmup: int = 100
    stream_seconds: float = 5.0
    stream_warmup: float = 1.0
    parallel_streams: int = 8
    idle_levels: tuple[int, ...] = (1000, 5000, 9000)
    sessions_per_worker: int = 3000
    parallel_setups: int = 32  # per worker
    session_timeout: float = 10.0
    # Set-up on every sign-in path (limen; other systems ignore credentials): ticket is the page's way.
    auth_paths: tuple[str, ...] = ("ticket", "cookie", "bearer")
    # The ticket's POST alone (limen): back to back, then each after this many seconds of idle.
    ticket_idle: float = 0.02
    # 1-stream runs with updates of one small rectangle (fake server modes stream-256/-64/-16).
    rect_modes: tuple[str, ...] = ("stream-256", "stream-64", "stream-16")
    # Admission, close storm, reconnect storm (bench/storms.py); storm_sessions 0 skips them.
    storm_sessions: int = 9000
    storm_openers: int = 32
    storm_workers: int = 4
    storm_window: float = 20.0
    storm_auth: str = "bearer"
    reconnect_storm: bool = True


FULL = Plan()
SMOKE = Plan(setup_count=5, rtt_count=20, rtt_warmup=5, stream_seconds=0.5, stream_warmup=0.2,
             parallel_streams=2, idle_levels=(20,), parallel_setups=10, session_timeout=5.0,
             storm_sessions=20, storm_openers=8, storm_workers=2, storm_window=20.0)


class MeasureError(Exception):
    pass


# -- the systems under test -------------------------------------------------------------------------


class System:
    """A way to reach the fake server's modes, and the process group to charge CPU and memory to."""

    name = ""
    status_frames = False

    @property
    def database_only(self) -> bool:
        """Measure only what passes through the database (ON_POSTGRESQL)."""
        return False

    def url(self, mode: str) -> str:
        raise NotImplementedError

    def pgid(self, mode: str) -> int:
        return 0

    def fresh(self, mode: str) -> None:
        """Restarts the proxy serving ``mode``, so a memory figure starts from a clean process."""

    def close(self) -> None:
        pass


class Raw(System):
    name = "raw"

    def __init__(self, fake: FakeVnc) -> None:
        self.fake = fake

    def url(self, mode: str) -> str:
        return f"tcp://127.0.0.1:{self.fake.ports[mode]}"


class PerModeProxy(System):
    """A proxy that serves one target, so one process per fake-server mode, started on first use."""

    def __init__(self, processes: Processes, fake: FakeVnc) -> None:
        self.processes = processes
        self.fake = fake
        self.instances: dict[str, tuple[Process, int]] = {}

    def start(self, mode: str) -> tuple[Process, int]:
        raise NotImplementedError

    def _instance(self, mode: str) -> tuple[Process, int]:
        if mode not in self.instances:
            self.instances[mode] = self.start(mode)
        return self.instances[mode]

    def url(self, mode: str) -> str:
        return f"ws://127.0.0.1:{self._instance(mode)[1]}/"

    def pgid(self, mode: str) -> int:
        return self._instance(mode)[0].pid

    def fresh(self, mode: str) -> None:
        if mode in self.instances:
            self.processes.stop(self.instances.pop(mode)[0])

    def close(self) -> None:
        for mode in list(self.instances):
            self.fresh(mode)


class Websockify(PerModeProxy):
    """websockify in its default forking mode."""

    name = "websockify"

    def start(self, mode: str) -> tuple[Process, int]:
        return start_websockify(self.processes, self.fake.ports[mode], f"websockify-{mode}")


class Pump(PerModeProxy):
    """The ``ws_pump`` prototype."""

    def __init__(self, processes: Processes, fake: FakeVnc, *, uvloop: bool) -> None:
        super().__init__(processes, fake)
        self.name = "pump" if uvloop else "pump-asyncio"
        self.uvloop = uvloop

    def start(self, mode: str) -> tuple[Process, int]:
        return start_pump(self.processes, self.fake.ports[mode], f"{self.name}-{mode}", uvloop=self.uvloop)


class LimenSystem(System):
    """``limen serve`` over libvirt's test driver; one process serves every mode's domain."""

    name = "limen"
    status_frames = True

    def __init__(self, processes: Processes, fake: FakeVnc, work_dir: Path, name: str = "limen",
                 database_url: str | None = None) -> None:
        self.name = name
        self.processes = processes
        self.fake = fake
        self.work_dir = work_dir
        self.variant = LIMEN_VARIANTS.get(name)
        self.database_url = database_url  # None: SQLite in its data directory
        self.limen: Limen | None = None

    @property
    def database_only(self) -> bool:
        return self.database_url is not None

    def _server(self) -> Limen:
        if self.limen is None:
            self.limen = start_limen(self.processes, self.fake.ports, self.work_dir / self.name, self.name,
                                     self.variant, database_url=self.database_url)
        return self.limen

    def url(self, mode: str) -> str:
        return self._server().console_url(mode)

    def pgid(self, mode: str) -> int:
        return self._server().process.pid

    def fresh(self, mode: str) -> None:
        self.close()

    def restart(self) -> float:
        """Stops the server and starts it again on the same port and database; when it answers again."""
        assert self.limen is not None
        port = self.limen.port
        self.processes.stop(self.limen.process)
        self.limen = start_limen(self.processes, self.fake.ports, self.work_dir / self.name, self.name,
                                 self.variant, port=port, database_url=self.database_url)
        return time.perf_counter()

    def close(self) -> None:
        if self.limen is not None:
            self.processes.stop(self.limen.process)
            self.limen = None


# -- measurements -----------------------------------------------------------------------------------


def load_client(processes: Processes, name: str, args: list[str], timeout: float) -> dict[str, Any]:
    process = processes.start(name, [sys.executable, "-m", "bench.load_client", *args], stdout_pipe=True)
    try:
        output, _ = process.popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise MeasureError(f"{name}: no result within {timeout:g} s") from None
    finally:
        processes.stop(process)
    lines = [line for line in output.splitlines() if line.strip()]
    if process.popen.returncode != 0 or not lines:
        raise MeasureError(f"{name} failed (exit {process.popen.returncode}):\n{process.log_tail(8)}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def measure_system(system: System, processes: Processes, plan: Plan, fake: FakeVnc) -> dict[str, Any]:
    results: dict[str, Any] = {}

    def target(mode: str, auth: str = "ticket") -> list[str]:
        args = ["--target", system.url(mode), "--timeout", str(plan.session_timeout)]
        return [*args, "--status-frames", "--auth", auth] if system.status_frames else args

    def attempt(key: str, run: Callable[[], Any]) -> None:
        try:
            results[key] = run()
        except (MeasureError, StartError) as exc:
            results[key] = {"error": str(exc)}
        print(f"  {system.name:<10} {key:<10} {_brief(results[key])}", flush=True)

    def storms() -> None:
        if plan.storm_sessions:
            system.fresh("idle")
            system.url("idle"), system.url("echo-update")  # started outside the storm's event loop
            attempt("storms", lambda: asyncio.run(_storms(system, plan)))

    name = system.name
    attempt("setup", lambda: load_client(
        processes, f"client-{name}-setup", ["setup", *target("idle"), "--count", str(plan.setup_count)],
        timeout=60 + plan.setup_count * plan.session_timeout))
    if system.status_frames:  # the other sign-in paths (limen only)
        for auth in plan.auth_paths:
            if auth != "ticket":
                attempt(f"setup_{auth}", lambda auth=auth: load_client(  # type: ignore[misc]
                    processes, f"client-{name}-setup-{auth}",
                    ["setup", *target("idle", auth), "--count", str(plan.setup_count)],
                    timeout=60 + plan.setup_count * plan.session_timeout))
    if system.status_frames:  # limen: the ticket's POST alone, warm and after an idle pause
        attempt("tickets", lambda: load_client(
            processes, f"client-{name}-tickets",
            ["tickets", *target("idle"), "--count", str(plan.setup_count), "--idle", str(plan.ticket_idle)],
            timeout=60 + 2 * plan.setup_count * plan.session_timeout))
    if system.database_only:
        storms()
        system.close()
        return results
    attempt("rtt", lambda: load_client(
        processes, f"client-{name}-rtt",
        ["rtt", *target("echo-update"), "--count", str(plan.rtt_count), "--warmup", str(plan.rtt_warmup)],
        timeout=120))
    for streams in (1, plan.parallel_streams):
        attempt(f"stream_{streams}", lambda streams=streams: load_client(  # type: ignore[misc]
            processes, f"client-{name}-stream{streams}",
            ["stream", *target("stream"), "--streams", str(streams), "--seconds", str(plan.stream_seconds),
             "--warmup", str(plan.stream_warmup), "--proxy-pgid", str(system.pgid("stream")),
             "--server-pid", str(fake.process.pid)],
            timeout=60 + plan.stream_seconds + plan.stream_warmup))
    for mode in plan.rect_modes:
        attempt(f"stream_1_{mode.removeprefix('stream-')}", lambda mode=mode: load_client(  # type: ignore[misc]
            processes, f"client-{name}-{mode}",
            ["stream", *target(mode), "--streams", "1", "--seconds", str(plan.stream_seconds),
             "--warmup", str(plan.stream_warmup), "--proxy-pgid", str(system.pgid(mode)),
             "--server-pid", str(fake.process.pid)],
            timeout=60 + plan.stream_seconds + plan.stream_warmup))
    if plan.rect_modes and system.name != "raw":
        # The harness style: 256x256 updates read through the websockets library (a slower client,
        # so the proxy meets more backpressure and reads smaller chunks).
        attempt("stream_1_256_wslib", lambda: load_client(
            processes, f"client-{name}-stream-256-wslib",
            ["stream", *target("stream-256"), "--streams", "1", "--seconds", str(plan.stream_seconds),
             "--warmup", str(plan.stream_warmup), "--proxy-pgid", str(system.pgid("stream-256")),
             "--server-pid", str(fake.process.pid), "--ws-library"],
            timeout=60 + plan.stream_seconds + plan.stream_warmup))
    storms()
    levels: list[dict[str, Any]] = []
    for sessions in plan.idle_levels:
        system.fresh("echo-update")
        workers = max(1, math.ceil(sessions / plan.sessions_per_worker))
        key = f"idle_{sessions}"
        attempt(key, lambda sessions=sessions, workers=workers: load_client(  # type: ignore[misc]
            processes, f"client-{name}-idle{sessions}",
            ["idle", *target("echo-update"), "--sessions", str(sessions), "--workers", str(workers),
             "--parallel", str(plan.parallel_setups), "--proxy-pgid", str(system.pgid("echo-update"))],
            timeout=900))
        levels.append(results.pop(key))
        if levels[-1].get("held", 0) < sessions:
            break  # the next level would only fail further
    results["idle"] = levels
    system.close()
    return results


async def _storms(system: System, plan: Plan) -> dict[str, Any]:
    auth = plan.storm_auth if system.status_frames else ""
    target = Target(system.url("idle"), system.status_frames, auth=auth)
    probe = Target(system.url("echo-update"), system.status_frames, auth=auth)
    storm_plan = StormPlan(sessions=plan.storm_sessions, openers=plan.storm_openers, workers=plan.storm_workers,
                           window=plan.storm_window, timeout=plan.session_timeout)
    database_url = system.limen.database_url if isinstance(system, LimenSystem) and system.limen is not None else None
    restart = system.restart if isinstance(system, LimenSystem) and plan.reconnect_storm else None
    return await measure_storms(target, probe, storm_plan, system.pgid("idle"), database_url, restart)


def _brief(result: Any) -> str:
    if isinstance(result, dict) and "error" in result:
        return "ERROR " + str(result["error"]).splitlines()[0]
    text = json.dumps(result)
    return text if len(text) < 160 else text[:157] + "..."


# -- summary ----------------------------------------------------------------------------------------


def _get(data: Any, *path: Any) -> Any:
    for key in path:
        if isinstance(data, dict):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return None
    return data


def largest_held(result: dict[str, Any]) -> dict[str, Any] | None:
    """The idle level with the most sessions held (opened and answering)."""
    levels = result.get("idle") or []
    ok = [level for level in levels if "held" in level]
    return max(ok, key=lambda level: level["held"]) if ok else None


def summarize(systems: dict[str, dict[str, Any]], plan: Plan) -> list[tuple[str, dict[str, str]]]:
    """Rows of the table: (metric, {system: cell})."""

    def fmt(value: Any, digits: int = 2) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value)

    def pair(result: dict[str, Any], *path: str, digits: int = 2) -> str:
        section = _get(result, *path)
        if not isinstance(section, dict):
            return "-"
        return f"{fmt(section.get('p50'), digits)} / {fmt(section.get('p99'), digits)}"

    rows: list[tuple[str, dict[str, str]]] = []

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        cells = {}
        for name, result in systems.items():
            try:
                cells[name] = cell(result)
            except (TypeError, KeyError, ValueError):
                cells[name] = "-"
        rows.append((label, cells))

    row("setup p50 / p99 (ms) [limen: ticket]", lambda r: pair(r, "setup", "setup_ms"))
    for auth in plan.auth_paths:
        if auth != "ticket":
            row(f"setup p50 / p99 (ms) [limen: {auth}]",
                lambda r, auth=auth: pair(r, f"setup_{auth}", "setup_ms"))  # type: ignore[misc]
    row("first status p50 / p99 (ms)", lambda r: pair(r, "setup", "first_status_ms", digits=3))
    row("console ticket p50 / p99 (ms, before set-up)", lambda r: pair(r, "setup", "ticket_ms", digits=2))
    row("console ticket alone p50 / p99 (ms, back to back)",
        lambda r: pair(r, "tickets", "back_to_back_ms", digits=2))
    row(f"console ticket alone p50 / p99 (ms, each after {plan.ticket_idle * 1000:g} ms idle)",
        lambda r: pair(r, "tickets", "after_idle_ms", digits=2))
    row("1 stream (GB/s)", lambda r: fmt(_get(r, "stream_1", "gb_per_s")))
    streams = plan.parallel_streams
    row(f"{streams} streams (GB/s)", lambda r: fmt(_get(r, f"stream_{streams}", "gb_per_s")))
    row("proxy CPU s/GB, 1 stream", lambda r: fmt(_get(r, "stream_1", "proxy_cpu_s_per_gb")))
    row(f"proxy CPU s/GB, {streams} streams", lambda r: fmt(_get(r, f"stream_{streams}", "proxy_cpu_s_per_gb")))
    for mode in plan.rect_modes:
        side = mode.removeprefix("stream-")
        row(f"1 stream {side}x{side} rects: GB/s, CPU s/GB",
            lambda r, side=side: f"{fmt(_get(r, f'stream_1_{side}', 'gb_per_s'))}, "  # type: ignore[misc]
                                 f"{fmt(_get(r, f'stream_1_{side}', 'proxy_cpu_s_per_gb'))}")
    row("1 stream 256x256, websockets-library client: GB/s, CPU s/GB",
        lambda r: f"{fmt(_get(r, 'stream_1_256_wslib', 'gb_per_s'))}, "
                  f"{fmt(_get(r, 'stream_1_256_wslib', 'proxy_cpu_s_per_gb'))}")
    row("round trip p50 / p99 (ms)", lambda r: pair(r, "rtt", "rtt_ms", digits=3))
    row(f"admitted in {plan.storm_window:g} s (of {plan.storm_sessions}, {plan.storm_openers} openers)",
        lambda r: fmt(_get(r, "storms", "admission", "admitted")))
    row("admission rate (/s)", lambda r: fmt(_get(r, "storms", "admission", "per_second"), 1))
    row("proxy CPU ms per admitted console",
        lambda r: fmt(_get(r, "storms", "admission", "proxy_cpu_ms_per_console"), 3))
    row("audit rows all written (live / expected)", lambda r: "-" if _get(r, "storms", "admission", "audit") is None
        else f"{_get(r, 'storms', 'admission', 'audit', 'all_written')} "
             f"({_get(r, 'storms', 'admission', 'audit', 'live_rows')} / "
             f"{_get(r, 'storms', 'admission', 'audit', 'expected')})")
    row("close storm: all audit rows closed (s)", lambda r: fmt(_get(r, "storms", "close_storm", "audit_all_closed_s")))
    row("probe rtt p99 quiet / during / after (ms)", lambda r: " / ".join(fmt(v, 3) for v in (
        _get(r, "storms", "rtt_quiet_ms", "p99"), _get(r, "storms", "close_storm", "rtt_during_ms", "p99"),
        _get(r, "storms", "close_storm", "rtt_after_ms", "p99"))))
    row("reconnect storm: back / held, last after restart (s)", lambda r: "-"
        if _get(r, "storms", "reconnect_storm") is None else
        f"{_get(r, 'storms', 'reconnect_storm', 'reconnected')} / {_get(r, 'storms', 'reconnect_storm', 'held_before')}"
        f", {fmt(_get(r, 'storms', 'reconnect_storm', 'all_back_after_restart_s'))}")

    def held(result: dict[str, Any]) -> str:
        best = largest_held(result)
        if best is None:
            return "-"
        tried = max(level["sessions"] for level in result["idle"])
        return f"{best['held']} of {tried}"

    row("idle sessions held", held)

    def memory(result: dict[str, Any]) -> str:
        best = largest_held(result)
        if best is None or best.get("rss_per_session_kb") is None:
            return "-"
        return f"{best['rss_per_session_kb']:.0f} / {best['pss_per_session_kb']:.0f}"

    row("RSS / PSS per session (KB)", memory)
    return rows


def ratio(a: Any, b: Any) -> float | None:
    """a ÷ b to three places, or None when either was not measured."""
    return round(a / b, 3) if isinstance(a, int | float) and isinstance(b, int | float) and b else None


def check_targets(systems: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Issue 5's targets for limen, each with the measured value and whether it is met."""
    # The real ``limen serve``; failing that, the first limen variant measured.
    limen_names = ["limen", *(name for name in systems if name in LIMEN_VARIANTS)]
    limen_name = next((name for name in limen_names if name in systems), "limen")
    limen, websockify = systems.get(limen_name) or {}, systems.get("websockify") or {}
    checks: dict[str, dict[str, Any]] = {"system": {"value": limen_name, "target": "", "met": None}}

    def check(name: str, value: Any, goal: str, met: Callable[[Any], bool]) -> None:
        checks[name] = {"value": value, "target": goal, "met": None if value is None else bool(met(value))}

    check("setup_p50_ms", _get(limen, "setup", "setup_ms", "p50"), "<= 3 ms", lambda v: v <= 3)
    check("first_status_p99_ms", _get(limen, "setup", "first_status_ms", "p99"), "<= 2 ms", lambda v: v <= 2)
    check("stream_1_vs_websockify",
          ratio(_get(limen, "stream_1", "gb_per_s"), _get(websockify, "stream_1", "gb_per_s")),
          ">= 1.5x", lambda v: v >= 1.5)
    check("cpu_per_gb_vs_websockify",
          ratio(_get(limen, "stream_1", "proxy_cpu_s_per_gb"), _get(websockify, "stream_1", "proxy_cpu_s_per_gb")),
          "<= 0.5x", lambda v: v <= 0.5)
    check("rtt_p50_vs_websockify",
          ratio(_get(limen, "rtt", "rtt_ms", "p50"), _get(websockify, "rtt", "rtt_ms", "p50")),
          "<= 1.0x", lambda v: v <= 1.0)
    # Issue 16.
    ws_setup = _get(websockify, "setup", "setup_ms", "p50")
    for key, label in (("setup", "ticket"), ("setup_cookie", "cookie"), ("setup_bearer", "bearer")):
        check(f"i16_setup_{label}_vs_websockify", ratio(_get(limen, key, "setup_ms", "p50"), ws_setup),
              "<= 0.5x", lambda v: v <= 0.5)
    check("i16_ticket_post_p50_ms", _get(limen, "setup", "ticket_ms", "p50"), "<= 1 ms", lambda v: v <= 1)
    admitted = _get(limen, "storms", "admission", "admitted")
    check("i16_admitted_in_window", admitted, ">= 9000", lambda v: v >= 9000)
    check("i16_cpu_ms_per_console", _get(limen, "storms", "admission", "proxy_cpu_ms_per_console"), "<= 1 ms",
          lambda v: v <= 1)
    check("i16_audit_rows_written", _get(limen, "storms", "admission", "audit", "all_written"), "all",
          lambda v: bool(v))
    check("i16_close_storm_rows_closed_s", _get(limen, "storms", "close_storm", "audit_all_closed_s"), "<= 10 s",
          lambda v: v <= 10)
    quiet = _get(limen, "storms", "rtt_quiet_ms", "p99")
    worst = max((v for v in (_get(limen, "storms", "close_storm", "rtt_during_ms", "p99"),
                             _get(limen, "storms", "close_storm", "rtt_after_ms", "p99")) if v is not None),
                default=None)
    check("i16_storm_rtt_p99_vs_quiet", ratio(worst, quiet), "<= 2x", lambda v: v <= 2)
    check("i16_reconnect_all_back_s", _get(limen, "storms", "reconnect_storm", "all_back_after_restart_s"),
          "<= 30 s", lambda v: v <= 30)
    for side in ("", "_256", "_64", "_16", "_256_wslib"):
        check(f"i16_cpu_per_gb{side or '_full'}_vs_websockify",
              ratio(_get(limen, f"stream_1{side}", "proxy_cpu_s_per_gb"),
                    _get(websockify, f"stream_1{side}", "proxy_cpu_s_per_gb")), "<= 0.4x", lambda v: v <= 0.4)
    check("i16_8_streams_vs_websockify",
          ratio(_get(limen, "stream_8", "gb_per_s"), _get(websockify, "stream_8", "gb_per_s")), ">= 2x",
          lambda v: v >= 2)
    # Target 5: the same figures on PostgreSQL within 20 % of SQLite's (limen's own run above).
    on_postgresql = systems.get(ON_POSTGRESQL) or {}
    for key, label in (("setup", "ticket"), ("setup_cookie", "cookie"), ("setup_bearer", "bearer")):
        check(f"i16_pg_setup_{label}_vs_sqlite",
              ratio(_get(on_postgresql, key, "setup_ms", "p50"), _get(limen, key, "setup_ms", "p50")),
              "<= 1.2x", lambda v: v <= 1.2)
    check("i16_pg_admission_rate_vs_sqlite",
          ratio(_get(on_postgresql, "storms", "admission", "per_second"),
                _get(limen, "storms", "admission", "per_second")), ">= 0.8x", lambda v: v >= 0.8)
    check("i16_pg_audit_rows_written", _get(on_postgresql, "storms", "admission", "audit", "all_written"), "all",
          lambda v: bool(v))
    best = largest_held(limen)
    check("idle_sessions_held", None if best is None else best["held"], ">= 9000", lambda v: v >= 9000)
    check("rss_per_session_kb", None if best is None else best.get("rss_per_session_kb"), "<= 64 KB",
          lambda v: v <= 64)
    return checks


def machine_bounds(systems: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """What raw TCP (no proxy at all) reaches in the same run, for the two targets it bounds: no proxy's 8
    streams can pass raw TCP's own, and no proxy's probe can pass the machine's own stall during its storm."""
    raw, websockify = systems.get("raw") or {}, systems.get("websockify") or {}

    return {
        "raw_8_streams_vs_websockify": ratio(_get(raw, "stream_8", "gb_per_s"),
                                             _get(websockify, "stream_8", "gb_per_s")),
        "raw_storm_rtt_p99_vs_quiet": ratio(_get(raw, "storms", "close_storm", "rtt_during_ms", "p99"),
                                            _get(raw, "storms", "rtt_quiet_ms", "p99")),
    }


def render_bounds(bounds: dict[str, float | None]) -> str:
    return "\n".join(f"  {name:<34} {value!s:>10}" for name, value in bounds.items())


def render_table(rows: list[tuple[str, dict[str, str]]], names: list[str]) -> str:
    headers = ["", *names]
    table = [[label, *(cells.get(name, "-") for name in names)] for label, cells in rows]
    widths = [max(len(str(line[column])) for line in [headers, *table]) for column in range(len(headers))]
    lines = []
    for index, line in enumerate([headers, *table]):
        lines.append("  ".join(str(cell).ljust(width) if column == 0 else str(cell).rjust(width)
                               for column, (cell, width) in enumerate(zip(line, widths, strict=True))).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render_targets(checks: dict[str, dict[str, Any]]) -> str:
    marks = {True: "met", False: "NOT met", None: "not measured"}
    lines = [f"  (measured on: {checks['system']['value']})"]
    lines += [f"  {name:<34} {check['value']!s:>10}  target {check['target']:<9} {marks[check['met']]}"
              for name, check in checks.items() if name != "system"]
    return "\n".join(lines)


# -- machine ----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    def cpu_model() -> str:
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        return platform.processor()

    def mem_total_gib() -> float | None:
        with contextlib.suppress(OSError, ValueError):
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
        return None

    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "memory_gib": mem_total_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE),
        "packages": {name: version(name) for name in ("websockify", "websockets", "uvicorn", "uvloop", "starlette")},
    }


# -- entry ------------------------------------------------------------------------------------------


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# Fewer sockets than this in TIME_WAIT count as a quiet loopback; the kernel keeps each for 60 s.
TIME_WAIT_QUIET = 2000
TIME_WAIT_MAX_WAIT = 75.0


def drain_time_wait() -> dict[str, float]:
    """Waits (at most TIME_WAIT_MAX_WAIT s) until fewer than TIME_WAIT_QUIET sockets are in TIME_WAIT;
    returns the count before and after and the seconds waited."""
    began = time.monotonic()
    before = after = time_wait_sockets()
    while after >= TIME_WAIT_QUIET and time.monotonic() - began < TIME_WAIT_MAX_WAIT:
        time.sleep(1.0)
        after = time_wait_sockets()
    waited = round(time.monotonic() - began, 1)
    if waited >= 1:
        print(f"  waited {waited} s for the loopback's TIME_WAIT sockets: {before} -> {after}", flush=True)
    return {"sockets": before, "after_wait": after, "waited_s": waited}


@contextlib.contextmanager
def work_directory(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="limen-bench-") as temporary:
        yield Path(temporary)


def run(plan: Plan, names: list[str], out: Path | None, work: Path | None = None) -> dict[str, Any]:
    raise_fd_limit()
    results: dict[str, Any] = {"machine": machine(), "plan": asdict(plan), "systems": {}}
    with work_directory(work) as work_dir, Processes(work_dir / "logs") as processes, \
            contextlib.ExitStack() as servers:
        servers_started: list[tuple[str, int]] = []
        fake = start_fake_vnc(processes)
        for index, name in enumerate(names):
            print(f"measuring {name}", flush=True)
            # The systems before left tens of thousands of sockets in TIME_WAIT (60 s each): admission after
            # them measured the loopback's minute as much as the system (round 19), so each starts with few
            # (a smoke run's storms leave too few to matter).
            drained = drain_time_wait() if index and plan.storm_sessions >= TIME_WAIT_QUIET else None
            system: System
            if name == "raw":
                system = Raw(fake)
            elif name == "websockify":
                system = Websockify(processes, fake)
            elif name in PROTOTYPES:
                system = Pump(processes, fake, uvloop=name == "pump")
            elif name == ON_POSTGRESQL:
                try:
                    postgres, database_url = servers.enter_context(running_postgres())
                    servers_started.append(("postgresql", postgres.pid))
                except RuntimeError as exc:
                    results["systems"][name] = {"error": f"PostgreSQL did not start: {exc}"}
                    print(f"  {name}: ERROR {exc}", flush=True)
                    continue
                system = LimenSystem(processes, fake, work_dir, name, database_url=database_url)
            else:
                system = LimenSystem(processes, fake, work_dir, name)
            try:
                results["systems"][name] = measure_system(system, processes, plan, fake)
                if drained is not None:
                    results["systems"][name]["time_wait_before"] = drained
            except StartError as exc:
                results["systems"][name] = {"error": str(exc)}
                print(f"  {name}: ERROR {exc}", flush=True)
            finally:
                system.close()
        started = [*processes.history, *servers_started]
    results["processes"] = [{"name": name, "pid": pid} for name, pid in started]
    rows = summarize(results["systems"], plan)
    results["table"] = {label: cells for label, cells in rows}
    results["targets"] = check_targets(results["systems"])
    print()
    print(render_table(rows, names))
    print("\nlimen against issues 5 and 16's targets:")
    print(render_targets(results["targets"]))
    results["bounds"] = machine_bounds(results["systems"])
    print("\nraw TCP in the same run (no proxy: what targets 3 and 4 ask of limen, the machine itself may not reach):")
    print(render_bounds(results["bounds"]))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {out}")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a seconds-long run with tiny sizes")
    parser.add_argument("--out", type=Path, default=Path("bench/out/results.json"))
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help="comma-separated, of raw,websockify,limen,limen-postgresql; prototypes pump,pump-asyncio; "
                             "limen variants " + ",".join(LIMEN_VARIANTS))
    parser.add_argument("--levels", help="idle session counts to try, comma-separated (default 1000,5000,9000)")
    parser.add_argument("--seconds", type=float, help="stream measurement window")
    parser.add_argument("--storm-sessions", type=int, help="consoles of the admission and storms (0 skips them)")
    parser.add_argument("--storm-auth", choices=("ticket", "cookie", "bearer"), help="credential of the storms")
    parser.add_argument("--no-reconnect", action="store_true", help="skip the reconnect storm")
    parser.add_argument("--work-dir", type=Path, help="keep logs and limen's files here (default: a temp dir)")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    overrides: dict[str, Any] = {}
    if args.levels:
        overrides["idle_levels"] = tuple(int(level) for level in args.levels.split(","))
    if args.seconds:
        overrides["stream_seconds"] = args.seconds
    if args.storm_sessions is not None:
        overrides["storm_sessions"] = args.storm_sessions
    if args.storm_auth:
        overrides["storm_auth"] = args.storm_auth
    if args.no_reconnect:
        overrides["reconnect_storm"] = False
    if overrides:
        plan = Plan(**{**asdict(plan), **overrides})
    names = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = set(names) - set(SYSTEMS) - set(PROTOTYPES) - set(LIMEN_VARIANTS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    try:
        run(plan, names, args.out, args.work_dir)
    except KeyboardInterrupt:
        print("interrupted; every process started was stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()

"""Interleaved A/B runs of limen's console admission: two source trees, the same load, one after the other.

``python -m bench.ab --a /tmp/base/src --b src --rounds 3`` runs, per round and per tree (A, B, then B, A
in the next round, so drift in the machine's load does not favour one), a fresh ``limen serve`` from that
tree (``LIMEN_BENCH_SRC``) and measures: set-up p50/p99 on the ticket, cookie and bearer paths (``--count``
each) and the ticket's POST; then admission and the close storm (``--sessions``, bench/storms.py). The
load average is recorded with every run. Writes JSON (``--out``) and prints one line per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.load_client import Target
from bench.run import LimenSystem, load_client, raise_fd_limit
from bench.storms import StormPlan, measure_storms
from bench.systems import Processes, start_fake_vnc


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def rotated(runs: list[Any], round_index: int) -> list[Any]:
    """The runs of one round: shifted by the round's index and reversed every other round, so that drift in
    the machine's load favours no tree."""
    shift = round_index % len(runs)
    order = runs[shift:] + runs[:shift]
    return order[::-1] if round_index % 2 else order


def one_run(label: str, src: str, processes: Processes, fake: Any, work: Path,
            args: argparse.Namespace) -> dict[str, Any]:
    os.environ["LIMEN_BENCH_SRC"] = str(Path(src).resolve())
    system = LimenSystem(processes, fake, work, "limen")
    result: dict[str, Any] = {"label": label, "src": src, "load_before": load_average()}
    try:
        for auth in ("ticket", "cookie", "bearer"):
            setup = load_client(processes, f"ab-{label}-{auth}", [
                "setup", "--target", system.url("idle"), "--status-frames", "--auth", auth,
                "--count", str(args.count)], timeout=600)
            result[f"setup_{auth}"] = setup["setup_ms"]
            if auth == "ticket":
                result["ticket_post"] = setup["ticket_ms"]
        if args.sessions:
            plan = StormPlan(sessions=args.sessions, window=args.window)
            target = Target(system.url("idle"), True, auth=args.storm_auth)
            probe = Target(system.url("echo-update"), True, auth=args.storm_auth)
            assert system.limen is not None
            result["storms"] = asyncio.run(measure_storms(target, probe, plan, system.pgid("idle"),
                                                          system.limen.database_url))
    finally:
        system.close()
        result["load_after"] = load_average()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="source tree A (its src directory)")
    parser.add_argument("--b", required=True, help="source tree B")
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=SRC",
                        help="more trees, measured in the same rotation (e.g. one lever alone)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--count", type=int, default=300, help="set-ups per sign-in path")
    parser.add_argument("--sessions", type=int, default=9000, help="consoles of the admission run (0: none)")
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--storm-auth", default="bearer", choices=("ticket", "cookie", "bearer"))
    parser.add_argument("--out", type=Path, default=Path("bench/out/ab.json"))
    args = parser.parse_args(argv)
    raise_fd_limit()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="limen-ab-") as temporary, Processes(Path(temporary) / "logs") as processes:
        fake = start_fake_vnc(processes)
        for round_index in range(args.rounds):
            trees = [("A", args.a), ("B", args.b), *(tuple(item.split("=", 1)) for item in args.also)]
            for label, src in rotated(trees, round_index):
                work = Path(temporary) / f"{label}{round_index}"
                run = one_run(label, src, processes, fake, work, args)
                runs.append(run)
                storms = run.get("storms", {})
                admission = storms.get("admission", {})
                storm = storms.get("close_storm", {})
                print(json.dumps({
                    "label": label, "load": run["load_before"],
                    **{key: run[f"setup_{key}"]["p50"] for key in ("ticket", "cookie", "bearer")},
                    "post": run["ticket_post"]["p50"],
                    "admitted": admission.get("admitted"), "rate": admission.get("per_second"),
                    "cpu_ms": admission.get("proxy_cpu_ms_per_console"),
                    "rows_ok": (admission.get("audit") or {}).get("all_written"),
                    "closed_s": storm.get("audit_all_closed_s"),
                    "rtt_p99": [storms.get("rtt_quiet_ms", {}).get("p99"),
                                storm.get("rtt_during_ms", {}).get("p99"), storm.get("rtt_after_ms", {}).get("p99")],
                }), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(runs, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The resource sampler benchmark's smoke run (``python -m bench.stats_sampler`` for a second), so
``make bench-stats`` cannot rot. Asserts that every round sampled all 50 VMs without a failure and that the
memory per VM is the fixed ring size plus bookkeeping; CPU figures are never asserted (shared 2-core machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from limen.stats_history import bytes_per_vm

REPO = Path(__file__).resolve().parents[2]

# The sampler reads libvirt's test driver only; no database is involved.
pytestmark = [pytest.mark.integration, pytest.mark.same_on_any_database]


@pytest.mark.timeout(150)
def test_stats_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "stats.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench.stats_sampler", "--seconds", "1.5", "--intervals", "0.5", "--out", str(out)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=140,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    report = json.loads(out.read_text())
    assert [run["mode"] for run in report["runs"]] == ["test driver", "full records"]
    for run in report["runs"]:
        assert (run["vms"], run["failures"]) == (50, 0)
        assert run["rounds"] >= 1 and run["cpu_percent_of_one_core"] >= 0
    memory = report["memory"]
    assert bytes_per_vm() <= memory["traced_bytes_per_vm_after_1000_rounds"] < bytes_per_vm() + 16_384
    # Nothing grows with the rounds but CPython's free list of 9-tuples (at most 2,000 of 112 bytes for the
    # whole process, parked after use and still traced): under 4.5 kB a VM across 50 VMs.
    grown = memory["traced_bytes_per_vm_after_1000_rounds"] - memory["traced_bytes_per_vm_first_round"]
    assert grown < 2000 * 112 // 50 + 1024, grown

"""Click-to-live-screen in Chromium: from the click on a running VM's "Console" button (its details page)
until noVNC has drawn the guest's first framebuffer on the console page, page load included.

A real ``limen serve``, a real QEMU VM booting the demo ISO (64 MiB, removed at the end) and Debian's
Chromium driven by Playwright. The page is measured from the inside by a script Playwright adds to every
page (``INSTRUMENT``): the click's time (kept in sessionStorage across the navigation), the navigation's
and every resource's timing, each WebSocket frame's arrival, the console page's states
(``body[data-console-state]``) and the first image noVNC puts on a canvas in the document, which it tells
on the page's console; Playwright itself runs nothing in the console page until then (its waits would take
the page's main thread). No page code is needed for it, so the same measurement runs against an older
limen (``--baseline REV``: that commit of this repository, served by a second ``limen serve``), and the
variants alternate run by run on the same machine load (``uptime`` is recorded with each run).

Each run opens a fresh browser context (nothing cached: a first visit), signs in, opens the VM's details
page and clicks "Console"; ``--warm`` runs also go back and click again in the same context (a second
open, with whatever the browser kept). ``--guest idle`` runs a VM that halts instead of the demo ISO's GRUB,
which under TCG keeps most of a core busy; the VM's QEMU CPU share over the runs is printed and written
either way. ``python -m bench.browser_click_to_live --runs 10 --out FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import httpx
from playwright.sync_api import Browser, Page, sync_playwright
from tests.conftest import DEMO_ISO, QEMU_URI
from tests.e2e.helpers import CHROMIUM, CHROMIUM_ARGS, DESKTOP, limen_env, sign_in
from tests.support.access import provision_admin_token
from tests.support.libvirt_cleanup import remove_domain
from tests.support.qemu_process import qemu_pid
from tests.support.server import LimenProcess

from bench.procstat import process_cpu_seconds

REPO = Path(__file__).resolve().parent.parent

# Runs in every document before its own scripts. Times are epoch milliseconds (timeOrigin + now), so the
# details page's click and the console page's events share one clock.
DRAWN = "c2l:first-draw"
INSTRUMENT = r"""
(() => {
  const DRAWN = "__DRAWN__";
  const now = () => performance.timeOrigin + performance.now();
  const m = (window.__c2l = { marks: {}, frames: [], states: [] });
  document.addEventListener("click", (e) => {
    const link = e.target.closest && e.target.closest('[data-action="console"]');
    if (link) sessionStorage.setItem("c2l.click", String(now()));
  }, true);
  if (!/\/console\/?$/.test(location.pathname)) return;
  const Native = window.WebSocket;
  // A function returning the native socket, not a subclass: noVNC reads the socket's own prototype.
  const Wrapped = function (...args) {
    const socket = new Native(...args);
    m.marks.ws_create ??= now();
    socket.addEventListener("open", () => { m.marks.ws_open ??= now(); });
    socket.addEventListener("message", (e) => {
      if (m.frames.length < 12) m.frames.push([now(), typeof e.data === "string" ? "text" : "binary"]);
    });
    return socket;
  };
  Wrapped.prototype = Native.prototype;
  for (const key of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) Wrapped[key] = Native[key];
  window.WebSocket = Wrapped;
  for (const proto of [CanvasRenderingContext2D.prototype]) {
    for (const name of ["drawImage", "putImageData"]) {
      const native = proto[name];
      proto[name] = function (...args) {
        // noVNC clears its canvas before ServerInit: the first image of the guest comes after "connected".
        if (m.marks.first_draw === undefined && m.states.some((s) => s[1] === "connected")
            && this.canvas.isConnected && this.canvas.closest("#screen")) {
          m.marks.first_draw = now();
          console.debug(DRAWN);
        }
        return native.apply(this, args);
      };
    }
  }
  new MutationObserver(() => {
    const state = document.body.dataset.consoleState;
    if (!m.states.length || m.states[m.states.length - 1][1] !== state) m.states.push([now(), state]);
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-console-state"] });
})();
""".replace("__DRAWN__", DRAWN)

# What the page collects once the screen is drawn: every time relative to the click, in ms.
COLLECT = r"""() => {
  const m = window.__c2l;
  const click = Number(sessionStorage.getItem("c2l.click"));
  const origin = performance.timeOrigin;
  const rel = (t) => (t === undefined || t === null ? null : Math.round((t - click) * 10) / 10);
  const nav = performance.getEntriesByType("navigation")[0];
  const res = performance.getEntriesByType("resource");
  const novnc = res.filter((r) => r.name.includes("/static/novnc"));
  const own = res.filter((r) => r.name.includes("/static/") && !r.name.includes("/static/novnc"));
  const ticket = res.find((r) => r.name.includes("/console-ticket"));
  const text = m.frames.filter((f) => f[1] === "text");
  const binary = m.frames.find((f) => f[1] === "binary");
  const connected = m.states.find((s) => s[1] === "connected");
  const last = (list) => (list.length ? Math.max(...list.map((r) => r.responseEnd)) + origin : null);
  return {
    click_to_nav_start: rel(origin),
    html_received: rel(origin + nav.responseEnd),
    dom_content_loaded: rel(origin + nav.domContentLoadedEventEnd),
    own_modules_last: rel(last(own)),
    novnc_first_request: novnc.length ? rel(Math.min(...novnc.map((r) => r.startTime)) + origin) : null,
    novnc_loaded: rel(last(novnc)),
    ticket_start: ticket ? rel(origin + ticket.startTime) : null,
    ticket_end: ticket ? rel(origin + ticket.responseEnd) : null,
    ws_create: rel(m.marks.ws_create),
    ws_open: rel(m.marks.ws_open),
    first_status: text.length ? rel(text[0][0]) : null,
    last_status: text.length ? rel(text[text.length - 1][0]) : null,
    first_vnc_bytes: binary ? rel(binary[0]) : null,
    rfb_connected: connected ? rel(connected[0]) : null,
    first_draw: rel(m.marks.first_draw),
    resources: res.length,
    novnc_requests: novnc.length,
    transferred_bytes: res.reduce((n, r) => n + (r.transferSize || 0), 0) + (nav.transferSize || 0),
    cached_requests: res.filter((r) => r.transferSize === 0).length,
  };
}"""

# The parts of click-to-live on its critical path, each between two of the marks above. The page makes its
# WebSocket once its ticket is back and imports noVNC after it (preloaded beside the page's own modules), so
# noVNC's loading is reported apart (SIDE_PARTS) with the ticket's own timing.
PARTS: tuple[tuple[str, str, str], ...] = (
    ("navigation (click → HTML received)", "click", "html_received"),
    ("page modules (HTML → DOMContentLoaded)", "html_received", "dom_content_loaded"),
    ("ticket (DOMContentLoaded → WebSocket made)", "dom_content_loaded", "ws_create"),
    ("WebSocket open", "ws_create", "ws_open"),
    ("limen set-up (open → last status frame)", "ws_open", "last_status"),
    ("VNC handshake (→ RFB connected)", "last_status", "rfb_connected"),
    ("first frame (connected → drawn)", "rfb_connected", "first_draw"),
)
SIDE_PARTS: tuple[tuple[str, str, str], ...] = (
    ("  beside: noVNC's module loaded (after DOMContentLoaded)", "dom_content_loaded", "novnc_loaded"),
    ("  beside: ticket POST asked (after DOMContentLoaded)", "dom_content_loaded", "ticket_start"),
    ("  beside: ticket POST round trip", "ticket_start", "ticket_end"),
)


def uptime() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@contextmanager
def baseline_checkout(rev: str, work: Path) -> Iterator[Path]:
    """``rev`` of this repository exported to ``work``, with this checkout's bundled browser libraries."""
    target = work / f"limen-{rev}"
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    (target / "src/limen/web/npm").symlink_to(REPO / "src/limen/web/npm")
    yield target / "src"


def start_server(tmp: Path, name: str, src: Path | None) -> LimenProcess:
    env = limen_env(tmp / name)
    command: tuple[str, ...] = (str(Path(sys.executable).parent / "limen"),)
    if src is not None:  # another revision's code, first on the path
        env["PYTHONPATH"] = str(src)
        command = (sys.executable, "-c", "import sys; from limen.cli import main; sys.exit(main())")
    (tmp / name).mkdir(parents=True, exist_ok=True)
    process = LimenProcess(env, tmp / name / "serve.log", command=command)
    process.auth_headers = {"Authorization": f"Bearer {provision_admin_token(process.database_url)}"}
    return process.start()


# The VM it makes is named like the tests' VMs, with a prefix of its own: its smoke test checks that it is gone
# and must not count the VMs of tests running beside it.
VM_NAME_PREFIX = "limen-test-c2l-"

# What the VM runs, i.e. how much of the machine's CPU it leaves the browser and limen.
GUESTS = {
    # The demo ISO's GRUB at its prompt: under TCG it polls the keyboard, 60-70 % of a core (RESULTS round 10).
    "demo-iso": DEMO_ISO,
    # No medium, an empty disk: SeaBIOS says "No bootable device" and halts, ~2 % of a core, as an idle
    # guest would (a Linux kernel halts its CPU when it has nothing to do).
    "idle": None,
}


def make_running_vm(server: LimenProcess, name: str, guest: str) -> str:
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=60) as api:
        created = api.post("/api/vms", json={"name": name, "memory_mib": 64, "iso": GUESTS[guest], "disk_gib": 1})
        created.raise_for_status()
        vm_id: str = created.json()["uuid"]
        api.post(f"/api/vms/{vm_id}/start").raise_for_status()
        deadline = time.monotonic() + 60
        while api.get(f"/api/vms/{vm_id}").json()["state"] != "running":
            if time.monotonic() > deadline:
                raise RuntimeError("the VM did not start")
            time.sleep(0.2)
    time.sleep(3)  # GRUB's prompt (or SeaBIOS's last words) is on screen
    return vm_id


def click_console(page: Page, base_url: str, vm_id: str) -> dict[str, Any]:
    page.goto(f"{base_url}/vms/{vm_id}")
    link = page.locator('a[data-action="console"][href$="/console"]')
    link.wait_for()
    page.wait_for_load_state("networkidle")
    load = uptime()
    # The console page tells of its first frame on its console: nothing of Playwright's runs in it until then
    # (a wait_for_function would evaluate Playwright's injected script, 20-50 ms of the page's main thread,
    # in the middle of the open it measures; bench/RESULTS.md, round 10).
    try:
        with page.expect_console_message(lambda message: message.text == DRAWN, timeout=30_000):
            link.click()
    except Exception:
        state = page.evaluate("() => [window.__c2l, document.body.innerText.slice(0, 500)]")
        raise RuntimeError(f"no frame drawn on {page.url}: {state}") from None
    result: dict[str, Any] = page.evaluate(COLLECT)
    result["click"] = 0.0
    result["total"] = result["first_draw"]
    result["load"] = load
    return result


def one_run(browser: Browser, server: LimenProcess, vm_id: str, warm: bool) -> list[dict[str, Any]]:
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(30_000)
    context.add_init_script(INSTRUMENT)
    try:
        page = sign_in(context.new_page(), server.base_url)
        results = [{**click_console(page, server.base_url, vm_id), "open": "first"}]
        if warm:
            results.append({**click_console(page, server.base_url, vm_id), "open": "second"})
        return results
    finally:
        context.close()


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    totals = [r["total"] for r in runs]
    p50 = statistics.median(totals)
    parts = {}
    for label, start, end in PARTS + SIDE_PARTS:
        values = [r[end] - r[start] for r in runs if r.get(start) is not None and r.get(end) is not None]
        if values:
            median = statistics.median(values)
            parts[label] = {"p50_ms": round(median, 1), "share": round(median / p50, 3) if p50 else None}
    return {"runs": len(runs), "p50_ms": round(p50, 1), "p90_ms": round(percentile(totals, 0.9), 1),
            "min_ms": min(totals), "max_ms": max(totals), "parts": parts}


def split_cpus(server_pids: list[int]) -> set[int]:
    """Every thread of ``server_pids`` onto all CPUs but the last, and this process (so Playwright's driver
    and the Chromium it starts, which inherit it) onto the last one; returns the browser's CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--split-cpus needs two CPUs")
    browser, server = {cpus[-1]}, set(cpus[:-1])
    for pid in server_pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            os.sched_setaffinity(int(task.name), server)
    os.sched_setaffinity(0, browser)
    return browser


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--baseline", action="append", default=[],
                        help="also measure this git revision, runs interleaved (repeatable)")
    parser.add_argument("--warm", action="store_true", help="also a second open in the same context")
    parser.add_argument("--split-cpus", action="store_true",
                        help="the browser on the last CPU, limen and the VM's QEMU on the others: a user's "
                             "browser on a machine of its own instead of sharing the server's cores")
    parser.add_argument("--guest", choices=sorted(GUESTS), default="demo-iso",
                        help="what the VM runs: the demo ISO's GRUB (default; it keeps most of a core busy "
                             "under TCG) or an idle guest (no medium: SeaBIOS halts)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    name = f"{VM_NAME_PREFIX}{uuid.uuid4().hex[:10]}"
    results: dict[str, list[dict[str, Any]]] = {}
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="c2l-") as tmp_name:
        tmp = Path(tmp_name)
        stack.callback(remove_domain, QEMU_URI, name)
        servers = {"current": start_server(tmp, "current", None)}
        stack.callback(servers["current"].stop)
        for rev in args.baseline:
            src = stack.enter_context(baseline_checkout(rev, tmp))
            servers[rev] = start_server(tmp, f"rev-{rev}", src)
            stack.callback(servers[rev].stop)
        vm_id = make_running_vm(servers["current"], name, args.guest)
        vm_process = qemu_pid(name)
        if args.split_cpus:
            browser_cpus = split_cpus([server.pid for server in servers.values()] + [vm_process])
            print(f"browser on CPU {sorted(browser_cpus)}, limen and QEMU on the others", flush=True)
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        stack.callback(browser.close)
        for _ in range(1):  # one unmeasured open each: Chromium's and limen's own first-time costs
            for server in servers.values():
                one_run(browser, server, vm_id, False)
        vm_cpu_before, measured_from = process_cpu_seconds(vm_process), time.monotonic()
        for number in range(args.runs):
            order = list(servers.items())
            for variant, server in order[number % len(order):] + order[:number % len(order)]:
                for result in one_run(browser, server, vm_id, args.warm):
                    key = f"{variant} ({result['open']} open)"
                    results.setdefault(key, []).append(result)
                    print(f"{key:30} run {number + 1:2}: {result['total']:7.1f} ms  load {result['load']}",
                          flush=True)
        vm_cpu_share = (process_cpu_seconds(vm_process) - vm_cpu_before) / (time.monotonic() - measured_from)
    summary = {key: summarize(runs) for key, runs in results.items()}
    print(f"\nguest: {args.guest}; its QEMU used {100 * vm_cpu_share:.0f} % of a core during the runs")
    for key, figures in summary.items():
        print(f"\n{key}: p50 {figures['p50_ms']} ms, p90 {figures['p90_ms']} ms over {figures['runs']} runs")
        for label, part in figures["parts"].items():
            print(f"  {label:58} {part['p50_ms']:7.1f} ms  {100 * (part['share'] or 0):5.1f} %")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"guest": args.guest, "vm_cpu_share": round(vm_cpu_share, 3),
                                        "summary": summary, "runs": results}, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

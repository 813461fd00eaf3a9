"""Starting and stopping what the benchmark runs: the fake VNC server, websockify, limen, load clients.

Every process starts in a session of its own, so its whole group (websockify's forked children, the
load client's workers) can be signalled at once; :class:`Processes` stops every group it started when
its ``with`` block ends, whether normally, by an exception or by Ctrl-C. Servers listen on free
127.0.0.1 ports; every wait for one to come up has a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
MODES = ("stream", "echo-update", "idle", "stream-256", "stream-64", "stream-16")


class StartError(Exception):
    """A server did not come up; the message says which and points at its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def python_env() -> dict[str, str]:
    """The environment for bench modules run as ``python -m bench.…`` from anywhere."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[str]
    log_path: Path | None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to the group, SIGKILL to what is left after ``grace`` seconds."""
        for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signum)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if self.popen.poll() is not None and not _group_alive(self.pid):
                    return
                time.sleep(0.02)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=1)

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(…, 0) also succeeds for zombies of the group; they are gone for our purposes.
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            fields = raw[raw.rindex(b")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != b"Z":
                return True
    return False


@dataclass
class Processes:
    """Starts processes in their own groups and stops them all at the end of the ``with`` block."""

    log_dir: Path
    started: list[Process] = field(default_factory=list)
    history: list[tuple[str, int]] = field(default_factory=list)  # (name, pid) of every process started

    def __enter__(self) -> Processes:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._old_term = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop_all()
        signal.signal(signal.SIGTERM, self._old_term)

    def start(self, name: str, argv: list[str], *, env: dict[str, str] | None = None,
              stdout_pipe: bool = False) -> Process:
        log_path = self.log_dir / f"{name}.log"
        log: IO[str] = log_path.open("a")
        try:
            popen = subprocess.Popen(
                argv, cwd=REPO, env=env or python_env(), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else log, stderr=log, text=True, start_new_session=True,
            )
        finally:
            log.close()
        process = Process(name, popen, log_path)
        self.started.append(process)
        self.history.append((name, popen.pid))
        return process

    def stop(self, process: Process) -> None:
        process.stop()
        if process in self.started:
            self.started.remove(process)

    def stop_all(self) -> None:
        while self.started:
            self.started.pop().stop()


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def read_json_line(process: Process, timeout: float) -> dict[str, Any]:
    """The next line the process prints, parsed as JSON, within ``timeout`` seconds."""
    stream = process.popen.stdout
    assert stream is not None
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise StartError(f"{process.name}: no output within {timeout:g} s\n{process.log_tail()}")
    line = stream.readline()
    if not line:
        raise StartError(f"{process.name} exited (code {process.popen.poll()})\n{process.log_tail()}")
    result: dict[str, Any] = json.loads(line)
    return result


def wait_listening(process: Process, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise StartError(f"{process.name} exited (code {process.popen.returncode})\n{process.log_tail()}")
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise StartError(f"{process.name} did not listen on {port} within {timeout:g} s\n{process.log_tail()}")


def wait_http_ok(process: Process, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not process.alive():
            raise StartError(f"{process.name} exited (code {process.popen.returncode})\n{process.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise StartError(f"{process.name}: {url} not OK within {timeout:g} s ({last})\n{process.log_tail()}")


# -- the servers ------------------------------------------------------------------------------------


# The mode whose sessions time round trips (the close storm's probe among them). It has a fake server process
# of its own, as every VM has a QEMU of its own: a storm's sessions end in the other process, so a round
# trip measures the proxy between them, not a VNC server busy with the storm's thousands of closes.
PROBE_MODE = "echo-update"


@dataclass
class FakeVnc:
    process: Process  # every mode but PROBE_MODE
    probe_process: Process
    ports: dict[str, int]


def start_fake_vnc(processes: Processes) -> FakeVnc:
    others = [f"--mode={mode}" for mode in MODES if mode != PROBE_MODE]
    process = processes.start(
        "fake_vnc_server", [sys.executable, "-m", "bench.fake_vnc_server", *others], stdout_pipe=True
    )
    probe_process = processes.start(
        "fake_vnc_server-probe", [sys.executable, "-m", "bench.fake_vnc_server", f"--mode={PROBE_MODE}"],
        stdout_pipe=True,
    )
    ports = {mode: int(port) for mode, port in read_json_line(process, timeout=15)["ports"].items()}
    ports.update({mode: int(port) for mode, port in read_json_line(probe_process, timeout=15)["ports"].items()})
    return FakeVnc(process, probe_process, ports)


def start_websockify(processes: Processes, target_port: int, name: str) -> tuple[Process, int]:
    """websockify in its default mode (a forked process per connection), proxying to ``target_port``."""
    port = free_port()
    executable = VENV_BIN / "websockify"
    argv = [str(executable)] if executable.exists() else [sys.executable, "-m", "websockify"]
    process = processes.start(name, [*argv, f"127.0.0.1:{port}", f"127.0.0.1:{target_port}"])
    wait_listening(process, port, timeout=15)
    return process, port


# One running domain per fake-server mode; the test driver reports each one's fixed VNC port.
DOMAIN_UUIDS = {
    "stream": "1ce0be4c-0000-4000-8000-000000000001",
    "echo-update": "1ce0be4c-0000-4000-8000-000000000002",
    "idle": "1ce0be4c-0000-4000-8000-000000000003",
    "stream-256": "1ce0be4c-0000-4000-8000-000000000004",
    "stream-64": "1ce0be4c-0000-4000-8000-000000000005",
    "stream-16": "1ce0be4c-0000-4000-8000-000000000006",
}


def node_xml(vnc_ports: dict[str, int]) -> str:
    domains = []
    for mode, port in vnc_ports.items():
        domains.append(f"""  <domain type='test'>
    <name>bench-{mode}</name>
    <uuid>{DOMAIN_UUIDS[mode]}</uuid>
    <memory unit='MiB'>64</memory>
    <vcpu>1</vcpu>
    <os><type>hvm</type></os>
    <devices>
      <graphics type='vnc' port='{port}' autoport='no' listen='127.0.0.1'/>
    </devices>
  </domain>""")
    return "<node>\n" + "\n".join(domains) + "\n</node>\n"


@dataclass
class Limen:
    process: Process
    port: int
    database_url: str  # SQLAlchemy URL of its database (the audit rows the storms count are there)

    def console_url(self, mode: str) -> str:
        return f"ws://127.0.0.1:{self.port}/api/vms/{DOMAIN_UUIDS[mode]}/console"


def provision_credentials(database_url: str) -> tuple[str, str]:
    """An admin, an API token and a browser session in the limen database at ``database_url``, migrated first
    (what ``limen user create``, ``limen token create`` and a sign-in do); returns the token's secret and the
    cookie."""
    import asyncio

    from argon2 import PasswordHasher

    from limen.auth.browser_sessions import BrowserSessions
    from limen.auth.passwords import Passwords, generate_password
    from limen.auth.tokens import Tokens
    from limen.auth.users import Users, find_user
    from limen.db import Database, Role

    db = Database(database_url)
    try:
        db.migrate()
        if db.run_sync(lambda session: find_user(session, "bench")) is None:
            Users(db, Passwords(PasswordHasher()), time.time).create_sync("bench", generate_password(), Role.ADMIN)
        token = Tokens(db, time.time).create_sync("bench", "bench").secret
        cookie = asyncio.run(BrowserSessions(db, time.time, 7 * 86400).create("bench")).cookie
        return token, cookie
    finally:
        db.close()


def start_limen(processes: Processes, vnc_ports: dict[str, int], work_dir: Path, name: str = "limen",
                variant: tuple[str, str] | None = None, port: int | None = None,
                extra_env: dict[str, str] | None = None, database_url: str | None = None) -> Limen:
    """``limen serve`` over libvirt's test driver, whose domains point at the fake VNC server.

    ``variant`` = (WebSocket layer, loop) runs ``bench.limen_variant`` instead, for comparisons.
    ``database_url``: limen's database (``LIMEN_DATABASE_URL``); by default SQLite in its data directory.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    node = work_dir / "node.xml"
    node.write_text(node_xml(vnc_ports))
    port = port or free_port()
    env = {
        **python_env(),
        **(extra_env or {}),
        # LIMEN_BENCH_SRC: a source tree (its ``src``) to serve instead of the installed limen, for A/B runs.
        **({"PYTHONPATH": os.environ["LIMEN_BENCH_SRC"] + os.pathsep + python_env()["PYTHONPATH"]}
           if os.environ.get("LIMEN_BENCH_SRC") else {}),
        "LIMEN_LIBVIRT_URI": f"test://{node.resolve()}",
        "LIMEN_LOG_DIR": str(work_dir / "log"),
        "LIMEN_DATA_DIR": str(work_dir / "data"),
        "LIMEN_ISO_DIR": str(work_dir / "isos"),
    }
    database_url = database_url or f"sqlite:///{work_dir / 'data' / 'limen.db'}"  # limen's own default
    env["LIMEN_DATABASE_URL"] = database_url
    (work_dir / "isos").mkdir(exist_ok=True)
    # The console needs a user; load clients started from here on send this token or cookie (bench.load_client).
    os.environ["LIMEN_TOKEN"], os.environ["LIMEN_COOKIE"] = provision_credentials(database_url)
    executable = VENV_BIN / "limen"
    if variant is not None:
        ws, _, patch = variant[0].partition("+")
        argv = [sys.executable, "-m", "bench.limen_variant", "--port", str(port), "--ws", ws, "--loop", variant[1],
                *(["--patch", patch] if patch else [])]
    elif executable.exists():
        argv = [str(executable), "serve", "--host", "127.0.0.1", "--port", str(port)]
    else:
        argv = [sys.executable, "-c", "from limen.cli import main; main()", "serve", "--port", str(port)]
    process = processes.start(name, argv, env=env)
    wait_http_ok(process, f"http://127.0.0.1:{port}/healthz", timeout=30)
    return Limen(process, port, database_url)


def start_pump(processes: Processes, target_port: int, name: str, *, uvloop: bool = True,
               read_size: int = 1 << 20) -> tuple[Process, int]:
    """The raw asyncio-Protocol pump prototype (``bench/ws_pump.py``), proxying to ``target_port``."""
    argv = [sys.executable, "-m", "bench.ws_pump", "--target-port", str(target_port), "--read-size", str(read_size)]
    process = processes.start(name, [*argv, *([] if uvloop else ["--no-uvloop"])], stdout_pipe=True)
    ready = read_json_line(process, timeout=15)
    return process, int(ready["port"])

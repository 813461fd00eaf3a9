"""A ``limen serve`` process: started on a loopback port, waited for until it answers, stopped by SIGTERM
(SIGKILL to its process group past a bound)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

import httpx

from scripts.cluster_parts.ports import free_port

# The `limen` of the Python running this (the checkout's .venv).
LIMEN_BIN = Path(sys.executable).parent / "limen"


class LimenProcess:
    """``limen serve`` with ``env`` on top of this process's environment, its output in ``log_path``."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *, listen: str = "127.0.0.1",
                 command: Sequence[str] = (str(LIMEN_BIN),), cwd: Path | None = None, scheme: str = "http",
                 serve_args: Sequence[str] = (), port: int | None = None) -> None:
        self.listen = listen  # --host; clients connect over loopback whatever it is
        self.port = port if port is not None else free_port()
        self.base_url = f"{scheme}://127.0.0.1:{self.port}"
        self.ws_url = f"{'wss' if scheme == 'https' else 'ws'}://127.0.0.1:{self.port}"
        # How limen is started (another installation's `limen`, or a wrapper around it) and from where.
        self.command = tuple(command)
        self.cwd = cwd
        self.serve_args = tuple(serve_args)
        self.log_path = log_path
        self._env = {**os.environ, **env}
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 20.0) -> Self:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [*self.command, "serve", "--host", self.listen, "--port", str(self.port), *self.serve_args],
                env=self._env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.cwd,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"limen serve exited with {self._proc.returncode}: {self.output()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1, verify=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"limen serve did not answer within {timeout} s: {self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, *, timeout: float = 10.0) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> int:
        """Sends ``sig`` to the server process alone (no clean shutdown for SIGKILL) and waits for it to end;
        :meth:`start` then starts a new one on the same port, data and log."""
        proc, self._proc = self._proc, None
        if proc is None:
            raise RuntimeError("the server is not running")
        proc.send_signal(sig)
        return proc.wait(timeout=30)

    @property
    def running(self) -> bool:
        """Whether it has a process (started, not stopped since)."""
        return self._proc is not None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the server is not running")
        return self._proc.pid

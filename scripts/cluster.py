"""A whole limen cluster on this machine, loopback only: `make cluster` and `make cluster-down`.

    PYTHONPATH=. .venv/bin/python scripts/cluster.py up [--dir .cluster] [--addresses 127.0.1.1,127.0.1.2]
    PYTHONPATH=. .venv/bin/python scripts/cluster.py down [--dir .cluster]

``up`` starts (as root) two hypervisor hosts (scripts/extra-host.sh: a libvirtd each in its own mount
namespace, qemu+tcp on its own loopback address, VNC on its own port range), a throw-away PostgreSQL cluster,
a redis-server, two ``limen serve`` replicas on them, and HAProxy in front with deploy/haproxy.cfg; it
registers the hosts, defines and starts a demo VM on each, and writes DIR/cluster.json with everything
``down`` needs (PIDs, directories). The processes outlive this script. ``down`` stops each by its PID
(checking the PID still runs the program it started) and removes DIR and the PostgreSQL directory. The
machine's own libvirtd (qemu:///system) is never touched.

The pieces are started by scripts/cluster_parts, which the tests' support code (tests/support) wraps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from scripts.cluster_parts.haproxy_process import start_haproxy
from scripts.cluster_parts.libvirt_hosts import ExtraHost
from scripts.cluster_parts.limen_process import LIMEN_BIN, LimenProcess
from scripts.cluster_parts.ports import free_port
from scripts.cluster_parts.postgres_process import postgres_data_dir, start_postgres
from scripts.cluster_parts.redis_process import start_redis

DEMO_ISO = Path("/var/lib/limen/isos/limen-grub-demo.iso")
# Each host's VNC servers get their own port range, so two hosts' VMs never contend for a port.
VNC_RANGES = ((25900, 25949), (25950, 25999))
SECOND_HOST = "host-2"  # the first host is LIMEN_LIBVIRT_URI: limen's default host, named "local"
STOP_BOUND = 15.0  # seconds a replica has to stop after SIGTERM (its consoles, then uvicorn) before SIGKILL


def _limen(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(LIMEN_BIN), "--json", *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"limen {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def up(state: Path, addresses: tuple[str, str]) -> dict[str, Any]:
    if (state / "cluster.json").exists():
        raise SystemExit(f"{state}/cluster.json exists: run `make cluster-down` (or `{sys.argv[0]} down`) first")
    state.mkdir(parents=True, exist_ok=True)
    # Written as each piece starts, so that `down` after a failed `up` stops what did start.
    made: dict[str, Any] = {"dir": str(state), "hosts": [], "replicas": []}

    def record() -> None:
        (state / "cluster.json").write_text(json.dumps(made, indent=2) + "\n")

    record()
    hosts = [ExtraHost(state / f"host-{index}", address, VNC_RANGES[index - 1])
             for index, address in enumerate(addresses, start=1)]
    for name, host in zip(("local", SECOND_HOST), hosts, strict=True):
        host.start()
        made["hosts"].append({"name": name, "uri": host.uri, "console_address": host.address,
                              "vnc_ports": list(host.vnc_ports), "state_dir": str(host.state_dir),
                              "pid": host.pid})
        record()
    pg_data = postgres_data_dir()
    made["postgres"] = {"data_dir": str(pg_data)}
    record()
    pg_process, server_url = start_postgres(pg_data)
    made["postgres"].update(pid=pg_process.pid, url=server_url)
    record()
    redis_process, redis_url = start_redis(state)
    made["redis"] = {"pid": redis_process.pid, "url": redis_url}
    record()

    ports = [free_port(), free_port()]
    proxy_port = free_port()
    origins = ",".join(f"http://{host}:{port}" for port in (proxy_port, *ports) for host in ("127.0.0.1", "localhost"))
    env = {
        "LIMEN_LIBVIRT_URI": hosts[0].uri, "LIMEN_ISO_DIR": str(DEMO_ISO.parent),
        # The default host's pool, as the hosts see it: in their own /var/lib/libvirt, i.e. under DIR.
        "LIMEN_STORAGE_POOL_DIR": "/var/lib/libvirt/images/limen", "LIMEN_VIRT_TYPE": "qemu",
        # The default host's VMs listen on its own address too (limen keeps the others' on theirs).
        "LIMEN_VNC_LISTEN": hosts[0].address,
        "LIMEN_DATABASE_URL": server_url, "LIMEN_REDIS_URL": redis_url,
        "LIMEN_ALLOWED_ORIGINS": origins, "LIMEN_TRUSTED_PROXIES": "127.0.0.1/32",
    }
    made["database_url"] = server_url
    replicas = [LimenProcess({**env, "LIMEN_DATA_DIR": str(state / f"data-{index}"),
                              "LIMEN_LOG_DIR": str(state / f"log-{index}")},
                             state / f"serve-{index}.log", port=port)
                for index, port in enumerate(ports, start=1)]
    # Both at once: one migrates the new database, the other waits on the advisory lock.
    with ThreadPoolExecutor(2) as pool:
        started = [pool.submit(replica.start, timeout=60) for replica in replicas]
        failures = [future.exception() for future in started]
    for replica in replicas:
        if replica.running:  # a failed start leaves no process to record
            made["replicas"].append({"url": replica.base_url, "pid": replica.pid, "log": str(replica.log_path)})
    record()
    for failure in failures:
        if failure is not None:
            raise failure

    cli_env = {**env, "LIMEN_DATA_DIR": str(state / "data-1"), "LIMEN_LOG_DIR": str(state / "log-1")}
    _limen(cli_env, "host", "add", SECOND_HOST, hosts[1].uri, "--console-address", hosts[1].address)
    admin = json.loads(_limen(cli_env, "user", "ensure-admin"))
    token = json.loads(_limen(cli_env, "token", "create", "make cluster", "--user", admin["name"]))["secret"]
    made.update(admin={"name": admin["name"], "password": admin["password"]}, admin_token=token)
    record()

    haproxy_process, proxy = start_haproxy([f"127.0.0.1:{port}" for port in ports], state / "haproxy.log",
                                           port=proxy_port)
    made.update(url=proxy.base_url, haproxy={"pid": haproxy_process.pid, "log": str(proxy.log_path)})
    record()

    _await_second_host([replica.base_url for replica in replicas], token)
    made["vms"] = _demo_vms(proxy.base_url, token)
    record()
    return made


def _await_second_host(replica_urls: list[str], token: str) -> None:
    """A server rereads the host registry every 5 s: waits until every replica has the second host up."""
    deadline = time.monotonic() + 30
    for url in replica_urls:
        while True:
            hosts = httpx.get(f"{url}/api/hosts", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
            if {host["name"] for host in hosts if host["available"]} == {"local", SECOND_HOST}:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {url} did not have both hosts within 30 s: {hosts}")
            time.sleep(0.5)


def _demo_vms(url: str, token: str) -> list[dict[str, Any]]:
    """A demo VM on each host (the GRUB demo ISO), started; through HAProxy, as any client would."""
    vms = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as api:
        for host in ("local", SECOND_HOST):
            name = f"demo-{host}"
            created = api.post("/api/vms", json={"name": name, "host": host, "vcpus": 1, "memory_mib": 64,
                                                 "iso": DEMO_ISO.name})
            if created.status_code != 201:
                raise RuntimeError(f"creating {name} failed: {created.text}")
            started = api.post(f"/api/vms/{name}/start")
            if started.status_code != 200:
                raise RuntimeError(f"starting {name} failed: {started.text}")
            vms.append({"name": name, "uuid": created.json()["uuid"], "host": host})
    return vms


def _running(pid: int, program: str) -> bool:
    """Whether ``pid`` still runs ``program`` (a PID reused by another process is left alone)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(program.encode() in part for part in command)


def _stop(pid: int | None, program: str, bound: float = 10.0) -> None:
    if pid is None or not _running(pid, program):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + bound
    while _running(pid, program) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _running(pid, program):
        os.kill(pid, signal.SIGKILL)


def down(state: Path) -> None:
    manifest = state / "cluster.json"
    if not manifest.exists():
        print(f"no cluster in {state}", file=sys.stderr)
        return
    made: dict[str, Any] = json.loads(manifest.read_text())
    _stop(made.get("haproxy", {}).get("pid"), "haproxy")
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda replica: _stop(replica["pid"], "limen", STOP_BOUND), made["replicas"]))
    _stop(made.get("redis", {}).get("pid"), "redis-server")
    postgres = made.get("postgres", {})
    if "data_dir" in postgres:
        # runuser's child is the postmaster (its PID file says which); SIGINT is PostgreSQL's fast shutdown.
        pid_file = Path(postgres["data_dir"]) / "cluster" / "postmaster.pid"
        if pid_file.exists():
            postmaster = int(pid_file.read_text().split()[0])
            if _running(postmaster, "postgres"):
                os.kill(postmaster, signal.SIGINT)
                deadline = time.monotonic() + 10
                while _running(postmaster, "postgres") and time.monotonic() < deadline:
                    time.sleep(0.1)
                if _running(postmaster, "postgres"):
                    os.kill(postmaster, signal.SIGKILL)
        _stop(postgres.get("pid"), "postgres")
        shutil.rmtree(postgres["data_dir"], ignore_errors=True)
    for host in made["hosts"]:
        # extra-host.sh stop: the host's QEMUs (by their PID files), then its libvirtd.
        extra = ExtraHost(Path(host["state_dir"]), host["console_address"], tuple(host["vnc_ports"]))
        extra.pid = host["pid"]
        extra.stop()
    shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=Path(".cluster"), help="where the cluster keeps its state")
    parser.add_argument("--addresses", default="127.0.1.1,127.0.1.2",
                        help="the two hosts' loopback addresses, comma-separated")
    args = parser.parse_args()
    state = args.dir.resolve()
    if args.command == "down":
        down(state)
        return
    first, second = args.addresses.split(",")
    try:
        made = up(state, (first, second))
    except BaseException:
        print("the cluster did not come up; removing what started", file=sys.stderr)
        down(state)
        raise
    print(f"limen cluster: open {made['url']}/ and sign in as {made['admin']['name']!r} with password "
          f"{made['admin']['password']!r}")
    print(f"  API token of {made['admin']['name']!r}: {made['admin_token']}")
    print("  hosts: " + ", ".join(f"{host['name']} ({host['uri']})" for host in made["hosts"]))
    print("  replicas: " + ", ".join(f"{replica['url']} (pid {replica['pid']})" for replica in made["replicas"]))
    print(f"  state: {state}/cluster.json; remove it all with `make cluster-down`")


if __name__ == "__main__":
    main()

"""What a console proxy's VNC → browser bytes cost with and without the kernel moving them (splice(2)).

A server's WebSocket frames are not masked, so a binary frame is a header of 2–10 bytes and then the VNC
server's bytes unchanged: a proxy could write the header itself and have the kernel move the payload from
the VNC socket to the browser's through a pipe (``os.splice``), never copying it into the process. This
measures that against the userspace copy limen does today (read into a buffer with room for the header
before it, one write of header + payload), each as a plain blocking relay with nothing else in it: a sender
process streams ``--gib`` GiB in ``--chunk``-byte writes over loopback TCP, the relay frames and forwards
them, a receiver process reads and drops them. The figure is the relay's own CPU (user + system) per GiB.

``python -m bench.kernel_splice_micro [--gib 4] [--chunk 262144] [--rounds 3]``; prints one line per run
and one JSON line. Not part of ``make bench``: the experiment for issue 16's target 4 (bench/RESULTS.md,
round 14) before limen's console did the same for streaming sessions (``limen.console.kernel_move``, round 16).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import resource
import socket
import subprocess
import sys
import time
from typing import Any

from limen.console.binary_frame import HEADER_ROOM, write_binary_header
from limen.console.splice import SPLICE_READ_SIZE

READ_SIZE = SPLICE_READ_SIZE  # what limen's splice reads at most per call
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, spelled out: Python 3.11's fcntl module has no name for it


def send(port: int, total: int, chunk: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        data = b"\x5a" * chunk
        for _ in range(total // chunk):
            connection.sendall(data)


def receive(port: int) -> None:
    with socket.create_server(("127.0.0.1", port)) as server:
        print("ready", flush=True)
        connection, _ = server.accept()
        buffer = bytearray(READ_SIZE)
        received = 0
        with connection:
            while count := connection.recv_into(buffer):
                received += count
    print(received, flush=True)


def relay_by_copy(source: socket.socket, sink: socket.socket) -> int:
    buffer = bytearray(HEADER_ROOM + READ_SIZE)
    view = memoryview(buffer)
    moved = 0
    while count := source.recv_into(view[HEADER_ROOM:]):
        start = write_binary_header(buffer, count)  # limen's own framing, into the room before the payload
        sink.sendall(view[start:HEADER_ROOM + count])
        moved += count
    return moved


def relay_by_splice(source: socket.socket, sink: socket.socket) -> int:
    pipe_out, pipe_in = os.pipe()
    fcntl.fcntl(pipe_in, F_SETPIPE_SZ, READ_SIZE)
    header = bytearray(HEADER_ROOM)
    moved = 0
    try:
        while count := os.splice(source.fileno(), pipe_in, READ_SIZE):
            sink.sendall(memoryview(header)[write_binary_header(header, count):])
            left = count
            while left:
                left -= os.splice(pipe_out, sink.fileno(), left)
            moved += count
    finally:
        os.close(pipe_out)
        os.close(pipe_in)
    return moved


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def one_run(mode: str, total: int, chunk: int) -> dict[str, Any]:
    receiver_port = free_port()
    command = [sys.executable, "-m", "bench.kernel_splice_micro"]
    receiver = subprocess.Popen([*command, "--receive", str(receiver_port)], stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(("127.0.0.1", receiver_port)) as sink:
        sender = subprocess.Popen([*command, "--send", str(server.getsockname()[1]), "--bytes", str(total),
                                   "--chunk", str(chunk)])
        source, _ = server.accept()
        with source:
            before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            moved = (relay_by_copy if mode == "copy" else relay_by_splice)(source, sink)
            seconds = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_SELF)
    received = int(receiver.stdout.readline())
    receiver.wait()
    sender.wait()
    gib = moved / (1 << 30)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    assert received >= moved, (received, moved)  # every payload byte arrived, and the headers
    return {"mode": mode, "gib": round(gib, 2), "gib_per_s": round(gib / seconds, 2),
            "cpu_s_per_gib": round((user + system) / gib, 3), "user_s_per_gib": round(user / gib, 3),
            "system_s_per_gib": round(system / gib, 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=4.0)
    parser.add_argument("--chunk", type=int, default=256 * 1024, help="the sender's write size")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--send", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--receive", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.receive:
        receive(args.receive)
        return
    if args.send:
        send(args.send, args.bytes, args.chunk)
        return
    total = int(args.gib * (1 << 30)) // args.chunk * args.chunk
    runs = []
    for _ in range(args.rounds):
        for mode in ("copy", "splice"):  # alternating, so the machine's drift favours neither
            runs.append(one_run(mode, total, args.chunk))
            print(f"{mode:6}  {runs[-1]['gib_per_s']:5.2f} GiB/s  relay CPU {runs[-1]['cpu_s_per_gib']:.3f} s/GiB "
                  f"(user {runs[-1]['user_s_per_gib']:.3f}, system {runs[-1]['system_s_per_gib']:.3f})", flush=True)
    print(json.dumps({"chunk": args.chunk, "load": os.getloadavg(), "runs": runs}))


if __name__ == "__main__":
    main()

"""What each step of a Python console proxy's VNC → browser hot path costs, per chunk and per GB.

Each step is timed alone, in a loop, on this machine: the figure is CPU time per chunk, and the same
multiplied by the chunks in one GB (``--chunk`` bytes each; limen reads 256 KiB). The steps are those the
py-spy profile of limen's console shows (RESULTS.md), and the alternatives the pump prototype uses.

``python -m bench.hotpath_micro [--chunk 262144] [--seconds 0.5]``; prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.protocol import SERVER
from websockets.server import ServerProtocol

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask


def _timed(step: Callable[[], object], seconds: float) -> float:
    """Seconds per call of ``step`` (process CPU time, best of three runs)."""
    best = float("inf")
    for _ in range(3):
        calls = 0
        started = time.process_time()
        deadline = started + seconds / 3
        while True:
            for _ in range(16):
                step()
            calls += 16
            now = time.process_time()
            if now >= deadline:
                break
        best = min(best, (now - started) / calls)
    return best


def measure(chunk: int, seconds: float) -> dict[str, float]:
    payload = bytes(chunk)
    loop = asyncio.new_event_loop()
    results: dict[str, float] = {}

    # asyncio.StreamReader: the VNC socket's bytes are copied into its buffer, then out of it.
    reader = asyncio.StreamReader(limit=chunk, loop=loop)

    def stream_reader_feed_and_read() -> None:
        reader.feed_data(payload)
        loop.run_until_complete(reader.read(chunk))

    async def nothing() -> None:
        return None

    round_trip = _timed(lambda: loop.run_until_complete(nothing()), seconds)
    results["StreamReader feed_data + read (2 copies; loop round subtracted)"] = max(
        0.0, _timed(stream_reader_feed_and_read, seconds) - round_trip
    )
    results["  of which: one run_until_complete round (measuring overhead)"] = round_trip

    # websockets' sans-I/O protocol: send_binary + data_to_send (what uvicorn's websockets-sansio calls).
    protocol = ServerProtocol()
    protocol.state = protocol.state.__class__.OPEN  # skip the handshake: only framing is timed
    protocol.side = SERVER

    def sansio_send() -> None:
        protocol.send_binary(payload)
        protocol.data_to_send()

    results["websockets send_binary + data_to_send (frame copy)"] = _timed(sansio_send, seconds)

    frame = Frame(Opcode.BINARY, payload)
    results["  of which: Frame.serialize"] = _timed(lambda: frame.serialize(mask=False), seconds)

    # The pump prototype: header into reserved room before the payload, no copy at all.
    buffer = bytearray(10 + chunk)
    view = memoryview(buffer)

    def header_in_place() -> None:
        view[6:10] = b"\x82\x7f" + chunk.to_bytes(8, "big")[:2]
        _ = view[6 : 10 + chunk]  # the slice the pump hands to transport.write

    results["header written in place before the payload (pump)"] = _timed(header_in_place, seconds)
    results["bytes(memoryview) copy of one chunk"] = _timed(lambda: bytes(view[10:]), seconds)

    # Per-write deadline with asyncio.timeout (enter + exit, nothing awaited inside).
    async def with_timeout() -> None:
        async with asyncio.timeout(5):
            await nothing()

    round_trip = results["  of which: one run_until_complete round (measuring overhead)"]
    results["asyncio.timeout enter/exit per write (loop round subtracted)"] = max(
        0.0, _timed(lambda: loop.run_until_complete(with_timeout()), seconds) - round_trip
    )
    results["client → VNC: apply_mask of one chunk (C speedups)"] = _timed(
        lambda: apply_mask(payload, b"\x01\x02\x03\x04"), seconds
    )
    loop.close()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=int, default=256 * 1024)
    parser.add_argument("--seconds", type=float, default=0.6)
    args = parser.parse_args(argv)
    results = measure(args.chunk, args.seconds)
    per_gb = 1e9 / args.chunk
    print(f"chunk {args.chunk} bytes, {per_gb:.0f} chunks per GB")
    print(f"{'step':<62} {'µs/chunk':>9} {'CPU s/GB':>9}")
    table: dict[str, Any] = {}
    for name, seconds in results.items():
        print(f"{name:<62} {seconds * 1e6:9.1f} {seconds * per_gb:9.3f}")
        table[name] = {"us_per_chunk": round(seconds * 1e6, 2), "cpu_s_per_gb": round(seconds * per_gb, 4)}
    print(json.dumps({"chunk": args.chunk, "steps": table}))


if __name__ == "__main__":
    main()

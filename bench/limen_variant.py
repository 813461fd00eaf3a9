"""limen's app under uvicorn with the WebSocket layer or the event loop swapped, to compare them.

The benchmark's ``limen`` column always runs the real ``limen serve``. This launcher exists for the
comparison in RESULTS.md: the same app (``create_app``), the same console endpoint and settings, only
the option named changes. If the app does not mount the console route yet, it is mounted here.

``python -m bench.limen_variant --port P --ws {console,websockets,websockets-sansio,wsproto}
--loop {uvloop,asyncio} [--patch chunk-reader]``, with the usual ``LIMEN_*`` environment. ``console`` is
the console helper's own choice (``limen.console.ws_protocol.uvicorn_ws_options``).

``--patch chunk-reader`` is an experiment, not a proposal for the code as is: the VNC socket's
``asyncio.StreamReader`` is replaced by :class:`ChunkReader`, which hands each chunk the socket gave
back whole instead of copying it into and out of one bytearray (see RESULTS.md for what that saves).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
from typing import Any

from limen.api.app import create_app
from limen.logs import configure_logging
from limen.server import LimenServer, raise_fd_limit, uvicorn_config
from limen.settings import load_settings

CONSOLE_PATH = "/api/vms/{vm_id}/console"


class ChunkReader(asyncio.StreamReader):
    """A StreamReader that queues the chunks it is fed and returns them whole from ``read``.

    Only ``read`` is supported (all the console uses). Reading pauses past ``2 × limit`` queued bytes,
    like StreamReader's.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(limit=limit)
        self._chunks: collections.deque[bytes] = collections.deque()
        self._queued = 0

    def feed_data(self, data: bytes) -> None:
        if not data:
            return
        self._chunks.append(data)
        self._queued += len(data)
        self._buffer_has_data()

    def _buffer_has_data(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.cancelled():
                waiter.set_result(None)
        if self._transport is not None and not self._paused and self._queued > 2 * self._limit:
            try:
                self._transport.pause_reading()
            except NotImplementedError:
                self._transport = None
            else:
                self._paused = True

    async def read(self, n: int = -1) -> bytes:
        if self._exception is not None:
            raise self._exception
        if not self._chunks and not self._eof:
            await self._wait_for_data("read")
        if not self._chunks:
            return b""
        chunk = self._chunks.popleft()
        if 0 <= n < len(chunk):
            self._chunks.appendleft(chunk[n:])
            chunk = chunk[:n]
        self._queued -= len(chunk)
        if self._paused and self._queued <= self._limit:
            self._paused = False
            assert self._transport is not None
            self._transport.resume_reading()
        return chunk


def install_chunk_reader() -> None:
    """Makes ``asyncio.open_connection`` (which the console's ``open_vnc`` calls) build a ChunkReader.

    Process-wide, which is fine in this launcher: nothing else in limen opens TCP streams.
    """

    async def open_connection(host: str, port: int, *, limit: int = 2**16, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        reader = ChunkReader(limit)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.create_connection(lambda: protocol, host, port, **kwargs)
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    asyncio.open_connection = open_connection  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ws", default="console", choices=["console", "websockets", "websockets-sansio", "wsproto"])
    parser.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    parser.add_argument("--patch", action="append", default=[], choices=["chunk-reader"])
    args = parser.parse_args(argv)
    if "chunk-reader" in args.patch:
        install_chunk_reader()
    settings = load_settings(None, host="127.0.0.1", port=args.port)
    configure_logging(settings)
    app = create_app(settings)
    if not any(getattr(route, "path", None) == CONSOLE_PATH for route in app.routes):
        from limen.console.endpoint import router

        app.include_router(router)
    options: dict[str, Any] = {"loop": args.loop}
    if args.ws == "console":
        from limen.console.ws_protocol import uvicorn_ws_options

        options.update(uvicorn_ws_options(settings))
    else:
        options["ws"] = args.ws
    raise_fd_limit()
    LimenServer(uvicorn_config(app, settings, **options)).run()


if __name__ == "__main__":
    main()

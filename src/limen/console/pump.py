"""The two directions of the proxy. Each moves whole chunks; neither looks inside them.

Memory stays bounded whatever the peers do: a direction reads its next chunk only once the previous
one was written (the WebSocket send waits until the socket drains; the VNC write waits on
``drain()`` past the transport's high-water mark), and every wait that depends on a peer has a
deadline. No log line per chunk: the counters in :class:`Traffic` go into the session's end line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from limen import end_details
from limen.console.rfb import only_asks_for_updates
from limen.errors import ErrorCode, LimenError


@dataclass(slots=True)
class Traffic:
    to_client: int = 0
    to_vnc: int = 0
    # Of to_client, what the kernel moved without the process copying it (limen.console.kernel_move).
    to_client_by_kernel: int = 0
    # Clock time of the last input from the client (for the idle timeout).
    last_input: float = 0.0


async def vnc_to_client(
    reader: asyncio.StreamReader,
    send: Callable[[bytes], Awaitable[None]],
    traffic: Traffic,
    *,
    read_size: int,
) -> None:
    """Forwards the VNC server's stream until it closes. ``send`` carries the write deadline."""
    while True:
        data = await reader.read(read_size)
        if not data:
            return
        await send(data)
        traffic.to_client += len(data)


async def client_to_vnc(
    receive: Callable[[], Awaitable[bytes | None]],
    writer: asyncio.StreamWriter,
    traffic: Traffic,
    *,
    clock: Callable[[], float],
    write_timeout: float,
) -> None:
    """Forwards the client's binary messages until the client leaves (``receive`` returns None)."""
    transport = writer.transport
    while True:
        data = await receive()
        if data is None:
            return
        if not only_asks_for_updates(data):
            traffic.last_input = clock()
        if not data:
            continue
        if transport.is_closing():
            raise LimenError(ErrorCode.VNC_CONNECTION_FAILED, end_details.VNC_CONNECTION_CLOSED)
        writer.write(data)
        traffic.to_vnc += len(data)
        # drain() only waits when the transport is past its high-water mark; skip the call otherwise.
        if transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]:
            try:
                async with asyncio.timeout(write_timeout):
                    await writer.drain()
            except TimeoutError:
                raise LimenError(
                    ErrorCode.VNC_CONNECTION_FAILED,
                    f"the VNC server accepted no data for {write_timeout:g} s",
                ) from None
            except ConnectionError as exc:
                raise LimenError(ErrorCode.VNC_CONNECTION_FAILED, f"writing to the VNC server: {exc}") from None

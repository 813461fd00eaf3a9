"""A Server-Sent Events client for tests: reads a stream in a thread and keeps what arrives, timed."""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class SseEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    received_at: float = 0.0  # time.monotonic() when its blank line arrived

    @property
    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SseStream:
    """``GET url`` as an event stream, read by a daemon thread. ``events`` get every event; ``comments``
    every comment line; ``ended`` is set when the server closes the stream."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    events: queue.Queue[SseEvent] = field(default_factory=queue.Queue)
    comments: queue.Queue[tuple[float, str]] = field(default_factory=queue.Queue)
    ended: threading.Event = field(default_factory=threading.Event)
    status: int | None = None
    _client: httpx.Client | None = None

    def start(self) -> SseStream:
        opened = threading.Event()
        threading.Thread(target=self._read, args=(opened,), daemon=True).start()
        assert opened.wait(10), f"no answer from {self.url}"
        return self

    def _read(self, opened: threading.Event) -> None:
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        try:
            with self._client.stream("GET", self.url, headers=self.headers) as response:
                self.status = response.status_code
                opened.set()
                current = SseEvent()
                for line in response.iter_lines():
                    if line == "":
                        if current.data or current.event != "message" or current.id is not None:
                            current.received_at = time.monotonic()
                            self.events.put(current)
                        current = SseEvent()
                    elif line.startswith(":"):
                        self.comments.put((time.monotonic(), line[1:].strip()))
                    else:
                        name, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if name == "event":
                            current.event = value
                        elif name == "data":
                            current.data = f"{current.data}\n{value}" if current.data else value
                        elif name == "id":
                            current.id = value
                        elif name == "retry":
                            current.retry = int(value)
        except httpx.HTTPError:
            pass
        finally:
            opened.set()
            self.ended.set()

    def next(self, timeout: float = 10.0, *, event: str | None = None) -> SseEvent:
        """The next event (of type ``event``, skipping others) within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {event or 'event'} within {timeout} s")
            try:
                got = self.events.get(timeout=left)
            except queue.Empty:
                raise TimeoutError(f"no {event or 'event'} within {timeout} s") from None
            if event is None or got.event == event:
                return got

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

"""The text frames of the console WebSocket, always produced by a JSON encoder.

The seed's wire format, byte for byte: compact JSON, keys in this order::

    {"type":"status","message":"Connected, checking VM status...","stage":"check_vm","elapsed_ms":0}
    {"type":"error","error":title,"code":CODE,"details":detail,"message":what to do,"stage":"connect"}

``stage`` and ``elapsed_ms`` are limen's additions; a client of the original system reads ``type`` and
``message`` only. After the proxy stage a client that asked for them (``?notices=1``) may also get::

    {"type":"notice","code":"IDLE_WARNING","message":...,"seconds_left":60,"stage":"proxy","elapsed_ms":...}

A notice's values (``seconds_left``) come as fields too, so that a page in another language says its own
words with them; ``message`` is the English.

Details come from libvirt, sockets and peers, so they may hold quotes, backslashes, newlines,
control characters, non-ASCII text or even lone surrogates; the encoder keeps every frame valid JSON
and valid UTF-8 (lone surrogates become U+FFFD).

The status texts themselves are declared with their stages, in ``stage_table.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from limen.errors import LimenError

NOTICE_IDLE_WARNING: Final = "IDLE_WARNING"


def _clean(value: Any) -> Any:
    """Strings safe to encode as UTF-8: lone surrogates (from undecodable bytes) become U+FFFD."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def encode(frame: dict[str, Any]) -> str:
    """Compact JSON, keys in insertion order, non-ASCII kept as is (a text frame is UTF-8 anyway)."""
    return json.dumps({key: _clean(value) for key, value in frame.items()}, separators=(",", ":"),
                      ensure_ascii=False)


def status_frame(message: str, *, stage: str, elapsed_ms: int) -> str:
    return encode({"type": "status", "message": message, "stage": stage, "elapsed_ms": elapsed_ms})


def error_frame(error: LimenError, *, stage: str) -> str:
    return encode({"type": "error", **error.to_dict(), "stage": stage})


def notice_frame(
    code: str, message: str, *, stage: str, elapsed_ms: int, values: Mapping[str, float] | None = None
) -> str:
    return encode({"type": "notice", "code": code, "message": message, **(values or {}), "stage": stage,
                   "elapsed_ms": elapsed_ms})


def idle_warning_text(seconds_left: float) -> str:
    return f"No input for a while: the console closes in {seconds_left:g} s unless you use it."

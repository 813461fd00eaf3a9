r"""A JSON request body is read strictly: Unicode text, and each object's keys told once. What Python's
``json`` lets through otherwise is refused before any route sees it, as a 400 INVALID_REQUEST naming where,
the answer FastAPI gives any body that is not JSON. Every route of limen's API routers is a
:class:`StrictJsonRoute`: its body is parsed once, here.

- A lone UTF-16 surrogate (``"\ud800"``): JSON's ``\uXXXX`` escapes can spell half of a surrogate pair, which
  Python's ``json`` turns into a ``str`` no encoder takes. pydantic passes such a string through unless a
  field has a length bound, so it reached argon2, SQLite or libvirt and failed there as a 500, after the work
  had begun (an owner change left its audit row ``STARTED``).
- Bytes that are not UTF-8 (``caf\xe9``, Latin-1's "café"): RFC 8259 allows only UTF-8 between systems.
  Decoded with replacement characters, they were kept as ``caf\ufffd`` in a description or a password,
  changed without a word.
- A key given twice in one object (``{"name": "a", "name": "b"}``): Python's ``json`` keeps the last, while a
  proxy or filter in front of limen that reads the first would have checked what limen does not act on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from limen.client_text import quoted

_LONE_SURROGATE_MAX = 0xDFFF
_LONE_SURROGATE_MIN = 0xD800


def lone_surrogate_at(value: object, where: str = "body") -> str | None:
    """Where in ``value`` (parsed JSON) a string holds a lone surrogate (``body.name``, ``body.items.2``),
    or None if nowhere."""
    if isinstance(value, str):
        return where if any(_LONE_SURROGATE_MIN <= ord(char) <= _LONE_SURROGATE_MAX for char in value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = lone_surrogate_at(key, where) or lone_surrogate_at(item, f"{where}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = lone_surrogate_at(item, f"{where}.{index}")
            if found is not None:
                return found
    return None


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return value


class _StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            raw = await self.body()
            try:
                document = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                byte = f"the byte at offset {error.start} (0x{raw[error.start]:02x})"
                raise json.JSONDecodeError(f"{byte} is not UTF-8: send the body as UTF-8 text",
                                           raw.decode("utf-8", "replace"), 0) from None
            try:
                value = json.loads(document, object_pairs_hook=_object_without_duplicates)
            except _DuplicateKey as duplicate:
                raise json.JSONDecodeError(f"the key {quoted(duplicate.key)} is given twice in one object",
                                           document, 0) from None
            where = lone_surrogate_at(value)
            if where is not None:
                # FastAPI answers a JSONDecodeError as an invalid body (error_responses: INVALID_REQUEST).
                raise json.JSONDecodeError(f"{where} holds a lone UTF-16 surrogate, which is not Unicode text",
                                           document, 0)
            self._json = value
        return self._json


class StrictJsonRoute(APIRoute):
    """An API route whose JSON body is refused when it is not Unicode text or tells a key twice (see the
    module)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def checked(request: Request) -> Response:
            return await handle(_StrictJsonRequest(request.scope, request.receive))

        return checked

r"""A JSON request body must be Unicode text: a lone UTF-16 surrogate (``"\ud800"``) is refused before any
route sees it.

JSON's ``\uXXXX`` escapes can spell half of a surrogate pair, which Python's ``json`` turns into a ``str``
no encoder takes. pydantic passes such a string through unless a field has a length bound, so it reached
argon2, SQLite or libvirt and failed there as a 500, after the work had begun (an owner change left its
audit row ``STARTED``). Every route of limen's API routers is a :class:`UnicodeCheckedRoute`: its body is
parsed once, here, and one holding a lone surrogate anywhere (a value or a key) is a 400 INVALID_REQUEST
naming where, the answer FastAPI gives any body that is not JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

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


class _UnicodeCheckedRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            document = (await self.body()).decode("utf-8", "replace")
            value = json.loads(document)
            where = lone_surrogate_at(value)
            if where is not None:
                # FastAPI answers a JSONDecodeError as an invalid body (error_responses: INVALID_REQUEST).
                raise json.JSONDecodeError(f"{where} holds a lone UTF-16 surrogate, which is not Unicode text",
                                           document, 0)
            self._json = value
        return self._json


class UnicodeCheckedRoute(APIRoute):
    """An API route whose JSON body is refused when it is not Unicode text (see the module)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def checked(request: Request) -> Response:
            return await handle(_UnicodeCheckedRequest(request.scope, request.receive))

        return checked

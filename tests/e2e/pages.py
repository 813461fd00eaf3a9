"""Every page of limen, read from its routes: a page added to limen.web.routes is visited by the tests
that walk all pages (test_offline.py, test_layouts.py) without being listed here."""

from __future__ import annotations

import re

from fastapi.routing import APIRoute

from limen.web.api_docs import API_DOCS_URL
from limen.web.routes import router

_PARAMETER = re.compile(r"\{([^}:]+)(:[^}]*)?\}")


def page_paths(**values: str) -> list[str]:
    """The paths of limen's pages (GET routes left out of the API schema, and /api/docs), with each
    ``{parameter}`` filled from ``values`` (``vm_id=…``); a parameter without a value gets ``"1"``, so a
    new page with an id of another kind is still visited (it then says that the thing is missing)."""
    paths = [
        route.path
        for route in router.routes
        if isinstance(route, APIRoute) and not route.include_in_schema and "GET" in (route.methods or ())
    ]
    paths.append(API_DOCS_URL)
    return [_PARAMETER.sub(lambda match: values.get(match.group(1), "1"), path) for path in paths]

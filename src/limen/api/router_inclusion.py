"""Puts a module's router into an app without FastAPI preparing its routes again for that app.

``FastAPI.include_router`` keeps the router and, on the first request that reaches it, prepares each of
its routes anew for this app (dependency analysis and pydantic validators, a few milliseconds a route).
An ``APIRouter`` prepared them already, once, when its module was imported: :func:`include_routes`
puts those very route objects into the app. The app answers the same (paths, methods, OpenAPI schema);
what differs is that each app built in one process (the unit tests build hundreds) no longer pays again.

A route added this way does not see ``app.dependency_overrides`` (it was prepared without an app);
limen uses none.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI


def include_routes(app: FastAPI, *routers: APIRouter) -> None:
    """Appends the routes of ``routers`` to ``app``'s, in order (the routers' prefixes and tags are in
    their routes already)."""
    for router in routers:
        app.router.routes.extend(router.routes)

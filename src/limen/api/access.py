"""Puts access control into the app: ``app.state.access`` and the routes of users, tokens, tickets, audit.

The app's lifespan must ``await access.start()`` before serving and ``await access.close()`` after.
"""

from __future__ import annotations

from fastapi import FastAPI

from limen.api import audit, auth, tickets, users
from limen.api.router_inclusion import include_routes
from limen.auth.access import Access


def install_access(app: FastAPI, access: Access) -> None:
    app.state.access = access
    include_routes(app, auth.router, users.router, tickets.router, audit.router)

"""Puts access control's routes into the app: sign-in, users, tokens, tickets, audit. The app's
:class:`limen.auth.access.Access` is its services' ``access``; the lifespan must ``await access.start()``
before serving and ``await access.close()`` after.
"""

from __future__ import annotations

from fastapi import FastAPI

from limen.api import audit_log, auth, tickets, users
from limen.api.router_inclusion import include_routes


def install_access(app: FastAPI) -> None:
    include_routes(app, auth.router, users.router, tickets.router, audit_log.router)

"""Puts access control's routes into the app: sign-in, users, tokens, audit (the console
ticket's route comes first of all: :func:`limen.api.app.create_app`). The app's
:class:`limen.auth.access.Access` is its services' ``access``; the lifespan must ``await access.start()``
before serving and ``await access.close()`` after.
"""

from __future__ import annotations

from fastapi import FastAPI

from limen.api import audit_log, auth, users
from limen.api.router_inclusion import include_routes


def install_access(app: FastAPI) -> None:
    include_routes(app, auth.router, users.router, audit_log.router)  # tickets: first of all (app.py)

"""``GET /api/console-stages``: every console kind's stages, as the stage table declares them.

Each kind (``vnc``) lists its stages in order, each with its name, its label for people, the text of its
status frame (``{port}`` filled in on the wire), its deadline in seconds under the settings in force (null:
none) and the setting that holds it, and the codes a timeout becomes; plus the worst case from the upgrade
to a verdict. Public like ``/api/error-codes``: the console page reads it before anyone is signed in to
a console, and it holds nothing but the console's own documentation.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from limen.api.services import services_of
from limen.api.strict_json import StrictJsonRoute
from limen.console.stage_table import CONSOLE_KINDS
from limen.settings import Settings

router = APIRouter(route_class=StrictJsonRoute)


def console_stage_table(settings: Settings) -> dict[str, Any]:
    """What ``GET /api/console-stages`` answers, and what the console page carries in itself."""
    return {kind: stages.describe(settings) for kind, stages in CONSOLE_KINDS.items()}


@router.get("/api/console-stages", tags=["console"])
async def console_stages(request: Request) -> dict[str, Any]:
    """Every console kind's stages: name, label, status text, deadline seconds and setting, timeout codes."""
    return console_stage_table(services_of(request).settings)

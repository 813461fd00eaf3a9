"""ConsoleRoute: the console's two WebSocket paths go straight to the endpoint, everything else down the stack."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.middleware.errors import ServerErrorMiddleware

from limen.api.app import create_app
from limen.console import endpoint
from limen.console.endpoint import CONSOLE_PATH, ConsoleRoute
from limen.settings import Settings


@pytest.mark.parametrize(("path", "vm_id"), [
    ("/api/vms/alice-vm/console", "alice-vm"),
    ("/api/vms/1ce0be4c-0000-4000-8000-000000000001/console", "1ce0be4c-0000-4000-8000-000000000001"),
    ("/vnc/alice-vm", "alice-vm"),
    ("/api/vms/a/b/console", None),
    ("/api/vms//console", None),
    ("/api/vms/x/console/", None),
    ("/api/vms/x/console-ticket", None),
    ("/vnc/", None),
    ("/vnc/a/b", None),
])
def test_the_paths_are_the_routers(path: str, vm_id: str | None) -> None:
    match = CONSOLE_PATH.match(path)
    assert (match.group(1) or match.group(2) if match else None) == vm_id


async def test_console_websockets_skip_the_stack_and_the_rest_go_down_it(monkeypatch: pytest.MonkeyPatch) -> None:
    consoles: list[tuple[str, dict[str, Any]]] = []
    below: list[tuple[str, str]] = []

    async def console(websocket: Any, vm_id: str) -> None:
        consoles.append((vm_id, websocket.scope["path_params"]))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        below.append((scope["type"], scope["path"]))

    async def nothing(*args: Any) -> Any:
        return None

    monkeypatch.setattr(endpoint, "console", console)
    route = ConsoleRoute(app)
    for kind, path in [("websocket", "/vnc/vm1"), ("http", "/api/vms/vm1/console"),
                       ("websocket", "/api/vms/vm2/console"), ("websocket", "/api/events")]:
        await route({"type": kind, "path": path, "headers": []}, nothing, nothing)
    assert consoles == [("vm1", {"vm_id": "vm1"}), ("vm2", {"vm_id": "vm2"})]
    assert below == [("http", "/api/vms/vm1/console"), ("websocket", "/api/events")]


def test_the_app_puts_the_route_outside_every_middleware(make_settings: Callable[..., Settings]) -> None:
    """Each middleware passes a WebSocket through untouched, and would be a coroutine frame every console
    keeps for its whole life (bench/RESULTS.md, round 26): the route is the app's outermost layer."""
    stack = create_app(make_settings()).build_middleware_stack()
    assert isinstance(stack, ConsoleRoute)
    assert isinstance(stack.app, ServerErrorMiddleware)  # Starlette's own outermost, next

"""Liveness, readiness and metrics."""

from __future__ import annotations

import hmac
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from limen import __version__
from limen.api.deps import HypervisorDep, SettingsDep
from limen.api.schemas import Health
from limen.api.services import services_of
from limen.api.strict_json import StrictJsonRoute
from limen.errors import ErrorCode, LimenError
from limen.metrics import Metrics
from limen.settings import Settings

router = APIRouter(route_class=StrictJsonRoute, tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process answers, and says which version of limen it is."""
    return Health(status="ok", version=__version__)


@router.get("/readyz", responses={503: {"description": "A check failed; `failing` names it"}})
async def readyz(request: Request, hypervisor: HypervisorDep, settings: SettingsDep,
                 scope: Literal["all", "instance"] = "all") -> JSONResponse:
    """Ready to serve: libvirt and the database answer within their timeouts, and the server is not
    shutting down (from SIGTERM on it answers 503 with ``shutdown`` failing, so a load balancer sends
    nothing new here while its consoles move elsewhere).

    ``scope=instance``, for a load balancer in front of several replicas: only what is this replica's own
    (shutting down). libvirt and the database are shared by every replica: when they fail, taking every
    replica out left clients the balancer's HTML 503, where each replica answers the JSON error that says
    which (DATABASE_UNAVAILABLE, HYPERVISOR_UNAVAILABLE).

    A failing check says why (the driver's message, the database's address) only to whoever may read
    ``/metrics``; anyone else gets its error code alone: this answers without signing in."""
    checks: dict[str, str] = {}
    if services_of(request).shutting_down.is_set():
        checks["shutdown"] = "the server is shutting down"
    if scope == "instance":
        return _readiness(checks)
    why: dict[str, str] = {}
    try:
        await hypervisor.host_info()
        checks["libvirt"] = "ok"
    except LimenError as exc:
        checks["libvirt"] = exc.code.name
        why["libvirt"] = f"{exc.code.name}: {exc.details}"
    access = services_of(request).access
    try:
        await access.db.ping(settings.database_timeout)
        checks["database"] = "ok"
    except TimeoutError:
        checks["database"] = ErrorCode.DATABASE_UNAVAILABLE.name
        why["database"] = f"no answer from {access.db.redacted_url} within {settings.database_timeout:g} s"
    except Exception as exc:  # any driver error means: not ready
        checks["database"] = ErrorCode.DATABASE_UNAVAILABLE.name
        why["database"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    if why and _may_read_metrics(request, settings):
        checks.update(why)
    return _readiness(checks)


# Monitors and `curl -I` probe with HEAD: the same checks and status as GET (the server sends no body).
# Left out of the API's documentation, where each would repeat its GET.
router.add_api_route("/healthz", healthz, methods=["HEAD"], response_model=Health, include_in_schema=False)
router.add_api_route("/readyz", readyz, methods=["HEAD"], include_in_schema=False)


def _readiness(checks: dict[str, str]) -> JSONResponse:
    failing = [name for name, result in checks.items() if result != "ok"]
    body = {"status": "failing" if failing else "ok", "failing": failing, "checks": checks}
    return JSONResponse(body, status_code=503 if failing else 200)


def _metrics_token_given(request: Request, settings: Settings) -> bool:
    if settings.metrics_token is None:
        return False
    expected = f"Bearer {settings.metrics_token.get_secret_value()}"
    given = request.headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), expected.encode())


def _may_read_metrics(request: Request, settings: Settings) -> bool:
    """LIMEN_METRICS_TOKEN's bearer when one is set, otherwise a client on this machine: one behind a proxy
    here is not (the proxy's loopback connection carries everyone's requests)."""
    if settings.metrics_token is not None:
        return _metrics_token_given(request, settings)
    return services_of(request).access.is_local_client(request)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, settings: SettingsDep) -> Response:
    """Prometheus metrics. Bearer token when configured, otherwise loopback clients only."""
    if settings.metrics_token is not None:
        if not _metrics_token_given(request, settings):
            raise LimenError(
                ErrorCode.UNAUTHORIZED, "/metrics needs 'Authorization: Bearer <LIMEN_METRICS_TOKEN>'"
            )
    elif not _may_read_metrics(request, settings):
        raise LimenError(
            ErrorCode.FORBIDDEN, "/metrics answers clients on limen's own machine only (not through a proxy) "
            "unless LIMEN_METRICS_TOKEN is set"
        )
    registry: Metrics = services_of(request).metrics
    return Response(registry.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

"""Request ids, readiness and metrics of the HTTP side (in-process, test driver)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from limen.api.services import services_of
from limen.logs import configure_logging
from limen.settings import Settings
from tests.conftest import app_client, settings_in
from tests.support.prometheus import sample as _sample


async def test_request_id_is_echoed_generated_and_put_in_error_details(
    make_settings: Callable[..., Settings],
) -> None:
    async with app_client(make_settings()) as client:
        given = await client.get("/api/vms/missing", headers={"X-Request-ID": "abc-123"})
        assert given.headers["x-request-id"] == "abc-123"
        assert given.json()["details"].endswith("[request_id=abc-123]")
        made = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
        assert made.headers["x-request-id"] != "bad id with spaces"
        assert len(made.headers["x-request-id"]) == 32


async def test_request_id_appears_in_log_lines(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings(log_dir=tmp_path / "logs")
    log_file = configure_logging(settings)
    assert log_file is not None
    try:
        async with app_client(settings) as client:
            await client.post("/api/vms", json={"name": "logged-1", "memory_mib": 64}, headers={"X-Request-ID": "r-42"})
            await client.delete("/api/vms/logged-1")
        lines = [json.loads(line) for line in log_file.read_text().splitlines()]
        created = [line for line in lines if line.get("event") == "vm_create"]
        assert created
        assert created[0]["request_id"] == "r-42"
        assert created[0]["vm_name"] == "logged-1"
    finally:
        logger = logging.getLogger("limen")
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


async def test_readyz_names_the_failing_check(make_settings: Callable[..., Settings]) -> None:
    async with app_client(make_settings()) as client:
        ok = await client.get("/readyz")
        assert ok.status_code == 200
        assert ok.json() == {"status": "ok", "failing": [], "checks": {"libvirt": "ok", "database": "ok"}}
    broken = make_settings(libvirt_uri="qemu+unix:///system?socket=/nonexistent/sock", libvirt_timeout=1)
    async with app_client(broken) as client:
        failing = await client.get("/readyz")
        assert failing.status_code == 503
        assert failing.json()["failing"] == ["libvirt"]
        assert failing.json()["checks"]["libvirt"].startswith("HYPERVISOR_UNAVAILABLE")
        assert (await client.get("/healthz")).status_code == 200


async def test_health_probes_answer_head_as_get(make_settings: Callable[..., Settings]) -> None:
    """Uptime monitors and `curl -I` ask with HEAD: the probe's status, not 405 METHOD_NOT_ALLOWED."""
    async with app_client(make_settings()) as client:
        assert (await client.head("/healthz")).status_code == 200
        assert (await client.head("/readyz")).status_code == 200
        assert (await client.head("/readyz", params={"scope": "instance"})).status_code == 200
    broken = make_settings(libvirt_uri="qemu+unix:///system?socket=/nonexistent/sock", libvirt_timeout=1)
    async with app_client(broken) as client:
        assert (await client.head("/readyz")).status_code == 503
        assert (await client.head("/healthz")).status_code == 200


async def test_readyz_fails_when_the_database_goes_away(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    database_dir = tmp_path / "db"
    async with app_client(make_settings(database_url=f"sqlite:///{database_dir}/limen.db")) as client:
        assert (await client.get("/readyz")).status_code == 200
        # The database's directory disappears and a plain file takes its name: SQLite cannot open it.
        client_app = client._transport.app  # type: ignore[attr-defined]
        services_of(client_app).access.db.engine.dispose()
        database_dir.rename(tmp_path / "db-moved")
        database_dir.write_text("not a directory")
        failing = await client.get("/readyz")
        # What a balancer in front of replicas asks: the database is every replica's, not this one's.
        instance = await client.get("/readyz", params={"scope": "instance"})
    assert failing.status_code == 503
    assert failing.json()["failing"] == ["database"]
    assert failing.json()["checks"]["libvirt"] == "ok"
    assert "OperationalError" in failing.json()["checks"]["database"]
    assert instance.status_code == 200 and instance.json()["checks"] == {}


async def test_readyz_waits_for_the_database_its_own_timeout(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """LIMEN_DATABASE_TIMEOUT, not libvirt's: a database slower than libvirt's bound but within its own is
    ready, and a hung one is named with the bound the requests it fails keep."""
    waited: list[float] = []

    async def no_answer(timeout: float) -> None:
        waited.append(timeout)
        raise TimeoutError

    async with app_client(make_settings(libvirt_timeout=1, database_timeout=7)) as client:
        database = services_of(client._transport.app).access.db  # type: ignore[attr-defined]
        monkeypatch.setattr(database, "ping", no_answer)
        failing = await client.get("/readyz")
    assert waited == [7]
    assert failing.json()["checks"]["database"] == f"no answer from {database.redacted_url} within 7 s"


async def test_metrics_count_http_requests_and_libvirt_calls(make_settings: Callable[..., Settings]) -> None:
    async with app_client(make_settings()) as client:
        await client.get("/api/vms")
        await client.get("/api/vms/missing")
        text = (await client.get("/metrics")).text
    assert _sample(text, "limen_http_requests_total", route="/api/vms", method="GET", status="200") == 1
    assert _sample(text, "limen_http_requests_total", route="/api/vms/{vm_id}", method="GET", status="404") == 1
    assert _sample(text, "limen_libvirt_call_seconds_count", operation="list_vms") >= 1
    assert _sample(text, "limen_libvirt_call_failures_total", operation="get_vm", code="VM_NOT_FOUND") == 1


@pytest.fixture(scope="module")
async def metrics_token_client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx.AsyncClient]:
    """One app for the tests that only read /metrics (or are refused it) with a token set."""
    async with app_client(settings_in(tmp_path_factory.mktemp("metrics-token"), metrics_token="s3cret")) as client:
        yield client


@pytest.mark.parametrize(("header", "status"), [(None, 401), ("Bearer wrong", 401), ("Bearer s3cret", 200)])
async def test_metrics_token(metrics_token_client: httpx.AsyncClient, header: str | None, status: int) -> None:
    headers = {"Authorization": header} if header else {}
    response = await metrics_token_client.get("/metrics", headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.json()["code"] == "UNAUTHORIZED"
        assert "s3cret" not in response.text


async def test_metrics_refuse_remote_clients_without_a_token(make_settings: Callable[..., Settings]) -> None:
    from limen.api.app import create_app

    app = create_app(make_settings())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://limen.test") as client:
            response = await client.get("/metrics")
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN"


async def test_metrics_refuse_clients_a_proxy_on_this_machine_forwards(make_settings: Callable[..., Settings]) -> None:
    """nginx or HAProxy on limen's machine connects from loopback for every client: a forwarded request is
    not a local client's, whether the proxy is trusted (it names the client) or not (the client is unknown)."""
    remote = {"X-Forwarded-For": "203.0.113.9"}
    async with app_client(make_settings()) as untrusting:
        assert (await untrusting.get("/metrics")).status_code == 200
        refused = await untrusting.get("/metrics", headers=remote)
        assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
        assert (await untrusting.get("/metrics", headers={"Forwarded": "for=203.0.113.9"})).status_code == 403
    async with app_client(make_settings(trusted_proxies="127.0.0.1/32")) as trusting:
        assert (await trusting.get("/metrics", headers=remote)).status_code == 403
        assert (await trusting.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})).status_code == 200


async def test_readyz_tells_why_only_to_whoever_may_read_metrics(make_settings: Callable[..., Settings]) -> None:
    """It answers without signing in: anyone else learns which check fails by its error code, not the
    driver's message or the database's address."""
    broken = make_settings(libvirt_uri="qemu+unix:///system?socket=/nonexistent/sock", libvirt_timeout=1)
    async with app_client(broken) as client:
        database = services_of(client._transport.app).access.db  # type: ignore[attr-defined]

        async def no_answer(timeout: float) -> None:
            raise TimeoutError

        database.ping = no_answer  # type: ignore[method-assign]
        local = await client.get("/readyz")
        forwarded = await client.get("/readyz", headers={"X-Forwarded-For": "203.0.113.9"})
    assert local.status_code == forwarded.status_code == 503
    assert local.json()["checks"]["libvirt"].startswith("HYPERVISOR_UNAVAILABLE: ")
    assert "/nonexistent/sock" in local.text and database.redacted_url in local.text
    assert forwarded.json() == {"status": "failing", "failing": ["libvirt", "database"],
                                "checks": {"libvirt": "HYPERVISOR_UNAVAILABLE", "database": "DATABASE_UNAVAILABLE"}}
    with_token = make_settings(libvirt_uri="qemu+unix:///system?socket=/nonexistent/sock", libvirt_timeout=1,
                               metrics_token="s3cret")
    async with app_client(with_token) as client:
        nameless = await client.get("/readyz", headers={"Authorization": ""})
        told = await client.get("/readyz", headers={"Authorization": "Bearer s3cret",
                                                    "X-Forwarded-For": "203.0.113.9"})
    assert nameless.json()["checks"]["libvirt"] == "HYPERVISOR_UNAVAILABLE"
    assert "/nonexistent/sock" in told.json()["checks"]["libvirt"]


def test_log_file_rotates_by_size_and_keeps_the_configured_count(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(log_dir=tmp_path / "logs", log_max_bytes=4096, log_backups=2)
    configure_logging(settings)
    try:
        log = logging.getLogger("limen.test")
        for number in range(200):
            log.info("line %d", number, extra={"event": "filler", "payload": "x" * 100})
        files = sorted(path.name for path in (tmp_path / "logs").iterdir())
        assert files == ["limen.log", "limen.log.1", "limen.log.2"]
        assert all(path.stat().st_size <= 4096 + 512 for path in (tmp_path / "logs").iterdir())
        last = json.loads((tmp_path / "logs" / "limen.log").read_text().splitlines()[-1])
        assert last["msg"] == "line 199"
        assert last["payload"] == "x" * 100
    finally:
        logger = logging.getLogger("limen")
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


async def test_readyz_is_not_ready_from_the_shutdown_signal_on(make_settings: Callable[..., Settings]) -> None:
    """A load balancer must stop sending new work the moment SIGTERM arrives, before the listener closes:
    the signal handler marks the app, and /readyz then answers 503 naming ``shutdown``."""
    import signal

    from limen.server import LimenServer, uvicorn_config

    settings = make_settings()
    async with app_client(settings) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        assert (await client.get("/readyz")).status_code == 200
        server = LimenServer(uvicorn_config(app, settings))
        server.config.load()  # what uvicorn does before it serves: loaded_app wraps limen's app
        server.handle_exit(signal.SIGTERM, None)
        answer = await client.get("/readyz")
        instance = await client.get("/readyz", params={"scope": "instance"})
        assert server.should_exit
    assert instance.status_code == 503 and instance.json()["failing"] == ["shutdown"]
    assert answer.status_code == 503
    assert answer.json()["failing"] == ["shutdown"]
    assert answer.json()["checks"]["shutdown"] == "the server is shutting down"

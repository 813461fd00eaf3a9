"""`limen doctor`: each check passes on a healthy setup and fails, with its fix, on the real fault."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import libvirt
import pytest
from sqlalchemy.engine import make_url

from limen.db import Database
from limen.doctor import Context, Outcome, all_passed, check_listen_port, diagnose, render_table
from limen.host_registry import add_host
from limen.hypervisor.storage import pool_xml
from limen.settings import Settings
from tests.conftest import QEMU_URI, TEST_POOL, TEST_POOL_DIR
from tests.support.certificates import make_certificate
from tests.support.console import ConsoleServer, FakeDomain, driver_uri, running_console
from tests.support.databases import cli_env, on_postgresql
from tests.support.fake_vnc import GarbageServer, RfbServer, SilentServer, refused_port

pytestmark = pytest.mark.integration
LIMEN = str(Path(sys.executable).parent / "limen")
UNUSED_SERVER = "http://127.0.0.1:9"  # discard port: nothing answers


def outcomes(results: list) -> dict[str, Outcome]:  # type: ignore[type-arg]
    return {result.name: result.outcome for result in results}


def failed(results: list) -> tuple[str, str, str]:  # type: ignore[type-arg]
    failure = next(result for result in results if result.outcome is Outcome.FAIL)
    return failure.name, failure.detail, failure.fix


async def _diagnose(settings: Settings, vm: str | None, server: str = UNUSED_SERVER,
                    token: str | None = None) -> list[Any]:
    return await diagnose(settings, vm, server_url=server, timeout=20, token=token)


def token_of(console: ConsoleServer) -> str:
    return console.auth_headers["Authorization"].removeprefix("Bearer ")


async def test_healthy_vm_passes_every_check(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    async with RfbServer() as vnc:
        settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("good", vnc.port)]))
        async with running_console(settings) as console:
            results = await _diagnose(settings, "good", f"http://127.0.0.1:{console.port}", token_of(console))
    assert all_passed(results), render_table(results)
    by_name = {result.name: result for result in results}
    assert "security types: None" in by_name["RFB banner"].detail
    assert "proxy stage" in by_name["console WebSocket"].detail
    assert "with a console ticket" in by_name["console WebSocket"].detail
    assert f"127.0.0.1:{vnc.port}" in by_name["VNC port assigned"].detail
    assert token_of(console) not in render_table(results)


async def test_console_check_without_or_with_a_bad_token(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Auth is on: anonymously the server says UNAUTHORIZED; a revoked token gets no ticket. Both say how to
    pass a token, and neither shows a secret."""
    async with RfbServer() as vnc:
        settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("guarded", vnc.port)]))
        async with running_console(settings) as console:
            server = f"http://127.0.0.1:{console.port}"
            name, detail, fix = failed(await _diagnose(settings, "guarded", server))
            assert (name, detail.split(":")[0]) == ("console WebSocket", "UNAUTHORIZED")
            assert "--token" in fix and "LIMEN_TOKEN" in fix

            made = await console.access.tokens.create("test-admin", "doctor")
            await console.access.tokens.revoke(made.info.id, None)
            name, detail, fix = failed(await _diagnose(settings, "guarded", server, made.secret))
            assert name == "console WebSocket"
            assert "refused a console ticket: UNAUTHORIZED" in detail
            assert "--token" in fix and made.secret not in detail


async def test_unreachable_libvirt(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(libvirt_uri="qemu+unix:///system?socket=/nonexistent/libvirt-sock", libvirt_timeout=2)
    results = await _diagnose(settings, "anything")
    name, _detail, fix = failed(results)
    assert name == "libvirt reachable"
    assert "libvirtd" in fix
    assert outcomes(results)["VM exists"] is Outcome.SKIP
    assert not all_passed(results)


@pytest.mark.parametrize(
    ("domain", "failing", "fix_says"),
    [
        (FakeDomain("stopped", 5999, running=False), "VM running", "limen vm start stopped"),
        (FakeDomain("nographics", None), "VNC graphics configured", "<graphics type='vnc'"),
        (FakeDomain("noport", "auto"), "VNC port assigned", "vncdisplay"),
    ],
)
async def test_vm_faults(
    make_settings: Callable[..., Settings], tmp_path: Path, domain: FakeDomain, failing: str, fix_says: str
) -> None:
    settings = make_settings(libvirt_uri=driver_uri(tmp_path, [domain]))
    results = await _diagnose(settings, domain.name)
    name, _detail, fix = failed(results)
    assert name == failing
    assert fix_says in fix


async def test_missing_vm(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings(libvirt_uri=driver_uri(tmp_path, []))
    name, _detail, fix = failed(await _diagnose(settings, "ghost"))
    assert name == "VM exists"
    assert "limen vm list" in fix


async def test_a_vm_on_a_registered_host_is_found_there(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    # "VM exists" failed for a VM `limen vm list` showed on another host of the registry.
    settings = make_settings(libvirt_uri=driver_uri(tmp_path, []))
    database = Database(settings.db_url)
    try:
        database.migrate()
        add_host(database, "edge", driver_uri(tmp_path, [FakeDomain("elsewhere", refused_port())]),
                 default_uri=settings.libvirt_uri)
    finally:
        database.close()
    name, detail, _fix = failed(await _diagnose(settings, "elsewhere"))
    assert name == "TCP connect to VNC", detail  # found, and checked on through its VNC port


async def test_refused_port(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("refused", refused_port())]))
    name, detail, _fix = failed(await _diagnose(settings, "refused"))
    assert name == "TCP connect to VNC"
    assert "cannot connect" in detail


@pytest.mark.parametrize("server_class", [SilentServer, GarbageServer])
async def test_not_a_vnc_server(
    make_settings: Callable[..., Settings], tmp_path: Path, server_class: type[SilentServer]
) -> None:
    async with server_class() as peer:
        settings = make_settings(
            libvirt_uri=driver_uri(tmp_path, [FakeDomain("mute", peer.port)]), console_banner_timeout=0.5
        )
        results = await _diagnose(settings, "mute")
    name, _detail, fix = failed(results)
    assert name == "RFB banner"
    assert "restart the VM" in fix


async def test_no_server_running(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    async with RfbServer() as vnc:
        settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("alone", vnc.port)]))
        name, _detail, fix = failed(await _diagnose(settings, "alone"))
        assert name == "console WebSocket"
        assert "limen serve" in fix
        # With a token it asks for a ticket first: that said only "URLError", not why.
        name, detail, fix = failed(await _diagnose(settings, "alone", token="limen_not-asked-anyway-0123456789"))
    assert name == "console WebSocket" and "limen serve" in fix
    assert "Connection refused" in detail, detail


async def test_console_error_from_the_server_is_named(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """The VNC server goes silent for the proxy (not for doctor's own check): the WebSocket check names it."""
    async with RfbServer() as vnc, SilentServer() as mute:
        seen_by_doctor = FakeDomain("split", vnc.port)
        seen_by_server = FakeDomain("split", mute.port, uuid=seen_by_doctor.uuid)
        doctor_settings = make_settings(libvirt_uri=driver_uri(tmp_path, [seen_by_doctor]))
        server_settings = make_settings(
            libvirt_uri=driver_uri(tmp_path, [seen_by_server]), console_banner_timeout=0.5
        )
        async with running_console(server_settings) as console:
            name, detail, fix = failed(await _diagnose(doctor_settings, "split", f"http://127.0.0.1:{console.port}",
                                                       token_of(console)))
    assert name == "console WebSocket"
    assert detail.startswith("VNC_HANDSHAKE_FAILED")
    assert fix


async def test_last_console_errors_come_from_the_log(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    domain = FakeDomain("logged", "auto")
    settings = make_settings(libvirt_uri=driver_uri(tmp_path, [domain]))
    settings.log_dir.mkdir(parents=True)
    lines = [
        {"ts": "2026-01-01T00:00:00", "event": "console_end", "vm_uuid": domain.uuid, "code": "VNC_PORT_ERROR"},
        {"ts": "2026-01-01T00:00:01", "event": "console_end", "vm_uuid": "other", "code": "VM_NOT_FOUND"},
        {"ts": "2026-01-01T00:00:02", "event": "console_end", "vm_uuid": domain.uuid, "code": "OK"},
        # Ends someone chose are not the console's faults: a restart's was listed as an error.
        {"ts": "2026-01-01T00:00:03", "event": "console_end", "vm_uuid": domain.uuid, "code": "SERVER_SHUTDOWN"},
        {"ts": "2026-01-01T00:00:04", "event": "console_end", "vm_uuid": domain.uuid, "code": "IDLE_TIMEOUT"},
    ]
    (settings.log_dir / "limen.log").write_text("".join(json.dumps(line) + "\n" for line in lines) + "not json\n")
    results = await _diagnose(settings, "logged")
    log_check = next(result for result in results if result.name == "console errors in log")
    assert log_check.outcome is Outcome.INFO
    assert "VNC_PORT_ERROR" in log_check.detail
    assert "VM_NOT_FOUND" not in log_check.detail
    assert "SERVER_SHUTDOWN" not in log_check.detail and "IDLE_TIMEOUT" not in log_check.detail


def test_cli_host_checks_json_and_exit_codes(tmp_path: Path) -> None:
    env = cli_env({**os.environ, "LIMEN_LIBVIRT_URI": QEMU_URI, "LIMEN_LOG_DIR": str(tmp_path / "log"),
                   "LIMEN_DATA_DIR": str(tmp_path), "LIMEN_STORAGE_POOL": TEST_POOL,
                   "LIMEN_STORAGE_POOL_DIR": str(TEST_POOL_DIR)})
    healthy = subprocess.run([LIMEN, "--json", "doctor"], env=env, capture_output=True, text=True, timeout=60,
                             check=False)
    report = json.loads(healthy.stdout)
    assert healthy.returncode == 0, healthy.stdout
    assert report["ok"] is True
    assert [check["name"] for check in report["checks"]][:2] == ["settings and log dir", "libvirt reachable"]

    assert "database" in [check["name"] for check in report["checks"]]

    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_text("")
    unreachable = f"sqlite:///{not_a_dir}/limen.db"
    if on_postgresql():  # the server answers, but the named database is not there
        unreachable = make_url(env["LIMEN_DATABASE_URL"]).set(database="limen_no_such_database").render_as_string(
            hide_password=False)
    no_database = subprocess.run(
        [LIMEN, "--json", "doctor"], env={**env, "LIMEN_DATABASE_URL": unreachable},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert no_database.returncode == 1
    failing = [check for check in json.loads(no_database.stdout)["checks"] if check["outcome"] == "fail"]
    assert [check["name"] for check in failing] == ["database"]
    assert "LIMEN_DATABASE_URL" in failing[0]["fix"]
    # The fix fits the database: a PostgreSQL one was told about SQLite's directory.
    assert ("PostgreSQL runs" in failing[0]["fix"]) == on_postgresql(), failing[0]["fix"]
    # limen's own SQLite file under a data directory that is a file: the data directory is to fix, not
    # LIMEN_DATABASE_URL, which nobody set; a driver that is not installed: installing it.
    for fault, fix in (({"LIMEN_DATA_DIR": str(not_a_dir / "data")}, f"check LIMEN_DATA_DIR ({not_a_dir / 'data'})"),
                       ({"LIMEN_DATABASE_URL": "postgresql+pg8000://db.invalid/l"}, 'pip install "limen[postgresql]"')):
        environment = {**{key: value for key, value in env.items() if key != "LIMEN_DATABASE_URL"}, **fault}
        said = subprocess.run([LIMEN, "--json", "doctor"], env=environment, capture_output=True, text=True,
                              timeout=60, check=False)
        checks = {check["name"]: check for check in json.loads(said.stdout)["checks"]}
        assert checks["database"]["outcome"] == "fail" and fix in checks["database"]["fix"], checks["database"]

    broken = subprocess.run(
        [LIMEN, "doctor", "--timeout", "10"],
        env={**env, "LIMEN_LIBVIRT_URI": "qemu+unix:///system?socket=/nonexistent/sock"},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert broken.returncode == 1
    assert "✗ libvirt reachable" in broken.stdout
    assert "fix:" in broken.stdout


async def test_each_registered_host_is_checked_apart(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """With hosts in the registry, `limen doctor` checks each: libvirt answers and a running VM's VNC server
    answers at the host's console address. A dead, a hung and a blind host (its console address reaches no
    VNC server) fail with their fixes; the healthy hosts after them pass all the same."""
    from limen import host_registry
    from limen.db import Database
    from tests.support.hanging_libvirt import hanging_libvirt

    async with RfbServer() as local_vnc, RfbServer() as second_vnc:
        with hanging_libvirt() as hung:
            hung.armed = True
            settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("on-local", local_vnc.port)]),
                                     libvirt_timeout=2)
            db = Database(settings.db_url)
            try:
                db.migrate()
                local = settings.libvirt_uri
                host_registry.add_host(db, "blind", driver_uri(tmp_path, [FakeDomain("on-blind", refused_port())]),
                                       default_uri=local)
                host_registry.add_host(db, "dead", "qemu+unix:///system?socket=/nonexistent/libvirt-sock",
                                       default_uri=local)
                host_registry.add_host(db, "hung", hung.uri, default_uri=local)
                host_registry.add_host(db, "second", driver_uri(tmp_path, [FakeDomain("on-second", second_vnc.port)]),
                                       console_address="127.0.0.1", default_uri=local)
            finally:
                db.close()
            results = await _diagnose(settings, None)
    by_name = {result.name: result for result in results}
    assert [name for name in by_name if name.startswith("host ")] == [
        "host local", "host blind", "host dead", "host hung", "host second"], render_table(results)
    assert outcomes(results)["host local"] is Outcome.PASS
    assert f"127.0.0.1:{local_vnc.port} (on-local) answers: RFB 003.008" in by_name["host local"].detail
    second = by_name["host second"]
    assert second.outcome is Outcome.PASS, render_table(results)
    assert f"127.0.0.1:{second_vnc.port} (on-second) answers: RFB 003.008" in second.detail
    blind = by_name["host blind"]
    assert blind.outcome is Outcome.FAIL and "answers, but the VNC server of on-blind" in blind.detail
    assert "--console-address" in blind.fix
    for name in ("host dead", "host hung"):
        assert by_name[name].outcome is Outcome.FAIL and "HYPERVISOR_UNAVAILABLE" in by_name[name].detail
        assert "virsh -c" in by_name[name].fix
    assert not all_passed(results)


async def test_one_machine_gets_no_host_checks(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings(libvirt_uri=driver_uri(tmp_path, []))
    results = await _diagnose(settings, None)
    assert not [result.name for result in results if result.name.startswith("host")], render_table(results)


async def test_a_storage_pool_that_keeps_its_disks_elsewhere_is_named_with_its_fix(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The pool existed (an earlier LIMEN_STORAGE_POOL_DIR, another limen on the same libvirt): new disks went
    to its directory while `limen config show` named the configured one, and nothing said so."""
    pin = libvirt.open("test:///default")  # the test driver keeps the pool while a connection is open
    pool = pin.storagePoolDefineXML(pool_xml("limen-doctor-pool", tmp_path / "elsewhere"), 0)
    try:
        settings = make_settings(libvirt_uri="test:///default", storage_pool="limen-doctor-pool",
                                 storage_pool_dir=tmp_path / "configured")
        check = next(result for result in await _diagnose(settings, None) if result.name == "storage pool")
        assert check.outcome is Outcome.FAIL
        assert str(tmp_path / "elsewhere") in check.detail and str(tmp_path / "configured") in check.detail
        assert f"LIMEN_STORAGE_POOL_DIR={tmp_path / 'elsewhere'}" in check.fix

        settings = make_settings(libvirt_uri="test:///default", storage_pool="limen-doctor-pool",
                                 storage_pool_dir=tmp_path / "elsewhere")
        check = next(result for result in await _diagnose(settings, None) if result.name == "storage pool")
        assert check.outcome is Outcome.PASS
    finally:
        pool.undefine()
        pin.close()


async def test_a_wildcard_listen_address_is_asked_on_loopback(make_settings: Callable[..., Settings]) -> None:
    """LIMEN_HOST=0.0.0.0 (the README's direct-TLS set-up): the doctor dialled 0.0.0.0 with ``Host: 0.0.0.0``,
    limen answered HOST_NOT_ALLOWED, and the listen port was "taken by another program" (exit 1). The test's
    server listens on loopback, which a wildcard listen includes; its app judges Host as LIMEN_HOST=0.0.0.0."""
    async with running_console(make_settings(host="0.0.0.0")) as console:
        settings = make_settings(host="0.0.0.0", port=console.port)
        said = await check_listen_port(Context(settings, cast(Any, None), None, server_url=""))
    assert str(said) == f"limen already serves on 0.0.0.0:{console.port}"


async def _console_check_over_tls(make_settings: Callable[..., Settings], tmp_path: Path, cert: Path, key: Path,
                                  **settings: Any) -> Any:
    """The console WebSocket check, with a token, against an in-process limen serving HTTPS and WSS with
    ``cert`` (as ``limen serve`` does), dialled on https://127.0.0.1:PORT as the doctor dials it."""
    async with RfbServer() as vnc:
        tls = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("secure", vnc.port)]), tls_cert=cert,
                            tls_key=key, **settings)
        server = await ConsoleServer(tls, as_served=True).start()
        try:
            results = await _diagnose(tls, "secure", f"https://127.0.0.1:{server.port}", token_of(server))
        finally:
            await server.stop()
    return next(result for result in results if result.name == "console WebSocket")


async def test_the_certificate_is_checked_for_the_public_name_browsers_use(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A real certificate names the public host only (limen.example): the doctor, dialling 127.0.0.1, failed
    it ("IP address mismatch") and told to set LIMEN_TLS_CERT to it, which was already so."""
    cert, key = make_certificate(tmp_path, names=("DNS:limen.example",))
    check = await _console_check_over_tls(make_settings, tmp_path, cert, key,
                                          public_url="https://limen.example:8443")
    assert check.outcome is Outcome.PASS, (check.detail, check.fix)
    # Without LIMEN_PUBLIC_URL the name is the dialled address's: not the certificate's, and said so.
    check = await _console_check_over_tls(make_settings, tmp_path, cert, key)
    assert check.outcome is Outcome.FAIL and "does not name the host browsers use" in check.fix, check.fix


async def test_an_expired_certificate_is_said_to_be_expired(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """It was told to be trusted (set LIMEN_TLS_CERT to it), as any refused certificate was."""
    cert, key = make_certificate(tmp_path, expired=True)
    check = await _console_check_over_tls(make_settings, tmp_path, cert, key)
    assert check.outcome is Outcome.FAIL and "has expired: renew it" in check.fix, (check.detail, check.fix)

"""TLS: limen serving HTTPS and WSS itself with a certificate made here (cookies Secure, HSTS but not for
localhost, plain HTTP refused), and deploy/nginx.conf run by Debian's nginx in front of a plain-HTTP limen.
Both: Chromium signs in and opens a console over wss://."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import DEMO_ISO, QEMU_URI
from tests.e2e.helpers import COUNT_DRAWN_PIXELS, DESKTOP, limen_env, save_screenshot, sign_in
from tests.support.access import TEST_ADMIN, TEST_ADMIN_PASSWORD, provision_admin_token
from tests.support.certificates import make_certificate
from tests.support.libvirt_cleanup import remove_domain
from tests.support.net import free_port
from tests.support.server import LIMEN_BIN, LimenProcess

# TLS in front of limen: the database is reached only by the sign-in, the ticket and the session's row.
pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.same_on_any_database]

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


# A name limen answers to that is not this machine's own (localhost, loopback addresses): HSTS is sent to it.
PUBLIC_NAME = "limen.test"


def trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def start(tmp: Path, *, scheme: str = "http", **env: str) -> LimenProcess:
    tmp.mkdir(parents=True, exist_ok=True)  # on PostgreSQL no database file makes the directory
    process = LimenProcess(limen_env(tmp, **env), tmp / "serve.log", scheme=scheme)
    token = provision_admin_token(process.database_url)
    process.auth_headers = {"Authorization": f"Bearer {token}"}
    return process.start()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_server(certificate: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimenProcess]:
    cert, key = certificate
    process = start(tmp_path_factory.mktemp("limen-tls"), scheme="https",
                    LIMEN_TLS_CERT=str(cert), LIMEN_TLS_KEY=str(key), LIMEN_ALLOWED_HOSTS=PUBLIC_NAME)
    yield process
    process.stop()


@pytest.fixture
def vm_name() -> Iterator[Callable[[], str]]:
    names: list[str] = []

    def make() -> str:
        names.append(f"limen-test-{uuid.uuid4().hex[:10]}")
        return names[-1]

    yield make
    for name in names:
        remove_domain(QEMU_URI, name)


@pytest.fixture
def https_page(browser: Browser) -> Iterator[Callable[[], Page]]:
    """Pages that accept the test's self-signed certificate."""
    contexts = []

    def open_page() -> Page:
        context = browser.new_context(viewport=DESKTOP, ignore_https_errors=True)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def create_vm(base_url: str, headers: dict[str, str], name: str, cert: Path) -> str:
    with httpx.Client(base_url=base_url, headers=headers, timeout=30, verify=trusting(cert)) as admin:
        created = admin.post("/api/vms", json={"name": name, "memory_mib": 128, "iso": DEMO_ISO})
        assert created.status_code == 201, created.text
    return str(created.json()["uuid"])


def open_console_over_wss(page: Page, base_url: str, vm_id: str, shot: str) -> None:
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(f"{base_url}/vms/{vm_id}/console")
    expect(page.locator("#conn-status")).to_contain_text("Connected", timeout=30_000)
    page.wait_for_function(f"() => ({COUNT_DRAWN_PIXELS})() >= 500", timeout=30_000)
    save_screenshot(page, shot)
    assert sockets and all(url.startswith("wss://") for url in sockets), sockets


def test_https_sets_secure_cookies_and_hsts(tls_server: LimenProcess, certificate: tuple[Path, Path]) -> None:
    cert, _ = certificate
    with httpx.Client(base_url=tls_server.base_url, verify=trusting(cert), timeout=10) as client:
        health = client.get("/healthz", headers={"Host": f"{PUBLIC_NAME}:{tls_server.port}"})
        assert health.status_code == 200
        assert health.headers["strict-transport-security"] == "max-age=31536000"
        # Not to this machine's own names: it would force HTTPS on every http://localhost:* service for a year.
        for own in ("127.0.0.1", "localhost"):
            local = client.get("/healthz", headers={"Host": f"{own}:{tls_server.port}"})
            assert local.status_code == 200 and "strict-transport-security" not in local.headers
        login = client.post("/api/login", json={"name": TEST_ADMIN, "password": TEST_ADMIN_PASSWORD},
                            headers={"Origin": tls_server.base_url})
        assert login.status_code == 200, login.text
        cookie = login.headers["set-cookie"]
        assert "limen_session=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
        assert client.get("/api/me").status_code == 200


def test_plain_http_on_the_tls_port_gets_no_answer(tls_server: LimenProcess) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server.port}/healthz", timeout=5)
    # ...and the server is still there for HTTPS.
    assert httpx.get(f"{tls_server.base_url}/healthz", verify=False, timeout=5).status_code == 200


def test_untrusted_certificate_is_refused_by_a_verifying_client(tls_server: LimenProcess) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.base_url}/healthz", timeout=5, verify=ssl.create_default_context())


def test_chromium_signs_in_and_opens_a_console_over_wss(
    tls_server: LimenProcess, certificate: tuple[Path, Path], https_page: Callable[[], Page],
    vm_name: Callable[[], str],
) -> None:
    vm_id = create_vm(tls_server.base_url, tls_server.auth_headers, vm_name(), certificate[0])
    page = sign_in(https_page(), tls_server.base_url)
    open_console_over_wss(page, tls_server.base_url, vm_id, "tls-console")


# -- deploy/nginx.conf in front of limen ----------------------------------------------------------------------


def render_nginx_conf(tmp: Path, *, https_port: int, http_port: int, upstream_port: int, cert: Path,
                      key: Path) -> Path:
    """deploy/nginx.conf with its port, certificate and upstream replaced (each replacement must match, so
    the shipped file is what runs), inside a main configuration that keeps nginx's files in ``tmp``."""
    server = NGINX_CONF.read_text()
    for old, new in [
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream_port};"),
        ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        ("listen [::]:443 ssl;", ""),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen [::]:80;", ""),
        ("/etc/ssl/limen/limen.crt", str(cert)),
        ("/etc/ssl/limen/limen.key", str(key)),
        ("/var/log/nginx/limen-access.log", str(tmp / "limen-access.log")),
    ]:
        assert server.count(old) == 1, f"deploy/nginx.conf no longer has {old!r}"
        server = server.replace(old, new)
    main = f"""daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include /etc/nginx/mime.types;
{server}
}}
"""
    path = tmp / "nginx.conf"
    path.write_text(main)
    return path


@pytest.fixture(scope="module")
def behind_nginx(certificate: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[str, str, LimenProcess]]:
    """(https URL, http URL) of nginx, and the plain-HTTP limen behind it."""
    if not Path(NGINX).exists():
        pytest.fail("the nginx test needs Debian's nginx (make install: nginx-light)")
    tmp = tmp_path_factory.mktemp("nginx")
    https_port, http_port = free_port(), free_port()
    public = f"https://127.0.0.1:{https_port}"
    limen = start(tmp / "limen", LIMEN_PUBLIC_URL=public, LIMEN_TRUSTED_PROXIES="127.0.0.1/32")
    conf = render_nginx_conf(tmp, https_port=https_port, http_port=http_port, upstream_port=limen.port,
                             cert=certificate[0], key=certificate[1])
    checked = subprocess.run([NGINX, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    nginx = subprocess.Popen([NGINX, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{public}/healthz", verify=trusting(certificate[0]), timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert nginx.poll() is None, nginx.stderr.read() if nginx.stderr else ""
            assert time.monotonic() < deadline, "nginx did not answer"
            time.sleep(0.1)
        yield public, f"http://127.0.0.1:{http_port}", limen
    finally:
        nginx.send_signal(signal.SIGQUIT)  # graceful: lets connections finish, then exits
        try:
            nginx.wait(timeout=10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()
        limen.stop()


def test_nginx_redirects_http_and_passes_https_with_secure_cookies(
    behind_nginx: tuple[str, str, LimenProcess], certificate: tuple[Path, Path]
) -> None:
    public, plain, _ = behind_nginx
    redirect = httpx.get(f"{plain}/vms?x=1", timeout=5)
    assert redirect.status_code == 301
    assert redirect.headers["location"] == "https://127.0.0.1/vms?x=1"
    with httpx.Client(base_url=public, verify=trusting(certificate[0]), timeout=10) as client:
        login = client.post("/api/login", json={"name": TEST_ADMIN, "password": TEST_ADMIN_PASSWORD},
                            headers={"Origin": public})
        assert login.status_code == 200, login.text
        assert "Secure" in login.headers["set-cookie"]  # limen believes the proxy's X-Forwarded-Proto
        assert login.headers["strict-transport-security"] == "max-age=31536000"


def test_metrics_through_nginx_answer_only_the_machines_own_clients(
    behind_nginx: tuple[str, str, LimenProcess], certificate: tuple[Path, Path]
) -> None:
    # nginx connects from loopback for every client: /metrics ("loopback clients only") answered the world.
    # A client elsewhere is what nginx's X-Forwarded-For names; here one that sent its own header, which
    # nginx keeps and appends the address it saw (this machine's) to.
    public, _, limen = behind_nginx
    with httpx.Client(base_url=public, verify=trusting(certificate[0]), timeout=10) as client:
        elsewhere = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert elsewhere.status_code == 403 and elsewhere.json()["code"] == "FORBIDDEN", elsewhere.text
        assert "limen_" not in elsewhere.text
        assert client.get("/metrics").status_code == 200  # this machine's own client, through nginx
    assert httpx.get(f"{limen.base_url}/metrics", timeout=10).status_code == 200


def test_chromium_through_nginx_signs_in_and_opens_a_console(
    behind_nginx: tuple[str, str, LimenProcess], certificate: tuple[Path, Path],
    https_page: Callable[[], Page], vm_name: Callable[[], str],
) -> None:
    public, _, limen = behind_nginx
    vm_id = create_vm(public, limen.auth_headers, vm_name(), certificate[0])
    page = sign_in(https_page(), public)
    open_console_over_wss(page, public, vm_id, "nginx-console")
    # nginx's log names the console's WebSocket by its path: its ticket stays out. The line is written when
    # the connection ends.
    page.close()
    log = limen.log_path.parent.parent / "limen-access.log"
    websocket = f'"GET /api/vms/{vm_id}/console HTTP/1.1" 101'
    deadline = time.monotonic() + 20
    while websocket not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    assert "ticket=" not in log.read_text()


def test_doctor_checks_a_tls_server_and_its_console_over_wss(
    tls_server: LimenProcess, certificate: tuple[Path, Path], vm_name: Callable[[], str], tmp_path: Path
) -> None:
    cert, key = certificate
    name = vm_name()
    create_vm(tls_server.base_url, tls_server.auth_headers, name, cert)
    with httpx.Client(base_url=tls_server.base_url, headers=tls_server.auth_headers, verify=trusting(cert),
                      timeout=60) as admin:
        assert admin.post(f"/api/vms/{name}/start").status_code == 200
    token = tls_server.auth_headers["Authorization"].removeprefix("Bearer ")
    env = {**limen_env(tmp_path), "LIMEN_TLS_CERT": str(cert), "LIMEN_TLS_KEY": str(key),
           "LIMEN_PORT": str(tls_server.port), "LIMEN_TOKEN": token}
    done = subprocess.run([str(LIMEN_BIN), "--json", "doctor", name], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    checks = {check["name"]: check for check in json.loads(done.stdout)["checks"]}
    assert checks["console WebSocket"]["outcome"] == "pass", checks["console WebSocket"]
    host = subprocess.run([str(LIMEN_BIN), "--json", "doctor"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    listen = {check["name"]: check for check in json.loads(host.stdout)["checks"]}["listen port"]
    assert listen["outcome"] == "pass" and "limen already serves" in listen["detail"], listen
    # Run without the TLS settings, the doctor called the same server "another program" (a failure).
    plain_env = {key: value for key, value in env.items() if not key.startswith("LIMEN_TLS_")}
    plain = subprocess.run([str(LIMEN_BIN), "--json", "doctor"], env={**os.environ, **plain_env},
                           capture_output=True, text=True, timeout=120)
    listen = {check["name"]: check for check in json.loads(plain.stdout)["checks"]}["listen port"]
    assert listen["outcome"] == "pass" and "limen already serves" in listen["detail"], listen
    assert "with TLS" in listen["detail"], listen

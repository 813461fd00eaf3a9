"""The wheel is the whole product: it is built from the checkout the way `make dist` builds it (sdist,
then the wheel from the sdist), installed with pip into a fresh venv in a temporary directory, and that
venv's `limen serve` runs with the checkout and node_modules hidden (a private mount namespace puts empty
directories over them), so anything it still read from there would be missing. Chromium then opens every
page, /api/docs and a console."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

import limen
from tests.conftest import DEMO_ISO, QEMU_URI
from tests.e2e.helpers import COUNT_DRAWN_PIXELS, limen_env, save_screenshot, sign_in
from tests.e2e.pages import page_paths
from tests.support.access import provision_admin_token
from tests.support.databases import on_postgresql
from tests.support.libvirt_cleanup import remove_domain
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
# Runs "$@" with empty directories mounted over the paths listed in $LIMEN_HIDE (the checkout and the
# node_modules it links to), in a mount namespace of its own: the rest of the machine sees nothing.
HIDE_AND_RUN = 'for p in $LIMEN_HIDE; do mount -t tmpfs -o ro tmpfs "$p" || exit 97; done; exec "$@"'


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the checkout with the freshly built wheel installed by pip."""
    work = tmp_path_factory.mktemp("wheel")
    assert not work.resolve().is_relative_to(ROOT)
    built = subprocess.run([sys.executable, "-m", "build", "--outdir", str(work / "dist"), str(ROOT)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels = list((work / "dist").glob("limen-*-py3-none-any.whl"))
    assert len(wheels) == 1, wheels
    assert wheels[0].name == f"limen-{limen.__version__}-py3-none-any.whl"
    venv = work / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True, timeout=120)
    # On PostgreSQL (LIMEN_TEST_DATABASE=postgresql) with its extra, as such an install would be made.
    wanted = f"{wheels[0]}[postgresql]" if on_postgresql() else str(wheels[0])
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", wanted], cwd=work,
                         capture_output=True, text=True, timeout=800)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv


def hidden_checkout_command(venv: Path) -> list[str]:
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", HIDE_AND_RUN, "hide-and-run",
            str(venv / "bin" / "limen")]


@pytest.fixture(scope="module")
def server(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimenProcess]:
    tmp = tmp_path_factory.mktemp("wheel-serve")
    node_modules = (ROOT / "web" / "node_modules").resolve()
    hide = [str(ROOT)] if node_modules.is_relative_to(ROOT) else [str(node_modules), str(ROOT)]
    env = limen_env(tmp, LIMEN_HIDE=" ".join(hide), PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    process = LimenProcess(env, tmp / "serve.log", command=hidden_checkout_command(installed), cwd=tmp)
    token = provision_admin_token(process.database_url)
    process.auth_headers = {"Authorization": f"Bearer {token}"}
    process.start(timeout=60)
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


def test_installed_limen_is_the_wheels_and_says_its_version(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import limen; print(limen.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(installed)
    version = subprocess.run([str(installed / "bin" / "limen"), "--version"], cwd=tmp_path,
                             capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"limen {limen.__version__}"


def test_every_page_api_docs_and_a_console_from_the_installed_wheel(
    server: LimenProcess, new_page: Callable[..., Page], vm_name: Callable[[], str]
) -> None:
    health = httpx.get(f"{server.base_url}/healthz").json()
    assert health == {"status": "ok", "version": limen.__version__}
    # The bundled libraries, served from the installed package (the checkout is hidden from the server).
    for path in ("/static/novnc/core/rfb.js", "/static/uplot/uPlot.esm.js", "/static/swagger-ui/swagger-ui-bundle.js",
                 "/static/js/console-page.js"):
        assert httpx.get(f"{server.base_url}{path}").status_code == 200, path

    name = vm_name()
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=30) as admin:
        created = admin.post("/api/vms", json={"name": name, "memory_mib": 128, "iso": DEMO_ISO})
        assert created.status_code == 201, created.text
    vm_id = str(created.json()["uuid"])

    page = sign_in(new_page(), server.base_url)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    for path in page_paths(vm_id=vm_id):
        if path.endswith("/console"):
            continue
        response = page.goto(f"{server.base_url}{path}")
        assert response is not None and response.status == 200, path
        page.wait_for_load_state("load")
        if path == "/api/docs":
            page.wait_for_selector(".opblock", timeout=15_000)
            expect(page.locator(".opblock-summary-path", has_text="/api/vms/{vm_id}/start").first).to_be_visible()
        page.wait_for_timeout(500)

    # The console: the VM starts on open and noVNC (from the wheel) draws GRUB's screen.
    page.goto(f"{server.base_url}/vms/{vm_id}/console")
    expect(page.locator("#conn-status")).to_contain_text("Connected", timeout=30_000)
    page.wait_for_function(f"() => ({COUNT_DRAWN_PIXELS})() >= 500", timeout=30_000)
    save_screenshot(page, "installed-wheel-console")
    assert [f for f in failed if "/api/" not in f or "/static/" in f] == [], failed

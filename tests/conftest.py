"""Fixtures shared by every test: settings on temporary dirs, hypervisors, test VM names, servers.

limen and the test support modules are imported where they are used, not here: this file is loaded before
any argument is looked at, and importing limen (FastAPI, SQLAlchemy, Alembic, libvirt: ~1.5 s of CPU) here
would cost as much to a run that needs none of it (``pytest --help``, a plain pytest plugin's own tests).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import httpx

    from limen.hypervisor import Hypervisor
    from limen.settings import Settings
    from tests.support.server import LimenProcess

pytest_plugins = [
    "tests.support.console_fixtures", "tests.support.failure_places", "tests.support.bounded_async_tests",
]

QEMU_URI = "qemu:///system"
TEST_DRIVER_URI = "test:///default"
ISO_DIR = Path(os.environ.get("LIMEN_ISO_DIR", "/var/lib/limen/isos"))
DEMO_ISO = "limen-grub-demo.iso"
# Tests keep their volumes in a pool of their own, away from the user's.
TEST_POOL = "limen-test"
TEST_POOL_DIR = Path("/var/lib/limen/test-pool")
TEST_HOST = "limen.test"


def settings_in(directory: Path, **overrides: Any) -> Settings:
    """Settings for tests: libvirt's test driver, data and logs under ``directory``."""
    from limen.settings import load_settings
    from tests.support.databases import database_url_for, on_postgresql

    base: dict[str, Any] = {
        "libvirt_uri": TEST_DRIVER_URI,
        "data_dir": directory / "data",
        "log_dir": directory / "log",
        "iso_dir": ISO_DIR,
        "storage_pool": TEST_POOL,
        "storage_pool_dir": TEST_POOL_DIR,
        "virt_type": "qemu",
        # In-process clients speak to the app as http://limen.test (app_client, tests.support.access); limen
        # answers only to its own names even on loopback (limen.auth.site), so the tests name that one.
        "allowed_hosts": (TEST_HOST,),
    }
    if on_postgresql():  # LIMEN_TEST_DATABASE=postgresql: a database of this test's own on the cluster
        base["database_url"] = database_url_for(Path(overrides.get("data_dir", base["data_dir"])))
    return load_settings(None, **{**base, **overrides})


@pytest.fixture(scope="session", autouse=True)
def _test_database_cluster() -> Iterator[None]:
    """With LIMEN_TEST_DATABASE=postgresql the PostgreSQL cluster starts on first use; it stops here."""
    yield
    from tests.support.databases import stop_cluster

    stop_cluster()


@pytest.fixture(scope="module", autouse=True)
def _fresh_test_driver() -> Iterator[None]:
    """Each test module starts with libvirt's ``test:///default`` as a fresh one: it is one per process, and
    what a module changed there (and left) would otherwise be seen by whichever modules that process runs next
    (tests.support.test_driver_state). Within a module its tests share it as before."""
    from tests.support.test_driver_state import fresh_state

    fresh_state()  # read before this process's first module can change anything
    yield
    from tests.support.test_driver_state import put_back_fresh_state

    put_back_fresh_state()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return settings_in(tmp_path, **overrides)

    return make


@pytest.fixture
def vm_names() -> Iterator[Callable[[], str]]:
    """Makes unique ``limen-test-…`` names; every VM of those names is removed after the test, and every VM
    renamed from one (``NAME-b``, ``NAME-renamed``: a rename test left its VM running, at half a core, through
    the rest of the run)."""
    made: list[str] = []

    def make() -> str:
        name = f"limen-test-{uuid.uuid4().hex[:10]}"
        made.append(name)
        return name

    yield make
    if not made:
        return
    import libvirt

    from tests.support.libvirt_cleanup import remove_domain

    conn = libvirt.open(QEMU_URI)
    try:
        existing = [dom.name() for dom in conn.listAllDomains(0)]
    finally:
        conn.close()
    for name in {*made, *(other for other in existing if other.startswith(tuple(made)))}:
        remove_domain(QEMU_URI, name)


@pytest.fixture
async def test_hypervisor(make_settings: Callable[..., Settings]) -> AsyncIterator[Hypervisor]:
    from limen.hypervisor import Hypervisor

    hypervisor = Hypervisor(make_settings())
    await hypervisor.open()
    yield hypervisor
    await hypervisor.close()


@pytest.fixture
async def qemu_hypervisor(make_settings: Callable[..., Settings]) -> AsyncIterator[Hypervisor]:
    from limen.hypervisor import Hypervisor

    hypervisor = Hypervisor(make_settings(libvirt_uri=QEMU_URI))
    await hypervisor.open()
    yield hypervisor
    await hypervisor.close()


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process, with its lifespan (libvirt open/close) running,
    signed in as an admin (an API token in every request)."""
    import httpx

    from limen.api.app import create_app
    from limen.api.services import services_of
    from tests.support.access import admin_token

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {await admin_token(services_of(app).access)}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{TEST_HOST}", headers=headers) as client:
            yield client


@pytest.fixture
def limen_server(tmp_path: Path) -> Iterator[Callable[..., LimenProcess]]:
    """Starts real ``limen serve`` processes (env overrides as keyword arguments); stops them after."""
    from tests.support.access import provision_admin_token
    from tests.support.server import LimenProcess

    started: list[LimenProcess] = []

    def start(**env: str) -> LimenProcess:
        base = {
            "LIMEN_LIBVIRT_URI": QEMU_URI,
            "LIMEN_ISO_DIR": str(ISO_DIR),
            "LIMEN_DATA_DIR": str(tmp_path / "data"),
            "LIMEN_LOG_DIR": str(tmp_path / "log"),
            "LIMEN_STORAGE_POOL": TEST_POOL,
            "LIMEN_STORAGE_POOL_DIR": str(TEST_POOL_DIR),
            "LIMEN_VIRT_TYPE": "qemu",
        }
        process = LimenProcess({**base, **env}, tmp_path / f"serve-{len(started)}.log")
        # Every request to the server needs a user: tests act as an admin with an API token.
        process.auth_headers = {"Authorization": f"Bearer {provision_admin_token(process.database_url)}"}
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()

"""Case-blind user names against a running ``limen serve``: two admins creating ``SecN`` and ``secN`` at
the same moment, from two connections, get exactly one user; sign-in takes any case."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.access import provision_admin_token
from tests.support.databases import database_url_for
from tests.support.server import LimenProcess

pytestmark = pytest.mark.integration

PASSWORD = "a-long-password"
ROUNDS = 10


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LimenProcess, dict[str, str]]]:
    tmp: Path = tmp_path_factory.mktemp("user-names")
    token = provision_admin_token(database_url_for(tmp / 'data'))
    server = LimenProcess({"LIMEN_LIBVIRT_URI": "test:///default", "LIMEN_DATA_DIR": str(tmp / "data"),
                           "LIMEN_LOG_DIR": str(tmp / "log"), "LIMEN_ISO_DIR": str(tmp)}, tmp / "serve.log").start()
    yield server, {"Authorization": f"Bearer {token}"}
    server.stop()


def _create_at_once(server: LimenProcess, admin: dict[str, str], names: list[str]) -> dict[str, httpx.Response]:
    """POSTs each name from its own connection and thread, released together."""
    start = threading.Barrier(len(names))
    answers: dict[str, httpx.Response] = {}

    def create(name: str) -> None:
        with httpx.Client(base_url=server.base_url, headers=admin, timeout=30) as client:
            start.wait()
            answers[name] = client.post("/api/users", json={"name": name, "password": PASSWORD})

    threads = [threading.Thread(target=create, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers


def test_parallel_creates_of_two_spellings_make_one_user(served: tuple[LimenProcess, dict[str, str]]) -> None:
    server, admin = served
    for round_ in range(ROUNDS):
        answers = _create_at_once(server, admin, [f"Sec{round_}", f"sec{round_}"])
        assert sorted(answer.status_code for answer in answers.values()) == [201, 409], answers
        assert {answer.json().get("code") for answer in answers.values()} >= {"USER_ALREADY_EXISTS"}
    listed = [user["name"] for user in httpx.get(f"{server.base_url}/api/users", headers=admin, timeout=10).json()]
    assert sorted(name.casefold() for name in listed if name.casefold().startswith("sec")) == sorted(
        f"sec{round_}" for round_ in range(ROUNDS))


def test_sign_in_takes_any_case(served: tuple[LimenProcess, dict[str, str]]) -> None:
    server, admin = served
    assert httpx.post(f"{server.base_url}/api/users", headers=admin, timeout=30,
                      json={"name": "Straße", "password": PASSWORD}).status_code == 201
    for typed in ("Straße", "STRASSE", "strasse"):
        with httpx.Client(base_url=server.base_url, timeout=30) as browser:
            signed_in = browser.post("/api/login", json={"name": typed, "password": PASSWORD})
            assert signed_in.status_code == 200, signed_in.text
            assert browser.get("/api/me").json()["name"] == "Straße"

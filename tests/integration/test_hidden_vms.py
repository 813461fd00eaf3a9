"""A VM a user may not see answers exactly like a VM that does not exist, against a running ``limen serve``.

Every ``/api/vms/{id}…`` route, the console ticket, the screenshot and the console WebSocket: the same
status, code and body, byte for byte once the asked-for id is swapped (and both requests carry the same
request id), so nothing tells bob that alice's VM exists, let alone that it is hers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.access import TEST_ADMIN, provision_admin_token, provision_user
from tests.support.console import FakeDomain, driver_uri, read_console
from tests.support.databases import database_url_for
from tests.support.net import free_port
from tests.support.server import LimenProcess

pytestmark = pytest.mark.integration

REQUEST_ID = "same-request-id-for-both"
ROUTES = (
    ("GET", ""), ("DELETE", "?delete_disks=true"), ("POST", "/start"), ("POST", "/stop?force=true"),
    ("POST", "/reboot"), ("POST", "/console-ticket"), ("GET", "/screenshot"), ("PUT", "/owner"), ("GET", "/stats"),
    ("GET", "/snapshots"), ("POST", "/snapshots"), ("POST", "/snapshots/s1/revert"), ("DELETE", "/snapshots/s1"),
)


@dataclass
class Hidden:
    server: LimenProcess
    tokens: dict[str, str]
    vms: dict[str, str]

    def api(self, user: str) -> httpx.Client:
        return httpx.Client(base_url=self.server.base_url, timeout=10,
                            headers={"Authorization": f"Bearer {self.tokens[user]}", "X-Request-ID": REQUEST_ID})


@pytest.fixture(scope="module")
def hidden(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hidden]:
    tmp = tmp_path_factory.mktemp("hidden-vms")
    # VNC ports nobody listens on: the refusals come long before any VNC connection.
    domains = [FakeDomain(name, free_port()) for name in ("alice-vm", "bob-vm")]
    database_url = database_url_for(tmp / 'data')
    tokens = {TEST_ADMIN: provision_admin_token(database_url)}
    for name in ("alice", "bob"):
        tokens[name] = provision_user(database_url, name, f"{name}-password-long")
    server = LimenProcess({
        "LIMEN_LIBVIRT_URI": driver_uri(tmp, domains), "LIMEN_DATA_DIR": str(tmp / "data"),
        "LIMEN_LOG_DIR": str(tmp / "log"), "LIMEN_ISO_DIR": str(tmp),
    }, tmp / "serve.log").start()
    world = Hidden(server, tokens, {d.name: d.uuid for d in domains})
    with world.api(TEST_ADMIN) as admin:
        for owner in ("alice", "bob"):
            assert admin.put(f"/api/vms/{owner}-vm/owner", json={"owner": owner}).status_code == 200
    yield world
    server.stop()


def _answer(api: httpx.Client, method: str, vm_id: str, suffix: str) -> httpx.Response:
    body = {"owner": "bob"} if suffix == "/owner" else {"name": "s1"} if suffix == "/snapshots" else None
    return api.request(method, f"/api/vms/{vm_id}{suffix}", json=body)


def test_every_vm_route_answers_a_hidden_vm_as_a_missing_one(hidden: Hidden) -> None:
    missing = {"name": "no-such-vm", "uuid": str(uuid.uuid4())}
    with hidden.api("bob") as bob:
        for kind, shown in (("name", "alice-vm"), ("uuid", hidden.vms["alice-vm"])):
            for method, suffix in ROUTES:
                refused = _answer(bob, method, shown, suffix)
                absent = _answer(bob, method, missing[kind], suffix)
                expected = (403, "FORBIDDEN") if suffix == "/owner" else (404, "VM_NOT_FOUND")
                assert (refused.status_code, refused.json()["code"]) == expected, (method, suffix, refused.text)
                assert refused.content == absent.content.replace(missing[kind].encode(), shown.encode()), (
                    method, suffix)
                assert b"alice" not in refused.content.replace(b"alice-vm", b"")
        # His own VM still answers, so the refusals above are not a broken token.
        assert bob.get("/api/vms/bob-vm").json()["owner"] == "bob"
    with hidden.api(TEST_ADMIN) as admin:  # nothing happened to alice's VM
        assert admin.get("/api/vms/alice-vm").json()["owner"] == "alice"


async def test_the_console_refuses_a_hidden_vm_as_a_missing_one(hidden: Hidden) -> None:
    base = f"{hidden.server.ws_url}/api/vms"
    bob = {"Authorization": f"Bearer {hidden.tokens['bob']}"}
    missing_uuid = str(uuid.uuid4())
    for shown, missing in (("alice-vm", "no-such-vm"), (hidden.vms["alice-vm"], missing_uuid)):
        refused = await read_console(f"{base}/{shown}/console", additional_headers=bob)
        absent = await read_console(f"{base}/{missing}/console", additional_headers=bob)
        (error,), (expected,) = refused.errors, absent.errors
        assert error["code"] == "VM_NOT_FOUND"
        assert error == {**expected, "details": expected["details"].replace(missing, shown)}
        assert (refused.close_code, refused.close_reason) == (absent.close_code, absent.close_reason) == (
            4004, "VM_NOT_FOUND")
        # With a genuine ticket of bob's (for his own VM): the same again.
        tickets = []
        with hidden.api("bob") as api:
            for _ in range(2):
                tickets.append(api.post("/api/vms/bob-vm/console-ticket").json()["ticket"])
        refused = await read_console(f"{base}/{shown}/console?ticket={tickets[0]}")
        absent = await read_console(f"{base}/{missing}/console?ticket={tickets[1]}")
        (error,), (expected,) = refused.errors, absent.errors
        assert error["code"] == "VM_NOT_FOUND"
        assert error == {**expected, "details": expected["details"].replace(missing, shown)}
        assert refused.close_code == absent.close_code == 4004

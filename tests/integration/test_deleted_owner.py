"""A deleted user's VMs pass to no owner (administrators only), against a running ``limen serve``: they do
not keep the deleted name, so a user made later with that name (in any case) does not inherit them."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.access import TEST_ADMIN, provision_admin_token, provision_user
from tests.support.console import FakeDomain, driver_uri
from tests.support.databases import database_url_for
from tests.support.net import free_port
from tests.support.server import LimenProcess

pytestmark = pytest.mark.integration

ALICE = "Ålice Ünïcode"


def client(server: LimenProcess, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=20, headers={"Authorization": f"Bearer {token}"})


def test_a_deleted_users_vms_pass_to_no_owner_and_a_new_namesake_gets_none(tmp_path: Path) -> None:
    domains = [FakeDomain(name, free_port()) for name in ("alice-1", "alice-2", "bob-1", "admin-1")]
    database_url = database_url_for(tmp_path / 'data')
    admin_token = provision_admin_token(database_url)
    provision_user(database_url, ALICE, "alice-password-long")
    provision_user(database_url, "bob", "bob-password-long")
    server = LimenProcess({
        "LIMEN_LIBVIRT_URI": driver_uri(tmp_path, domains), "LIMEN_DATA_DIR": str(tmp_path / "data"),
        "LIMEN_LOG_DIR": str(tmp_path / "log"), "LIMEN_ISO_DIR": str(tmp_path),
    }, tmp_path / "serve.log").start()
    try:
        with client(server, admin_token) as admin:
            for vm, owner in (("alice-1", ALICE), ("alice-2", ALICE), ("bob-1", "bob"), ("admin-1", TEST_ADMIN)):
                assert admin.put(f"/api/vms/{vm}/owner", json={"owner": owner}).status_code == 200

            # A refused deletion changes no owner.
            refused = admin.delete(f"/api/users/{TEST_ADMIN}")
            assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
            assert admin.get("/api/vms/admin-1").json()["owner"] == TEST_ADMIN

            deleted = admin.delete(f"/api/users/{ALICE.upper()}")  # any case names the user
            assert deleted.status_code == 200, deleted.text
            owners = {vm["name"]: vm["owner"] for vm in admin.get("/api/vms").json()}
            assert owners == {"alice-1": None, "alice-2": None, "bob-1": "bob", "admin-1": TEST_ADMIN}
            actions = [(a["user"], a["action"], a["vm_name"], a["result_code"], a["details"])
                       for a in admin.get("/api/vm-actions").json() if a["action"] == "set_owner"]
            assert sorted(actions[:2]) == [
                (TEST_ADMIN, "set_owner", f"alice-{n}", "OK", f"no owner ({ALICE} deleted)") for n in (1, 2)]

        # A new user with the deleted name, in another case, owns nothing and sees nothing.
        namesake = provision_user(database_url, ALICE.lower(), "another-password-long")
        with client(server, namesake) as new_alice:
            assert new_alice.get("/api/vms").json() == []
            hidden = new_alice.get("/api/vms/alice-1")
            assert hidden.status_code == 404 and hidden.json()["code"] == "VM_NOT_FOUND"
    finally:
        server.stop()

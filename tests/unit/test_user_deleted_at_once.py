"""Requests about a user that run at the moment that user is deleted: a VM given to them is never left owned
by the deleted name (which a user made later with that name, in any case, would then own), and a sign-in
whose password was being checked is refused, not a 500.

A deletion takes the user's name off their VMs, then deletes the user. An owner change (or a create by that
user) which wrote the name between the two, or after both, left the VM owned by nobody who exists, and by the
next namesake. Each interleaving is made here by running the other request's part at the exact point."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import limen.api.users as users_api
from limen.api.services import services_of
from limen.db import Role
from limen.deleted_owners import release_vms_of
from limen.hypervisor.ownership import set_owner
from tests.conftest import settings_in
from tests.support.shared_app import SharedApp, admin_shared_app

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
async def app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SharedApp]:
    async with admin_shared_app(settings_in(tmp_path_factory.mktemp("owner-deleted"))) as shared:
        yield shared


@pytest.fixture
async def shared(app: SharedApp) -> AsyncIterator[SharedApp]:
    """The app as it started, its test driver's VM ("test") with no owner after each test too."""
    await app.reset()
    yield app
    await set_owner(services_of(app.app).hypervisor, "test", None)


async def owners(shared: SharedApp) -> dict[str, str | None]:
    vms = await services_of(shared.app).hypervisor.list_vms()
    return {vm.name: vm.owner for vm in vms}


async def delete_bob_meanwhile(shared: SharedApp) -> None:
    """Another administrator's whole deletion of bob, as ``DELETE /api/users/bob`` does it."""
    await release_vms_of(services_of(shared.app).hypervisor, shared.access.audit, "bob", actor="other-admin")
    await shared.access.users.delete("bob", by=None)


async def test_a_vm_given_between_the_deletions_release_and_the_user_going_passes_to_no_owner(
        shared: SharedApp, monkeypatch: pytest.MonkeyPatch) -> None:
    await shared.access.users.create("bob", PASSWORD, Role.USER)
    hypervisor = services_of(shared.app).hypervisor
    deleting = shared.access.users.delete

    async def owner_set_then_delete(name: str, *, by: str | None) -> Any:
        await set_owner(hypervisor, "test", "bob")  # an owner change that checked bob a moment before
        return await deleting(name, by=by)

    monkeypatch.setattr(shared.access.users, "delete", owner_set_then_delete)
    deleted = await shared.client.delete("/api/users/bob")
    assert deleted.status_code == 200, deleted.text
    assert (await owners(shared))["test"] is None


async def test_an_owner_change_to_a_user_deleted_meanwhile_is_refused_and_leaves_no_owner(
        shared: SharedApp, monkeypatch: pytest.MonkeyPatch) -> None:
    await shared.access.users.create("bob", PASSWORD, Role.USER)
    setting: Callable[..., Awaitable[Any]] = users_api.set_owner

    async def deleted_then_set(*args: Any) -> Any:
        await delete_bob_meanwhile(shared)  # after this request found bob, before it wrote the owner
        return await setting(*args)

    monkeypatch.setattr(users_api, "set_owner", deleted_then_set)
    changed = await shared.client.put("/api/vms/test/owner", json={"owner": "bob"})
    assert changed.status_code == 404 and changed.json()["code"] == "USER_NOT_FOUND", changed.text
    assert (await owners(shared))["test"] is None
    actions = (await shared.client.get("/api/vm-actions")).json()
    assert [row["action"] for row in actions if row["result_code"] == "USER_NOT_FOUND"] == ["set_owner"], actions


async def test_a_vm_created_by_a_user_deleted_meanwhile_is_left_with_no_owner(
        shared: SharedApp, monkeypatch: pytest.MonkeyPatch) -> None:
    bob = await shared.users_with_tokens({"bob": Role.USER}, PASSWORD)
    hypervisor = services_of(shared.app).hypervisor
    creating = hypervisor.create_vm

    async def deleted_then_created(*args: Any, **kwargs: Any) -> Any:
        await delete_bob_meanwhile(shared)  # while bob's create was under way
        return await creating(*args, **kwargs)

    monkeypatch.setattr(hypervisor, "create_vm", deleted_then_created)
    created = await shared.client.post("/api/vms", json={"name": "bobs-vm", "memory_mib": 64}, headers=bob["bob"])
    assert created.status_code == 201, created.text
    assert (await owners(shared))["bobs-vm"] is None
    assert (await shared.client.delete("/api/vms/bobs-vm")).status_code == 200


async def test_a_sign_in_of_a_user_deleted_as_their_password_was_checked_is_refused_not_a_500(
        shared: SharedApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """The password check takes argon2's time; an administrator deleting the user meanwhile made the sign-in's
    session for nobody fail an assertion (a 500)."""
    await shared.access.users.create("bob", PASSWORD, Role.USER)
    users = shared.access.users
    checking = users.authenticate

    async def checked_then_deleted(name: str, password: str) -> Any:
        principal = await checking(name, password)
        await delete_bob_meanwhile(shared)
        return principal

    monkeypatch.setattr(users, "authenticate", checked_then_deleted)
    signed_in = await shared.client.post("/api/login", json={"name": "bob", "password": PASSWORD},
                                         headers={"Authorization": ""})
    assert signed_in.status_code == 401 and signed_in.json()["code"] == "INVALID_CREDENTIALS", signed_in.text
    assert "set-cookie" not in signed_in.headers

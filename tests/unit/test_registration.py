"""Self-registration (LIMEN_REGISTRATION) and approval, in-process over libvirt's test driver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx

from limen.auth.access import Access
from limen.db import Role
from limen.settings import Settings
from tests.support.access import access_client, admin_token, assert_error, make_access, sign_in

PASSWORD = "a long password"


@asynccontextmanager
async def world(make_settings: Callable[..., Settings], mode: str,
                **more: object) -> AsyncIterator[tuple[httpx.AsyncClient, Access, dict[str, str]]]:
    settings = make_settings(registration=mode, public_url="http://limen.test", **more)
    access = make_access(settings)
    async with access_client(settings, access) as (client, _app):
        yield client, access, {"Authorization": f"Bearer {await admin_token(access)}"}


async def test_off_refuses_and_says_so(make_settings: Callable[..., Settings]) -> None:
    async with world(make_settings, "off") as (client, access, _admin):
        assert (await client.get("/api/registration")).json() == {"mode": "off"}
        assert_error(await client.post("/api/register", json={"name": "eve", "password": PASSWORD}), 403,
                     "REGISTRATION_CLOSED")
        assert "eve" not in [user.name for user in await access.users.list_all()]


async def test_approval_mode_waits_for_an_administrator(make_settings: Callable[..., Settings]) -> None:
    async with world(make_settings, "approval") as (client, access, admin):
        assert (await client.get("/api/registration")).json() == {"mode": "approval"}
        made = await client.post("/api/register", json={"name": "Zoë", "password": PASSWORD})
        assert made.status_code == 201 and made.json() == {"name": "Zoë", "approved": False}
        # The right password learns it is pending; a wrong one learns nothing more than for anyone.
        assert_error(await client.post("/api/login", json={"name": "zoë", "password": PASSWORD}), 403,
                     "ACCOUNT_PENDING")
        assert_error(await client.post("/api/login", json={"name": "zoë", "password": "wrong password"}), 401,
                     "INVALID_CREDENTIALS")
        # No way in meanwhile: an admin-made token of the pending user is refused too.
        token = (await access.tokens.create("Zoë", "early")).secret
        assert_error(await client.get("/api/me", headers={"Authorization": f"Bearer {token}"}), 401, "UNAUTHORIZED")
        users = {user["name"]: user for user in (await client.get("/api/users", headers=admin)).json()}
        assert users["Zoë"]["approved"] is False and users["test-admin"]["approved"] is True
        # A taken name, in any case, is refused.
        assert_error(await client.post("/api/register", json={"name": "ZOË", "password": PASSWORD}), 409,
                     "USER_ALREADY_EXISTS")
        approved = await client.put("/api/users/zoë/approved", json={"approved": True}, headers=admin)
        assert approved.status_code == 200 and approved.json()["approved"] is True
        await sign_in(client, "Zoë", PASSWORD)
        me = (await client.get("/api/me")).json()
        assert me["name"] == "Zoë" and me["role"] == Role.USER.value
        # Withdrawing the approval ends the sign-in at once.
        assert (await client.put("/api/users/Zoë/approved", json={"approved": False}, headers=admin)).status_code == 200
        assert_error(await client.get("/api/me"), 401, "UNAUTHORIZED")


async def test_plain_users_may_not_approve(make_settings: Callable[..., Settings]) -> None:
    async with world(make_settings, "open") as (client, _access, _admin):
        made = await client.post("/api/register", json={"name": "mallory", "password": PASSWORD})
        assert made.json() == {"name": "mallory", "approved": True}
        await client.post("/api/register", json={"name": "trent", "password": PASSWORD})
        csrf = await sign_in(client, "mallory", PASSWORD)
        assert_error(await client.put("/api/users/trent/approved", json={"approved": False},
                                      headers={"X-CSRF-Token": csrf}), 403, "FORBIDDEN")


async def test_registration_is_throttled_per_address(make_settings: Callable[..., Settings]) -> None:
    async with world(make_settings, "open", login_max_failures_per_address=3,
                     trusted_proxies="127.0.0.0/8") as (client, access, _admin):
        here = {"X-Forwarded-For": "198.51.100.7"}
        for index in range(3):
            made = await client.post("/api/register", json={"name": f"bot{index}", "password": PASSWORD}, headers=here)
            assert made.status_code == 201, made.text
        refused = await client.post("/api/register", json={"name": "bot3", "password": PASSWORD}, headers=here)
        assert_error(refused, 429, "TOO_MANY_ATTEMPTS")
        assert "bot3" not in [user.name for user in await access.users.list_all()]
        other = await client.post("/api/register", json={"name": "human", "password": PASSWORD},
                                  headers={"X-Forwarded-For": "203.0.113.9"})
        assert other.status_code == 201


async def test_bad_input_is_a_validation_error(make_settings: Callable[..., Settings]) -> None:
    async with world(make_settings, "open") as (client, _access, _admin):
        assert_error(await client.post("/api/register", json={"name": "x", "password": "short"}), 422,
                     "VALIDATION_ERROR")
        assert_error(await client.post("/api/register", json={"name": "a\x00b", "password": PASSWORD}), 422,
                     "VALIDATION_ERROR")
        assert_error(await client.post("/api/register", json={"name": "n" * 65, "password": PASSWORD}), 422,
                     "VALIDATION_ERROR")

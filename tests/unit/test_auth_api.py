"""Access control through the HTTP API, in-process over libvirt's test driver (its VM is named 'test').

Each test signs users in with real cookies, CSRF tokens and API tokens, as a browser or a script would.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from limen.api.services import services_of
from limen.auth.access import Access
from limen.auth.revocation import Revocation, Scope
from limen.db import Role
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.ownership import set_owner
from limen.logs import JsonFormatter
from tests.conftest import settings_in
from tests.support.access import FakeClock, assert_error, sign_in
from tests.support.shared_app import SharedApp, shared_app

ADMIN, ALICE, BOB = "root-admin", "alice", "bob"
PASSWORD = {ADMIN: "admin-password-1", ALICE: "alice-password-1", BOB: "bob-password-1"}
NASTY = "O'Brien \"q\" <script>alert(1)</script>; DROP TABLE users;-- Ωμ🐧"


class World:
    def __init__(self, client: httpx.AsyncClient, app: FastAPI, access: Access, clock: FakeClock) -> None:
        self.client = client
        self.app = app
        self.access = access
        self.clock = clock

    def other_client(self) -> httpx.AsyncClient:
        """A second browser: its own cookie jar."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=str(self.client.base_url))

    async def token(self, user: str) -> dict[str, str]:
        made = await self.access.tokens.create(user, f"{user}'s script")
        return {"Authorization": f"Bearer {made.secret}"}


WORLD_SETTINGS = {
    "login_max_failures_per_user": 3, "login_max_failures_per_address": 6, "login_failure_window": 60,
    "trusted_proxies": "127.0.0.0/8", "public_url": "http://limen.test",
}


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SharedApp]:
    """One app for the module: its three users are made once; each test gets it back as it was then."""
    async with shared_app(settings_in(tmp_path_factory.mktemp("auth-api"), **WORLD_SETTINGS)) as shared:
        await shared.access.users.create(ADMIN, PASSWORD[ADMIN], Role.ADMIN)
        await shared.access.users.create(ALICE, PASSWORD[ALICE])
        await shared.access.users.create(BOB, PASSWORD[BOB])
        shared.keep_as_start()
        yield shared


@pytest.fixture
async def world(shared: SharedApp) -> World:
    await shared.reset()
    # test:///default is one shared driver per process: start from an unowned VM 'test'.
    await set_owner(services_of(shared.app).hypervisor, "test", None)
    return World(shared.client, shared.app, shared.access, shared.clock)


@pytest.fixture
async def refusing_world(world: World) -> World:
    """The world of the tests whose requests carry no valid credential: each is refused, nothing changes."""
    return world


# -- anonymous --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/me"), ("POST", "/api/logout"), ("GET", "/api/tokens"), ("POST", "/api/tokens"),
        ("DELETE", "/api/tokens/1"), ("GET", "/api/users"), ("POST", "/api/users"),
        ("PUT", "/api/users/alice/role"), ("PUT", "/api/vms/test/owner"), ("POST", "/api/vms/test/console-ticket"),
        ("POST", "/api/vms/no-such-vm/console-ticket"), ("GET", "/api/console-sessions"),
        ("DELETE", "/api/console-sessions/x"), ("GET", "/api/vm-actions"),
    ],
)
async def test_anonymous_requests_are_unauthorized(refusing_world: World, method: str, path: str) -> None:
    answer = await refusing_world.client.request(method, path, json={})
    body = assert_error(answer, 401, "UNAUTHORIZED")
    assert body["message"] == "Sign in (or send a valid API token), then retry."
    # A 401 says how to authenticate (RFC 9110): a bearer token, a scheme no browser asks a password for.
    assert answer.headers["www-authenticate"] == 'Bearer realm="limen"'


@pytest.mark.parametrize("header", ["Bearer limen_made-up-token-000000000000000", "Bearer ", "Basic YTpi", "Bearer x"])
async def test_bad_bearer_is_unauthorized(refusing_world: World, header: str) -> None:
    answer = await refusing_world.client.get("/api/me", headers={"Authorization": header})
    assert_error(answer, 401, "UNAUTHORIZED")
    assert answer.headers["www-authenticate"] == 'Bearer realm="limen"'


# -- sign-in ----------------------------------------------------------------------------------------------


async def test_sign_in_sets_a_strict_http_only_cookie_and_returns_a_csrf_token(world: World) -> None:
    response = await world.client.post("/api/login", json={"name": ALICE, "password": PASSWORD[ALICE]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == ALICE and body["role"] == "user" and body["auth"] == "cookie" and body["csrf_token"]
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("limen_session=")
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert "secure" not in attributes  # plain http
    me = await world.client.get("/api/me")
    assert me.json() == {"name": ALICE, "role": "user", "auth": "cookie", "csrf_token": body["csrf_token"],
                         "language": None}
    # Both carry the session's CSRF token: no cache keeps them, the browser's disk cache included.
    assert response.headers["cache-control"] == me.headers["cache-control"] == "no-store"
    changed = await world.client.patch("/api/me", json={"language": "ko"},
                                       headers={"X-CSRF-Token": body["csrf_token"]})
    assert changed.status_code == 200 and changed.headers["cache-control"] == "no-store"


async def test_cookie_is_secure_over_https_from_a_trusted_proxy(world: World) -> None:
    response = await world.client.post(
        "/api/login", json={"name": ALICE, "password": PASSWORD[ALICE]},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert response.status_code == 200, response.text
    assert "secure" in response.headers["set-cookie"].lower()


async def test_wrong_password_and_unknown_user_get_the_same_answer(world: World) -> None:
    wrong = assert_error(await world.client.post("/api/login", json={"name": ALICE, "password": "nope-nope"}),
                         401, "INVALID_CREDENTIALS")
    unknown = assert_error(await world.client.post("/api/login", json={"name": "zed", "password": "nope-nope"}),
                           401, "INVALID_CREDENTIALS")
    for body in (wrong, unknown):
        body.pop("request_id", None)
        body["details"] = body["details"].split(" [request_id=")[0]
    assert wrong == unknown
    assert "set-cookie" not in (await world.client.post("/api/login", json={"name": "zed", "password": "x"})).headers


async def test_sign_in_from_a_foreign_origin_is_refused(world: World) -> None:
    response = await world.client.post("/api/login", json={"name": ALICE, "password": PASSWORD[ALICE]},
                                       headers={"Origin": "https://evil.example"})
    assert_error(response, 403, "ORIGIN_NOT_ALLOWED")


async def test_sign_out_ends_the_session(world: World) -> None:
    csrf = await sign_in(world.client, ALICE, PASSWORD[ALICE])
    cookie = world.client.cookies.get("limen_session")
    assert_error(await world.client.post("/api/logout"), 403, "CSRF_FAILED")
    assert (await world.client.post("/api/logout", headers={"X-CSRF-Token": csrf})).status_code == 204
    assert_error(await world.client.get("/api/me"), 401, "UNAUTHORIZED")
    # The old cookie, replayed, is dead too.
    async with world.other_client() as replay:
        replay.cookies.set("limen_session", cookie or "", domain="limen.test")
        body = assert_error(await replay.get("/api/me"), 401, "UNAUTHORIZED")
        assert body["details"].startswith("the session has expired or was signed out")


async def test_session_expires(world: World) -> None:
    await sign_in(world.client, ALICE, PASSWORD[ALICE])
    world.clock.advance(world.access.settings.session_ttl + 1)
    assert_error(await world.client.get("/api/me"), 401, "UNAUTHORIZED")


# -- rate limit -------------------------------------------------------------------------------------------


async def test_failed_sign_ins_block_the_user_at_that_address_even_with_the_right_password(world: World) -> None:
    for _ in range(3):
        await world.client.post("/api/login", json={"name": ALICE, "password": "wrong-password"})
    world.clock.advance(4)
    locked = await world.client.post("/api/login", json={"name": ALICE, "password": PASSWORD[ALICE]})
    body = assert_error(locked, 429, "TOO_MANY_ATTEMPTS")
    assert locked.headers["Retry-After"] == "56" and body["retry_after"] == 56
    assert ALICE not in body["details"]
    # The same user from another address is not blocked: nobody can lock someone out from afar.
    await sign_in(world.client, ALICE, PASSWORD[ALICE], **{"X-Forwarded-For": "192.0.2.60"})
    # A made-up user is blocked the same way: the answers do not tell who exists.
    zed_at = {"X-Forwarded-For": "192.0.2.50"}
    for _ in range(3):
        await world.client.post("/api/login", json={"name": "zed", "password": "wrong-password"}, headers=zed_at)
    assert_error(await world.client.post("/api/login", json={"name": "zed", "password": "x"}, headers=zed_at),
                 429, "TOO_MANY_ATTEMPTS")
    await sign_in(world.client, BOB, PASSWORD[BOB], **{"X-Forwarded-For": "192.0.2.52"})
    world.clock.advance(57)
    await sign_in(world.client, ALICE, PASSWORD[ALICE])


async def test_failed_sign_ins_block_the_address(world: World) -> None:
    elsewhere = {"X-Forwarded-For": "198.51.100.7"}  # believed: the peer is a trusted proxy
    for index in range(6):
        await world.client.post("/api/login", json={"name": f"guess{index}", "password": "wrong"}, headers=elsewhere)
    assert_error(await world.client.post("/api/login", json={"name": BOB, "password": PASSWORD[BOB]},
                                         headers=elsewhere), 429, "TOO_MANY_ATTEMPTS")
    await sign_in(world.client, BOB, PASSWORD[BOB])  # from the proxy's own address


async def test_admins_unlock_a_user(world: World) -> None:
    for address in ("192.0.2.70", "192.0.2.71"):
        for _ in range(3):
            await world.client.post("/api/login", json={"name": ALICE.upper(), "password": "wrong"},
                                    headers={"X-Forwarded-For": address})
    alice = await world.token(ALICE)
    assert_error(await world.client.post(f"/api/users/{ALICE}/unlock", headers=alice), 403, "FORBIDDEN")
    admin = await world.token(ADMIN)
    assert_error(await world.client.post("/api/users/nobody/unlock", headers=admin), 404, "USER_NOT_FOUND")
    unlocked = await world.client.post(f"/api/users/{ALICE}/unlock", headers=admin)
    assert unlocked.status_code == 200, unlocked.text
    assert unlocked.json() == {"name": ALICE, "cleared": 2}
    await sign_in(world.client, ALICE, PASSWORD[ALICE], **{"X-Forwarded-For": "192.0.2.70"})


# -- CSRF -------------------------------------------------------------------------------------------------


async def test_cookie_writes_need_the_csrf_token(world: World) -> None:
    csrf = await sign_in(world.client, ALICE, PASSWORD[ALICE])
    assert (await world.client.get("/api/tokens")).status_code == 200  # reads need none
    assert_error(await world.client.post("/api/tokens", json={"name": "t"}), 403, "CSRF_FAILED")
    assert_error(await world.client.post("/api/tokens", json={"name": "t"}, headers={"X-CSRF-Token": "forged"}),
                 403, "CSRF_FAILED")
    assert_error(await world.client.post("/api/tokens", json={"name": "t"},
                                         headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"}),
                 403, "ORIGIN_NOT_ALLOWED")
    made = await world.client.post("/api/tokens", json={"name": "t"},
                                   headers={"X-CSRF-Token": csrf, "Origin": "http://limen.test"})
    assert made.status_code == 201, made.text


async def test_another_sessions_csrf_token_does_not_count(world: World) -> None:
    await sign_in(world.client, ALICE, PASSWORD[ALICE])
    async with world.other_client() as other:
        other_csrf = await sign_in(other, ALICE, PASSWORD[ALICE])
    assert_error(await world.client.post("/api/tokens", json={"name": "t"}, headers={"X-CSRF-Token": other_csrf}),
                 403, "CSRF_FAILED")


async def test_bearer_requests_need_no_csrf_token(world: World) -> None:
    response = await world.client.post("/api/tokens", json={"name": "t"}, headers=await world.token(ALICE))
    assert response.status_code == 201, response.text


# -- API tokens -------------------------------------------------------------------------------------------


async def test_tokens_are_listed_without_secrets_and_revoked_tokens_are_refused(world: World) -> None:
    auth = await world.token(ALICE)
    made = await world.client.post("/api/tokens", json={"name": NASTY}, headers=auth)
    assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
    secret = made.json()["secret"]
    assert secret.startswith("limen_") and made.json()["name"] == NASTY
    listed = await world.client.get("/api/tokens", headers=auth)
    assert secret not in listed.text and "secret" not in listed.text
    entry = next(t for t in listed.json() if t["id"] == made.json()["id"])
    assert entry["name"] == NASTY and secret.startswith(entry["prefix"]) and entry["owner"] == ALICE

    new_auth = {"Authorization": f"Bearer {secret}"}
    assert (await world.client.get("/api/me", headers=new_auth)).json()["auth"] == "token"
    revoked = await world.client.delete(f"/api/tokens/{made.json()['id']}", headers=auth)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert_error(await world.client.get("/api/me", headers=new_auth), 401, "UNAUTHORIZED")
    assert (await world.client.get("/api/me", headers=auth)).status_code == 200


async def test_users_cannot_see_or_revoke_each_others_tokens(world: World) -> None:
    alice, bob = await world.token(ALICE), await world.token(BOB)
    alice_ids = [t["id"] for t in (await world.client.get("/api/tokens", headers=alice)).json()]
    assert all(t["owner"] == BOB for t in (await world.client.get("/api/tokens", headers=bob)).json())
    assert_error(await world.client.get("/api/tokens?all=true", headers=bob), 403, "FORBIDDEN")
    assert_error(await world.client.delete(f"/api/tokens/{alice_ids[0]}", headers=bob), 404, "TOKEN_NOT_FOUND")
    for beyond in (2**63, 10**30, 0, -1):  # ids no database row can have: 2**63 was a 500 (OverflowError)
        assert_error(await world.client.delete(f"/api/tokens/{beyond}", headers=bob), 404, "TOKEN_NOT_FOUND")
    assert_error(await world.client.post("/api/tokens", json={"name": "x", "user": ALICE}, headers=bob),
                 403, "FORBIDDEN")
    admin = await world.token(ADMIN)
    owners = {t["owner"] for t in (await world.client.get("/api/tokens?all=true", headers=admin)).json()}
    assert owners == {ADMIN, ALICE, BOB}
    made = await world.client.post("/api/tokens", json={"name": "for alice", "user": ALICE}, headers=admin)
    assert made.status_code == 201 and made.json()["owner"] == ALICE


async def test_disabling_a_user_stops_their_session_and_tokens(world: World) -> None:
    alice = await world.token(ALICE)
    await sign_in(world.client, ALICE, PASSWORD[ALICE])
    admin = await world.token(ADMIN)
    disabled = await world.client.put(f"/api/users/{ALICE}/disabled", json={"disabled": True}, headers=admin)
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert_error(await world.client.get("/api/me"), 401, "UNAUTHORIZED")
    assert_error(await world.client.get("/api/me", headers=alice), 401, "UNAUTHORIZED")
    # Her own password: told the account is disabled (not "wrong password", which she would try again and
    # again); a wrong one learns nothing.
    assert_error(await world.client.post("/api/login", json={"name": ALICE, "password": PASSWORD[ALICE]}),
                 403, "ACCOUNT_DISABLED")
    assert_error(await world.client.post("/api/login", json={"name": ALICE, "password": "not-hers-at-all"}),
                 401, "INVALID_CREDENTIALS")


# -- users, roles, owners ---------------------------------------------------------------------------------


async def test_only_admins_manage_users(world: World) -> None:
    bob, admin = await world.token(BOB), await world.token(ADMIN)
    assert_error(await world.client.get("/api/users", headers=bob), 403, "FORBIDDEN")
    assert_error(await world.client.post("/api/users", json={"name": "x", "password": "long-enough"}, headers=bob),
                 403, "FORBIDDEN")
    assert_error(await world.client.put(f"/api/users/{BOB}/role", json={"role": "admin"}, headers=bob),
                 403, "FORBIDDEN")
    made = await world.client.post("/api/users", json={"name": NASTY, "password": "long-enough"}, headers=admin)
    assert made.status_code == 201, made.text
    assert made.json()["name"] == NASTY and made.json()["role"] == "user"
    assert NASTY in [u["name"] for u in (await world.client.get("/api/users", headers=admin)).json()]
    assert_error(await world.client.post("/api/users", json={"name": NASTY, "password": "long-enough"},
                                         headers=admin), 409, "USER_ALREADY_EXISTS")
    promoted = await world.client.put(f"/api/users/{httpx.URL(path=NASTY).raw_path.decode()}/role",
                                      json={"role": "admin"}, headers=admin)
    assert promoted.status_code == 200 and promoted.json() == {**made.json(), "role": "admin"}
    await sign_in(world.client, NASTY, "long-enough")
    assert (await world.client.get("/api/me")).json()["name"] == NASTY
    assert_error(await world.client.put("/api/users/nobody/role", json={"role": "user"}, headers=admin),
                 404, "USER_NOT_FOUND")
    # A bad name and a short password: both named at once (the password was said after the name was right).
    both = assert_error(await world.client.post("/api/users", json={"name": " lead", "password": "short"},
                                                headers=admin), 422, "VALIDATION_ERROR")
    assert [entry["field"] for entry in both["fields"]] == ["name", "password"], both
    assert " lead" not in [u["name"] for u in (await world.client.get("/api/users", headers=admin)).json()]


async def test_the_last_admin_cannot_be_demoted_or_disabled(world: World) -> None:
    admin = await world.token(ADMIN)
    # Its own code, whose advice says what to do (FORBIDDEN's says "ask an administrator": they are one).
    assert_error(await world.client.put(f"/api/users/{ADMIN}/role", json={"role": "user"}, headers=admin),
                 409, "LAST_ADMINISTRATOR")
    assert_error(await world.client.put(f"/api/users/{ADMIN}/disabled", json={"disabled": True}, headers=admin),
                 409, "LAST_ADMINISTRATOR")


async def test_an_admin_deletes_a_user_with_their_tokens_and_sign_ins(world: World) -> None:
    admin, alice, bob = await world.token(ADMIN), await world.token(ALICE), await world.token(BOB)
    published: list[Revocation] = []
    world.access.revocations.subscribe(published.append)
    await sign_in(world.client, ALICE, PASSWORD[ALICE])
    assert_error(await world.client.delete(f"/api/users/{BOB}", headers=alice), 403, "FORBIDDEN")
    yourself = assert_error(await world.client.delete(f"/api/users/{ADMIN}", headers=admin), 403, "FORBIDDEN")
    assert "yourself" in yourself["details"]
    assert_error(await world.client.delete("/api/users/nobody", headers=admin), 404, "USER_NOT_FOUND")
    deleted = await world.client.delete(f"/api/users/{ALICE}", headers=admin)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["name"] == ALICE
    assert_error(await world.client.get("/api/me", headers=alice), 401, "UNAUTHORIZED")  # her token
    assert_error(await world.client.get("/api/me"), 401, "UNAUTHORIZED")  # her browser
    assert_error(await world.client.post("/api/login", json={"name": ALICE, "password": PASSWORD[ALICE]}),
                 401, "INVALID_CREDENTIALS")
    assert ALICE not in [u["name"] for u in (await world.client.get("/api/users", headers=admin)).json()]
    assert (await world.client.get("/api/me", headers=bob)).status_code == 200  # nobody else's
    # Published before her VMs change owner (her consoles end at once) and again after the deletion.
    assert [(r.scope, r.subject, r.reason) for r in published] == [
        (Scope.USER, ALICE, f"user {ALICE!r} deleted by {ADMIN!r}")] * 2
    # The name is free again; the new alice is somebody else.
    assert (await world.client.post("/api/users", json={"name": ALICE, "password": "another-password"},
                                    headers=admin)).status_code == 201


async def test_the_last_enabled_admin_cannot_be_deleted(world: World) -> None:
    await world.access.users.create("second-admin", "second-password", Role.ADMIN)
    second = await world.token("second-admin")
    await world.access.users.set_disabled(ADMIN, True)
    # second-admin is the last enabled one; only an operator (the command line) could try to delete them.
    with pytest.raises(LimenError) as refused:
        await world.access.users.delete("second-admin", by=None)
    assert refused.value.code is ErrorCode.LAST_ADMINISTRATOR and "last enabled administrator" in refused.value.details
    assert (await world.client.get("/api/me", headers=second)).status_code == 200
    await world.access.users.delete(ADMIN, by=None)  # a disabled admin may go


async def test_every_change_that_takes_a_right_away_is_published(world: World) -> None:
    """What the console registry hears (tests/unit/test_revocation.py judges it; the integration tests
    see the consoles end)."""
    admin, alice = await world.token(ADMIN), await world.token(ALICE)
    published: list[Revocation] = []
    world.access.revocations.subscribe(published.append)
    await world.access.users.create("carol", "carol-password", Role.ADMIN)
    csrf = await sign_in(world.client, ALICE, PASSWORD[ALICE])
    cookie = world.client.cookies.get("limen_session") or ""
    tokens = (await world.client.get("/api/tokens", headers=alice)).json()

    assert (await world.client.put("/api/users/carol/role", json={"role": "admin"}, headers=admin)).status_code == 200
    assert published == []  # raising a role takes nothing away
    assert (await world.client.put("/api/users/carol/role", json={"role": "user"}, headers=admin)).status_code == 200
    assert (await world.client.put(f"/api/users/{BOB}/disabled", json={"disabled": True},
                                   headers=admin)).status_code == 200
    assert (await world.client.put(f"/api/users/{BOB}/disabled", json={"disabled": False},
                                   headers=admin)).status_code == 200
    assert (await world.client.put("/api/vms/test/owner", json={"owner": ALICE}, headers=admin)).status_code == 200
    assert (await world.client.put("/api/vms/test/owner", json={"owner": None}, headers=admin)).status_code == 200
    assert (await world.client.delete(f"/api/tokens/{tokens[0]['id']}", headers=alice)).status_code == 200
    assert (await world.client.post("/api/logout", headers={"X-CSRF-Token": csrf})).status_code == 204
    vm_uuid = (await world.client.get("/api/vms/test", headers=admin)).json()["uuid"]
    session_hash = hashlib.sha256(cookie.encode()).hexdigest()
    assert [(r.scope, r.subject, r.reason) for r in published] == [
        (Scope.USER, "carol", f"user 'carol' is no longer an administrator (changed by {ADMIN!r})"),
        (Scope.USER, BOB, f"user {BOB!r} disabled by {ADMIN!r}"),
        (Scope.VM, vm_uuid, f"VM 'test' given to {ALICE!r} (by {ADMIN!r})"),
        (Scope.VM, vm_uuid, f"VM 'test' has no owner now (by {ADMIN!r})"),
        (Scope.CREDENTIAL, f"token:{tokens[0]['id']}", f"API token {tokens[0]['id']} revoked by {ALICE!r}"),
        (Scope.CREDENTIAL, f"session:{session_hash[:16]}", f"user {ALICE!r} signed out"),
    ]


async def test_admin_assigns_owners_and_the_action_is_audited(world: World) -> None:
    admin, alice, bob = await world.token(ADMIN), await world.token(ALICE), await world.token(BOB)
    assert_error(await world.client.put("/api/vms/test/owner", json={"owner": ALICE}, headers=alice),
                 403, "FORBIDDEN")
    assert_error(await world.client.put("/api/vms/test/owner", json={"owner": "nobody"}, headers=admin),
                 404, "USER_NOT_FOUND")
    owned = await world.client.put("/api/vms/test/owner", json={"owner": ALICE}, headers=admin)
    assert owned.status_code == 200, owned.text
    assert owned.json()["name"] == "test"
    actions = (await world.client.get("/api/vm-actions", headers=admin)).json()
    assert [(a["user"], a["action"], a["vm_name"], a["result_code"]) for a in actions[:2]] == [
        (ADMIN, "set_owner", "test", "OK"), (ADMIN, "set_owner", "test", "USER_NOT_FOUND")
    ]
    assert (await world.client.get("/api/vm-actions", headers=bob)).json() == []


async def test_an_owner_change_asked_by_uuid_is_audited_under_the_vms_name(world: World) -> None:
    admin = await world.token(ADMIN)
    vm_uuid = (await world.client.get("/api/vms/test", headers=admin)).json()["uuid"]
    owned = await world.client.put(f"/api/vms/{vm_uuid}/owner", json={"owner": ALICE}, headers=admin)
    assert owned.status_code == 200, owned.text
    (row, *_) = (await world.client.get("/api/vm-actions", headers=admin)).json()
    assert (row["action"], row["vm_name"], row["vm_uuid"]) == ("set_owner", "test", vm_uuid)


# -- console tickets --------------------------------------------------------------------------------------


async def give_test_vm_to(world: World, owner: str) -> str:
    response = await world.client.put("/api/vms/test/owner", json={"owner": owner}, headers=await world.token(ADMIN))
    assert response.status_code == 200, response.text
    uuid: str = response.json()["uuid"]
    return uuid


async def test_console_tickets_only_for_vms_the_user_may_access(world: World) -> None:
    vm_uuid = await give_test_vm_to(world, ALICE)
    alice, bob, admin = await world.token(ALICE), await world.token(BOB), await world.token(ADMIN)
    issued = await world.client.post("/api/vms/test/console-ticket", headers=alice)
    assert issued.status_code == 200, issued.text
    assert issued.headers["cache-control"] == "no-store"
    body = issued.json()
    assert body["expires_in"] == 30 and body["vm_uuid"] == vm_uuid and len(body["ticket"]) >= 40
    redeemed = await world.access.tickets.redeem(body["ticket"], vm_uuid)
    assert redeemed.user == ALICE
    assert redeemed.credential is not None and redeemed.credential.startswith("token:")  # what asked for it
    assert_error(await world.client.post("/api/vms/test/console-ticket", headers=bob), 404, "VM_NOT_FOUND")
    assert (await world.client.post(f"/api/vms/{vm_uuid}/console-ticket", headers=admin)).status_code == 200
    assert_error(await world.client.post("/api/vms/no-such-vm/console-ticket", headers=bob), 404, "VM_NOT_FOUND")


async def test_unowned_vms_are_for_admins_only(world: World) -> None:
    assert_error(await world.client.post("/api/vms/test/console-ticket", headers=await world.token(ALICE)),
                 404, "VM_NOT_FOUND")


async def test_ticket_request_from_a_browser_needs_csrf(world: World) -> None:
    await give_test_vm_to(world, ALICE)
    csrf = await sign_in(world.client, ALICE, PASSWORD[ALICE])
    assert_error(await world.client.post("/api/vms/test/console-ticket"), 403, "CSRF_FAILED")
    response = await world.client.post("/api/vms/test/console-ticket", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200


# -- console-session audit --------------------------------------------------------------------------------


async def test_console_sessions_are_listed_per_role_and_admins_end_them(world: World) -> None:
    audit = world.access.audit
    await audit.console_started("s-alice", user=ALICE, vm_uuid="u1", vm_name="test", client_address="192.0.2.1")
    await audit.console_started("s-bob", user=BOB, vm_uuid="u2", vm_name="other", client_address="192.0.2.2")
    await audit.console_ended("s-bob", bytes_to_client=1000, bytes_from_client=20, end_code="OK")
    alice, admin = await world.token(ALICE), await world.token(ADMIN)
    assert [s["id"] for s in (await world.client.get("/api/console-sessions", headers=alice)).json()] == ["s-alice"]
    everyone = (await world.client.get("/api/console-sessions", headers=admin)).json()
    assert {s["id"] for s in everyone} == {"s-alice", "s-bob"}
    bob_row = next(s for s in everyone if s["id"] == "s-bob")
    assert (bob_row["bytes_to_client"], bob_row["bytes_from_client"], bob_row["end_code"], bob_row["live"]) == (
        1000, 20, "OK", False)
    live = (await world.client.get("/api/console-sessions?live=true", headers=admin)).json()
    assert [s["id"] for s in live] == ["s-alice"]

    published: list[Revocation] = []
    world.access.revocations.subscribe(published.append)
    assert_error(await world.client.delete("/api/console-sessions/s-alice", headers=alice), 403, "FORBIDDEN")
    ended = await world.client.delete("/api/console-sessions/s-alice", headers=admin)
    assert ended.status_code == 202, ended.text
    # Not live in this process (the row was written by hand): told to every instance, none here ends.
    assert ended.json()["ending"] is False and ended.json()["session"]["terminated_by"] == ADMIN
    assert [(r.scope, r.subject) for r in published] == [(Scope.SESSION, "s-alice")]
    assert_error(await world.client.delete("/api/console-sessions/s-bob", headers=admin),
                 404, "CONSOLE_SESSION_NOT_FOUND")
    assert_error(await world.client.delete("/api/console-sessions/nope", headers=admin),
                 404, "CONSOLE_SESSION_NOT_FOUND")


# -- secrets never logged ---------------------------------------------------------------------------------


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def test_secrets_never_reach_the_log(world: World) -> None:
    handler = Collect()
    loggers = [logging.getLogger(), logging.getLogger("limen")]
    saved = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    secrets: list[str] = [PASSWORD[ALICE], PASSWORD[ADMIN]]
    try:
        await give_test_vm_to(world, ALICE)
        csrf = await sign_in(world.client, ALICE, PASSWORD[ALICE])
        secrets += [csrf, world.client.cookies.get("limen_session") or "missing"]
        # A password typed into the name field must not be logged either.
        await world.client.post("/api/login", json={"name": PASSWORD[ALICE], "password": PASSWORD[ALICE]})
        made = await world.client.post("/api/tokens", json={"name": "t"}, headers={"X-CSRF-Token": csrf})
        secrets.append(made.json()["secret"])
        ticket = (await world.client.post("/api/vms/test/console-ticket", headers={"X-CSRF-Token": csrf})).json()
        secrets.append(ticket["ticket"])
        await world.client.get("/api/me", headers={"Authorization": f"Bearer {made.json()['secret']}x"})
        await world.client.post("/api/users", json={"name": "u", "password": "p"},
                                headers={"Authorization": f"Bearer {made.json()['secret']}"})
        await world.client.post("/api/logout", headers={"X-CSRF-Token": csrf})
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
    text = "\n".join(handler.lines)
    assert "signed in" in text and "console ticket issued" in text  # the log was captured
    for secret in secrets:
        assert secret not in text

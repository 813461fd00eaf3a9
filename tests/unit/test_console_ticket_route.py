"""ConsoleTicketRoute: a body-less POST for a console ticket is answered before the router, exactly as the
route answers it (the same body, headers, errors and metrics); everything else goes down to the router."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from limen.api.services import services_of
from limen.api.tickets import TICKET_PATH, TICKET_ROUTE
from limen.db import Role
from limen.errors import ErrorCode, LimenError
from tests.conftest import settings_in
from tests.support.access import access_client, assert_error, make_access, sign_in
from tests.support.console import FakeDomain, driver_uri

ROUTE_TEMPLATE = "/api/vms/{vm_id}/console-ticket"
PASSWORD = "correct horse battery"


@pytest.mark.parametrize(("path", "vm_id"), [
    ("/api/vms/alice-vm/console-ticket", "alice-vm"),
    ("/api/vms/1ce0be4c-0000-4000-8000-000000000001/console-ticket", "1ce0be4c-0000-4000-8000-000000000001"),
    ("/api/vms/a/b/console-ticket", None),
    ("/api/vms//console-ticket", None),
    ("/api/vms/x/console-ticket/", None),
    ("/api/vms/x/console", None),
])
def test_the_path_is_the_routers(path: str, vm_id: str | None) -> None:
    match = TICKET_PATH.match(path)
    assert (match.group(1) if match else None) == vm_id
    assert (TICKET_ROUTE.path_regex.match(path) is not None) == (vm_id is not None)


class Site:
    def __init__(self, client: httpx.AsyncClient, app: Any, vm_uuid: str, admin: dict[str, str]) -> None:
        self.client = client
        self.app = app
        self.vm_uuid = vm_uuid
        self.admin = admin
        self.routed: list[str] = []  # requests the router handed to the route
        self.counted_before: dict[tuple[str, str], float] = {}

    def requests_counted(self) -> dict[tuple[str, str], float]:
        counts: dict[tuple[str, str], float] = {}
        for metric in services_of(self.app).metrics.http_requests.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels["route"] == ROUTE_TEMPLATE:
                    counts[(sample.labels["method"], sample.labels["status"])] = sample.value
        return counts

    def requests_counted_since(self) -> dict[tuple[str, str], float]:
        """The route's request counts (method, status) since the test began."""
        now = self.requests_counted()
        return {key: value - self.counted_before.get(key, 0) for key, value in now.items()
                if value != self.counted_before.get(key, 0)}


@pytest.fixture(scope="module")
async def one_site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    """One app for the module (its tests only ask for tickets, which change nothing the others read)."""
    directory = tmp_path_factory.mktemp("ticket-route")
    vm = FakeDomain("ticket-route-vm", vnc=5999)  # running, with a VNC port: what a console ticket is for
    settings = settings_in(directory, libvirt_uri=driver_uri(directory, [vm]))
    access = make_access(settings)
    async with access_client(settings, access) as (client, app):
        await access.users.create("root", PASSWORD, Role.ADMIN)
        await access.users.create("bob", PASSWORD, Role.USER)
        token = (await access.tokens.create("root", "tests")).secret
        result = Site(client, app, vm.uuid, {"Authorization": f"Bearer {token}"})
        route_app = TICKET_ROUTE.app

        async def counted(scope: Any, receive: Any, send: Any) -> None:
            result.routed.append(scope["method"])
            await route_app(scope, receive, send)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(TICKET_ROUTE, "app", counted)
            yield result


@pytest.fixture
def site(one_site: Site) -> Site:
    one_site.routed.clear()
    one_site.client.cookies.clear()
    one_site.counted_before = one_site.requests_counted()
    return one_site


async def test_a_body_less_post_is_answered_before_the_router_as_the_route_answers(site: Site) -> None:
    path = f"/api/vms/{site.vm_uuid}/console-ticket"
    short = await site.client.post(path, headers=site.admin)
    assert site.routed == []
    routed = await site.client.post(path, headers={**site.admin, "Content-Type": "application/json"}, content=b"{}")
    assert site.routed == ["POST"]  # a request with a body goes the router's way

    for response in (short, routed):
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"ticket", "expires_in", "vm_uuid"}
        assert response.json()["vm_uuid"] == site.vm_uuid
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-request-id"]
    assert short.json()["ticket"] != routed.json()["ticket"]
    assert set(short.headers) == set(routed.headers)
    assert site.requests_counted_since() == {("POST", "200"): 2}  # the metrics see the route's template either way

    # Each ticket opens a console once: the shortcut's is a real one.
    tickets = services_of(site.app).access.tickets
    claimed = await tickets.redeem(short.json()["ticket"], site.vm_uuid)
    assert claimed is not None and claimed.user == "root"


async def test_its_refusals_are_the_routes_json_errors(site: Site) -> None:
    path = f"/api/vms/{site.vm_uuid}/console-ticket"
    body = assert_error(await site.client.post(path), 401, "UNAUTHORIZED")
    assert body["request_id"] and body["request_id"] in body["details"]
    assert_error(await site.client.post(path, headers={"Authorization": "Bearer nope"}), 401, "UNAUTHORIZED")
    assert_error(await site.client.post("/api/vms/no-such-vm/console-ticket", headers=site.admin), 404,
                 "VM_NOT_FOUND")
    assert_error(await site.client.post("/api/vms/%20/console-ticket", headers=site.admin), 400, "INVALID_VM_ID")

    # A browser session: the CSRF token is required, and a VM of someone else's is not found.
    csrf = await sign_in(site.client, "bob", PASSWORD)
    assert_error(await site.client.post(path), 403, "CSRF_FAILED")
    assert_error(await site.client.post(path, headers={"X-CSRF-Token": csrf}), 404, "VM_NOT_FOUND")
    assert site.routed == []
    assert site.requests_counted_since() == {("POST", "401"): 2, ("POST", "404"): 2, ("POST", "400"): 1,
                                       ("POST", "403"): 1}


async def test_other_methods_go_to_the_router(site: Site) -> None:
    response = await site.client.get(f"/api/vms/{site.vm_uuid}/console-ticket", headers=site.admin)
    assert response.status_code == 405
    assert response.json()["code"]
    assert site.routed == []  # the router answered 405 itself: the route's app is never reached for a GET


async def test_many_tickets_asked_for_at_once_are_each_a_ticket_of_their_own(site: Site) -> None:
    """A page reloaded in many tabs, a script opening consoles: concurrent requests each get a distinct ticket
    that opens a console once, and the unauthenticated ones among them are refused, not answered with one."""
    path = f"/api/vms/{site.vm_uuid}/console-ticket"
    responses = await asyncio.gather(*(site.client.post(path, headers=site.admin if n % 4 else {})
                                       for n in range(80)))
    granted = [response.json()["ticket"] for response in responses if response.status_code == 200]
    for response in responses:
        if response.status_code != 200:
            assert_error(response, 401, "UNAUTHORIZED")
    assert len(granted) == 60 and len(set(granted)) == 60
    assert site.routed == []
    assert site.requests_counted_since() == {("POST", "200"): 60, ("POST", "401"): 20}

    tickets = services_of(site.app).access.tickets
    outcomes = await asyncio.gather(*(tickets.redeem(ticket, site.vm_uuid) for ticket in granted + granted),
                                    return_exceptions=True)
    holders = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    refusals = [outcome for outcome in outcomes if isinstance(outcome, LimenError)]
    assert len(holders) == 60 and {holder.user for holder in holders} == {"root"}
    assert len(refusals) == 60 and {error.code for error in refusals} == {ErrorCode.TICKET_USED}


async def test_a_token_revoked_during_a_burst_gets_no_ticket_after_its_revocation(site: Site) -> None:
    """Requests in flight when the token is revoked may still get a ticket, which names the token (so the
    console it would open is refused or ended by the revocation); none asked for after it gets one."""
    access = services_of(site.app).access
    new = await access.tokens.create("root", "burst")
    bearer = {"Authorization": f"Bearer {new.secret}"}
    path = f"/api/vms/{site.vm_uuid}/console-ticket"
    answered: list[tuple[bool, httpx.Response]] = []  # (asked after the revocation had returned, answer)
    ten_answered = asyncio.Event()
    revoked = asyncio.Event()

    async def lane() -> None:  # a client asking again and again, as fast as it is answered, until refused
        for _ in range(1000):
            asked_after_revocation = revoked.is_set()
            response = await site.client.post(path, headers=bearer)
            answered.append((asked_after_revocation, response))
            if len(answered) >= 10:
                ten_answered.set()
            if response.status_code != 200:
                return
            await asyncio.sleep(0)  # in-process, a ticket is answered without the loop ever running another task

    async def revoke_midway() -> None:
        await ten_answered.wait()
        response = await site.client.delete(f"/api/tokens/{new.info.id}", headers=site.admin)
        assert response.status_code == 200, response.text
        revoked.set()

    await asyncio.gather(revoke_midway(), *(lane() for _ in range(4)))

    granted = [response.json()["ticket"] for _, response in answered if response.status_code == 200]
    assert len(granted) >= 10
    for asked_after_revocation, response in answered:
        if asked_after_revocation or response.status_code != 200:
            assert_error(response, 401, "UNAUTHORIZED")
    assert sum(response.status_code == 401 for _, response in answered) == 4  # each lane ended refused
    assert site.routed == []
    holders = await asyncio.gather(*(access.tickets.redeem(ticket, site.vm_uuid) for ticket in granted))
    assert {holder.credential for holder in holders} == {f"token:{new.info.id}"}

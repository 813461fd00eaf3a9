"""The resource routes and /metrics in-process over libvirt's test driver: the sampler sees the running VMs,
who may read a VM's series (hidden VMs answer 404), ``since=`` and ``resolution=``, bad input in the one
error schema, the host's figures, and /metrics labelled by VM UUID and name only. (The test driver reports
only a VM's state; figures with values are recorded into the history directly where a test needs them.)"""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from limen.api.services import services_of
from limen.db import Role
from limen.settings import Settings
from limen.stats_history import Reading
from limen.stats_sampler import StatsSampler
from tests.conftest import DEMO_ISO, settings_in
from tests.support.access import access_client, assert_error, make_access
from tests.support.shared_app import SharedApp, shared_app

PASSWORD = "a-long-password"
Headers = dict[str, dict[str, str]]  # each user's Authorization header


class Users:
    def __init__(self, client: httpx.AsyncClient, app: FastAPI, headers: Headers) -> None:
        self.client = client
        self.app = app
        self.headers = headers

    @property
    def sampler(self) -> StatsSampler:
        sampler: StatsSampler = services_of(self.app).stats_sampler
        return sampler

    async def get(self, user: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, headers=self.headers[user], **kwargs)


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[SharedApp, Headers]]:
    """One app for the module, its users and their tokens made once; each test gets it back as it was then."""
    # A long interval: the sampler's own round runs at start; the tests sample when they need to.
    async with shared_app(settings_in(tmp_path_factory.mktemp("stats-api"), stats_interval=3600)) as shared:
        headers = await shared.users_with_tokens({"root": Role.ADMIN, "alice": Role.USER, "bob": Role.USER}, PASSWORD)
        shared.keep_as_start()
        yield shared, headers


@pytest.fixture
async def users(shared: tuple[SharedApp, Headers]) -> Users:
    app, headers = shared
    await app.reset()
    # What the tests record and sample: no VM's figures from an earlier test (nor from the start's round).
    services_of(app.app).stats_sampler.history.vms.clear()
    return Users(app.client, app.app, headers)


@pytest.fixture
async def alices_vm(users: Users) -> AsyncIterator[dict[str, Any]]:
    """A running VM of alice's."""
    name = f"stats-{uuid.uuid4().hex[:8]}"
    created = await users.client.post("/api/vms", headers=users.headers["alice"],
                                      json={"name": name, "memory_mib": 64, "disk_gib": 1, "iso": DEMO_ISO})
    assert created.status_code == 201, created.text
    vm: dict[str, Any] = created.json()
    assert (await users.client.post(f"/api/vms/{vm['uuid']}/start", headers=users.headers["alice"])).status_code == 200
    yield vm
    await users.client.delete(f"/api/vms/{vm['uuid']}", headers=users.headers["root"])


def counters(vm: dict[str, Any], cpu_s: float, rx: int) -> Reading:
    return Reading(vm["uuid"], vm["name"], 1, int(cpu_s * 1e9), memory_kib=65536, rss_kib=100_000,
                   disk_read_bytes=0, disk_write_bytes=0, net_rx_bytes=rx, net_tx_bytes=0)


async def test_sampler_reads_running_vms_from_libvirt(users: Users, alices_vm: dict[str, Any]) -> None:
    await users.sampler.sample_once()
    history = users.sampler.history.get(alices_vm["uuid"])
    assert history is not None and history.running and history.name == alices_vm["name"]
    body = (await users.get("alice", f"/api/vms/{alices_vm['uuid']}/stats")).json()
    assert (body["enabled"], body["running"], body["interval"]) == (True, True, 3600)
    assert len(body["series"]["t"]) >= 1
    await users.client.post(f"/api/vms/{alices_vm['uuid']}/stop?force=true", headers=users.headers["alice"])
    await users.sampler.sample_once()
    assert not history.running
    assert (await users.get("alice", f"/api/vms/{alices_vm['uuid']}/stats")).json()["running"] is False


async def test_only_owners_and_admins_read_a_vms_series(users: Users, alices_vm: dict[str, Any]) -> None:
    path = f"/api/vms/{alices_vm['uuid']}/stats"
    assert_error(await users.get("bob", path), 404, "VM_NOT_FOUND")
    assert_error(await users.get("bob", f"/api/vms/{alices_vm['name']}/stats"), 404, "VM_NOT_FOUND")
    assert_error(await users.client.get(path), 401, "UNAUTHORIZED")
    assert_error(await users.get("root", "/api/vms/no-such-vm/stats"), 404, "VM_NOT_FOUND")
    assert (await users.get("alice", path)).status_code == 200
    assert (await users.get("root", f"/api/vms/{alices_vm['name']}/stats")).status_code == 200


async def test_since_and_resolution(users: Users, alices_vm: dict[str, Any]) -> None:
    history = users.sampler.history
    for i in range(4):
        history.record([counters(alices_vm, cpu_s=i * 2.5, rx=i * 5000)], at=1_000_000.0 + i * 5)
    path = f"/api/vms/{alices_vm['uuid']}/stats"
    body = (await users.get("alice", path, params={"since": 1_000_004})).json()
    assert body["resolution"] == "fine"
    assert body["series"]["t"] == [1_000_005.0, 1_000_010.0, 1_000_015.0]
    assert body["series"]["cpu_percent"] == [50.0, 50.0, 50.0]
    assert body["series"]["net_rx_bps"] == [1000.0, 1000.0, 1000.0]
    assert body["series"]["memory_bytes"] == [65536 * 1024.0] * 3
    assert body["latest"]["cpu_percent"] == 50.0
    everything = (await users.get("alice", path)).json()["series"]
    assert everything["cpu_percent"][0] is None  # the first reading has no rate
    coarse = (await users.get("alice", path, params={"resolution": "coarse"})).json()
    assert (coarse["resolution"], coarse["step"]) == ("coarse", 60.0)
    for bad in ({"since": "yesterday"}, {"since": -1}, {"since": "nan"}, {"resolution": "daily"}):
        assert_error(await users.get("alice", path, params=bad), 422, "VALIDATION_ERROR")
    # Not a number at all: said so, not "should be less than or equal to 100000000000".
    refused = assert_error(await users.get("alice", path, params={"since": "nan"}), 422, "VALIDATION_ERROR")
    assert "finite number" in refused["details"], refused


async def test_a_since_past_the_series_end_answers_the_whole_series(users: Users, alices_vm: dict[str, Any]) -> None:
    """The page asks for the points after the newest it holds; after the server's clock was set back the
    series began anew before that time, and each answer was empty until the clock passed it again."""
    history = users.sampler.history
    # Set back 315 s after the third reading (the steady clock, which never steps, goes on).
    for steady, at in enumerate((1_000_000.0, 1_000_005.0, 1_000_010.0, 999_700.0, 999_705.0)):
        history.record([counters(alices_vm, cpu_s=0.0, rx=0)], at=at, steady=steady * 5.0)
    path = f"/api/vms/{alices_vm['uuid']}/stats"
    body = (await users.get("alice", path, params={"since": 1_000_010})).json()
    assert body["series"]["t"] == [999_700.0, 999_705.0]
    assert (await users.get("alice", path, params={"since": 999_705})).json()["series"]["t"] == []  # nothing new


async def test_a_vm_whose_host_is_not_read_is_stale_and_out_of_the_current_figures(
    users: Users, alices_vm: dict[str, Any]
) -> None:
    history = users.sampler.history
    history.record([counters(alices_vm, cpu_s=0.0, rx=0)], at=4_000_000.0)
    history.record([counters(alices_vm, cpu_s=2.5, rx=0)], at=4_000_005.0)
    history.host_unread("")  # its host's read failed
    path = f"/api/vms/{alices_vm['uuid']}/stats"
    body = (await users.get("alice", path)).json()
    assert (body["running"], body["stale"], len(body["series"]["t"])) == (True, True, 2)  # its history kept
    assert alices_vm["uuid"] not in (await users.get("alice", "/api/stats/vms")).json()["vms"]
    assert alices_vm["uuid"] not in (await users.client.get("/metrics")).text
    history.record([counters(alices_vm, cpu_s=5.0, rx=0)], at=4_000_010.0)
    assert (await users.get("alice", path)).json()["stale"] is False
    assert alices_vm["uuid"] in (await users.get("alice", "/api/stats/vms")).json()["vms"]


async def test_latest_figures_of_the_vms_one_may_see(users: Users, alices_vm: dict[str, Any]) -> None:
    users.sampler.history.record([counters(alices_vm, 0, 0)], at=2_000_000.0)
    users.sampler.history.record([counters(alices_vm, 1, 0)], at=2_000_005.0)
    mine = (await users.get("alice", "/api/stats/vms")).json()
    assert mine["vms"][alices_vm["uuid"]]["cpu_percent"] == 20.0
    assert alices_vm["uuid"] not in (await users.get("bob", "/api/stats/vms")).json()["vms"]
    assert alices_vm["uuid"] in (await users.get("root", "/api/stats/vms")).json()["vms"]
    assert_error(await users.client.get("/api/stats/vms"), 401, "UNAUTHORIZED")


async def test_parallel_reads_while_sampling(users: Users, alices_vm: dict[str, Any]) -> None:
    path = f"/api/vms/{alices_vm['uuid']}/stats"
    answers = await asyncio.gather(*(users.get("alice", path) for _ in range(20)),
                                   *(users.sampler.sample_once() for _ in range(5)))
    assert all(answer.status_code == 200 for answer in answers if isinstance(answer, httpx.Response))


async def test_host_stats(users: Users) -> None:
    assert_error(await users.client.get("/api/host/stats"), 401, "UNAUTHORIZED")
    body = (await users.get("bob", "/api/host/stats")).json()
    assert body["cpus"] >= 1 and body["memory_total_bytes"] > 0
    assert set(body["storage_pool"]) == {"name", "capacity_bytes", "allocation_bytes", "available_bytes"}
    assert body["storage_pool"]["name"] == "limen-test"


async def test_host_stats_count_only_the_running_vms_the_user_may_see(users: Users, alices_vm: dict[str, Any]) -> None:
    # Bob counted every user's running VMs: a VM one may not see does not exist, not even as a count.
    users.sampler.history.record([counters(alices_vm, 0, 0)], at=4_000_000.0)
    running = {name: (await users.get(name, "/api/host/stats")).json()["running_vms"] for name in ("bob", "alice")}
    assert running == {"bob": 0, "alice": 1}
    assert (await users.get("root", "/api/host/stats")).json()["running_vms"] >= 1  # every VM's


async def test_metrics_label_vms_by_uuid_and_name_only(users: Users, alices_vm: dict[str, Any]) -> None:
    users.sampler.history.record([counters(alices_vm, 0, 0)], at=3_000_000.0)
    users.sampler.history.record([counters(alices_vm, 5, 0)], at=3_000_005.0)
    text = (await users.client.get("/metrics")).text
    line = f'limen_vm_cpu_percent{{vm_name="{alices_vm["name"]}",vm_uuid="{alices_vm["uuid"]}"}} 100.0'
    assert line in text, text
    for match in re.finditer(r"^limen_vm_\w+\{([^}]*)\}", text, re.MULTILINE):
        assert {pair.split("=")[0] for pair in match.group(1).split(",")} == {"vm_uuid", "vm_name"}
    # Stopped: gone at the next scrape.
    users.sampler.history.record([], at=3_000_010.0)
    assert alices_vm["uuid"] not in (await users.client.get("/metrics")).text


async def test_sampling_off(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(stats_interval=0)
    access = make_access(settings)
    async with access_client(settings, access) as (client, app):
        await access.users.create("root", PASSWORD, Role.ADMIN)
        headers = {"Authorization": f"Bearer {(await access.tokens.create('root', 'tests')).secret}"}
        assert services_of(app).stats_sampler.enabled is False
        body = (await client.get("/api/vms/test/stats", headers=headers)).json()
        assert (body["enabled"], body["series"]["t"]) == (False, [])
        host = (await client.get("/api/host/stats", headers=headers)).json()
        assert host["cpu_percent"] is None
        # The test driver's own VM "test" runs: counted from libvirt's list, not from samples there are none of.
        assert host["running_vms"] >= 1


@pytest.mark.parametrize("value", ["0.1", "-1", "many"])
def test_bad_interval_is_refused(make_settings: Callable[..., Settings], value: str) -> None:
    from limen.settings import SettingsError
    with pytest.raises(SettingsError, match="LIMEN_STATS_INTERVAL"):
        make_settings(stats_interval=value)


async def test_the_details_page_gets_its_charting_library(users: Users) -> None:
    script = await users.client.get("/static/uplot/uPlot.esm.js")
    assert script.status_code == 200 and "export" in script.text
    assert (await users.client.get("/static/uplot/uPlot.min.css")).status_code == 200
    page = (await users.get("alice", "/vms/some-vm")).text  # signed in: a signed-out browser goes to /login
    assert 'id="resource-graphs"' in page and "/static/js/vm-graphs.js" in page


async def test_auto_resolution_turns_coarse_when_since_is_older_than_the_fine_buffer(
        users: Users, alices_vm: dict[str, Any]) -> None:
    start = 4_000_000.0
    for i in range(800):  # more than the 720 fine points: the oldest are gone from the fine buffer
        users.sampler.history.record([counters(alices_vm, i * 0.5, 0)], at=start + i * 5)
    path = f"/api/vms/{alices_vm['uuid']}/stats"
    old = (await users.get("alice", path, params={"since": start})).json()
    assert (old["resolution"], old["step"]) == ("coarse", 60.0)
    times = old["series"]["t"]
    assert old["series"]["cpu_percent"][-1] == 10.0  # one-minute averages of 10 %
    assert all(later - earlier == 60.0 for earlier, later in itertools.pairwise(times))
    assert times[0] - 60 <= start and start + 799 * 5 - 60 < times[-1] <= start + 799 * 5
    recent = (await users.get("alice", path, params={"since": start + 799 * 5 - 60})).json()
    assert recent["resolution"] == "fine" and len(recent["series"]["t"]) == 12

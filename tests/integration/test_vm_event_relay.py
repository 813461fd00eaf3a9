"""Two limen replicas (apps in this process, on libvirt's test driver) on one real redis-server: the events
limen makes about its own work reach the event stream of the replica that did not do it, and the operation
they tell of can be read from it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from limen.api import vm_snapshots
from limen.hypervisor import Hypervisor
from tests.conftest import settings_in
from tests.support.access import redis_server
from tests.support.console import FakeDomain, driver_uri, node_with_a_qcow2_vm
from tests.support.replicas import replica

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SHARED_NODE = "test:///default"  # one driver per process: both replicas see its VMs


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


async def test_a_migration_run_by_one_replica_reaches_the_event_streams_of_another(
    redis_url: str, tmp_path: Path
) -> None:
    # A browser on another replica than the one moving the VM saw none of the move's operation events
    # (progress, done): they went out on the moving replica's stream only.
    origin = driver_uri(tmp_path, [FakeDomain("relayed", None, running=False)])
    moving = settings_in(tmp_path / "moving", libvirt_uri=origin, redis_url=redis_url)
    watching = settings_in(tmp_path / "watching", redis_url=redis_url)
    try:
        async with replica(moving) as (mover, mover_services), replica(watching) as (_watcher, watcher_services):
            assert (await mover.post("/api/hosts", json={"name": "edge", "uri": SHARED_NODE})).status_code == 201
            with watcher_services.hypervisor.feed.subscribe(lambda event: event.operation is not None) as heard, \
                    mover_services.hypervisor.feed.subscribe(lambda event: event.operation is not None) as told:
                moved = await mover.post("/api/vms/relayed/migrate", json={"host": "edge"})  # cold: only its end
                assert moved.status_code == 200, moved.text
                there = await heard.next_event(timeout=10)
                here = await told.next_event(timeout=1)
    finally:
        conn = libvirt.open(SHARED_NODE)
        try:
            conn.lookupByName("relayed").undefine()
        except libvirt.libvirtError:
            pass
        finally:
            conn.close()
    assert there is not None and here is not None
    assert there.payload() | {"at": None} == here.payload() | {"at": None}
    assert (there.vm.name, there.operation) == ("relayed", {
        "kind": "migrate", "state": "done", "progress": 100, "from_host": "local", "to_host": "edge",
        "error": None})


async def test_a_snapshot_taken_on_one_replica_reaches_another_which_answers_for_its_operation(
    redis_url: str, tmp_path: Path
) -> None:
    # A browser on another replica heard nothing of a snapshot being taken (its events went out on the taking
    # replica's stream only), and the operation's id was OPERATION_NOT_FOUND there.
    taking = settings_in(tmp_path / "taking", libvirt_uri=node_with_a_qcow2_vm(tmp_path, "pictured"),
                         redis_url=redis_url)
    watching = settings_in(tmp_path / "watching", redis_url=redis_url)
    snapshot_events = {"snapshot_progress", "snapshot_done"}
    async with replica(taking) as (taker, _taker), replica(watching) as (watcher, watcher_services):
        with watcher_services.hypervisor.feed.subscribe(lambda event: event.type.value in snapshot_events) as heard:
            started = await taker.post("/api/vms/pictured/snapshots", json={"name": "first"})
            assert started.status_code == 202, started.text
            operation_id = started.json()["id"]
            progress = await heard.next_event(timeout=10)
            done = await heard.next_event(timeout=10)
        there = await watcher.get(f"/api/operations/{operation_id}")
        here = await taker.get(f"/api/operations/{operation_id}")
    assert progress is not None and done is not None
    assert [progress.type.value, done.type.value] == ["snapshot_progress", "snapshot_done"]
    assert progress.vm.name == "pictured" and progress.operation is not None and done.operation is not None
    assert (progress.operation["id"], progress.operation["state"]) == (operation_id, "running")
    assert (done.operation["id"], done.operation["state"]) == (operation_id, "done")
    assert there.status_code == 200, there.text
    # What the watcher knows is what the last event said: the end, told once the operation had ended there.
    assert there.json() == here.json()
    assert there.json()["state"] == "done"


async def test_a_replica_started_after_a_snapshot_began_answers_for_its_operation(
    redis_url: str, tmp_path: Path
) -> None:
    # A replica reads the relayed events from where the stream was when it started: the operation of a
    # snapshot taken before was OPERATION_NOT_FOUND there, though it exists on the replica that took it.
    taking = settings_in(tmp_path / "taking", libvirt_uri=node_with_a_qcow2_vm(tmp_path, "earlier"),
                         redis_url=redis_url)
    async with replica(taking) as (taker, _taker):
        started = await taker.post("/api/vms/earlier/snapshots", json={"name": "first"})
        assert started.status_code == 202, started.text
        operation_id = started.json()["id"]
        async with replica(settings_in(tmp_path / "later", redis_url=redis_url)) as (later, _later):
            answers = [await later.get(f"/api/operations/{operation_id}")]
            for _ in range(100):  # until the end the taker relays is there too
                if answers[-1].status_code != 200 or answers[-1].json()["state"] != "running":
                    break
                await asyncio.sleep(0.1)
                answers.append(await later.get(f"/api/operations/{operation_id}"))
    assert [answer.status_code for answer in answers] == [200] * len(answers), answers[-1].text
    assert answers[0].json()["id"] == operation_id and answers[-1].json()["state"] == "done"


async def test_a_poll_on_another_replica_before_any_event_reached_it_finds_the_operation(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The operation reached other replicas with its first relayed event, which goes out after the start is
    # answered: a browser polling through the balancer at once could land on a replica not told yet.
    taking = settings_in(tmp_path / "taking", libvirt_uri=node_with_a_qcow2_vm(tmp_path, "hasty"),
                         redis_url=redis_url)
    watching = settings_in(tmp_path / "watching", redis_url=redis_url)


    async def no_event(*_args: object, **_kwargs: object) -> None:  # as if the relayed events had not come yet
        return None

    monkeypatch.setattr(Hypervisor, "announce", no_event)
    async with replica(taking) as (taker, _taker), replica(watching) as (watcher, _watcher):
        started = await taker.post("/api/vms/hasty/snapshots", json={"name": "first"})
        assert started.status_code == 202, started.text
        there = await watcher.get(f"/api/operations/{started.json()['id']}")
    assert there.status_code == 200, there.text
    assert there.json()["id"] == started.json()["id"] and there.json()["vm_name"] == "hasty"


async def test_the_operation_of_a_replica_lost_while_taking_a_snapshot_fails_on_the_others(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kill -9 of the replica taking a snapshot: it never tells the end, and the others answered its operation
    # "running" for an hour (the browser's snapshot section spun, refusing new snapshots), though their sweep
    # had recorded the action as SERVER_LOST within seconds.
    async def never_ends(*_args: object, **_kwargs: object) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(vm_snapshots, "take_snapshot", never_ends)
    taking = settings_in(tmp_path / "taking", libvirt_uri=node_with_a_qcow2_vm(tmp_path, "orphaned"),
                         redis_url=redis_url)
    watching = settings_in(tmp_path / "watching", redis_url=redis_url, database_url=taking.db_url)
    async with replica(taking) as (taker, taker_services), replica(watching) as (watcher, watcher_services):
        started = await taker.post("/api/vms/orphaned/snapshots", json={"name": "first"})
        assert started.status_code == 202, started.text
        path = f"/api/operations/{started.json()['id']}"
        before = await watcher.get(path)
        # The taker is gone, as the sweep of any replica leaves it (marked stopped); the watcher's next sweep.
        await taker_services.access.instances.stopped()
        await watcher_services.recovery.sweep()
        after = await watcher.get(path)
    assert before.status_code == 200 and before.json()["state"] == "running", before.text
    assert after.status_code == 200, after.text
    assert after.json()["state"] == "failed" and after.json()["error"]["code"] == "SERVER_LOST", after.json()

"""Several libvirt hosts in one Hypervisor, on libvirt's test driver (each host its own node XML) and a fake
libvirtd that never answers (a hung host): the merged list, routing by VM, placement, health, the registry."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import libvirt
import pytest

from limen import host_registry
from limen.api.hypervisor_hosts import refuse_busy_host
from limen.cli import app
from limen.db import Database
from limen.errors import ErrorCode, LimenError
from limen.hypervisor import Hypervisor, VmSpec, hosts, migration, storage
from limen.hypervisor.editing import VmEdit, edit_vm
from limen.hypervisor.hosts import DEFAULT_HOST, HostConfig
from limen.hypervisor.models import StreamRelease
from limen.hypervisor.serial_stream import OPEN_STREAMS, LibvirtSerialPorts
from limen.settings import Settings
from tests.conftest import TEST_DRIVER_URI
from tests.support.cli import CliRunner
from tests.support.console import FakeDomain, driver_uri
from tests.support.hanging_libvirt import hanging_libvirt
from tests.support.held_stream import held_stream_port

# The test driver's hosts answer at once, but a loaded machine may keep a thread waiting: a generous timeout
# so none of them is taken for hung. The fake hung host gives up soon (it never answers anyway).
TIMEOUT = 10.0
HUNG_TIMEOUT = 0.3
WITHIN = 30.0  # a bound on the test itself, never expected to be reached


@pytest.fixture
def fast_prober(monkeypatch: pytest.MonkeyPatch) -> None:
    """For the tests that wait for the prober: it looks every 0.1 s instead of limen's 0.5 s (set before
    ``two_hosts`` starts it, so name this fixture first)."""
    monkeypatch.setattr(hosts, "PROBE_INTERVAL", 0.1)


@pytest.fixture
async def two_hosts(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[Hypervisor]:
    local = driver_uri(tmp_path, [FakeDomain("alpha", 5901), FakeDomain("shared-name-a", None, running=False)])
    other = driver_uri(tmp_path, [FakeDomain("beta", 5902), FakeDomain("gamma", None, running=False)])
    hv = Hypervisor(make_settings(libvirt_uri=local, libvirt_timeout=TIMEOUT))
    hv.hosts.add(HostConfig("other", other, console_address="10.9.8.7"))
    await hv.open()
    yield hv
    await hv.close()


async def test_the_list_merges_every_host_and_names_each_vms_host(two_hosts: Hypervisor) -> None:
    listed = {vm.name: vm.host for vm in await two_hosts.list_vms()}
    assert listed == {"alpha": DEFAULT_HOST, "shared-name-a": DEFAULT_HOST, "beta": "other", "gamma": "other"}


async def test_a_vm_on_two_hosts_at_once_is_listed_once_where_it_was_last_seen(
        make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """During a live move the target holds the VM's incoming copy beside the VM: it was listed twice, to its
    owner too, for as long as the move took."""
    moving = "5a1e5a1e-0000-4000-8000-00000000d0d0"
    local = driver_uri(tmp_path, [FakeDomain("moving", 5901, uuid=moving)])
    other = driver_uri(tmp_path, [FakeDomain("moving", None, running=False, uuid=moving)])
    hv = Hypervisor(make_settings(libvirt_uri=local, libvirt_timeout=TIMEOUT))
    hv.hosts.add(HostConfig("other", other))
    await hv.open()
    try:
        assert [(vm.name, vm.host) for vm in await hv.list_vms()] == [("moving", DEFAULT_HOST)]
        hv.hosts.remember(moving, "other")  # as the move's end remembers its target
        assert [(vm.name, vm.host) for vm in await hv.list_vms()] == [("moving", "other")]
    finally:
        await hv.close()


async def test_a_vm_is_found_on_its_host_by_name_or_uuid(two_hosts: Hypervisor) -> None:
    beta = await two_hosts.get_vm("beta")  # nothing remembered yet: every host is asked
    assert beta.host == "other"
    assert (await two_hosts.get_vm(beta.uuid)).name == "beta"
    # Its VNC listens on loopback there: the console dials the host's console address.
    assert beta.vnc is not None and (beta.vnc.host, beta.vnc.port) == ("10.9.8.7", 5902)
    alpha = await two_hosts.console_vm("alpha")
    assert alpha.host == DEFAULT_HOST and alpha.vnc is not None and alpha.vnc.host == "127.0.0.1"
    with pytest.raises(LimenError) as missing:
        await two_hosts.get_vm("nowhere")
    assert missing.value.code is ErrorCode.VM_NOT_FOUND


async def test_placement_prefers_memory_not_given_to_vms_and_honours_a_host_and_draining(
    two_hosts: Hypervisor,
) -> None:
    figures = await two_hosts.host_figures()
    assert set(figures) == {DEFAULT_HOST, "other"}
    roomiest = max(figures, key=lambda name: (figures[name].free_memory_mib, -ord(name[0])))
    assert (await two_hosts.place(VmSpec(name="x", memory_mib=64))).name == roomiest
    assert (await two_hosts.place(VmSpec(name="x", memory_mib=64, host="other"))).name == "other"
    with pytest.raises(LimenError) as too_big:
        await two_hosts.place(VmSpec(name="x", memory_mib=figures[roomiest].free_memory_mib + 1))
    assert too_big.value.code is ErrorCode.NO_HOST_FITS
    link = two_hosts.hosts.get("other")
    two_hosts.hosts.add(HostConfig("other", link.config.uri, link.config.console_address, draining=True))
    assert (await two_hosts.place(VmSpec(name="x", memory_mib=64))).name == DEFAULT_HOST
    with pytest.raises(LimenError) as drained:
        await two_hosts.place(VmSpec(name="x", memory_mib=64, host="other"))
    assert drained.value.code is ErrorCode.NO_HOST_FITS
    with pytest.raises(LimenError) as unknown:
        await two_hosts.place(VmSpec(name="x", host="nope"))
    assert unknown.value.code is ErrorCode.HOST_NOT_FOUND


@pytest.fixture
async def unlike_hosts(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[Hypervisor]:
    """A default host with few CPUs and much memory, another with many CPUs and little memory."""
    local = driver_uri(tmp_path, [], cpus=2, memory_mib=8192)
    other = driver_uri(tmp_path, [], cpus=8, memory_mib=1024)
    hv = Hypervisor(make_settings(libvirt_uri=local, libvirt_timeout=TIMEOUT))
    hv.hosts.add(HostConfig("other", other))
    await hv.open()
    yield hv
    await hv.close()


async def test_cpus_and_memory_are_checked_against_the_host_the_vm_goes_to_or_is_on(
    unlike_hosts: Hypervisor,
) -> None:
    # The default host's 2 CPUs do not refuse 6 on a host that has 8; its 8 GiB do not let 4 GiB onto a 1 GiB one.
    wide = await unlike_hosts.create_vm(VmSpec(name="wide", vcpus=6, memory_mib=64, host="other"))
    assert wide.host == "other"
    with pytest.raises(LimenError) as too_big:
        await unlike_hosts.create_vm(VmSpec(name="heavy", memory_mib=4096, host="other"))
    assert too_big.value.code is ErrorCode.VALIDATION_ERROR and too_big.value.field == "memory_mib"
    assert "1024 MiB (the memory of host 'other')" in too_big.value.details
    # Placed by limen: the one host with the CPUs asked for.
    assert (await unlike_hosts.create_vm(VmSpec(name="placed", vcpus=6, memory_mib=64))).host == "other"
    with pytest.raises(LimenError) as nowhere:
        await unlike_hosts.create_vm(VmSpec(name="nowhere", vcpus=12, memory_mib=64))
    assert nowhere.value.code is ErrorCode.VALIDATION_ERROR and "the largest host's CPUs" in nowhere.value.details
    # A change is checked against the VM's own host.
    edited = await edit_vm(unlike_hosts, wide.uuid, VmEdit(vcpus=8))
    assert edited.vm.host == "other"
    with pytest.raises(LimenError) as edit_too_big:
        await edit_vm(unlike_hosts, wide.uuid, VmEdit(memory_mib=2048))
    assert edit_too_big.value.code is ErrorCode.VALIDATION_ERROR and edit_too_big.value.field == "memory_mib"
    assert {vm.name for vm in await unlike_hosts.list_vms()} == {"wide", "placed"}


async def test_a_placed_create_asks_each_hosts_limits_once(unlike_hosts: Hypervisor) -> None:
    # The create checked the vCPUs and memory against the largest host, then again against the host placement
    # picked, which placement had chosen for holding them: a second round trip that could refuse nothing.
    asked: list[str] = []
    unlike_hosts.hosts.observers.append(lambda operation, _seconds, _failure: asked.append(operation))
    assert (await unlike_hosts.create_vm(VmSpec(name="placed", vcpus=6, memory_mib=64))).host == "other"
    assert asked.count("host_info") == 2  # the largest host's figures: one question to each host


async def test_names_are_unique_across_hosts(two_hosts: Hypervisor) -> None:
    with pytest.raises(LimenError) as taken:
        await two_hosts.check_name_free("beta")
    assert taken.value.code is ErrorCode.VM_ALREADY_EXISTS
    await two_hosts.check_name_free("free-name")


async def test_a_hung_host_is_marked_unavailable_and_does_not_slow_the_others(
    fast_prober: None, two_hosts: Hypervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    with hanging_libvirt() as fake:
        fake.armed = True
        hung = two_hosts.hosts.add(HostConfig("hung", fake.uri))
        hung.connection.timeout = HUNG_TIMEOUT  # it alone gives up soon: the test need not wait long
        asked: list[str] = []  # every question the hung host was asked (none is ever answered)
        ask_hung = hung.connection.call

        async def counted(operation: str, *args: Any, **kwargs: Any) -> Any:
            asked.append(operation)
            return await ask_hung(operation, *args, **kwargs)

        monkeypatch.setattr(hung.connection, "call", counted)
        changes: list[tuple[str, bool]] = []
        marked = asyncio.Event()

        def changed(host: str, up: bool) -> None:
            changes.append((host, up))
            if host == "hung":
                marked.set()

        two_hosts.hosts.availability_listeners.append(changed)
        # The first list still asks it, and its own short timeout ends that question (WITHIN bounds the test).
        listed = await asyncio.wait_for(two_hosts.list_vms(), WITHIN)
        assert {vm.host for vm in listed} == {DEFAULT_HOST, "other"}  # the hung host knew no VMs yet
        await asyncio.wait_for(marked.wait(), WITHIN)  # the prober's question went unanswered
        assert [change for change in changes if change[0] == "hung"] == [("hung", False)]
        assert not hung.available
        # Known to be down: neither the list nor a call about another host's VM asks it (and waits) again;
        # only the prober keeps asking it, to bring it back.
        asked_before = len(asked)
        assert {vm.host for vm in await asyncio.wait_for(two_hosts.list_vms(), WITHIN)} == {DEFAULT_HOST, "other"}
        assert (await asyncio.wait_for(two_hosts.get_vm("gamma"), WITHIN)).host == "other"
        assert [operation for operation in asked[asked_before:] if operation != "probe"] == []
        with pytest.raises(LimenError) as refused:
            await two_hosts.hosts.on_host("hung", "probe", lambda conn: conn.getLibVersion())
        assert refused.value.code is ErrorCode.HYPERVISOR_UNAVAILABLE and "'hung'" in refused.value.details


async def test_a_missing_hosts_vms_stay_listed_as_unavailable(two_hosts: Hypervisor) -> None:
    await two_hosts.list_vms()  # each host's list is remembered
    other = two_hosts.hosts.get("other")
    other.available, other.last_error = False, "test: marked down"
    listed = {vm.name: vm for vm in await two_hosts.list_vms()}
    assert {name: vm.host_available for name, vm in listed.items()} == {
        "alpha": True, "shared-name-a": True, "beta": False, "gamma": False}
    stale = await two_hosts.get_vm("beta")
    assert (stale.host, stale.host_available) == ("other", False)
    with pytest.raises(LimenError) as down:
        await two_hosts.start_vm("beta")
    assert down.value.code is ErrorCode.HYPERVISOR_UNAVAILABLE
    with pytest.raises(LimenError) as taken:  # its names stay taken
        await two_hosts.check_name_free("gamma")
    assert taken.value.code is ErrorCode.VM_ALREADY_EXISTS and "unavailable" in taken.value.details


async def test_a_vm_made_since_the_last_list_stays_listed_when_its_host_goes_down(two_hosts: Hypervisor) -> None:
    # It vanished from the list (and its name was free again) until the host had been listed once more.
    await two_hosts.list_vms()
    made = await two_hosts.create_vm(VmSpec(name="fresh", memory_mib=64, host="other"))
    other = two_hosts.hosts.get("other")
    other.available, other.last_error = False, "test: hung right after the create"
    listed = {vm.name: vm for vm in await two_hosts.list_vms()}
    assert (listed["fresh"].uuid, listed["fresh"].host, listed["fresh"].host_available) == (made.uuid, "other", False)
    with pytest.raises(LimenError) as taken:
        await two_hosts.check_name_free("fresh")
    assert taken.value.code is ErrorCode.VM_ALREADY_EXISTS


async def test_a_host_down_since_the_start_has_unknown_vms_not_none(two_hosts: Hypervisor) -> None:
    """A limen (or the command line) started while a host was down knew none of its VMs: it gave their
    names to new VMs (two VMs of one name once the host came back), said VM_NOT_FOUND for them, and let the
    host be removed as empty."""
    other = two_hosts.hosts.get("other")
    other.available, other.last_error = False, "test: down since the start"
    assert not other.listed
    listed = [vm.name for vm in await two_hosts.list_vms()]
    assert "beta" not in listed  # unknown, so not shown
    with pytest.raises(LimenError) as unknown:
        await two_hosts.check_name_free("beta")
    assert unknown.value.code is ErrorCode.HYPERVISOR_UNAVAILABLE and "'other'" in unknown.value.details
    with pytest.raises(LimenError) as maybe:
        await two_hosts.get_vm("beta")
    assert maybe.value.code is ErrorCode.HYPERVISOR_UNAVAILABLE and "may be there" in maybe.value.details
    with pytest.raises(LimenError) as not_empty:
        await refuse_busy_host(two_hosts, "other")
    assert not_empty.value.code is ErrorCode.HYPERVISOR_UNAVAILABLE and "drain it first" in not_empty.value.details
    # Drained (an administrator says it is going away): it may be removed, and holds no name any more.
    other.config = replace(other.config, draining=True)
    await refuse_busy_host(two_hosts, "other")
    await two_hosts.check_name_free("beta")
    other.config = replace(other.config, draining=False)
    other.available = True  # it answers: its VMs are known from then on
    assert "beta" in [vm.name for vm in await two_hosts.list_vms()] and other.listed
    with pytest.raises(LimenError) as taken:
        await two_hosts.check_name_free("beta")
    assert taken.value.code is ErrorCode.VM_ALREADY_EXISTS


async def test_the_prober_brings_a_host_back(fast_prober: None, two_hosts: Hypervisor) -> None:
    other = two_hosts.hosts.get("other")
    other.available, other.retry_at = False, 0.0
    back = asyncio.Event()
    two_hosts.hosts.availability_listeners.append(lambda host, up: back.set() if up else None)
    await asyncio.wait_for(back.wait(), 3)
    assert other.available and other.last_error is None


def test_the_registry_checks_and_keeps_hosts(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/limen.db")
    db.migrate()
    try:
        for name, uri, field in (("bad name", "qemu:///system", "name"), (DEFAULT_HOST, "qemu:///system", "name"),
                                 ("LOCAL", "qemu:///system", "name"),
                                 ("h" * 64, "qemu:///system", "name"), ("ok", "http://example.com/", "uri"),
                                 ("ok", "qemu+tcp://a b/system", "uri"),
                                 # libvirt takes no password from a URI: one would only be shown everywhere.
                                 ("ok", "qemu+ssh://root:hunter2@h/system", "uri")):
            with pytest.raises(LimenError) as bad:
                host_registry.add_host(db, name, uri, default_uri="qemu:///system")
            assert bad.value.code is ErrorCode.VALIDATION_ERROR and field in bad.value.details
            assert "hunter2" not in bad.value.details
        host_registry.add_host(db, "h" * 63, "qemu+tcp://127.0.1.1/system", "127.0.1.1", default_uri="qemu:///system")
        with pytest.raises(LimenError) as again:
            host_registry.add_host(db, "h" * 63, "qemu+ssh://x/system", default_uri="qemu:///system")
        assert again.value.code is ErrorCode.HOST_ALREADY_EXISTS
        # One libvirt twice listed each of its VMs twice, and neither host could then be removed (it had VMs).
        # Written out with the transport's default port, a user or a connection option, it is the same daemon.
        for uri, holder in (("qemu:///system", "default host"), ("QEMU:///system/", "default host"),
                            ("qemu+tcp://127.0.1.1/system/", "h" * 63), ("qemu+TCP://127.0.1.1/system", "h" * 63),
                            ("qemu+tcp://127.0.1.1:16509/system", "h" * 63),
                            ("qemu+tcp://127.0.1.1/system?keepalive_interval=5", "h" * 63)):
            with pytest.raises(LimenError) as twice:
                host_registry.add_host(db, "other", uri, default_uri="qemu:///system")
            assert twice.value.code is ErrorCode.HOST_ALREADY_EXISTS and holder in twice.value.details, uri
        with pytest.raises(LimenError) as in_case:  # a name differing only in case is the same name
            host_registry.add_host(db, "H" * 63, "qemu+tcp://127.0.1.2/system", default_uri="qemu:///system")
        assert in_case.value.code is ErrorCode.HOST_ALREADY_EXISTS
        other_port = host_registry.add_host(db, "other-port", "qemu+tcp://127.0.1.1:16510/system",
                                            default_uri="qemu:///system")  # another daemon on that address
        host_registry.remove_host(db, other_port.name)
        assert host_registry.set_draining(db, "h" * 63, True).draining
        assert [(h.name, h.console_address, h.draining) for h in host_registry.list_hosts(db)] == [
            ("h" * 63, "127.0.1.1", True)]
        host_registry.remove_host(db, "h" * 63)
        with pytest.raises(LimenError) as gone:
            host_registry.remove_host(db, "h" * 63)
        assert gone.value.code is ErrorCode.HOST_NOT_FOUND
    finally:
        db.close()


def test_the_host_commands(tmp_path: Path) -> None:
    node = driver_uri(tmp_path, [FakeDomain("on-edge", None, running=False)])
    empty = driver_uri(tmp_path, [])

    def limen(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "--log-dir", str(tmp_path / "log"),
                                          "--libvirt-uri", "test:///default", *args])
        return result.exit_code, result.output

    assert limen("host", "add", "edge", node, "--console-address", "127.0.1.9")[0] == 0
    assert limen("host", "add", "bare", empty)[0] == 0
    code, output = limen("host", "add", "edge", empty)
    assert code == 1 and "HOST_ALREADY_EXISTS" in output
    assert limen("host", "drain", "edge") == (0, "host edge drains\n")
    code, output = limen("host", "drain", DEFAULT_HOST)  # it said "Host not found" right after `host list`
    assert code == 1 and "HOST_IN_USE" in output and "LIMEN_LIBVIRT_URI" in output
    code, output = limen("--json", "host", "list")
    listed = json.loads(output)
    assert code == 0 and [{key: host[key] for key in ("name", "uri", "console_address", "draining")}
                          for host in listed] == [
        {"name": DEFAULT_HOST, "uri": "test:///default", "console_address": None, "draining": False},
        {"name": "bare", "uri": empty, "console_address": None, "draining": False},
        {"name": "edge", "uri": node, "console_address": "127.0.1.9", "draining": True}]
    # Each host is asked whether it answers: a dead host looked as fine as the others.
    assert [(host["available"], host["vm_count"]) for host in listed] == [(True, 1), (True, 0), (True, 1)]
    assert limen("host", "add", "dead", "qemu+unix:///system?socket=/nonexistent/libvirt-sock")[0] == 0
    code, output = limen("host", "list")
    dead = next(line for line in output.splitlines() if line.startswith("dead"))
    assert code == 0 and "does not answer" in dead, output
    code, output = limen("--json", "host", "remove", "dead", "--force")  # JSON, as --json promises
    assert code == 0 and json.loads(output) == {"removed": "dead"}
    code, output = limen("--json", "host", "drain", "edge", "--undo")
    assert code == 0 and json.loads(output)["draining"] is False
    code, output = limen("host", "remove", "edge")  # it has a VM
    assert code == 1 and "HOST_IN_USE" in output and "on-edge" in output
    assert limen("host", "remove", DEFAULT_HOST)[0] == 1
    assert limen("host", "remove", "bare") == (0, "host bare removed\n")
    code, output = limen("host", "remove", "bare")
    assert code == 1 and "HOST_NOT_FOUND" in output
    # A host that cannot be asked for its VMs: the refusal says how to remove it anyway.
    assert limen("host", "add", "gone", "qemu+unix:///system?socket=/nonexistent/libvirt-sock")[0] == 0
    code, output = limen("host", "remove", "gone")
    assert code == 1 and "HYPERVISOR_UNAVAILABLE" in output and "limen host remove gone --force" in output
    assert limen("host", "remove", "gone", "--force") == (0, "host gone removed\n")
    code, output = limen("host", "add", "again", "test:///default")  # the default host's URI
    assert code == 1 and "HOST_ALREADY_EXISTS" in output


async def test_a_rename_to_a_name_on_another_host_is_refused(two_hosts: Hypervisor) -> None:
    with pytest.raises(LimenError) as taken:
        await edit_vm(two_hosts, "shared-name-a", VmEdit(name="gamma"))
    assert taken.value.code is ErrorCode.VM_ALREADY_EXISTS and "'other'" in taken.value.details
    # Its own name in other letters is its own.
    assert (await edit_vm(two_hosts, "shared-name-a", VmEdit(name="Shared-Name-A"))).vm.name == "Shared-Name-A"


async def test_a_rename_to_a_name_on_a_host_down_now_is_refused(two_hosts: Hypervisor) -> None:
    """A rename asked only the hosts that answered: with the other host down, a VM took the name of one of
    its VMs (create refused the name), and two VMs had one name once it came back."""
    await two_hosts.list_vms()  # each host's list is remembered
    other = two_hosts.hosts.get("other")
    other.available, other.last_error = False, "test: marked down"
    for name in ("gamma", "GAMMA"):
        with pytest.raises(LimenError) as taken:
            await edit_vm(two_hosts, "shared-name-a", VmEdit(name=name))
        assert taken.value.code is ErrorCode.VM_ALREADY_EXISTS and "unavailable" in taken.value.details
    assert (await two_hosts.get_vm("shared-name-a")).name == "shared-name-a"


def test_the_vm_commands_see_every_registered_host(tmp_path: Path) -> None:
    # They saw only LIMEN_LIBVIRT_URI: `limen vm list` left out the other hosts' VMs, `vm show` did not find
    # them, and `vm create` made a second VM of a name another host had (the API refuses that).
    edge = driver_uri(tmp_path, [FakeDomain("on-edge", None, running=False)])

    def limen(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "--log-dir", str(tmp_path / "log"),
                                          "--libvirt-uri", "test:///default", *args])
        return result.exit_code, result.output

    assert limen("host", "add", "edge", edge)[0] == 0
    code, output = limen("--json", "vm", "list")
    assert code == 0 and {vm["name"]: vm["host"] for vm in json.loads(output)} == {"test": DEFAULT_HOST,
                                                                                  "on-edge": "edge"}
    code, output = limen("--json", "vm", "show", "on-edge")
    assert code == 0 and json.loads(output)["host"] == "edge"
    code, output = limen("vm", "create", "on-edge", "--memory", "64")
    assert code == 1 and "VM_ALREADY_EXISTS" in output


async def test_adding_a_host_that_answers_answers_its_figures_as_the_list_does(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # The add answered null figures (vm_count, memory_mib, free_memory_mib) for a host that answers, while
    # the list asked right after had them.
    from tests.conftest import app_client

    settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("alpha", 5901)]))
    edge = driver_uri(tmp_path, [FakeDomain("beta", 5902), FakeDomain("gamma", 5903)])
    async with app_client(settings) as api:
        added = await api.post("/api/hosts", json={"name": "edge", "uri": edge})
        listed = next(host for host in (await api.get("/api/hosts")).json() if host["name"] == "edge")
        silent = await api.post("/api/hosts", json={"name": "silent", "uri": f"test://{tmp_path}/absent.xml"})
    assert added.status_code == 201, added.text
    assert added.json() == listed and listed["vm_count"] == 2 and listed["memory_mib"] is not None
    assert silent.status_code == 201, silent.text  # a host that does not answer is added all the same
    assert [silent.json()[figure] for figure in ("vm_count", "memory_mib", "free_memory_mib")] == [None] * 3


async def test_a_host_drained_through_another_replica_takes_no_new_vm_here_at_once(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # Replicas read the host registry every few seconds: a create placed right after a drain made through
    # another replica landed on the drained host. The create reads the registry first.
    from tests.conftest import app_client

    settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("alpha", 5901)]))
    edge = driver_uri(tmp_path, [FakeDomain("beta", 5902)])
    async with app_client(settings) as api:
        added = await api.post("/api/hosts", json={"name": "edge", "uri": edge})
        assert added.status_code == 201, added.text
        db = Database(settings.db_url)
        try:
            host_registry.set_draining(db, "edge", True)  # as another replica does it: the registry only
        finally:
            db.close()
        refused = await api.post("/api/vms", json={"name": "on-edge", "memory_mib": 64, "host": "edge"})
        assert refused.status_code == 409 and refused.json()["code"] == "NO_HOST_FITS", refused.text
        placed = await api.post("/api/vms", json={"name": "placed", "memory_mib": 64})
        assert placed.status_code == 201 and placed.json()["host"] == DEFAULT_HOST, placed.text


async def test_a_move_to_the_vms_own_host_names_the_vm_and_the_host(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # It was INVALID_REQUEST naming the VM by its UUID (the route hands the service a UUID), and its message
    # pointed at the API documentation, in English only.
    from tests.conftest import app_client

    settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("alpha", 5901)]))
    edge = driver_uri(tmp_path, [FakeDomain("beta", 5902)])
    async with app_client(settings) as api:
        assert (await api.post("/api/hosts", json={"name": "edge", "uri": edge})).status_code == 201
        beta = (await api.get("/api/vms/beta")).json()
        refused = await api.post(f"/api/vms/{beta['uuid']}/migrate", json={"host": "edge"})
    body = refused.json()
    assert refused.status_code == 409 and body["code"] == "VM_ALREADY_ON_HOST", refused.text
    assert "'beta'" in body["details"] and "'edge'" in body["details"] and beta["uuid"] not in body["details"]


async def test_moves_take_turns_two_at_a_time(two_hosts: Hypervisor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each move holds one of its source host's libvirt threads for as long as it lasts: 9 at once left the
    host's prober none, and the host was marked unavailable (ending its other VMs' consoles) until they were
    done. Here each copy ends in a refusal, after a moment with a thread held."""
    under_way, most = 0, 0
    lock = threading.Lock()

    def slow_copy(*_args: object) -> None:
        nonlocal under_way, most
        with lock:
            under_way += 1
            most = max(most, under_way)
        time.sleep(0.1)
        with lock:
            under_way -= 1
        raise LimenError(ErrorCode.VM_OPERATION_FAILED, "test: copied nothing")

    monkeypatch.setattr(migration, "copy_cold", slow_copy)
    names = [f"mover-{index}" for index in range(5)]
    for name in names:
        await two_hosts.create_vm(VmSpec(name=name, memory_mib=64, host=DEFAULT_HOST))
    ended = await asyncio.gather(*(two_hosts.migrate_vm(name, "other") for name in names), return_exceptions=True)
    assert all(isinstance(end, LimenError) and end.details == "test: copied nothing" for end in ended), ended
    assert most == 2


async def test_a_move_onto_a_volume_an_interrupted_move_left_says_how_to_clear_it(two_hosts: Hypervisor) -> None:
    """A move interrupted (limen stopped, a host that hung) can leave the VM's volume copy on the target: the
    next move failed with libvirt's "storage volume ... exists already" alone."""
    made = await two_hosts.create_vm(VmSpec(name="cold-mover", memory_mib=64, disk_gib=1, host=DEFAULT_HOST))
    (disk,) = [d for d in made.disks if d.device == "disk"]
    volume = Path(str(disk.path)).name
    settings = two_hosts.settings

    def leave_a_copy(conn: libvirt.virConnect) -> None:
        pool = storage.ensure_pool(conn, settings.storage_pool, settings.pool_dir)
        pool.createXML(f"<volume><name>{volume}</name><capacity>1024</capacity></volume>", 0)

    await two_hosts.hosts.on_host("other", "test", leave_a_copy)
    with pytest.raises(LimenError) as refused:
        await two_hosts.migrate_vm("cold-mover", "other")
    assert refused.value.code is ErrorCode.VM_OPERATION_FAILED
    assert f"host 'other' holds a volume named {volume!r} already" in refused.value.details
    assert f"limen volumes delete {volume} --host other" in refused.value.details
    assert (await two_hosts.get_vm("cold-mover")).host == DEFAULT_HOST


async def test_a_cold_move_whose_last_step_timed_out_keeps_the_targets_copy(
        two_hosts: Hypervisor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The source's undefine that timed out may still have gone through: undoing the target's definition then
    left the VM defined nowhere. A refusal (the VM changed meanwhile) still undoes it."""
    undone: list[str] = []
    monkeypatch.setattr(migration, "copy_cold", lambda *_args: None)
    monkeypatch.setattr(migration, "undefine_arrival", lambda _conn, departure: undone.append(departure.name))
    await two_hosts.create_vm(VmSpec(name="slow-leaver", memory_mib=64, host=DEFAULT_HOST))
    for code, undoes in ((ErrorCode.HYPERVISOR_UNAVAILABLE, False), (ErrorCode.VM_OPERATION_FAILED, True)):
        def leave(_conn: libvirt.virConnect, _departure: migration.Departure, failed: ErrorCode = code) -> None:
            raise LimenError(failed, "test: the last step")

        monkeypatch.setattr(migration, "leave_source", leave)
        undone.clear()
        with pytest.raises(LimenError) as ended:
            await two_hosts.migrate_vm("slow-leaver", "other")
        assert ended.value.code is code
        assert undone == (["slow-leaver"] if undoes else []), code


def test_a_vm_started_between_the_moves_last_check_and_its_undefine_is_kept_defined() -> None:
    """The cold move checks its VM was left alone, then undefines it on the source: a start in between (the
    console's, virsh's) left it running transient, and its disks were deleted after."""
    conn = libvirt.open(TEST_DRIVER_URI)
    name = f"racer-{uuid.uuid4().hex[:8]}"
    dom = conn.defineXML(f"<domain type='test'><name>{name}</name><memory>65536</memory>"
                         "<os><type>hvm</type></os></domain>")
    try:
        departure = migration.read_departure(conn, dom)
        checked = migration.check_unchanged

        def started_right_after_the_check(conn_: libvirt.virConnect, left: migration.Departure) -> libvirt.virDomain:
            found = checked(conn_, left)
            found.create()
            return found

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(migration, "check_unchanged", started_right_after_the_check)
            with pytest.raises(LimenError) as refused:
                migration.leave_source(conn, departure)
        assert refused.value.code is ErrorCode.VM_OPERATION_FAILED and "was started" in refused.value.details
        kept = conn.lookupByName(name)
        assert kept.isPersistent() and kept.isActive()
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.lookupByName(name).destroy()
        with contextlib.suppress(libvirt.libvirtError):
            conn.lookupByName(name).undefine()
        conn.close()


async def test_a_503_for_a_host_that_does_not_answer_names_the_host(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # The console page asked for the VM to learn which host to name; the error says it itself now.
    from limen.api.app import create_app
    from limen.api.services import services_of
    from tests.support.access import admin_token

    settings = make_settings(libvirt_uri=driver_uri(tmp_path, [FakeDomain("alpha", 5901)]))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {await admin_token(services_of(app).access)}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://limen.test",
                                     headers=headers) as api:
            edge = driver_uri(tmp_path, [FakeDomain("beta", 5902, running=False)])
            assert (await api.post("/api/hosts", json={"name": "edge", "uri": edge})).status_code == 201
            assert (await api.get("/api/vms/beta")).status_code == 200  # its host is remembered
            link = services_of(app).hypervisor.hosts.get("edge")
            link.available, link.last_error = False, "test: marked down"
            refused = await api.post("/api/vms/beta/start")
    body = refused.json()
    assert refused.status_code == 503 and body["code"] == "HYPERVISOR_UNAVAILABLE", refused.text
    assert body["host"] == "edge"


async def test_every_replica_counts_a_hosts_vms_as_the_host_has_them(tmp_path: Path) -> None:
    # vm_count was the length of the answering replica's last list: a VM created through one replica was
    # not counted by another that had listed before, so the same GET answered differently on each.
    from tests.conftest import app_client, settings_in

    async def count(api: httpx.AsyncClient) -> int | None:
        listed = (await api.get("/api/hosts")).json()
        return next(host["vm_count"] for host in listed if host["name"] == DEFAULT_HOST)

    # Two limens on one libvirt host (the test driver's default node, shared within this process).
    async with app_client(settings_in(tmp_path / "one")) as one, app_client(settings_in(tmp_path / "two")) as two:
        await two.get("/api/vms")  # each replica lists (and remembers) what the host has now
        await one.get("/api/vms")
        before = await count(two)
        created = await one.post("/api/vms", json={"name": "s39cl-counted", "memory_mib": 64})
        assert created.status_code == 201, created.text
        try:
            after = (await count(one), await count(two))
        finally:
            assert (await one.delete("/api/vms/s39cl-counted")).status_code == 200
    assert before is not None and after == (before + 1, before + 1)


async def test_a_live_move_releases_the_vms_serial_consoles_first_and_they_end_saying_it_moved(
    two_hosts: Hypervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libvirt 9.0 deadlocks when a console stream's abort (a session's, after the source's QEMU quit) meets
    the free of the source's domain at the migration's end (limen.hypervisor.serial_stream): the VM's streams
    are aborted before libvirt's migration starts, none opens during it, and their sessions read the end
    once the VM runs on the target, told that it moved."""
    alpha = await two_hosts.get_vm("alpha")
    port, stream = held_stream_port(alpha.uuid)
    reading = asyncio.ensure_future(port.read())
    seen: list[tuple[bool, bool]] = []

    def migrate_live(dom: Any, departure: Any, arrival: Any, xml: str) -> None:
        seen.append((stream.aborted.is_set(), reading.done()))

    monkeypatch.setattr(migration, "migrate_live", migrate_live)
    await two_hosts.migrate_vm(alpha.uuid, "other")
    assert seen == [(True, False)]  # released before the migration, its end not told during it
    assert await asyncio.wait_for(reading, 2) == b""
    assert port.released_for is StreamRelease.MIGRATED and port not in OPEN_STREAMS


async def test_a_serial_console_opened_during_a_live_move_opens_once_the_move_is_over(
    two_hosts: Hypervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha = await two_hosts.get_vm("alpha")
    ports = LibvirtSerialPorts(two_hosts.connection)
    migrating, may_finish = threading.Event(), threading.Event()
    opened: list[str] = []

    def migrate_live(dom: Any, departure: Any, arrival: Any, xml: str) -> None:
        migrating.set()
        may_finish.wait(5)

    async def open_during_the_move() -> None:
        with contextlib.suppress(LimenError):  # the test driver has no consoles: only when it asks matters
            await ports.open(alpha.uuid, force=False)
        opened.append("asked" if may_finish.is_set() else "asked during the move")

    monkeypatch.setattr(migration, "migrate_live", migrate_live)
    moving = asyncio.ensure_future(two_hosts.migrate_vm(alpha.uuid, "other"))
    await asyncio.to_thread(migrating.wait, 5)
    opening = asyncio.ensure_future(open_during_the_move())
    await asyncio.sleep(0.05)
    assert not opening.done()  # waits for the move
    may_finish.set()
    await asyncio.wait_for(asyncio.gather(moving, opening), 5)
    assert opened == ["asked"]


async def test_a_failed_live_move_ends_the_released_consoles_saying_so(
    two_hosts: Hypervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha = await two_hosts.get_vm("alpha")
    port, _ = held_stream_port(alpha.uuid)

    def migrate_live(dom: Any, departure: Any, arrival: Any, xml: str) -> None:
        raise libvirt.libvirtError("migration refused")

    monkeypatch.setattr(migration, "migrate_live", migrate_live)
    with pytest.raises(LimenError):
        await two_hosts.migrate_vm(alpha.uuid, "other")
    assert await asyncio.wait_for(port.read(), 2) == b""
    assert port.released_for is StreamRelease.MIGRATION_FAILED

"""A libvirt connection let go while calls run on it (a host removed while its daemon hung) is closed only
after the last of them returns: closing a virConnect under a waiting call frees what the call comes back to."""

from __future__ import annotations

import asyncio
import threading

import libvirt
import pytest

from limen.errors import ErrorCode, HypervisorUnavailable, LimenError
from limen.hypervisor.connection import LibvirtConnection
from tests.conftest import TEST_DRIVER_URI


async def test_a_connection_closed_under_a_running_call_is_closed_when_the_call_returns() -> None:
    connection = LibvirtConnection(TEST_DRIVER_URI, 5.0, host="test")
    inside, answer = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def hung_call(conn: libvirt.virConnect) -> None:  # as a call waiting on a daemon that hangs
        seen["conn"] = conn
        inside.set()
        answer.wait(10)
        seen["alive_when_answered"] = conn.isAlive()  # freed memory, had close() closed it

    call = asyncio.ensure_future(connection.call("hung", hung_call, timeout=10))
    assert await asyncio.to_thread(inside.wait, 5)
    closing = asyncio.ensure_future(connection.close())  # the host removed meanwhile
    await asyncio.sleep(0.1)
    conn = seen["conn"]
    assert isinstance(conn, libvirt.virConnect) and conn.isAlive() == 1  # not closed under the call
    answer.set()
    await call
    await closing
    assert seen["alive_when_answered"] == 1
    await asyncio.sleep(0.1)
    try:
        alive = conn.isAlive()
    except libvirt.libvirtError:
        alive = 0
    assert alive == 0  # closed once the call returned


async def test_a_connection_closed_with_no_call_running_is_closed_at_once() -> None:
    connection = LibvirtConnection(TEST_DRIVER_URI, 5.0, host="test")
    conn = await connection.call("open", lambda conn: conn)
    await connection.close()
    try:
        alive = conn.isAlive()
    except libvirt.libvirtError:
        alive = 0
    assert alive == 0


async def test_a_uri_libvirt_cannot_open_is_the_hypervisor_unavailable() -> None:
    """qemu:///nosuch (or no system bus) was VM_OPERATION_FAILED, "refused the operation in the VM's state"."""
    connection = LibvirtConnection("qemu:///nosuch", 5.0, host="test")
    try:
        with pytest.raises(LimenError) as refused:
            await connection.call("list", lambda conn: conn.listAllDomains(0))
    finally:
        await connection.close()
    assert refused.value.code is ErrorCode.HYPERVISOR_UNAVAILABLE and "qemu:///nosuch" in refused.value.details
    assert refused.value.to_dict()["host"] == "test"  # the host, as the hosts API names it


async def test_every_hypervisor_unavailable_out_of_a_hosts_call_names_the_host() -> None:
    """The host is set where a host's call fails, whatever raised it: a lost socket, a timeout, or the call's
    own (a create given up before it began). Each raise site named it, and the call's own did not."""
    connection = LibvirtConnection(TEST_DRIVER_URI, 5.0, host="edge")

    def lost_socket(conn: libvirt.virConnect) -> None:
        lost = libvirt.libvirtError("client socket is closed")
        lost.err = (libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_RPC, "client socket is closed", 2, None,
                    None, None, 0, 0)
        raise lost

    def given_up(conn: libvirt.virConnect) -> None:
        raise HypervisorUnavailable("the create was given up before it began")

    def hangs(conn: libvirt.virConnect) -> None:
        threading.Event().wait(0.5)

    try:
        for call, timeout in ((lost_socket, None), (given_up, None), (hangs, 0.05)):
            with pytest.raises(HypervisorUnavailable) as failed:
                await connection.call("act", call, timeout=timeout)
            assert failed.value.to_dict()["host"] == "edge", call.__name__
    finally:
        await connection.close()
    with pytest.raises(HypervisorUnavailable) as stopping:
        await connection.call("act", given_up)
    assert "host" not in stopping.value.to_dict()  # limen stopping is no host's failure


async def test_a_call_cancelled_as_libvirt_answers_is_cancelled() -> None:
    """The cancel lands after libvirt's answer came in, before the caller ran again. Python 3.11's wait_for
    returned the answer then, and a console's look-up loop cancelled at its session's end asked on for ever."""
    connection = LibvirtConnection(TEST_DRIVER_URI, 5.0, host="test")
    loop = asyncio.get_running_loop()
    caller: asyncio.Task[str] | None = None

    def answer(conn: libvirt.virConnect) -> str:
        assert caller is not None
        # Runs on the loop after the executor's answer is copied into the awaited future (both go through
        # call_soon_threadsafe, in this order), and before the caller wakes for it.
        loop.call_soon_threadsafe(loop.call_soon, caller.cancel)
        return "running"

    caller = asyncio.ensure_future(connection.call("look_up", answer))
    with pytest.raises(asyncio.CancelledError):
        await caller
    await connection.close()

"""One hypervisor operation from a CLI command: connect, run it, disconnect, and print a failure.

Every ``limen`` command that talks to libvirt goes through here, so each opens exactly one connection
and reports a :class:`~limen.errors.LimenError` the same way (its message on stderr, exit code 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer

from limen.cli_output import failed
from limen.errors import LimenError
from limen.host_registry import read_registered_hosts, sync_pool
from limen.hypervisor import Hypervisor
from limen.settings import Settings

T = TypeVar("T")


async def with_hypervisor(settings: Settings, operation: Callable[[Hypervisor], Awaitable[T]]) -> T:
    """Run ``operation`` on a freshly opened hypervisor connection, closed afterwards whatever happens. It
    sees every host of the registry, as the server does: a command lists, finds and names VMs across them
    (a VM name is unique across hosts)."""
    hypervisor = Hypervisor(settings)
    try:
        hosts = await asyncio.to_thread(read_registered_hosts, settings.db_url)
    except Exception as exc:  # the database is down or unreadable: the default host still answers
        typer.echo(f"limen: cannot read the host registry ({type(exc).__name__}): only the default host is seen",
                   err=True)
        hosts = []
    await sync_pool(hypervisor.hosts, hosts)
    try:
        await hypervisor.open(require_connection=True)
    except LimenError:
        await hypervisor.close()
        raise
    try:
        return await operation(hypervisor)
    finally:
        await hypervisor.close()


def run_on_hypervisor(settings: Settings, operation: Callable[[Hypervisor], Awaitable[T]]) -> T:
    """:func:`with_hypervisor` from synchronous CLI code; a LimenError becomes its message and exit 1."""
    try:
        return asyncio.run(with_hypervisor(settings, operation))
    except LimenError as exc:
        raise failed(exc) from None

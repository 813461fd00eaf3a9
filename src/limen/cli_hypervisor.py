"""One hypervisor operation from a CLI command: connect, run it, disconnect, and print a failure.

Every ``limen`` command that talks to libvirt goes through here, so each opens exactly one connection
and reports a :class:`~limen.errors.LimenError` the same way (its message on stderr, exit code 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer

from limen.cli_output import error_text
from limen.errors import LimenError
from limen.hypervisor import Hypervisor
from limen.settings import Settings

T = TypeVar("T")


async def with_hypervisor(settings: Settings, operation: Callable[[Hypervisor], Awaitable[T]]) -> T:
    """Run ``operation`` on a freshly opened hypervisor connection, closed afterwards whatever happens."""
    hypervisor = Hypervisor(settings)
    await hypervisor.open()
    try:
        return await operation(hypervisor)
    finally:
        await hypervisor.close()


def run_on_hypervisor(settings: Settings, operation: Callable[[Hypervisor], Awaitable[T]]) -> T:
    """:func:`with_hypervisor` from synchronous CLI code; a LimenError becomes its message and exit 1."""
    try:
        return asyncio.run(with_hypervisor(settings, operation))
    except LimenError as exc:
        typer.echo(error_text(exc), err=True)
        raise typer.Exit(1) from None

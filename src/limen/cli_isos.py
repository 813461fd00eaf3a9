"""``limen iso …``: list, upload and delete the boot images of the ISO directory.

Mounted by :mod:`limen.cli`; ``ctx.obj`` is its CliState. The commands work on the ISO directory
directly (they run on the host) through the same library as the REST API: an upload goes to a locked
temp file and appears under its name only when complete, with its SHA-256 beside it; Ctrl-C or an
error leaves nothing behind. ``delete`` asks libvirt which VMs hold the image and refuses while any does.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from limen.api.schemas import IsoOut
from limen.cli_hypervisor import with_hypervisor
from limen.cli_output import failed, moment, say, table
from limen.cli_state import cli_state
from limen.errors import LimenError
from limen.isos import CdromSource, IsoImage, IsoUpload, check_room, delete_iso, list_isos
from limen.sizes import format_size

T = TypeVar("T")

iso_app = typer.Typer(help="Boot images in the ISO directory.", no_args_is_help=True)

READ_CHUNK = 1 << 20
PLAIN_PROGRESS_STEPS = 10  # without a terminal: a line at every tenth of the file


def _out(image: IsoImage) -> dict[str, Any]:
    return IsoOut.of(image).model_dump(mode="json")



@iso_app.command("list")
def iso_list(ctx: typer.Context) -> None:
    """List the boot images in the ISO directory (SHA-256 '-' until limen serve has computed it)."""
    state = cli_state(ctx)
    settings = state.settings()
    isos = list_isos(settings.iso_dir)
    if state.as_json:
        typer.echo(json.dumps([_out(i) for i in isos], indent=2))
    else:
        rows = [[i.name, format_size(i.size_bytes), moment(i.modified),
                 i.sha256[:16] if i.sha256 else "-"] for i in isos]
        typer.echo(table(rows, ["cli.col.name", "cli.col.size", "cli.col.modified", "cli.col.sha256"]) if rows
                   else say("cli.no_isos", dir=settings.iso_dir))


class _BinaryRateColumn(ProgressColumn):
    """The rate in binary units, as the byte counts beside it (rich's own column counts in MB)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("?" if speed is None else f"{format_size(speed)}/s", style="progress.data.speed")


def _copy(source: Path, upload: IsoUpload, advance: Callable[[int], None]) -> None:
    with source.open("rb") as file:
        while chunk := file.read(READ_CHUNK):
            upload.write(chunk)
            advance(len(chunk))


def _plain_progress(total: int) -> Callable[[int], None]:
    done = 0
    next_step = 1

    def advance(count: int) -> None:
        nonlocal done, next_step
        done += count
        if total and done * PLAIN_PROGRESS_STEPS >= total * next_step:
            typer.echo(say("cli.progress.uploaded", done=format_size(done), total=format_size(total),
                           percent=done * 100 // total), err=True)
            next_step = done * PLAIN_PROGRESS_STEPS // total + 1

    return advance


@iso_app.command("upload")
def iso_upload(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The image to copy")],
    name: Annotated[str | None, typer.Option(help="Name in the ISO directory (default: the file's name)")] = None,
) -> None:
    """Copy an image into the ISO directory (atomically, with its SHA-256), with a progress bar."""
    state = cli_state(ctx)
    settings = state.settings()
    target_name = name or file.name
    total = file.stat().st_size
    try:
        check_room(settings.iso_dir, total, settings.max_iso_bytes)
        with IsoUpload(settings.iso_dir, target_name, settings.max_iso_bytes) as upload:
            if sys.stderr.isatty():
                columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                           _BinaryRateColumn(), TimeRemainingColumn())
                with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
                    task = progress.add_task(target_name, total=total)
                    _copy(file, upload, lambda count: progress.advance(task, count))
            else:
                _copy(file, upload, _plain_progress(total) if not state.as_json else lambda count: None)
            image = upload.commit()
    except LimenError as exc:
        raise failed(exc) from None
    except KeyboardInterrupt:
        typer.echo(say("cli.iso_upload_cancelled", name=target_name), err=True)
        raise typer.Exit(130) from None
    except OSError as exc:
        typer.echo(say("cli.iso_upload_unreadable", file=file, reason=exc.strerror or exc), err=True)
        raise typer.Exit(1) from None
    if state.as_json:
        typer.echo(json.dumps(_out(image), indent=2))
    else:
        typer.echo(say("cli.iso_uploaded", name=image.name, size=format_size(image.size_bytes), sha256=image.sha256))


@iso_app.command("delete")
def iso_delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The image's name in the ISO directory")],
) -> None:
    """Delete an image (a link: the link only); refused while a VM's CD-ROM holds it."""
    state = cli_state(ctx)
    settings = state.settings()

    try:
        def cdrom_sources() -> list[CdromSource]:
            return asyncio.run(with_hypervisor(settings, lambda hypervisor: hypervisor.cdrom_sources()))

        delete_iso(settings.iso_dir, name, cdrom_sources(), cdrom_sources)
    except LimenError as exc:
        raise failed(exc) from None
    typer.echo(json.dumps({"deleted": name}) if state.as_json else say("cli.iso_deleted", name=name))

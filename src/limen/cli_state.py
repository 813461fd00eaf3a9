"""The command line's state, shared by every ``limen`` command: the options given before the command
(``--config``, the directory and URI overrides, ``--json``) and the one Settings object they load.

:func:`limen.cli.main_options` puts a :class:`CliState` in typer's ``ctx.obj``; every command module
reads it with :func:`cli_state`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from limen.cli_output import settings_error_text
from limen.settings import Settings, SettingsError, load_settings


class CliState:
    """The options before the command; :meth:`settings` loads them once (again only with ``more``)."""

    def __init__(self, config: Path | None, overrides: dict[str, Any], as_json: bool) -> None:
        self.config = config
        self.overrides = overrides
        self.as_json = as_json
        self._settings: Settings | None = None

    def settings(self, **more: Any) -> Settings:
        if self._settings is None or more:
            try:
                self._settings = load_settings(self.config, **{**self.overrides, **more})
            except SettingsError as exc:
                typer.echo(settings_error_text(exc), err=True)
                raise typer.Exit(2) from None
        return self._settings


def cli_state(ctx: typer.Context) -> CliState:
    state: CliState = ctx.obj
    return state

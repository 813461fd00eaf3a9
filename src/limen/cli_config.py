"""``limen config show`` (every effective setting and where it came from) and ``limen config check FILE``.

Both read settings through :mod:`limen.settings` (``load_settings``, ``check_settings_file``), its one
reader. Mounted by :mod:`limen.cli`; ``ctx.obj`` is its CliState. Exit codes: 0 fine,
2 invalid configuration (the offending key is named).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr

from limen.cli_output import say, setting_problems_text, settings_error_text, table
from limen.cli_state import cli_state
from limen.settings import (
    Settings,
    SettingsError,
    SettingSource,
    check_settings_file,
    is_secret_setting,
    setting_sources,
)
from limen.url_redaction import MASK, redacted_url

config_app = typer.Typer(help="See and check limen's settings.", no_args_is_help=True)

def shown_value(name: str, value: Any) -> Any:
    """A setting's value as ``config show`` prints it (JSON-ready): secrets as ``***``."""
    if value is None:
        return None
    if isinstance(value, SecretStr) or is_secret_setting(name):
        return MASK
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, str) and "://" in value:
        return redacted_url(value)
    return value


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print every effective setting and where it came from: flag, env, file or default; secrets masked."""
    state = cli_state(ctx)
    settings = state.settings()
    sources: dict[str, SettingSource] = setting_sources(state.config, **state.overrides)
    shown = {name: {"value": shown_value(name, getattr(settings, name)), "source": sources[name]}
             for name in Settings.model_fields}
    if state.as_json:
        typer.echo(json.dumps(shown, indent=2))
        return
    rows = [[name, "-" if entry["value"] is None else _text(entry["value"]),
             say(f"cli.config.source.{entry['source']}")] for name, entry in shown.items()]
    typer.echo(table(rows, ["cli.col.setting", "cli.col.value", "cli.col.source"]))


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@config_app.command("check")
def config_check(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="TOML settings file to validate")],
) -> None:
    """Validate a TOML settings file on its own (the environment is not read); exit 2 naming each bad key."""
    try:
        check_settings_file(file)
    except SettingsError as exc:
        if exc.problems:
            typer.echo(say("cli.config.check_failed", file=str(file), problems=setting_problems_text(exc)), err=True)
        else:  # no such file, or not TOML
            typer.echo(settings_error_text(exc), err=True)
        raise typer.Exit(2) from None
    if cli_state(ctx).as_json:
        typer.echo(json.dumps({"file": str(file), "valid": True}))
    else:
        typer.echo(say("cli.config.check_ok", file=str(file)))

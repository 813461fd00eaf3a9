"""The command line's human output in the user's language (``LIMEN_LANG``, else the locale: ``LANG``…).

``--json`` output never changes with the language: scripts parse it (errors too: the API's JSON error).
Tables pad by terminal columns, so Korean headers and names (two columns a character) stay aligned.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import typer

from limen.errors import LimenError, ValidationFailed
from limen.i18n import catalogue, display_width, error_keys, language_from_environment, pad, rule_text, translate
from limen.settings import FileProblem, SettingProblem, SettingsError


def cli_language() -> str:
    return language_from_environment(os.environ)


def say(key: str, /, **params: object) -> str:
    """The catalogue text of ``key`` in the command line's language."""
    return translate(cli_language(), key, **params)


class _ErrorForm:
    """How this run says a LimenError: words for people, or (``--json``) the API's JSON error for scripts."""

    as_json = False


_error_form = _ErrorForm()


def say_errors_as_json(as_json: bool) -> None:
    """Set once a run, by the command line's ``--json``."""
    _error_form.as_json = as_json


def error_text(exc: LimenError) -> str:
    """``limen: title: details`` and what to do, translated by the error's code; details stay as they are, but
    for the rules a VALIDATION_ERROR's fields broke (:func:`refusals_text`). With ``--json``: the error as the
    API sends it (English, with ``field`` and ``rule`` when it has them), one line on stderr: a script reads the
    code without parsing words."""
    if _error_form.as_json:
        body: dict[str, object] = exc.to_dict()
        for extra in ("field", "rule"):
            if getattr(exc, extra, None) is not None:
                body[extra] = getattr(exc, extra)
        return json.dumps(body, ensure_ascii=False)
    lang = cli_language()
    title_key, message_key = error_keys(exc.code)
    details = refusals_text(lang, exc) if isinstance(exc, ValidationFailed) else exc.details
    return translate(lang, "cli.error", title=translate(lang, title_key), details=details,
                     message=translate(lang, message_key), code=exc.code.name)


def refusals_text(lang: str, exc: ValidationFailed) -> str:
    """Each refused field with the rule it broke in ``lang`` (the pages' words, :func:`limen.i18n.rule_text`),
    ``name: …; memory_mib: …``; the English details as they are when no rule has words in ``lang``."""
    worded = [rule_text(lang, refusal.rule) for refusal in exc.refusals]
    if not any(worded):
        return exc.details
    parts = [f"{refusal.field}: {words or refusal.field_details}"
             for refusal, words in zip(exc.refusals, worded, strict=True)]
    # A rule's words are a sentence: its period gives way to the "; " before the next field's.
    return "; ".join([*(part.removesuffix(".") for part in parts[:-1]), parts[-1]])


def settings_error_text(exc: SettingsError) -> str:
    """``exc`` in the command line's language: each bad setting with where it was set and the value given
    (pydantic's English only as the reason of a refusal the catalogue has no words for)."""
    lang = cli_language()
    if exc.file is not None and exc.file_problem is not None:
        return file_problem_text(lang, exc.file, exc.file_problem)
    if not exc.problems:
        return f"limen: {exc}"
    return translate(lang, "cli.settings.invalid") + setting_problems_text(exc)


_PARSER_LANGUAGE = "en"  # tomllib's


def file_problem_text(lang: str, file: Path, problem: FileProblem) -> str:
    """Why the settings ``file`` cannot be read, in ``lang``. The TOML parser speaks English: its words are
    the English text's reason; another language says where it stopped in its own words."""
    if problem.kind in ("missing", "directory", "not_ordinary"):
        return translate(lang, f"cli.settings.file_{problem.kind}", file=str(file))
    reason = problem.reason
    if problem.kind == "not_toml" and lang != _PARSER_LANGUAGE:
        reason = translate(lang, "cli.settings.toml_end") if problem.line is None else \
            translate(lang, "cli.settings.toml_at", line=problem.line, column=problem.column)
    return translate(lang, f"cli.settings.{problem.kind}", file=str(file), reason=reason)


def setting_problems_text(exc: SettingsError) -> str:
    """Each bad setting of ``exc`` on a line of its own, indented, in the command line's language."""
    lang = cli_language()
    return "".join(f"\n  {setting_problem_text(lang, problem)}" for problem in exc.problems)


def setting_problem_text(lang: str, problem: SettingProblem) -> str:
    key = f"cli.settings.problem.{problem.kind}"
    if key not in catalogue(lang):
        key = "cli.settings.problem.other"
    given = translate(lang, "cli.settings.value_hidden") if problem.value is None \
        else _as_given(problem.value)
    reason = problem.message.removeprefix("Value error, ")
    values = {name: value for name, value in problem.context.items() if name not in ("where", "value", "reason")}
    where = translate(lang, "cli.settings.across_settings") if problem.across_settings else problem.where
    text = translate(lang, key, **values, where=where, value=given, reason=reason)
    if problem.unprefixed is not None:
        text += " " + translate(lang, "cli.settings.without_prefix", setting=problem.unprefixed)
    return text


def _as_given(value: object) -> str:
    """A value as the user wrote it: JSON, but TOML's nan and inf as TOML writes them (JSON has NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def failed(exc: LimenError) -> typer.Exit:
    """Says ``exc`` on stderr (:func:`error_text`) and returns the exit (code 1) for the command to raise."""
    typer.echo(error_text(exc), err=True)
    return typer.Exit(1)


def moment(when: datetime) -> str:
    """A time as the command line's tables show it: this machine's local time to the minute, as ``ls -l`` does
    (user and token lists showed ``2026-12-07T16:09:43.983004+00:00``, the ISO list ``2026-12-07 16:09`` in UTC).
    ``--json`` keeps the exact UTC time. A time without a zone (a domain's metadata edited by hand) is UTC, as
    limen writes them; one local time cannot show (the year 1's first hours west of UTC) is shown in UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:  # isoformat, not strftime: its years have four digits however small (strftime's %Y wrote year 1 "1")
        return when.astimezone().isoformat(" ", "minutes")[:16]
    except (OverflowError, ValueError):
        return when.astimezone(UTC).isoformat(" ", "minutes")[:16] + " UTC"


def table(rows: Sequence[Sequence[str]], header_keys: Sequence[str]) -> str:
    """Rows under the translated headers (catalogue keys), columns as wide as their widest cell."""
    headers = [say(key) for key in header_keys]
    widths = [max(display_width(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    return "\n".join("  ".join(pad(str(cell), width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in [headers, *rows])

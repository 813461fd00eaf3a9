"""The command line's human output in the user's language (``LIMEN_LANG``, else the locale: ``LANG``…).

``--json`` output never changes with the language: scripts parse it. Tables pad by terminal columns, so
Korean headers and names (two columns a character) stay aligned.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from limen.errors import LimenError
from limen.i18n import display_width, error_keys, language_from_environment, pad, translate


def cli_language() -> str:
    return language_from_environment(os.environ)


def say(key: str, **params: object) -> str:
    """The catalogue text of ``key`` in the command line's language."""
    return translate(cli_language(), key, **params)


def error_text(exc: LimenError) -> str:
    """``limen: title: details`` and what to do, translated by the error's code; details stay as they are."""
    lang = cli_language()
    title_key, message_key = error_keys(exc.code)
    return translate(lang, "cli.error", title=translate(lang, title_key), details=exc.details,
                     message=translate(lang, message_key), code=exc.code.name)


def table(rows: Sequence[Sequence[str]], header_keys: Sequence[str]) -> str:
    """Rows under the translated headers (catalogue keys), columns as wide as their widest cell."""
    headers = [say(key) for key in header_keys]
    widths = [max(display_width(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    return "\n".join("  ".join(pad(str(cell), width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in [headers, *rows])

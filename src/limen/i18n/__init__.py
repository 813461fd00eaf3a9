"""Korean and English: the catalogues, choosing a language, and text that fits a terminal.

One catalogue per language, in ``catalogues/<lang>/*.json`` (flat ``key → text`` maps, split by area only
to keep files readable; a key lives in exactly one file). The pages (Jinja2), the browser's scripts (the
page embeds its language's catalogue) and the command line all read these. English error titles and
messages are not repeated there: they are :mod:`limen.errors`' table, the one the API answers with, so
the English catalogue takes them from it; Korean has them in ``ko/errors.json``.

Placeholders are ``{name}``; every language uses the same ones for a key (tests/unit/test_i18n.py).

What never changes with the language: the API's JSON (``error``/``message`` stay English), the console
WebSocket's frames (the seed's texts byte for byte) and ``--json`` output. The UI translates by the
stable ``code`` and ``stage`` those carry.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Final

from limen.errors import ErrorCode

CATALOGUE_DIR: Final = Path(__file__).resolve().parent / "catalogues"
DEFAULT_LANGUAGE: Final = "en"
# The language menu, in this order, each name in its own language.
LANGUAGES: Final[tuple[tuple[str, str], ...]] = (("ko", "한국어"), ("en", "English"))
LANGUAGE_CODES: Final = frozenset(code for code, _ in LANGUAGES)
# The browser's language choice: set by the menu (signed out), by PATCH /api/me and at sign-in (signed in).
LANGUAGE_COOKIE: Final = "limen_lang"
LANGUAGE_COOKIE_MAX_AGE: Final = 365 * 24 * 3600


class CatalogueError(Exception):
    """A catalogue file is not a flat map of strings, or two files of one language define the same key."""


def error_keys(code: ErrorCode) -> tuple[str, str]:
    """The catalogue keys of an error code's title and message."""
    return f"error.{code.name}.title", f"error.{code.name}.message"


def _read_files(lang: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for path in sorted((CATALOGUE_DIR / lang).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise CatalogueError(f"{path}: not a flat map of key → text")
        twice = merged.keys() & data.keys()
        if twice:
            raise CatalogueError(f"{path}: keys defined in another file too: {sorted(twice)}")
        merged.update(data)
    return merged


@cache
def catalogue(lang: str) -> Mapping[str, str]:
    """Every text of ``lang`` (one of :data:`LANGUAGE_CODES`), errors included."""
    if lang not in LANGUAGE_CODES:
        raise ValueError(f"unknown language {lang!r}")
    texts = _read_files(lang)
    if lang == "en":
        for code in ErrorCode:
            title_key, message_key = error_keys(code)
            texts[title_key] = code.title
            texts[message_key] = code.user_message
    return texts


@cache
def catalogue_json(lang: str) -> str:
    """The catalogue the browser needs (not the command line's ``cli.*``) as JSON safe inside a
    ``<script type="application/json">`` element."""
    texts = {key: text for key, text in catalogue(lang).items() if not key.startswith("cli.")}
    return script_json(texts)


def script_json(value: object) -> str:
    """``value`` as JSON that cannot end or change the ``<script type="application/json">`` element it is
    written into: only ``</script`` or ``<!--`` could, so no ``<``, ``>`` or ``&`` at all (JSON's escapes)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def translate(lang: str, key: str, /, **params: object) -> str:
    """The text of ``key`` in ``lang`` with its ``{placeholders}`` filled; English if ``lang`` lacks it
    (the unit test keeps that from happening), the key itself if no language has it. ``lang`` and ``key``
    are positional only: a placeholder may be called either (a TLS problem's ``{key}`` is the key file)."""
    text = catalogue(lang).get(key)
    if text is None:
        text = catalogue(DEFAULT_LANGUAGE).get(key, key)
    return text.format(**params) if params else text


def rule_text(lang: str, rule: Mapping[str, object] | None) -> str | None:
    """A VALIDATION_ERROR's broken rule (its ``rule``: :class:`limen.errors.Rule`'s kind and values, e.g.
    ``{"kind": "range", "min": 1, "max": 64, "unit": "", "limit": "host_cpus"}``) in ``lang``, with the
    catalogue's ``rule.<kind>`` (``rule.range.<limit>``), the words the pages give it (``ruleText`` in
    static/js/i18n.js); None in English (the error's own details say it) or for a rule without words."""
    if not rule or lang == DEFAULT_LANGUAGE:
        return None
    key = f"rule.{rule.get('kind')}.{rule['limit']}" if rule.get("limit") else f"rule.{rule.get('kind')}"
    text = catalogue(lang).get(key)
    if text is None:
        return None
    values = {name: _rule_value(value) for name, value in rule.items()}
    values["unit"] = f" {rule['unit']}" if rule.get("unit") else ""
    try:
        return text.format(**values)
    except (KeyError, IndexError):  # a rule without a value its words need: the details say it instead
        return None


def _rule_value(value: object) -> str:
    """A rule's value as the pages write it: numbers grouped by thousands (both languages group with ","),
    lists joined by ", "."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    return str(value)


def language_of(tag: str | None) -> str | None:
    """``ko``, ``ko-KR``, ``ko_KR.UTF-8`` → ``ko``; a language limen does not have → None."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-", 1)[0].split(".", 1)[0].lower()
    return primary if primary in LANGUAGE_CODES else None


def negotiate(accept_language: str | None) -> str:
    """The language a browser prefers most among limen's (RFC 9110 ``Accept-Language`` weights)."""
    best: tuple[float, int, str] | None = None
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        lang = language_of(tag)
        if lang is None or weight <= 0:
            continue
        candidate = (weight, -position, lang)
        if best is None or candidate > best:
            best = candidate
    return best[2] if best else DEFAULT_LANGUAGE


def language_from_environment(env: Mapping[str, str]) -> str:
    """The command line's language: ``LIMEN_LANG``, else the locale (``LC_ALL``, ``LC_MESSAGES``,
    ``LANG``, the first one set, as the C library reads them); English when none names Korean or English."""
    explicit = language_of(env.get("LIMEN_LANG"))
    if explicit:
        return explicit
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(name)
        if value:
            return language_of(value) or DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: Hangul and other wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(char) in ("W", "F") else 1 for char in text)


def pad(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` terminal columns (``str.ljust`` counts characters)."""
    return text + " " * max(0, width - display_width(text))

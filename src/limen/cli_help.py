"""``--help`` in the reader's language.

Typer builds click's command tree from the docstrings (a command's help) and ``help=`` (an option's or
argument's) when :mod:`limen.cli` is imported, in English: those stay the one English source. The catalogue
has a command's help as ``cli.help.<path>`` (``cli.help`` for ``limen`` itself, ``cli.help.vm.create``) and a
parameter's as ``cli.help.<path>:<parameter>`` (``cli.help.vm.create:memory``, ``cli.help:config``); the
English catalogue repeats the docstrings and a unit test keeps the two equal. :func:`localized_command`
puts the reader's language in the tree before it runs. Every command and parameter is translated (a unit test
finds any help text Korean lacks), and so is the help option's own "Show this message and exit."
(``cli.option_help``, which click gives every command). The rest of click's words (``Usage:``, the panels'
``Options``/``Commands`` titles) stay English: typer fixes them when it is imported, from gettext, and limen
ships no message catalogue for click. In every language a flag (an option
that takes no value: ``--json``, ``--force``, ``--help``) shows no type beside it (:func:`flags_without_a_type`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import typer

from limen.i18n import DEFAULT_LANGUAGE, catalogue

# The help option's text (click's "Show this message and exit."): not under cli.help, which holds the commands'
# own texts and their parameters' (the help option is none of theirs).
HELP_OPTION_KEY = "cli.option_help"


def help_key(path: tuple[str, ...], parameter: str | None = None) -> str:
    """The catalogue key of a command's help (``path`` its names below ``limen``) or of one parameter's."""
    key = ".".join(("cli.help", *path))
    return f"{key}:{parameter}" if parameter else key


# Typer (0.29) builds the tree with its own copy of click, so commands are told apart by what they have
# (a group has ``commands``), not by click's classes.
def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command of the tree with its path, ``limen`` itself first."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from walk(sub, (*path, name))


def flags_without_a_type(root: Any) -> None:
    """Typer (0.29) shows a type beside every option, so each flag read ``--json <bool>``, ``--help <bool>``,
    as if it took a value: a flag's type is left blank (its metavar; the help option is made here, as click
    would on the first --help, so that it has one too)."""
    for _path, command in walk(root):
        help_option = command.get_help_option(typer.Context(command))
        for parameter in [*command.params, help_option]:
            if getattr(parameter, "is_flag", False):
                parameter.metavar = ""


# Made once per language: building the tree evaluates every parameter of limen's ~60 commands (~25 ms of CPU),
# and click keeps nothing of a run in it (each run has its own context). A process runs once; tests many times.
@functools.cache
def localized_command(app: typer.Typer, lang: str) -> Any:
    """``app``'s click command with the help texts the catalogue has in ``lang`` (the same object each call)."""
    root = typer.main.get_command(app)
    flags_without_a_type(root)
    if lang == DEFAULT_LANGUAGE:
        return root
    texts = catalogue(lang)
    for path, command in walk(root):
        command.get_help_option(typer.Context(command)).help = texts[HELP_OPTION_KEY]
        text = texts.get(help_key(path))
        if text is not None:
            command.help = text
            command.short_help = None  # the list of commands shows the help's first sentence
        for parameter in command.params:
            text = texts.get(help_key(path, parameter.name))
            if text is not None and hasattr(parameter, "help"):  # typer's arguments have help too
                parameter.help = text
    return root

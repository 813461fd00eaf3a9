"""The stylesheets parse as their authors meant: every block closes. An unclosed ``@media`` swallows every
rule after it into a phone-only query (the quota bars and resource graphs lost their layout on desktops)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "src" / "limen" / "web" / "static"
COMMENT_OR_STRING = re.compile(r"/\*.*?\*/|\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'", re.DOTALL)


def unclosed_blocks(css: str) -> list[int]:
    """Line numbers of the ``{`` left open at the end (and of any ``}`` closing nothing)."""
    text = COMMENT_OR_STRING.sub(lambda match: "\n" * match.group(0).count("\n"), css)
    open_at: list[int] = []
    stray: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        for char in line:
            if char == "{":
                open_at.append(number)
            elif char == "}":
                if open_at:
                    open_at.pop()
                else:
                    stray.append(number)
    return open_at + stray


def test_the_check_finds_an_unclosed_media_query() -> None:
    assert unclosed_blocks("@media (max-width: 1px) {\n  a { b: c; }\n/* } */\n.x { y: z; }\n") == [1]
    assert unclosed_blocks("a { content: '{'; }\n") == []


@pytest.mark.parametrize("sheet", sorted(STATIC.glob("css/*.css")), ids=lambda path: path.name)
def test_every_block_of_the_stylesheets_closes(sheet: Path) -> None:
    assert unclosed_blocks(sheet.read_text(encoding="utf-8")) == []

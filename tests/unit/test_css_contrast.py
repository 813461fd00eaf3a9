"""The stylesheet's colour pairs meet WCAG 2's contrast for small text (4.5:1): the state badges and the
"✓ done" lines were 3.9–4.4:1, and the focus halo 2:1 against the page."""

from __future__ import annotations

import re

import pytest

from limen.web.routes import STATIC_DIR

STYLESHEET = (STATIC_DIR / "css" / "limen.css").read_text()
ROOT = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})\b", STYLESHEET.split("}", 1)[0]))


def luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.mark.parametrize(("text", "background"), [
    ("ok", "ok-bg"), ("ok", "surface"), ("warn", "warn-bg"), ("warn", "surface"), ("danger", "danger-bg"),
    ("danger", "surface"), ("info", "info-bg"), ("idle", "idle-bg"), ("muted", "bg"), ("muted", "surface"),
    ("accent", "surface"), ("text", "bg"),
])
def test_text_colours_are_readable_on_their_backgrounds(text: str, background: str) -> None:
    assert contrast(ROOT[text], ROOT[background]) >= 4.5, (text, background)


def test_the_focus_ring_is_the_accent_outside_a_gap_of_the_surface() -> None:
    ring = re.search(r"--focus:\s*([^;]+);", STYLESHEET)
    assert ring is not None and "var(--accent)" in ring[1] and "var(--surface)" in ring[1], ring
    assert contrast(ROOT["accent"], ROOT["surface"]) >= 3 and contrast(ROOT["accent"], ROOT["bg"]) >= 3

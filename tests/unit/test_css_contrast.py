"""The stylesheet's colour pairs meet WCAG 2's contrast in the light scheme and in the dark one
(``prefers-color-scheme: dark``): 4.5:1 for text (the state badges and the "✓ done" lines were 3.9–4.4:1),
3:1 for what marks a control or a graph's line out (WCAG 1.4.11; the focus halo was 2:1 against the page).
The dark scheme only gives the tokens other values, so the pairs are checked token by token; the page's own
rules take their colours from the tokens, but for the parts dark in either scheme (the top bar, the console)."""

from __future__ import annotations

import re

import pytest

from limen.web.routes import STATIC_DIR

STYLESHEET = (STATIC_DIR / "css" / "limen.css").read_text()
HEX_TOKEN = r"--([\w-]+):\s*(#[0-9a-fA-F]{6})\b"
LIGHT = dict(re.findall(HEX_TOKEN, STYLESHEET.split("}", 1)[0]))
DARK_BLOCK = re.search(r"@media \(prefers-color-scheme: dark\) \{\s*([^{]*)\{([^}]*)\}", STYLESHEET)
assert DARK_BLOCK is not None, "the stylesheet has no dark scheme"
DARK = {**LIGHT, **dict(re.findall(HEX_TOKEN, DARK_BLOCK[2]))}
SCHEMES = {"light": LIGHT, "dark": DARK}

TEXT_ON_BACKGROUND = [
    ("ok", "ok-bg"), ("ok", "surface"), ("warn", "warn-bg"), ("warn", "surface"), ("danger", "danger-bg"),
    ("danger", "surface"), ("info", "info-bg"), ("idle", "idle-bg"), ("muted", "bg"), ("muted", "surface"),
    ("accent", "surface"), ("text", "bg"), ("text", "surface"), ("accent", "bg"),
    # Notices and error boxes; buttons as they hover or are pressed; table heads.
    ("danger-strong", "danger-bg"), ("ok-strong", "ok-bg"), ("warn-strong", "warn-bg"), ("info-strong", "info-bg"),
    ("accent-text", "accent"), ("accent-text", "accent-hover"), ("danger-text", "danger"), ("accent", "info-bg"),
    ("text", "hover"), ("danger", "hover"), ("text", "subtle-bg"), ("muted", "subtle-bg"),
    # Input placeholders (Chromium's own #757575 was 3.7:1 on the dark surface).
    ("placeholder", "surface"), ("placeholder", "bg"),
]
BOUNDARY_ON_BACKGROUND = [
    ("control-border", "surface"), ("control-border", "bg"), ("accent", "surface"), ("accent", "bg"),
    *[(f"graph-{colour}", "surface") for colour in ("blue", "green", "orange", "red", "purple", "grey")],
]
# Tokens for the parts dark in either scheme, or no colour at all.
SCHEME_FREE = {"console-bg", "console-panel", "console-text", "console-muted"}
# Selectors of the parts dark in either scheme: their rules may name colours of their own.
ALWAYS_DARK = ("topbar", "brand", "user-menu", "language-menu", "console", "toolbar", "thumb", "stage", "serial",
               "menu", "leave-hint", "screen", "backoff", "paste-error", "conn-status", "overlay", "panel")


def luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("text", "background"), TEXT_ON_BACKGROUND)
def test_text_colours_are_readable_on_their_backgrounds(scheme: str, text: str, background: str) -> None:
    tokens = SCHEMES[scheme]
    assert contrast(tokens[text], tokens[background]) >= 4.5, (scheme, text, background)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("edge", "background"), BOUNDARY_ON_BACKGROUND)
def test_controls_edges_and_graph_lines_stand_out(scheme: str, edge: str, background: str) -> None:
    tokens = SCHEMES[scheme]
    assert contrast(tokens[edge], tokens[background]) >= 3, (scheme, edge, background)


def test_placeholders_take_their_colour_from_the_token() -> None:
    rule = re.search(r"([^{}]*)::placeholder\s*\{([^}]*)\}", STYLESHEET)
    assert rule is not None and "var(--placeholder)" in rule[2] and "opacity: 1" in rule[2], rule


def test_the_focus_ring_is_the_accent_outside_a_gap_of_the_surface() -> None:
    ring = re.search(r"--focus:\s*([^;]+);", STYLESHEET)
    assert ring is not None and "var(--accent)" in ring[1] and "var(--surface)" in ring[1], ring


def test_the_dark_scheme_gives_every_colour_token_its_own_value_and_spares_the_console() -> None:
    assert DARK_BLOCK is not None
    dark_own = dict(re.findall(HEX_TOKEN, DARK_BLOCK[2]))
    assert set(LIGHT) - SCHEME_FREE - set(dark_own) == set()
    assert "body.console-page" in DARK_BLOCK[1] and ":not(" in DARK_BLOCK[1], DARK_BLOCK[1]


def test_the_pages_rules_take_their_colours_from_the_tokens() -> None:
    assert DARK_BLOCK is not None
    without_tokens = STYLESHEET.replace(STYLESHEET.split("}", 1)[0], "").replace(DARK_BLOCK[0], "")
    literal = [
        selector.strip() for selector, body in re.findall(r"([^{}]+)\{([^{}]*)\}", without_tokens)
        if re.search(r"#[0-9a-fA-F]{3,8}\b|rgb\(\s*\d+\s+\d+\s+\d+\s*\)", body)
        and not any(part in selector for part in ALWAYS_DARK)
    ]
    assert literal == []

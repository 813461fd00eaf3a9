"""Where the browser libraries limen serves are: its own package's ``web/npm/<name>/``, copied there from
``web/node_modules`` by ``make web`` and by the wheel's build (web/assets.toml lists them). Nothing at run
time reads the checkout or ``node_modules``; a setting (``novnc_dir``, ``swagger_ui_dir``, ``uplot_dir``)
may point at another copy instead."""

from __future__ import annotations

from pathlib import Path

NPM_DIR = Path(__file__).resolve().parent / "npm"


def bundled(name: str) -> Path:
    """The bundled copy of library ``name`` (a table of web/assets.toml), laid out as npm installs it."""
    return NPM_DIR / name

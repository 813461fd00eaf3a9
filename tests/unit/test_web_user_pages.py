"""The users and tokens pages are served, and every page's navigation leads to them."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from limen.settings import Settings
from limen.web.routes import STATIC_DIR
from tests.unit.test_web_routes import client_for


@pytest.mark.parametrize(("path", "script"), [("/users", "users.js"), ("/tokens", "tokens.js")])
async def test_user_pages_are_html(make_settings: Callable[..., Settings], path: str, script: str) -> None:
    async with client_for(make_settings()) as client:
        response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert f"/static/js/{script}" in response.text


def test_every_navigation_links_users_and_tokens() -> None:
    pages = [page for page in STATIC_DIR.glob("*.html") if "<nav" in page.read_text()]
    assert len(pages) >= 7
    for page in pages:
        nav = re.search(r"<nav.*?</nav>", page.read_text(), re.S)
        assert nav is not None
        assert 'href="/users"' in nav.group(0) and 'href="/tokens"' in nav.group(0), page.name

"""The users and tokens pages are served, and every page's navigation leads to them."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from limen.settings import Settings
from tests.unit.test_web_routes import client_for


@pytest.mark.parametrize(("path", "script"), [("/users", "users.js"), ("/tokens", "tokens.js")])
async def test_user_pages_are_html(make_settings: Callable[..., Settings], path: str, script: str) -> None:
    async with client_for(make_settings()) as client:
        response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert f"/static/js/{script}" in response.text


NAVIGATED_PAGES = ("/", "/vms/new", "/isos", "/audit", "/users", "/tokens", "/vms/some-vm")


async def test_every_navigation_links_users_and_tokens(make_settings: Callable[..., Settings]) -> None:
    async with client_for(make_settings()) as client:
        for path in NAVIGATED_PAGES:
            page = (await client.get(path)).text
            navs = re.findall(r"<nav.*?</nav>", page, re.S)
            assert len(navs) == 1, path  # one base layout draws it once
            assert 'href="/users"' in navs[0] and 'href="/tokens"' in navs[0], path

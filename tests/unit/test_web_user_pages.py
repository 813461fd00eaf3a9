"""The users and tokens pages are served, and every page's navigation leads to them."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.unit.test_web_routes import reading_client as reading_client  # one app for the module: pages only read


@pytest.mark.parametrize(("path", "script"), [("/users", "users.js"), ("/tokens", "tokens.js")])
async def test_user_pages_are_html(reading_client: httpx.AsyncClient, path: str, script: str) -> None:
    response = await reading_client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert f"/static/js/{script}" in response.text


NAVIGATED_PAGES = ("/", "/vms/new", "/isos", "/volumes", "/audit", "/users", "/tokens", "/vms/some-vm")


async def test_every_navigation_links_users_and_tokens(reading_client: httpx.AsyncClient) -> None:
    for path in NAVIGATED_PAGES:
        page = (await reading_client.get(path)).text
        navs = re.findall(r"<nav.*?</nav>", page, re.S)
        assert len(navs) == 1, path  # one base layout draws it once
        assert 'href="/users"' in navs[0] and 'href="/tokens"' in navs[0], path

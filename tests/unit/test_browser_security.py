"""The browser's security headers in-process: a Content Security Policy, no framing, no sniffing and the
referrer kept to limen on every answer (pages, API, errors, static files), ``no-store`` on the API's."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import settings_in
from tests.unit.test_web_routes import client_for

FRAMING_AND_SNIFFING = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


@pytest.fixture(scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(settings_in(tmp_path_factory.mktemp("browser-security"))) as client:
        yield client


def policy_of(answer: httpx.Response) -> dict[str, str]:
    """The answer's Content Security Policy, directive -> its sources."""
    directives = (part.strip().split(" ", 1) for part in answer.headers["content-security-policy"].split(";"))
    return {name: sources for name, sources in directives}


def assert_browser_headers(answer: httpx.Response) -> None:
    assert {name: answer.headers.get(name) for name in FRAMING_AND_SNIFFING} == FRAMING_AND_SNIFFING
    policy = policy_of(answer)
    for directive, sources in {"frame-ancestors": "'none'", "base-uri": "'none'", "object-src": "'none'",
                               "form-action": "'self'", "default-src": "'self'", "connect-src": "'self'"}.items():
        assert policy[directive] == sources, answer.headers["content-security-policy"]
    assert "unsafe-inline" not in policy["script-src"] and "unsafe-eval" not in policy["script-src"]


@pytest.mark.parametrize("path", ["/", "/login", "/vms/new", "/vms/test/console", "/tokens"])
async def test_a_page_may_not_be_framed_nor_run_foreign_scripts(client: httpx.AsyncClient, path: str) -> None:
    page = await client.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert_browser_headers(page)
    assert policy_of(page)["script-src"] == "'self'"
    assert page.headers.get("cache-control") != "no-store"  # the pages keep theirs: they hold no user data


@pytest.mark.parametrize("path", ["/api/vms", "/api/tokens", "/api/users", "/api/vm-actions",
                                  "/api/console-sessions"])
async def test_per_user_api_answers_are_not_kept_in_the_browser_cache(client: httpx.AsyncClient, path: str) -> None:
    answer = await client.get(path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert_browser_headers(answer)


async def test_error_answers_carry_the_headers_too(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/no-such-thing")
    unreadable = await client.post("/api/vms", content=b"{", headers={"Content-Type": "application/json"})
    unsigned = await client.get("/api/vms", headers={"Authorization": ""})
    assert (missing.status_code, unreadable.status_code, unsigned.status_code) == (404, 400, 401), unreadable.text
    for answer in (missing, unreadable, unsigned):
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["cache-control"] == "no-store"
        assert_browser_headers(answer)
    page_missing = await client.get("/no-such-page")
    assert page_missing.status_code == 404
    assert_browser_headers(page_missing)


async def test_a_static_file_keeps_its_caching(client: httpx.AsyncClient) -> None:
    script = await client.get("/static/js/api.js")
    assert script.status_code == 200
    assert_browser_headers(script)
    assert script.headers.get("cache-control") != "no-store"


async def test_the_api_docs_run_only_their_own_inline_script(client: httpx.AsyncClient) -> None:
    # Swagger UI is started by an inline script: /api/docs allows that one by its hash, nothing else inline.
    page = await client.get("/api/docs")
    assert page.status_code == 200
    assert_browser_headers(page)
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    hashes = {f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in inline}
    assert inline and set(policy_of(page)["script-src"].split()) == {"'self'", *hashes}

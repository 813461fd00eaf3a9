"""Every route of the API, sent what a careless or hostile client sends: wrong-typed fields, bodies that are no
object, odd path parameters. Each answer is a 4xx in limen's one error schema (or a success where the input
happens to be acceptable), never a 5xx; and nothing is left half-made."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import settings_in
from tests.support.shared_app import SharedApp, admin_shared_app

ERROR_FIELDS = {"error", "code", "details", "message"}
# Values of every JSON type but the right one, and the strings that break naive code.
WRONG_VALUES: list[Any] = [None, True, -1, 2**63, 1e308, "", "x" * 5000, "한글\u0000", [], [1, "a"], {}, {"a": {}}]
# Path parameters no VM, user, token, ISO, volume or snapshot has: long, non-ASCII, dots, a percent-encoded NUL.
ODD_PATH_VALUES = ["a" * 300, "한글", "..", "%00", "-1", "x y"]


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SharedApp]:
    async with admin_shared_app(settings_in(tmp_path_factory.mktemp("wrong-input"))) as shared:
        yield shared


def operations(app_openapi: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in app_openapi["paths"].items():
        for method, operation in methods.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield path, method, operation


def body_schema(spec: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    schema: dict[str, Any] = content["schema"]
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def json_types(spec: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """The JSON types a property's schema accepts (an empty set: any)."""
    if "$ref" in schema:
        return json_types(spec, spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
    if "anyOf" in schema:
        return set().union(*(json_types(spec, part) for part in schema["anyOf"]))
    kind = schema.get("type")
    if kind is None:
        return {"string"} if "enum" in schema or "const" in schema else set()
    return {kind, "number"} if kind == "integer" else {kind}


def json_type(value: Any) -> str:
    for kind, python in (("null", type(None)), ("boolean", bool), ("integer", int), ("number", float),
                         ("string", str), ("array", list), ("object", dict)):
        if isinstance(value, python):
            return kind
    raise TypeError(value)


def wrong_values(spec: dict[str, Any], schema: dict[str, Any]) -> list[Any]:
    """The values of WRONG_VALUES a property's type refuses (an integer field takes -1; that is not wrong)."""
    accepted = json_types(spec, schema)
    return [value for value in WRONG_VALUES if accepted and json_type(value) not in accepted
            and not (json_type(value) == "integer" and "number" in accepted)]


def fill(path: str, value: str) -> str:
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        path = path[:start] + value + path[end + 1:]
    return path


def assert_answered(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        assert set(body) >= ERROR_FIELDS, f"{what}: {body}"


async def test_every_route_answers_wrong_input_with_a_4xx_in_the_error_schema(shared: SharedApp) -> None:
    await shared.reset()
    client = shared.client
    spec = (await client.get("/api/openapi.json")).json()
    tried = 0
    for path, method, operation in operations(spec):
        if path.endswith("/console") or "/events" in path or path.endswith("/upload"):
            continue  # WebSockets, event streams and uploads have tests of their own for what they refuse
        for odd in ODD_PATH_VALUES:
            url = fill(path, odd)
            response = await client.request(method, url, content=b"{}", headers={"Content-Type": "application/json"})
            assert_answered(response, f"{method.upper()} {url}")
            tried += 1
        schema = body_schema(spec, operation)
        if schema is None:
            continue
        url = fill(path, "limen-no-such-thing")
        for raw in (b"[]", b"null", b"\"text\"", b"{", b"\xff\xfe", json.dumps([{}] * 1000).encode()):
            response = await client.request(method, url, content=raw, headers={"Content-Type": "application/json"})
            assert_answered(response, f"{method.upper()} {url} {raw[:20]!r}")
            tried += 1
        for field in schema.get("properties", {}):
            for value in WRONG_VALUES:
                response = await client.request(method, url, json={field: value})
                assert_answered(response, f"{method.upper()} {url} {field}={value!r:.40}")
                tried += 1
    assert tried > 500, tried


@pytest.mark.parametrize("page", ["/vms/{}", "/vms/{}/console", "/console/{}", "/login?next={}", "/audit?vm={}"])
async def test_the_pages_answer_odd_paths_and_queries(shared: SharedApp, page: str) -> None:
    """A page asked for a VM no one has, by a name no VM may have, is a page (it says what is missing) or a
    4xx, never a 5xx."""
    await shared.reset()
    for odd in [*ODD_PATH_VALUES, "//evil.example", "%2e%2e%2fapi", "javascript:alert(1)"]:
        response = await shared.client.get(page.format(odd), headers={"Accept": "text/html"})
        assert response.status_code < 500, (page, odd, response.status_code, response.text[:200])


async def test_real_things_sent_wrong_fields_and_queries_answer_4xx_and_stay_as_they_were(shared: SharedApp) -> None:
    """The same on a VM, a user and a token that exist: the handler's own checks, past the path's."""
    await shared.reset()
    client = shared.client
    spec = (await client.get("/api/openapi.json")).json()
    vm = (await client.get("/api/vms")).json()[0]["name"]
    me = (await client.get("/api/me")).json()["name"]
    before = {path: (await client.get(path)).json() for path in ("/api/vms", "/api/users", "/api/tokens")}
    token = before["/api/tokens"][0]["id"]
    real = {"vm_id": vm, "name": me, "token_id": str(token)}
    tried = 0
    for path, method, operation in operations(spec):
        names = [parameter["name"] for parameter in operation.get("parameters", []) if parameter["in"] == "path"]
        if any(name not in real for name in names) or path.endswith(("/console", "/upload")) or "/events" in path:
            continue
        url = path
        for name in names:
            url = url.replace("{" + name + "}", real[name]).replace("{" + name + ":path}", real[name])
        queries = [parameter["name"] for parameter in operation.get("parameters", []) if parameter["in"] == "query"]
        for query in queries:
            for value in ("-1", "99999999999999999999999", "", "x" * 5000, "한글", "1e308", "nan", "[]"):
                response = await client.request(method, url, params={query: value},
                                                **({"json": {}} if body_schema(spec, operation) else {}))
                assert_answered(response, f"{method.upper()} {url}?{query}={value:.40}")
                tried += 1
        schema = body_schema(spec, operation)
        if schema is None:
            continue
        for field, field_schema in schema.get("properties", {}).items():
            for value in wrong_values(spec, field_schema):
                response = await client.request(method, url, json={field: value})
                assert 400 <= response.status_code < 500, f"{method.upper()} {url} {field}={value!r:.40}"
                assert_answered(response, f"{method.upper()} {url} {field}={value!r:.40}")
                tried += 1
    assert tried > 200, tried
    after = {path: (await client.get(path)).json() for path in before}
    assert after == before

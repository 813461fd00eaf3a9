"""How the console's modules reach the browser fast: noVNC joined into one module by `make web`, under an
address naming its content (cached immutable), named by the details page (prefetched); noVNC's own module
graph where a noVNC of the administrator's has no joined file, and the graph itself; the tables the page
carries instead of fetching them."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from collections.abc import Callable
from pathlib import Path

import httpx

from limen.hypervisor.hosts import DEFAULT_HOST
from limen.settings import Settings
from limen.web.immutable_assets import IMMUTABLE, content_digest
from limen.web.module_graph import module_graph
from limen.web.npm_assets import bundled
from limen.web.routes import NOVNC_ENTRY, NOVNC_JOINED, console_tables_json
from tests.unit.test_web_routes import client_for
from tests.unit.test_web_routes import reading_client as reading_client  # one app for the pages only read

NOVNC_META = re.compile(r'<meta name="limen-novnc-module" content="(/static/novnc-[0-9a-f]{12})/([^"]+)">')
ASSETS = Path(__file__).resolve().parents[2] / "web" / "assets.toml"
STATIC_JS = Path(__file__).resolve().parents[2] / "src" / "limen" / "web" / "static" / "js"


def test_module_graph_follows_relative_imports_once_in_order(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "main.js").write_text(
        'import { a } from "./lib/a.js";\nimport "./lib/side.js";\nexport { b } from "./lib/b.js";\n'
        'import x from "bare-package";\nconst later = import("./lib/lazy.js");\n'
    )
    (tmp_path / "lib" / "a.js").write_text('import {\n  b,\n} from "./b.js";\nexport const a = 1;\n')
    (tmp_path / "lib" / "b.js").write_text('import { a } from "./a.js"; // a cycle\nexport const b = 2;\n')
    (tmp_path / "lib" / "side.js").write_text('import "../../outside.js";\nimport "./missing.js";\n')
    (tmp_path / "lib" / "lazy.js").write_text("export const lazy = 3;\n")
    assert module_graph(tmp_path, "main.js") == ("main.js", "lib/a.js", "lib/side.js", "lib/b.js")


def test_novncs_graph_is_whole() -> None:
    graph = module_graph(bundled("novnc"), "core/rfb.js")
    assert graph[0] == "core/rfb.js"
    assert {"core/websock.js", "core/display.js", "core/inflator.js"} <= set(graph)
    assert all((bundled("novnc") / name).is_file() for name in graph)


def test_novnc_joined_is_one_module_with_rfb_as_its_default() -> None:
    novnc = bundled("novnc")
    assert tomllib.loads(ASSETS.read_text())["novnc"]["module_to"] == NOVNC_JOINED
    joined = (novnc / NOVNC_JOINED).read_text()
    assert module_graph(novnc, NOVNC_JOINED) == (NOVNC_JOINED,)  # nothing left to fetch after it
    assert not re.search(r"""\bimport\b\s*[\w{*"'(]""", joined)
    assert re.search(r"export\s*\{\s*\w+ as default\s*\}", joined)
    assert joined.startswith("/* limen-rfb.js: core/rfb.js of this directory") and "LICENSE" in joined[:200]
    assert (novnc / "LICENSE.txt").is_file()


def test_the_digest_changes_with_the_content(tmp_path: Path) -> None:
    (tmp_path / "one.js").write_text("export const one = 1;\n")
    before = content_digest(tmp_path)
    other = tmp_path / "copy"
    other.mkdir()
    (other / "one.js").write_text("export const one = 11;\n")
    assert content_digest(other) != before
    assert re.fullmatch(r"[0-9a-f]{12}", before)


async def test_the_console_page_names_novncs_immutable_address(reading_client: httpx.AsyncClient) -> None:
    page = await reading_client.get("/vms/test/console")
    found = NOVNC_META.search(page.text)
    assert found, page.text[:2000]
    assert found.group(2) == NOVNC_JOINED
    immutable = await reading_client.get(f"{found.group(1)}/{NOVNC_JOINED}")
    plain = await reading_client.get(f"/static/novnc/{NOVNC_JOINED}")  # older pages and bookmarks of it
    assert immutable.status_code == 200
    assert immutable.headers["cache-control"] == IMMUTABLE
    assert immutable.content == plain.content
    assert plain.status_code == 200
    assert "immutable" not in plain.headers.get("cache-control", "")


async def test_the_details_page_prefetches_the_consoles_modules(reading_client: httpx.AsyncClient) -> None:
    details = await reading_client.get("/vms/test")
    console = await reading_client.get("/vms/test/console")
    prefetched = re.findall(r'<link rel="prefetch" href="([^"]+)">', details.text)
    address = NOVNC_META.search(console.text)
    assert address
    assert f"{address.group(1)}/{NOVNC_JOINED}" in prefetched
    assert "/static/js/console-client.js" in prefetched
    assert len(prefetched) == len(set(prefetched))
    assert [name for name in prefetched if "/static/novnc" in name] == [f"{address.group(1)}/{NOVNC_JOINED}"]
    assert 'rel="prefetch"' not in console.text


async def test_a_novnc_without_the_joined_module_is_loaded_from_its_own_entry(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A ``novnc_dir`` as a distribution ships noVNC: core/ and vendor/, no limen-rfb.js."""
    own = tmp_path / "novnc"
    shutil.copytree(bundled("novnc"), own, ignore=shutil.ignore_patterns(f"{NOVNC_JOINED}*"))
    async with client_for(make_settings(novnc_dir=own)) as client:
        console = await client.get("/vms/test/console")
        details = await client.get("/vms/test")
        found = NOVNC_META.search(console.text)
        assert found and found.group(2) == NOVNC_ENTRY
        assert (await client.get(f"{found.group(1)}/{NOVNC_ENTRY}")).status_code == 200
    prefetched = re.findall(r'<link rel="prefetch" href="([^"]+)">', details.text)
    assert f"{found.group(1)}/{NOVNC_ENTRY}" in prefetched
    assert len([name for name in prefetched if "/static/novnc" in name]) > 50


async def test_a_missing_novnc_keeps_its_plain_address(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    async with client_for(make_settings(novnc_dir=tmp_path / "nowhere")) as client:
        page = await client.get("/vms/test/console")
    assert f'<meta name="limen-novnc-module" content="/static/novnc/{NOVNC_ENTRY}">' in page.text


CONSOLE_TABLES = re.compile(r'<script id="limen-console-tables" type="application/json">([^<]*)</script>')


async def test_the_console_page_carries_the_error_codes_and_the_stage_table(
    reading_client: httpx.AsyncClient,
) -> None:
    """Its socket waits for neither GET: the page has what both answer, the same, safe inside <script>."""
    console = await reading_client.get("/vms/test/console")
    carried = CONSOLE_TABLES.search(console.text)
    assert carried is not None, console.text[:2000]
    assert "<" not in carried.group(1) and ">" not in carried.group(1) and "&" not in carried.group(1)
    tables = json.loads(carried.group(1))
    assert tables == {
        "error_codes": (await reading_client.get("/api/error-codes")).json(),
        "console_stages": (await reading_client.get("/api/console-stages")).json(),
    }
    for other in ("/", "/vms/test", "/login"):
        assert "limen-console-tables" not in (await reading_client.get(other)).text, other


def test_the_carried_tables_follow_the_settings_in_force(make_settings: Callable[..., Settings]) -> None:
    first, second = make_settings(), make_settings(console_get_port_timeout=2.5)
    assert console_tables_json(first) is console_tables_json(first)  # made once per settings object

    def get_port_deadline(settings: Settings) -> float:
        stages = json.loads(console_tables_json(settings))["console_stages"]["vnc"]["stages"]
        return float(next(stage["deadline_seconds"] for stage in stages if stage["name"] == "get_port"))

    assert get_port_deadline(second) == 2.5
    assert get_port_deadline(first) == first.console_get_port_timeout != 2.5


async def test_the_console_page_asks_for_all_its_modules_at_once_and_leaves_novnc_to_its_script(
    reading_client: httpx.AsyncClient,
) -> None:
    """Its own imports and noVNC preloaded (not one level of imports after another, and noVNC's download not
    after the socket), noVNC evaluated by no script of the page's head: console-page.js imports it once its
    socket is made, so that noVNC's evaluation does not hold the socket up."""
    page = (await reading_client.get("/vms/test/console")).text
    preloaded = re.findall(r'<link rel="modulepreload" href="([^"]+)">', page)
    meta = NOVNC_META.search(page)
    assert meta is not None
    novnc = f"{meta.group(1)}/{meta.group(2)}"
    own = [f"/static/js/{name}" for name in module_graph(STATIC_JS, "console-page.js")[1:]]
    assert preloaded == [*own, novnc]
    assert {"/static/js/api.js", "/static/js/console-client.js"} <= set(preloaded)
    assert page.count(novnc) == 2  # the <meta> and the preload: no <script> evaluates it early
    for other in ("/", "/vms/test"):
        assert 'rel="modulepreload"' not in (await reading_client.get(other)).text, other


async def test_the_console_page_names_limens_own_host(reading_client: httpx.AsyncClient) -> None:
    """The page keeps HYPERVISOR_UNAVAILABLE's own advice (libvirtd on limen's machine) for the host of that
    name, and names any other host that does not answer (console-outcome.js's unansweringHostOf)."""
    console = await reading_client.get("/vms/test/console")
    assert f'data-own-host="{DEFAULT_HOST}"' in console.text

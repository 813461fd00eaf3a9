"""Imports point one way: base → hypervisor/db → auth → console → api/web → cli.

Every module under src/limen is read as source (its AST, so imports inside functions and under
``TYPE_CHECKING`` count too) and each import of another limen unit must go to the same layer or a lower
one. No module imports itself through others (importing ``limen.web.screenshots`` runs ``limen/web/__init__.py``
first, so that counts as an import of the package too). A new top-level module or package has to be placed
in ``LAYERS`` before this test passes, which is the moment to decide where it belongs.

``limen.api.app`` is a unit of its own: it wires everything (the API routers, the pages of
:mod:`limen.web`, the console, the lifespan), so it belongs with the entry points.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

import pytest

import limen

SOURCE_ROOT = Path(limen.__file__).parent

# Lowest first. A unit is a top-level module or package of limen.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("base", frozenset({
        "limen", "clock", "errors", "settings", "private_files", "logs", "isos", "stats_history", "metrics",
        "request_reading", "http_protocol", "i18n", "action_details", "end_details", "collector", "url_redaction",
        "qemu_access", "redis_client", "redis_stream", "sizes", "cancellation", "client_text",
    })),
    ("hypervisor/db", frozenset({"hypervisor", "db", "audit", "instances", "stats_sampler", "backup_postgres"})),
    ("auth", frozenset({"auth", "quota", "recovery", "volume_claims", "host_registry", "deleted_owners", "backup",
                        "vm_event_relay"})),
    ("console", frozenset({"console"})),
    ("api/web", frozenset({"api", "web"})),
    ("cli", frozenset({
        "api.app", "cli", "cli_audit", "cli_backup", "cli_config", "cli_hosts", "cli_hypervisor", "cli_isos",
        "cli_help", "cli_output", "cli_progress", "cli_snapshots", "cli_state", "cli_users", "cli_volumes",
        "doctor", "server",
    })),
)
LAYER_OF = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = ["limen", *path.relative_to(SOURCE_ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    """The longest name in LAYERS that ``module`` is or lies in; else its top-level module or package."""
    parts = module.split(".")[1:]
    for length in range(len(parts), 1, -1):
        if ".".join(parts[:length]) in LAYER_OF:
            return ".".join(parts[:length])
    return parts[0] if parts else "limen"


def import_statements(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of ``tree``, at any depth of statements (bodies of functions, classes, ifs, trys,
    withs, loops, match cases). Only the statements are walked: an expression holds no import statement, and
    skipping the expressions (most of the nodes) makes the walk about 5 times cheaper than ``ast.walk``."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        for field in node._fields:
            value = getattr(node, field, None)
            if isinstance(value, list):
                pending.extend(item for item in value
                               if isinstance(item, ast.stmt | ast.excepthandler | ast.match_case))


def imported_modules(source: str, module: str, *, is_package: bool, modules: Collection[str] = ()) -> set[str]:
    """The limen modules (or packages) ``source`` imports, wherever in the file the import stands; a name
    imported from a package counts as its submodule when ``modules`` knows one of that name."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in import_statements(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            # `from limen.api import vms` imports the module limen.api.vms (and limen.api, a package
            # already on its way when it is the importer's own); `from limen.api.deps import X` the module.
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names)
    return {name for name in found if name == "limen" or name.startswith("limen.")}


def unit_imports(modules: Mapping[str, set[str]]) -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) → the modules where that happens, for imports across units."""
    edges: dict[tuple[str, str], list[str]] = {}
    for module, imported in modules.items():
        for target in imported:
            if unit_of(module) != unit_of(target):
                edges.setdefault((unit_of(module), unit_of(target)), []).append(f"{module} → {target}")
    return edges


def upward_imports(edges: Mapping[tuple[str, str], list[str]]) -> list[str]:
    return sorted(
        f"{where} ({LAYERS[LAYER_OF[source]][0]} imports {LAYERS[LAYER_OF[target]][0]})"
        for (source, target), wheres in edges.items()
        if LAYER_OF[target] > LAYER_OF[source]
        for where in wheres
    )


def with_packages(modules: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """The imports as Python runs them: importing ``a.b.c`` runs ``a`` and ``a.b`` first. A package that
    contains the importer is left out: it is already running (a package's own submodules importing each
    other through it is how packages are built, not a cycle)."""
    graph: dict[str, set[str]] = {}
    for module, imported in modules.items():
        own = {".".join(module.split(".")[:length]) for length in range(1, module.count(".") + 1)}
        graph[module] = set()
        for target in imported:
            parts = target.split(".")
            graph[module].update(
                name for name in (".".join(parts[:length]) for length in range(1, len(parts) + 1))
                if name not in own and name != module and name in modules
            )
    return graph


def module_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Cycles of imports, each as the path that closes it (depth-first, one per back edge)."""
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(graph.get(module, ())):
            if target in path:
                cycles.append([*path[path.index(target):], target])
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    return cycles


@functools.cache
def limen_imports() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in sorted(SOURCE_ROOT.rglob("*.py"))}
    return {
        module: imported_modules(path.read_text(), module, is_package=path.name == "__init__.py", modules=paths)
        for module, path in paths.items()
    }


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(module) for module in limen_imports()}
    assert sorted(units - LAYER_OF.keys()) == [], "place the new unit in LAYERS (tests/unit/test_import_layers.py)"
    assert sorted(LAYER_OF.keys() - units) == [], "LAYERS names a unit that no longer exists"


def test_imports_point_down_the_layers() -> None:
    assert upward_imports(unit_imports(limen_imports())) == []


def test_modules_import_each_other_without_cycles() -> None:
    assert module_cycles(with_packages(limen_imports())) == []


@pytest.mark.parametrize(
    ("source", "module", "is_package", "expected"),
    [
        ("from limen.api.deps import X", "limen.auth.deps", False, {"limen.api.deps"}),
        ("def f():\n    import limen.api.middleware\n", "limen.logs", False, {"limen.api.middleware"}),
        ("if TYPE_CHECKING:\n    from ..api import deps\n", "limen.auth.deps", False, {"limen.api.deps"}),
        ("from . import clock", "limen.auth", True, {"limen.auth"}),
        ("from limen.api import deps, app", "limen.web.routes", False, {"limen.api.deps", "limen.api"}),
        ("import fastapi\nfrom starlette import requests", "limen.api.deps", False, set()),
    ],
)
def test_imports_are_found_wherever_they_stand(source: str, module: str, is_package: bool, expected: set[str]) -> None:
    assert imported_modules(source, module, is_package=is_package, modules={"limen.api.deps"}) == expected


def test_an_upward_import_is_reported() -> None:
    edges = unit_imports({
        "limen.audit": {"limen.clock", "limen.auth.clock"},
        "limen.auth.access": {"limen.audit"},
        "limen.logs": {"limen.api.middleware"},
        "limen.api.app": {"limen.web"},
        "limen.web.routes": {"limen.api.deps"},
    })
    assert upward_imports(edges) == [
        "limen.audit → limen.auth.clock (hypervisor/db imports auth)",
        "limen.logs → limen.api.middleware (base imports api/web)",
    ]


def test_a_cycle_through_a_package_file_is_reported() -> None:
    modules: dict[str, set[str]] = {
        "limen.web": {"limen.web.routes"},  # the package file re-exports the routes
        "limen.web.routes": {"limen.api.deps", "limen.web.png"},  # its own package: not a cycle
        "limen.web.png": set(),
        "limen.api": set(),
        "limen.api.deps": {"limen.api.services"},
        "limen.api.services": {"limen.web.png"},  # runs limen/web/__init__.py, hence the routes
    }
    assert module_cycles(with_packages(modules)) == [
        ["limen.api.deps", "limen.api.services", "limen.web", "limen.web.routes", "limen.api.deps"],
    ]
    modules["limen.web"] = set()
    assert module_cycles(with_packages(modules)) == []

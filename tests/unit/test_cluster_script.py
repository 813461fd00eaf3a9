"""`make cluster` is a shipped script: scripts/cluster.py and the parts it is built from import nothing of
the test tree (tests import the parts, never the other way)."""

from __future__ import annotations

import ast
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
    return found


def test_the_cluster_script_and_its_parts_import_nothing_of_the_tests() -> None:
    sources = [SCRIPTS / "cluster.py", *sorted((SCRIPTS / "cluster_parts").glob("*.py"))]
    assert len(sources) > 5
    offending = {path.name: sorted(name for name in imported_modules(path) if name.split(".")[0] == "tests")
                 for path in sources}
    assert {name: modules for name, modules in offending.items() if modules} == {}
    assert "scripts.cluster_parts.libvirt_hosts" in imported_modules(SCRIPTS / "cluster.py")

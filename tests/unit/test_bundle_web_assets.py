"""scripts/bundle_web_assets.py: web/assets.toml's libraries are copied into the package, optional ones may
be absent, a missing required one fails the build and leaves the previous copy; nothing in limen's code
reads node_modules or the checkout at run time."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

import limen

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bundle_web_assets", ROOT / "scripts" / "bundle_web_assets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bundler = _load()


def _library(name: str, source: str, *, optional: bool = False) -> object:
    return bundler.Library(name, source, ("lib/**/*", "LICENSE"), "lib/main.js", optional)


def _package(node_modules: Path, source: str) -> None:
    (node_modules / source / "lib" / "sub").mkdir(parents=True)
    (node_modules / source / "lib" / "main.js").write_text("export {};")
    (node_modules / source / "lib" / "sub" / "part.js").write_text("export {};")
    (node_modules / source / "LICENSE").write_text("MIT")
    (node_modules / source / "README.md").write_text("not copied")


def test_copies_the_listed_files_skips_an_absent_optional_library_and_drops_stale_files(tmp_path: Path) -> None:
    node_modules, target = tmp_path / "node_modules", tmp_path / "npm"
    _package(node_modules, "@scope/lib")
    (target / "gone").mkdir(parents=True)
    (target / "gone" / "old.js").write_text("stale")
    notes = bundler.bundle(node_modules, target, [_library("lib", "@scope/lib"),
                                                  _library("later", "@scope/later", optional=True)])
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == [
        "lib/LICENSE", "lib/lib/main.js", "lib/lib/sub/part.js"]
    assert any("later: skipped" in note for note in notes)


def test_a_missing_required_library_fails_and_keeps_the_previous_copy(tmp_path: Path) -> None:
    node_modules, target = tmp_path / "node_modules", tmp_path / "npm"
    _package(node_modules, "lib")
    bundler.bundle(node_modules, target, [_library("lib", "lib")])
    with pytest.raises(bundler.MissingLibrary, match="absent"):
        bundler.bundle(node_modules, target, [_library("lib", "lib"), _library("other", "other")])
    assert (target / "lib" / "lib" / "main.js").is_file()
    with pytest.raises(bundler.MissingLibrary, match="other"):
        bundler.check(target, [_library("other", "other")])
    bundler.check(target, [_library("lib", "lib"), _library("other", "other", optional=True)])


def test_the_real_list_names_what_the_ui_serves() -> None:
    names = {library.name for library in bundler.read_list()}
    assert {"novnc", "swagger-ui", "uplot"} <= names
    assert not any(library.optional for library in bundler.read_list() if library.name != "xterm")


def test_no_module_of_limen_reads_node_modules_or_the_checkout() -> None:
    package = Path(limen.__file__).parent
    for source in package.rglob("*.py"):
        text = source.read_text()
        assert not re.search(r"[\"'/]node_modules[\"'/]", text), f"{source} names node_modules in code"
        assert "parents[3]" not in text, f"{source} reaches above the package"


def test_a_libraries_module_is_joined_with_its_imports_into_one_file(tmp_path: Path) -> None:
    node_modules, target = tmp_path / "node_modules", tmp_path / "npm"
    _package(node_modules, "lib")
    (node_modules / "lib" / "lib" / "main.js").write_text(
        'import { part } from "./sub/part.js";\nexport default function main() { return part + 1; }\n')
    (node_modules / "lib" / "lib" / "sub" / "part.js").write_text("export const part = 41;\n")
    library = bundler.Library("lib", "lib", ("lib/**/*", "LICENSE"), "lib/main.js", False, "lib/main.js", "one.js")
    with pytest.raises(bundler.MissingLibrary, match="esbuild"):  # no esbuild in these node_modules yet
        bundler.bundle(node_modules, target, [library])
    (node_modules / ".bin").mkdir()
    (node_modules / ".bin" / "esbuild").symlink_to(ROOT / "web" / "node_modules" / "esbuild" / "bin" / "esbuild")

    notes = bundler.bundle(node_modules, target, [library])

    joined = (target / "lib" / "one.js").read_text()
    assert "return 42" in joined and "import" not in joined.split("*/", 1)[1]  # part.js is inside, folded in
    assert (target / "lib" / "one.js.map").is_file() and (target / "lib" / "lib" / "sub" / "part.js").is_file()
    assert any("joined into one.js" in note for note in notes)
    bundler.check(target, [library])
    (target / "lib" / "one.js").unlink()
    with pytest.raises(bundler.MissingLibrary, match=r"one\.js"):
        bundler.check(target, [library])

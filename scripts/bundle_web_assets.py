"""Copies the browser libraries listed in web/assets.toml from web/node_modules into the package
(src/limen/web/npm/<name>/, same layout as in node_modules), so the wheel carries them and limen never
reads node_modules at run time. Run by `make web` and by setup.py on every build.

A library with a ``module`` entry also gets that ES module and everything it imports joined into one file
(``module_to``) by esbuild (web/package.json's devDependencies): the console loads noVNC as one module instead
of 52 fetched level by level. The library's own files are copied as well (licences, and the single modules for
a page that asks for them).

    python3 scripts/bundle_web_assets.py            # copy (replaces what was bundled before)
    python3 scripts/bundle_web_assets.py --check    # only check that every required library is bundled

Exit code 1 names a required library that is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIST = ROOT / "web" / "assets.toml"
NODE_MODULES = ROOT / "web" / "node_modules"
TARGET = ROOT / "src" / "limen" / "web" / "npm"


@dataclass(frozen=True)
class Library:
    name: str
    source: str  # under node_modules
    include: tuple[str, ...]
    check: str
    optional: bool
    module: str | None = None  # an ES module of the library (relative to `from`) to join with its imports
    module_to: str | None = None  # the single file it becomes, relative to the library's copy


class MissingLibrary(Exception):
    pass


def read_list(path: Path = LIST) -> list[Library]:
    with path.open("rb") as file:
        tables = tomllib.load(file)
    return [
        Library(name, table["from"], tuple(table["include"]), table["check"], bool(table.get("optional", False)),
                table.get("module"), table.get("module_to"))
        for name, table in tables.items()
    ]


def _copy_one(library: Library, source: Path, target: Path) -> int:
    copied = 0
    for pattern in library.include:
        for path in sorted(source.glob(pattern)):
            if path.is_file():
                destination = target / path.relative_to(source)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, destination)
                copied += 1
    return copied


def bundle(node_modules: Path = NODE_MODULES, target: Path = TARGET, libraries: list[Library] | None = None
           ) -> list[str]:
    """Replaces ``target`` with fresh copies; returns one line per library. Raises MissingLibrary when a
    required library (or its check file) is absent, leaving ``target`` as it was."""
    notes = []
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".npm-", dir=target.parent))
    try:
        for library in libraries if libraries is not None else read_list():
            source = node_modules / library.source
            if not source.is_dir():
                if library.optional:
                    notes.append(f"{library.name}: skipped, {source} is absent (optional)")
                    continue
                raise MissingLibrary(f"{library.name}: {source} is absent; run `make web` (npm ci in web/)")
            count = _copy_one(library, source, staging / library.name)
            if not (staging / library.name / library.check).is_file():
                raise MissingLibrary(f"{library.name}: {library.check} is not in {source}")
            notes.append(f"{library.name}: {count} files from {source}")
            if library.module and library.module_to:
                _join_module(node_modules, staging / library.name, library.module, library.module_to)
                notes.append(f"{library.name}: {library.module} and its imports joined into {library.module_to}")
        old = target.with_name(".npm-old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return notes


def _join_module(node_modules: Path, copy: Path, module: str, module_to: str) -> None:
    """esbuild joins ``copy/module`` and what it imports into ``copy/module_to`` (minified, with a source map
    naming the copied files), the library's licence named at its top."""
    esbuild = node_modules / ".bin" / "esbuild"
    if not esbuild.is_file():
        raise MissingLibrary(f"esbuild: {esbuild} is absent; run `make web` (npm ci in web/)")
    banner = f"/* {module_to}: {module} of this directory and its imports, joined by esbuild; see LICENSE* here */"
    completed = subprocess.run(
        [str(esbuild), str(copy / module), "--bundle", "--format=esm", "--minify", "--sourcemap=linked",
         "--sources-content=false", "--log-level=warning", f"--banner:js={banner}", f"--outfile={copy / module_to}"],
        capture_output=True, text=True, check=False)
    if completed.returncode != 0 or not (copy / module_to).is_file():
        raise MissingLibrary(f"esbuild could not join {module}: {completed.stderr.strip()[-2000:]}")


def check(target: Path = TARGET, libraries: list[Library] | None = None) -> None:
    """Raises MissingLibrary when a required library is not bundled in ``target``."""
    for library in libraries if libraries is not None else read_list():
        for wanted in (library.check, library.module_to):
            if wanted and not library.optional and not (target / library.name / wanted).is_file():
                raise MissingLibrary(f"{library.name}: {target / library.name / wanted} is missing; "
                                     "build from a checkout after `make web`")


def main(argv: list[str]) -> int:
    try:
        if "--check" in argv:
            check()
        else:
            for note in bundle():
                print(f"bundled {note}")
    except MissingLibrary as exc:
        print(f"bundle_web_assets: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""setuptools hook (the rest is in pyproject.toml): every build first copies the browser libraries of
web/assets.toml from web/node_modules into the package (scripts/bundle_web_assets.py), so the wheel is the
whole product. A build from an sdist has no node_modules: it checks the copies the sdist carries instead."""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))
import bundle_web_assets


def _bundle(*, required: bool = True) -> None:
    try:
        if bundle_web_assets.NODE_MODULES.is_dir():
            for note in bundle_web_assets.bundle():
                print(f"bundled {note}")
        elif required:
            bundle_web_assets.check()
    except bundle_web_assets.MissingLibrary as exc:
        raise SystemExit(f"limen build: {exc}") from None


class BuildPyWithWebAssets(build_py):
    def run(self) -> None:
        # An editable install (make venv, before make web on a fresh machine) serves the checkout's
        # src/limen/web/npm, which `make web` fills: it need not be there yet.
        _bundle(required=not self.editable_mode)
        super().run()


class SdistWithWebAssets(sdist):
    def run(self) -> None:
        _bundle()
        super().run()


setup(cmdclass={"build_py": BuildPyWithWebAssets, "sdist": SdistWithWebAssets})

"""A pytest plugin that ends a run with where each failure was raised, a few lines per failure.

A CI log is kept as its head and its tail: the tracebacks in its middle may be cut away, and pytest's short
summary (in the tail) gives only an exception's first line, which is empty for a bare ``assert`` in a module
pytest does not rewrite (``AssertionError`` and nothing else). These lines come last, after the summary, so
the tail says in which file and line each failure was raised and through which calls.
"""

from __future__ import annotations

import pytest
from _pytest._code.code import ExceptionChainRepr, ReprExceptionInfo, ReprFileLocation, ReprTraceback

ENTRIES_SHOWN = 4  # the innermost calls of each failure's traceback


def _places(longrepr: object) -> list[str]:
    """``path:line: message  > source`` of the innermost entries of the last exception of ``longrepr``."""
    traceback: ReprTraceback | None = None
    if isinstance(longrepr, ExceptionChainRepr) and longrepr.chain:
        traceback = longrepr.chain[-1][0]
    elif isinstance(longrepr, ReprExceptionInfo):
        traceback = longrepr.reprtraceback
    if traceback is None:
        return [str(longrepr).splitlines()[-1][:200]] if str(longrepr) else []
    places = []
    for entry in traceback.reprentries[-ENTRIES_SHOWN:]:
        location = getattr(entry, "reprfileloc", None)
        if isinstance(location, ReprFileLocation):
            lines = getattr(entry, "lines", [])
            source = next((line.lstrip(">").strip() for line in lines if line.startswith(">")), "")
            places.append(f"{location.path}:{location.lineno}: {location.message[:120]}  {source[:120]}".rstrip())
    return places


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    failed = [report for kind in ("failed", "error") for report in reporter.stats.get(kind, [])
              if getattr(report, "longrepr", None) is not None]
    if not failed:
        return
    reporter.write_sep("-", "where each failure was raised (innermost calls last)")
    for report in failed:
        reporter.write_line(f"{report.nodeid} ({report.when})")
        for place in _places(report.longrepr):
            reporter.write_line(f"    {place}")

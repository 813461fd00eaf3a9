"""A size in bytes as people read it, the same in the command line, the doctor and the web pages
(``formatSize`` in ``web/static/js/stats-series.js`` keeps the same rule): the largest binary unit the size
reaches (B, KiB, MiB, GiB, TiB), at most one decimal and no ``.0`` (``1 GiB``, ``1.5 GiB``, ``196.5 MiB``,
``512 MiB``), whole bytes below 1 KiB, thousands grouped (``1,000 B``) as English and Korean both write them.
Pure.
"""

from __future__ import annotations

import math

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_size(size_bytes: float) -> str:
    value = max(0.0, float(size_bytes))
    unit = 0
    while True:
        decimals = 0 if unit == 0 else 1
        # Half up, as the page's Intl.NumberFormat rounds: both sides print the same text for the same bytes.
        rounded = math.floor(value * 10**decimals + 0.5) / 10**decimals
        # 1023.96 MiB rounds to 1024.0: that is 1 GiB, not "1,024 MiB".
        if rounded < 1024 or unit == len(_UNITS) - 1:
            break
        value /= 1024
        unit += 1
    shown = f"{rounded:,.0f}" if rounded.is_integer() else f"{rounded:,.1f}"
    return f"{shown} {_UNITS[unit]}"

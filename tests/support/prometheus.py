"""Reading Prometheus text exposition in tests."""

from __future__ import annotations


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent); labels in any order."""
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        found = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if part)
        if {key: val.strip('"') for key, val in found.items()} == labels:
            return float(value)
    return 0.0

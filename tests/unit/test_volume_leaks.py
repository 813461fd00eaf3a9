"""The integration and e2e tiers' check for disk volumes left in the test pool (tests/support/volume_leaks.py):
what it counts as left behind."""

from __future__ import annotations

from tests.support.volume_leaks import left_behind


def test_only_a_new_volume_no_vm_uses_is_left_behind() -> None:
    noted = frozenset({"limen-test-old-disk0.qcow2"})  # before the run: another's, not this run's to answer for
    now = {"limen-test-old-disk0.qcow2": False, "limen-test-kept-disk0.qcow2": False,
           "limen-test-running-disk0.qcow2": True, "limen-test-a-disk0.qcow2": False}
    assert left_behind(noted, now) == ["limen-test-a-disk0.qcow2", "limen-test-kept-disk0.qcow2"]

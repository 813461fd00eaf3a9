"""The disk volumes a run of the integration or e2e tier leaves in the test pool: each new ``limen-test-…``
volume of pool ``limen-test`` that no VM uses when the run ends fails the run, named.

Such a volume is a test's leak: a VM deleted without ``delete_disks=true`` (limen keeps its disks, as the
README promises) and then missed by the clean-up, which finds the disks of a VM through its definition
(tests.support.libvirt_cleanup); nothing ever deletes it. Which volumes no VM uses is limen's own answer
(:func:`limen.hypervisor.volumes.read_pool`, as ``GET /api/volumes``).

Noted in the process that collected, after collection, and checked at the session's end there: with forked
workers (tests.support.forked_workers) a check in each worker would see the kept disks of the tests the other
workers are still running. Another run on this machine at the same time can still leave one: the report
says so rather than blame this run's tests alone.
"""

from __future__ import annotations

import pytest

from tests.conftest import ISO_DIR, QEMU_URI, TEST_POOL

TEST_VOLUME_PREFIX = "limen-test-"
PLUGIN_NAME = "limen-volume-leaks"


def read_test_volumes() -> dict[str, bool]:
    """The pool's ``limen-test-…`` volumes on the machine's libvirtd: name → whether a VM uses it."""
    import libvirt

    from limen.hypervisor.hosts import DEFAULT_HOST
    from limen.hypervisor.volumes import read_pool

    conn = libvirt.open(QEMU_URI)
    try:
        volumes = read_pool(conn, TEST_POOL, DEFAULT_HOST, ISO_DIR)
    finally:
        conn.close()
    return {volume.name: volume.in_use for volume in volumes if volume.name.startswith(TEST_VOLUME_PREFIX)}


def left_behind(noted: frozenset[str], now: dict[str, bool]) -> list[str]:
    """The volumes of ``now`` that were not ``noted`` and that no VM uses, by name."""
    return sorted(name for name, in_use in now.items() if name not in noted and not in_use)


def watch(session: pytest.Session) -> None:
    """Notes the pool's test volumes before the first test runs, to check them at the session's end; called
    from each tier's ``pytest_collection_finish``, it watches once however many tiers the run holds."""
    manager = session.config.pluginmanager
    if session.config.option.collectonly or not session.items or manager.has_plugin(PLUGIN_NAME):
        return
    manager.register(VolumeLeakWatch(frozenset(read_test_volumes())), PLUGIN_NAME)


class VolumeLeakWatch:
    def __init__(self, noted: frozenset[str]) -> None:
        self.noted = noted
        self.left: list[str] = []

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.left = left_behind(self.noted, read_test_volumes())
        if self.left and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.left:
            return
        terminalreporter.write_sep("=", f"{len(self.left)} disk volume(s) left in pool {TEST_POOL!r}, used by no VM",
                                   red=True)
        for name in self.left:
            terminalreporter.write_line(f"  {name}", red=True)
        terminalreporter.write_line(
            "A test deleted its VM without delete_disks=true, or its clean-up missed the disk (another test run "
            f"on this machine at the same time may have left one). Remove with: virsh vol-delete --pool {TEST_POOL} "
            "NAME")

"""CPU time and memory of a process group, read from /proc (Linux only).

A proxy is measured as its whole process group: websockify forks one process per connection, limen is
one process. CPU seconds are utime + stime of every live member plus the leader's cutime + cstime
(children it has already reaped), so a child counts once whether or not it was reaped in between.
Memory is summed over members: RSS over-counts pages forked children share, PSS divides them fairly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Memory:
    rss: int  # bytes
    pss: int  # bytes
    processes: int


def _stat_fields(pid: int, thread: int | None = None) -> list[str] | None:
    """Fields of /proc/PID/stat (or of one thread's, /proc/PID/task/TID/stat) after the command name (index 0
    is the state, field 3 of proc(5))."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        with open(path, "rb") as stat:
            raw = stat.read()
    except OSError:
        return None
    return raw[raw.rindex(b")") + 2 :].decode().split()


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by the one process ``pid``, all its threads (0 once it is gone)."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def main_thread_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by the main thread of ``pid`` alone (an asyncio server's event loop)."""
    fields = _stat_fields(pid, thread=pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_seconds(pgid: int) -> float:
    """CPU seconds used so far by the group whose leader is ``pgid`` (see the module docstring)."""
    ticks = 0
    for pid in group_members(pgid):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # proc(5): utime 14, stime 15, cutime 16, cstime 17; fields[0] is field 3.
        ticks += int(fields[11]) + int(fields[12])
        if pid == pgid:
            ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def memory(pgid: int) -> Memory:
    rss = pss = count = 0
    for pid in group_members(pgid):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                text = rollup.read()
        except OSError:
            continue
        count += 1
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss += int(line.split()[1]) * 1024
    return Memory(rss=rss, pss=pss, processes=count)


def time_wait_sockets() -> int:
    """TCP sockets in TIME_WAIT on this machine (``tw`` of /proc/net/sockstat's TCP line)."""
    with open("/proc/net/sockstat") as sockstat:
        for line in sockstat:
            fields = line.split()
            if fields and fields[0] == "TCP:" and "tw" in fields:
                return int(fields[fields.index("tw") + 1])
    return 0

"""What a process has used, read from Linux's /proc: CPU time (whole, and per thread) and
peak memory. Shared by the load benchmarks."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_fields(stat: str) -> list[str]:
    """The fields of a /proc stat line after the command name (which may hold spaces)."""
    return stat[stat.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far, all its threads (ended ones too)."""
    fields = _cpu_fields(Path(f"/proc/{pid}/stat").read_text())
    return (int(fields[11]) + int(fields[12])) / TICKS


def thread_times(pid: int) -> dict[int, tuple[str, float]]:
    """Each live thread's name and CPU seconds so far, by OS thread id."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            stat = (task / "stat").read_text()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = _cpu_fields(stat)
            times[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / TICKS)
    return times


def peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0

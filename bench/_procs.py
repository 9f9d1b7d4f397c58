"""What the load benchmarks read about processes (Linux ``/proc``) and the fd limit they raise.

Imported by bench/load.py, bench/serve_load.py and bench/redis_load.py (a script's own folder
is on ``sys.path``).
"""

from __future__ import annotations

import os
import resource
import sys

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def status_kb(field_name: str, pid: int | str = "self") -> int:
    """A ``VmRSS``/``VmHWM``-style line of ``/proc/<pid>/status``, in KiB."""
    path = f"/proc/{pid}/status"
    with open(path) as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field_name} in {path} (this benchmark needs Linux)")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def raise_fd_limit(needed: int, fewer: str) -> None:
    """Raise the soft limit on open files to ``needed``; exit (saying to use fewer ``fewer``)
    when the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        sys.exit(f"{needed} file descriptors needed, the hard limit is {hard}: use fewer {fewer}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))

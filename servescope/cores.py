"""How many cores a process may really use: its CPU affinity, capped by a cgroup CPU quota (a container's
`--cpus` or a Kubernetes CPU limit), not the machine's core count. The server sizes its workers and
threads with it, and the load tester records it for the analysis."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def affinity_cores(pid: int = 0) -> int:
    """Cores the process may be scheduled on (os.sched_getaffinity; the machine's count elsewhere)."""
    try:
        return len(os.sched_getaffinity(pid)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def quota_cores(root: Path = CGROUP_ROOT) -> float | None:
    """The cgroup's CPU quota in cores (cgroup v2 cpu.max, or v1 cfs_quota_us / cfs_period_us);
    None when there is none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cores(pid: int = 0, root: Path = CGROUP_ROOT) -> int:
    """Whole cores this process may use: its affinity, capped by the quota rounded up, at least 1."""
    cores = affinity_cores(pid)
    quota = quota_cores(root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)

"""Toil's ``toil.lib.threading.cpu_count``: the CPUs this process may use."""

from __future__ import annotations

import functools
import math
import os


def _cgroup_limit() -> float:
    """The CPU quota of this process's cgroup (v2 ``cpu.max`` or v1 quota / period); inf if none."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as quota_file, \
                open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as period_file:
            quota_us, period_us = int(quota_file.read()), int(period_file.read())
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return math.inf


@functools.cache
def cpu_count() -> int:
    """Whole CPUs available, rounded up, at least 1: the CPUs this process may run on (hyperthreads
    count), or its cgroup's quota if that is lower. Cached, as Toil's."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, math.ceil(min(available, _cgroup_limit())))

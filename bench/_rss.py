"""Peak resident memory of this process, for the memory benchmarks (run each measurement in a fresh child).

CPU torch allocations are invisible to tracemalloc, so the benchmarks read ``VmHWM`` (peak RSS)
from ``/proc/self/status`` after resetting it to the current RSS through ``clear_refs``.
"""

from __future__ import annotations

from pathlib import Path


def proc_status(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``, ...) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> int:
    """Reset the peak to the current RSS (where the kernel allows) and return that RSS: the baseline."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return proc_status("VmRSS")


def peak_increase(baseline: int) -> int:
    """Peak RSS since :func:`reset_peak` above its baseline, in bytes."""
    return proc_status("VmHWM") - baseline

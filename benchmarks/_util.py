"""Helpers shared by the benchmarks: timing (interleaved, side by side), progress lines, and peak memory read
from /proc (Linux)."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Median wall time of ``repeat`` calls, and the last result."""
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


_START = time.perf_counter()


def step(message: str) -> None:
    """One progress line, with the time since the benchmark started (benchmarks run for minutes)."""
    print(f"[{time.perf_counter() - _START:7.1f} s] {message}", file=sys.stderr, flush=True)


def side_by_side(cases: dict[str, Callable[[], Any]], repeat: int = 3) -> dict[str, float]:
    """Median wall time of each case, the cases run in turn ``repeat`` times (a, b, c, a, b, c, ...) so that
    load from other processes, disk and cache state weigh on each alike; a progress line per round."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(repeat):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
        step(f"round {i + 1}/{repeat}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()))
    return {name: statistics.median(t) for name, t in times.items()}


def rss_bytes() -> int:
    """Current resident set size."""
    return _status("VmRSS")


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_bytes() -> int:
    """Peak resident set size since the last reset."""
    return _status("VmHWM")


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def verdict(ratio: float, target: float) -> str:
    return "PASS" if ratio <= target else "FAIL"

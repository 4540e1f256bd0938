"""Wall time of a call for the benchmarks: the best of several repeats (the least disturbed by other load)."""

from __future__ import annotations

import time
from typing import Callable


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """The shortest wall time of ``repeats`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best

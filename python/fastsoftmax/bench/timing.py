"""Interleaved timing and the memory-copy bandwidth of the machine.

Implementations compared with each other are timed in rounds: in each round
every one runs once (its inner loop of ``n`` calls, ``n`` sized so one sample
lasts about ``min_time``), round-robin, starting one further along each round.
A slow phase of the machine (another process, frequency changes) then touches
every implementation alike, and the medians over the rounds, and even more
their ratios, barely move.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np


def _calibrate(fn: Callable[[], object], min_time: float) -> int:
    """Warm fn up (one call), then the number of calls that lasts about min_time."""
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
        if t >= min_time or n >= 1 << 20:
            return n
        n *= 2 if t == 0 else max(2, min(10, int(min_time / max(t, 1e-9)) + 1))


def time_interleaved_samples(
    fns: Sequence[Callable[[], object]], rounds: int, min_time: float
) -> list[list[float]]:
    """Seconds per call of each fn, one sample per round, timed in interleaved rounds."""
    loops = [_calibrate(fn, min_time) for fn in fns]
    samples: list[list[float]] = [[] for _ in fns]
    k = len(fns)
    for r in range(rounds):
        for j in range(k):
            i = (r + j) % k
            fn, n = fns[i], loops[i]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[i].append((time.perf_counter() - t0) / n)
    return samples


def time_interleaved(
    fns: Sequence[Callable[[], object]], rounds: int, min_time: float
) -> list[float]:
    """Median seconds per call of each fn, timed in interleaved rounds."""
    return [float(np.median(s)) for s in time_interleaved_samples(fns, rounds, min_time)]


def copy_bandwidth(nbytes: int, rounds: int, min_time: float) -> dict[str, Any]:
    """One thread's memory-copy bandwidth: np.copyto between two arrays of nbytes each.

    Bytes moved per copy are 2 * nbytes (read the source, write the destination),
    counted the same way as the operations' bytes read + written. The arrays
    should be several times larger than the last-level cache.
    """
    src = np.ones(nbytes // 8)
    dst = np.zeros_like(src)  # both written once: no page faults in the timing
    samples = time_interleaved_samples([partial(np.copyto, dst, src)], rounds, min_time)[0]
    t = float(np.median(samples))
    return {
        "method": "np.copyto(dst, src), float64, one thread; bytes = read + written",
        "array_bytes": int(src.nbytes),
        "time_s": t,
        "samples_s": samples,
        "GBps": 2 * src.nbytes / t / 1e9,
    }

"""fastsoftmax.dask against the in-memory functions (issue 18's speed targets).

    python bench/dask_arrays.py lse [--rows 8192] [--classes 32000] [--chunks 8] [--rounds 7]

``lse``: logsumexp of an in-memory (rows, classes) float32 dask array cut into ``chunks``
chunks of the class axis, on dask's threaded scheduler (one worker thread per core),
against ``fs.logsumexp`` of the NumPy array (fastsoftmax's threads, one per core), the
two taking turns; prints the median times and the throughput ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import dask
import dask.array as da
import fastsoftmax as fs
import fastsoftmax.dask as fsd
import numpy as np


def lse(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.classes), dtype=np.float32) * 4
    per = -(-args.classes // args.chunks)
    dx = da.from_array(x, chunks=(args.rows, per))
    graph = fsd.logsumexp(dx)
    want = fs.logsumexp(x)
    cores = len(os.sched_getaffinity(0))
    with dask.config.set(scheduler="threads", num_workers=cores):
        got = graph.compute()
        assert np.array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=2e-7)
        mem, lazy = [], []
        for _ in range(args.rounds):
            t = time.perf_counter()
            fs.logsumexp(x)
            mem.append(time.perf_counter() - t)
            t = time.perf_counter()
            graph.compute()
            lazy.append(time.perf_counter() - t)
    m, d = statistics.median(mem), statistics.median(lazy)
    gb = x.nbytes / 1e9
    print(f"logsumexp {x.shape} float32, {args.chunks} chunks of the class axis, {cores} cores")
    print(f"  fs.logsumexp (NumPy array): {m * 1e3:8.2f} ms  {gb / m:6.2f} GB/s")
    print(f"  fsd.logsumexp (threaded)  : {d * 1e3:8.2f} ms  {gb / d:6.2f} GB/s")
    print(f"  dask throughput / in-memory: {m / d:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    q = sub.add_parser("lse")
    q.add_argument("--rows", type=int, default=8192)
    q.add_argument("--classes", type=int, default=32000)
    q.add_argument("--chunks", type=int, default=8)
    q.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    lse(args)


if __name__ == "__main__":
    main()

"""Arrays that do not fit in cache against a copy of them: issue 17 parts 2 and 3's table.

    taskset -c 1 python bench/out_of_cache.py [--before BEFORE_PKG] [--rounds 7] [--repeats 3]
        [--dtype float32|float64|float16|bfloat16] [--target avx2] [--ops ...] [--shapes ...]

One thread, float32 (or --dtype), every output into a preallocated array: for each
shape, the median time of `np.copyto(o, x)` and of fastsoftmax's softmax and log_softmax
with `out=`, softmax_backward and log_softmax_backward with `out=`, and cross_entropy
(mean, integer labels) with its gradient in place, and each op's ratio to the copy. The
in-place cross-entropy runs on one scratch array that it keeps overwriting with its
gradient (finite values in [-1, 1]: the same work as logits, without a copy to
subtract). The targets at (8192, 1024), (256, 32000), (32, 128256): softmax <= 1.15x,
1.2x and 1.5x the copy, the cross-entropy in place <= 0.95x. Two shapes in cache,
(1024, 1000) and (4096, 128), show that arrays in cache did not get slower.

Each op of each build is timed in rounds of its own, interleaved with the copy: what an op
leaves in the caches (the 32 MiB L3 holds much of these arrays, and streaming stores
evict them) then never meets another op or build. Its figure is the median of its ratios
to the copy over those rounds, times the median copy. With --before, a second installed
``fastsoftmax`` package folder is loaded beside the current one (as in
interleave_builds.py) and timed the same way, the two builds taking turns --repeats
times: the table then also gives each op's after/before ratio (of those ratios to the
copy).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import fastsoftmax
import numpy as np
from fastsoftmax.bench.timing import time_interleaved_samples
from interleave_builds import builds_of

SHAPES = [(8192, 1024), (256, 32000), (32, 128256), (1024, 1000), (4096, 128)]
OPS = ["softmax", "log_softmax", "softmax_bw", "log_softmax_bw", "ce+grad"]


def op_calls(
    fs: ModuleType,
    x: np.ndarray,
    g: np.ndarray,
    y: np.ndarray,
    o: np.ndarray,
    labels: np.ndarray,
) -> dict[str, Callable[[], object]]:
    scratch = x.copy()
    return {
        "softmax": lambda: fs.softmax(x, axis=-1, out=o),
        "log_softmax": lambda: fs.log_softmax(x, axis=-1, out=o),
        "softmax_bw": lambda: fs.softmax_backward(g, y, axis=-1, out=o),
        "log_softmax_bw": lambda: fs.log_softmax_backward(g, y, axis=-1, out=o),
        "ce+grad": lambda: fs.cross_entropy(scratch, labels, return_grad=True, inplace_grad=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another build's fastsoftmax package folder")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=0.02)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--ops", default=",".join(OPS))
    parser.add_argument("--shapes", help="e.g. 8192x1024,256x32000")
    parser.add_argument("--target", help="a SIMD target for both builds (avx2, baseline, ...)")
    args = parser.parse_args()
    builds = builds_of(args.before, args.target)
    ops = args.ops.split(",")
    shapes = SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    if args.dtype == "bfloat16":
        import ml_dtypes

        dtype = np.dtype(ml_dtypes.bfloat16)
    else:
        dtype = np.dtype(args.dtype)
    print(f"fastsoftmax {fastsoftmax.simd_target()}, {args.dtype}, threads ", end="")
    print(f"{fastsoftmax.get_num_threads()}, medians of {args.repeats} x {args.rounds} rounds;")
    print("ms per call, (ratio to np.copyto)")
    head = f"{'shape':>13} {'copy':>7} " + " ".join(f"{op:>16}" for op in ops)
    if args.before:
        head += "  after/before: " + " ".join(f"{op:>8}" for op in ops)
    print(head)
    for shape in shapes:
        rng = np.random.default_rng(shape[1])
        x = (rng.standard_normal(shape) * 3).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        y = fastsoftmax.softmax(x)  # (the same arrays for both builds)
        o = np.empty_like(x)
        labels = rng.integers(0, shape[1], shape[0])
        # each op of each build timed in rounds of its own, with the copy (what one op
        # or build leaves in the caches then never meets another), the builds taking
        # turns --repeats times (a drift of the machine then falls on both)
        ratios: dict[str, list[float]] = {}
        copies: list[float] = []
        calls = {build: op_calls(fs, x, g, y, o, labels) for build, fs in builds.items()}
        for op in ops:
            for _ in range(args.repeats):
                for build in builds:
                    fns: list[Callable[[], object]] = [
                        lambda x=x, o=o: np.copyto(o, x),
                        calls[build][op],
                    ]
                    copy, t = map(
                        np.asarray, time_interleaved_samples(fns, args.rounds, args.min_time)
                    )
                    ratios.setdefault(f"{build} {op}", []).extend(t / copy)
                    copies.append(float(np.median(copy)) * 1e3)
        med = {"copy": float(np.median(copies))}
        med.update({name: float(np.median(r)) * med["copy"] for name, r in ratios.items()})
        line = f"{'x'.join(map(str, shape)):>13} {med['copy']:7.3f} "
        line += " ".join(
            f"{med['after ' + op]:7.3f} ({med['after ' + op] / med['copy']:5.2f})" for op in ops
        )
        if args.before:
            line += "                " + " ".join(
                f"{med['after ' + op] / med['before ' + op]:8.2f}" for op in ops
            )
        print(line, flush=True)


if __name__ == "__main__":
    main()

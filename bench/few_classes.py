"""Rows of few classes against NumPy's exp: issue 17 part 1's table.

    taskset -c 1 python bench/few_classes.py [--before BEFORE_PKG] [--rounds 21]

One thread, float32 (or --dtype), 131,072 elements per array, every output into a
preallocated array: for each number of classes C, the median time per element of
`np.exp(x, out=o)`, `np.copyto(o, x)`, fastsoftmax's softmax, log_softmax and
logsumexp with `out=`, and cross_entropy (mean, integer labels) with its gradient in
place (on a scratch copy of the logits: the copy's own time, measured in the same
rounds, is subtracted), and each op's ratio to the exp. The targets: softmax,
log_softmax and logsumexp <= 1.5x the exp, the cross-entropy <= 2x.

With --before, a second installed ``fastsoftmax`` package folder is loaded beside the
current one (as in interleave_builds.py) and its calls join the same interleaved
rounds: the table then also gives each op's after/before ratio.
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

CLASSES = [1, 2, 3, 4, 5, 8, 10, 16, 33, 64]
ELEMENTS = 131072
OPS = ["softmax", "log_softmax", "logsumexp", "ce+grad"]


def op_calls(
    fs: ModuleType, x: np.ndarray, o: np.ndarray, lse: np.ndarray, labels: np.ndarray
) -> dict[str, Callable[[], object]]:
    scratch = x.copy()

    def ce() -> object:
        np.copyto(scratch, x)
        return fs.cross_entropy(scratch, labels, return_grad=True, inplace_grad=True)

    return {
        "softmax": lambda: fs.softmax(x, axis=-1, out=o),
        "log_softmax": lambda: fs.log_softmax(x, axis=-1, out=o),
        "logsumexp": lambda: fs.logsumexp(x, axis=-1, out=lse),
        "ce+grad": ce,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another build's fastsoftmax package folder")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--min-time", type=float, default=0.01)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--classes", default=",".join(map(str, CLASSES)))
    parser.add_argument("--target", help="a SIMD target for both builds (avx2, baseline, ...)")
    args = parser.parse_args()
    builds = builds_of(args.before, args.target)
    dtype = np.dtype(args.dtype)
    print(f"fastsoftmax {fastsoftmax.simd_target()}, {args.dtype}, {ELEMENTS} elements, ", end="")
    print(f"medians of {args.rounds} interleaved rounds; ns per element, (ratio to np.exp)")
    head = f"{'C':>3} {'exp':>6} {'copy':>6} " + " ".join(f"{op:>15}" for op in OPS)
    if args.before:
        head += "  after/before: " + " ".join(f"{op:>11}" for op in OPS)
    print(head)
    for c in (int(v) for v in args.classes.split(",")):
        rows = ELEMENTS // c
        rng = np.random.default_rng(c)
        x = (rng.standard_normal((rows, c)) * 3).astype(dtype)
        o = np.empty_like(x)
        lse = np.empty(rows, dtype)
        labels = rng.integers(0, c, rows)
        names = ["exp", "copy"]
        fns: list[Callable[[], object]] = [
            lambda x=x, o=o: np.exp(x, out=o),
            lambda x=x, o=o: np.copyto(o, x),
        ]
        for build, fs in builds.items():
            for op, fn in op_calls(fs, x, o, lse, labels).items():
                names.append(f"{build} {op}")
                fns.append(fn)
        samples = time_interleaved_samples(fns, args.rounds, args.min_time)
        med = {
            name: float(np.median(s)) / (rows * c) * 1e9
            for name, s in zip(names, samples, strict=True)
        }
        for build in builds:  # the cross-entropy's scratch copy
            med[f"{build} ce+grad"] -= med["copy"]
        line = f"{c:>3} {med['exp']:6.3f} {med['copy']:6.3f} "
        line += " ".join(
            f"{med['after ' + op]:6.3f} ({med['after ' + op] / med['exp']:5.2f})" for op in OPS
        )
        if args.before:
            line += "                " + " ".join(
                f"{med['after ' + op] / med['before ' + op]:11.2f}" for op in OPS
            )
        print(line, flush=True)


if __name__ == "__main__":
    main()

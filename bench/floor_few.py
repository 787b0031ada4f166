"""The floor of issue 17 part 1's cross-entropy: few classes against np.exp.

    taskset -c 1 python bench/floor_few.py [--rounds 21] [--classes 2,3,4,5,8]

One thread, float32, 131,072 elements per array (as bench/few_classes.py): the median
time per element of `np.exp(x, out=o)`, of fastsoftmax's cross_entropy (mean, integer
labels) with its gradient in place, and of bench/floor_few.cpp's kernel for the same
call, with 1, 2 and 4 groups of 16 rows through each step together, each on a scratch
copy of the logits refilled before every call (the copy's own time, measured in the
same rounds, is subtracted). The floor's loss is checked against fastsoftmax's (within
1e-6 relative) and its gradient bit for bit. The issue's target: <= 2x the exp.
"""

from __future__ import annotations

import argparse
import ctypes
import tempfile
from collections.abc import Callable
from pathlib import Path

import fastsoftmax as fs
import numpy as np
from fastsoftmax.bench.timing import time_interleaved_samples
from floor_half import compile_floor

ELEMENTS = 131072
GROUPS = (1, 2, 4)


def one_count(c: ctypes.CDLL, n: int, rounds: int, min_time: float) -> str:
    """The table's line for rows of n classes."""
    rows = ELEMENTS // n
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((rows, n)) * 3).astype(np.float32)
    labels = rng.integers(0, n, rows)
    o, scratch = np.empty_like(x), x.copy()
    ps, pl = scratch.ctypes.data, labels.ctypes.data
    want = fs.cross_entropy(scratch, labels, return_grad=True, inplace_grad=True)
    for g in GROUPS:
        np.copyto(scratch, x)
        got = c.ce_few_f32(ps, pl, rows, n, g)
        assert abs(got - float(want[0])) <= 1e-6 * abs(float(want[0])), (n, g, got)
        assert np.array_equal(scratch, want[1]), (n, g)

    def floor(g: int) -> Callable[[], object]:
        def run() -> object:
            np.copyto(scratch, x)
            return c.ce_few_f32(ps, pl, rows, n, g)

        return run

    def ours() -> object:
        np.copyto(scratch, x)
        return fs.cross_entropy(scratch, labels, return_grad=True, inplace_grad=True)

    fns: list[Callable[[], object]] = [
        lambda: np.exp(x, out=o),
        lambda: np.copyto(o, x),
        ours,
        *(floor(g) for g in GROUPS),
    ]
    samples = time_interleaved_samples(fns, rounds, min_time)
    med = [float(np.median(s)) / x.size * 1e9 for s in samples]
    med = med[:2] + [t - med[1] for t in med[2:]]  # (the scratch copy's time)
    cells = [f"{med[0]:14.3f}", f"{med[1]:14.3f}"]
    cells += [f"{t:6.3f} ({t / med[0]:5.2f})" for t in med[2:]]
    return f"{n:>3} " + " ".join(cells)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--min-time", type=float, default=0.01)
    p.add_argument("--classes", default="2,3,4,5,8")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        c = compile_floor("floor_few", Path(tmp))
        c.ce_few_f32.argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_size_t] * 2
        c.ce_few_f32.argtypes += [ctypes.c_int]
        c.ce_few_f32.restype = ctypes.c_double
        print(f"fastsoftmax {fs.simd_target()}, float32, {ELEMENTS} elements, medians of ", end="")
        print(f"{args.rounds} interleaved rounds; ns per element, (ratio to np.exp)")
        names = ["exp", "copy", "fs"] + [f"floor G={g}" for g in GROUPS]
        print(f"{'C':>3} " + " ".join(f"{n:>14}" for n in names))
        for n in (int(v) for v in args.classes.split(",")):
            print(one_count(c, n, args.rounds, args.min_time), flush=True)


if __name__ == "__main__":
    main()

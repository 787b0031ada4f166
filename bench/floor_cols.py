"""The floor of issue 17 part 1's AVX2 target at 16 to 64 classes: softmax against np.exp.

    taskset -c 1 python bench/floor_cols.py [--before PKG] [--rounds 21] [--classes 16,64]

One thread, float32, about 131,072 elements per array (as bench/few_classes.py; here a
whole number of groups of 8 rows), `out=`: the median time per element of
`np.exp(x, out=o)`, of fastsoftmax's softmax on the avx2 target, of bench/floor_cols.cpp's
kernel for the same call by tiles of 8 rows and row by row, and with --before, of
another installed fastsoftmax package (the issue's "today", 81c4564) on avx2 too, all in
the same interleaved rounds. The floor's outputs are checked first: within 2 ulp of the
correctly rounded softmax, and the floor of the library's path (tiles up to 48 classes,
rows beyond) bit for bit fastsoftmax's. The issue's AVX2 target: 2x faster than 81c4564.
"""

from __future__ import annotations

import argparse
import ctypes
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fastsoftmax.bench.timing import time_interleaved_samples
from floor_half import compile_floor
from interleave_builds import builds_of

ELEMENTS = 131072


def one_count(c: ctypes.CDLL, builds: dict, n: int, rounds: int, min_time: float) -> str:
    """The table's line for rows of n classes."""
    rows = ELEMENTS // n // 8 * 8
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((rows, n)) * 3).astype(np.float32)
    o, f = np.empty_like(x), np.empty_like(x)
    px, pf = x.ctypes.data, f.ctypes.data
    e = np.exp(x.astype(np.float64) - x.max(axis=-1, keepdims=True))
    exact = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    want = builds["after"].softmax(x, axis=-1)
    same = []
    for tiles in (1, 0):
        f.fill(np.nan)
        assert c.softmax_cols_f32(px, pf, rows, n, tiles) == 0, n
        np.testing.assert_array_max_ulp(f, exact, 2)
        same.append(np.array_equal(f, want))
    assert any(same), n  # (the library's own path, bit for bit)

    def floor(tiles: int) -> Callable[[], object]:
        return lambda: c.softmax_cols_f32(px, pf, rows, n, tiles)

    fns: list[Callable[[], object]] = [lambda: np.exp(x, out=o)]
    fns += [lambda fs=fs: fs.softmax(x, axis=-1, out=o) for fs in builds.values()]
    fns += [floor(1), floor(0)]
    samples = time_interleaved_samples(fns, rounds, min_time)
    med = [float(np.median(s)) / x.size * 1e9 for s in samples]
    cells = [f"{med[0]:8.3f}"] + [f"{t:6.3f} ({t / med[0]:4.2f})" for t in med[1:]]
    if "before" in builds:
        cells.append(f"{med[2] / med[1]:8.2f} {med[2] / min(med[3:]):8.2f}")
    return f"{n:>3} " + " ".join(cells)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, help="another build's fastsoftmax package folder")
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--min-time", type=float, default=0.01)
    p.add_argument("--classes", default="16,24,32,48,64")
    args = p.parse_args()
    builds = builds_of(args.before, "avx2")
    with tempfile.TemporaryDirectory() as tmp:
        c = compile_floor("floor_cols", Path(tmp), "avx2")
        c.softmax_cols_f32.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_size_t] * 2
        c.softmax_cols_f32.argtypes += [ctypes.c_int]
        print(f"softmax, avx2, float32, about {ELEMENTS} elements, out=, medians of ", end="")
        print(f"{args.rounds} interleaved rounds; ns per element, (ratio to np.exp)")
        names = ["exp", "fs"] + (["fs before"] if args.before else [])
        names += ["floor tiles", "floor rows"]
        head = f"{'C':>3} {names[0]:>8} " + " ".join(f"{v:>13}" for v in names[1:])
        if args.before:
            head += "  before/fs before/floor"
        print(head)
        for n in (int(v) for v in args.classes.split(",")):
            print(one_count(c, builds, n, args.rounds, args.min_time), flush=True)


if __name__ == "__main__":
    main()

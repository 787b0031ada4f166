"""The floor of issue 17 part 1's AVX2 target at 6 to 64 classes: softmax against np.exp.

    taskset -c 1 python bench/floor_cols.py [--before PKG] [--rounds 21] [--classes 6,16,64]

One thread, float32, about 131,072 elements per array (as bench/few_classes.py; here a
whole number of groups of 8 rows), `out=`: the median time per element of
`np.exp(x, out=o)`, of fastsoftmax's softmax on the avx2 target, of bench/floor_cols.cpp's
kernel for the same call by tiles of 8 rows and row by row (8, 16, ... classes only),
and with --before, of another installed fastsoftmax package (the issue's "today",
81c4564) on avx2 too, all in the same interleaved rounds. The floor's outputs are checked
first: within 2.5 ulp of the exact softmax (the README's "about 2.4 ulp"), and the floor
of the library's path (tiles up to 48 classes, rows beyond) bit for bit fastsoftmax's.
The issue's AVX2 target: 2x faster than 81c4564.
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


def padded(rows: int, n: int) -> np.ndarray:
    """A float32 (rows, n) array with 8 elements of room after it."""
    return np.empty(rows * n + 8, np.float32)[: rows * n].reshape(rows, n)


def one_count(c: ctypes.CDLL, builds: dict, n: int, rounds: int, min_time: float) -> str:
    """The table's line for rows of n classes."""
    rows = ELEMENTS // n // 8 * 8
    rng = np.random.default_rng(n)
    # (8 elements past each array: the floor's tiles below 8 classes read and write there)
    x = padded(rows, n)
    x[...] = rng.standard_normal((rows, n)) * 3
    o, f = np.empty_like(x), padded(rows, n)
    px, pf = x.ctypes.data, f.ctypes.data
    e = np.exp(x.astype(np.float64) - x.max(axis=-1, keepdims=True))
    exact = e / e.sum(axis=-1, keepdims=True)
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    want = builds["after"].softmax(x, axis=-1)
    kinds, same = [], []
    for tiles in (1, 0):  # (by rows: whole vectors only, 8, 16, ... classes)
        f.fill(np.nan)
        if c.softmax_cols_f32(px, pf, rows, n, tiles) != 0:
            continue
        err = float(np.max(np.abs(f - exact) / ulp))
        assert err <= 2.5, (n, tiles, err)  # (the README's "about 2.4 ulp")
        kinds.append(tiles)
        same.append(np.array_equal(f, want))
    assert any(same), n  # (the library's own path, bit for bit)

    def floor(tiles: int) -> Callable[[], object]:
        return lambda: c.softmax_cols_f32(px, pf, rows, n, tiles)

    fns: list[Callable[[], object]] = [lambda: np.exp(x, out=o)]
    fns += [lambda fs=fs: fs.softmax(x, axis=-1, out=o) for fs in builds.values()]
    fns += [floor(tiles) for tiles in kinds]
    samples = time_interleaved_samples(fns, rounds, min_time)
    med = [float(np.median(s)) / x.size * 1e9 for s in samples]
    med += [float("nan")] * (2 - len(kinds))
    cells = [f"{med[0]:8.3f}"] + [f"{t:6.3f} ({t / med[0]:4.2f})" for t in med[1:]]
    if "before" in builds:
        cells.append(f"{med[2] / med[1]:8.2f} {med[2] / np.nanmin(med[3:]):8.2f}")
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

"""The floor of issue 17's targets for arrays from memory, measured: the fastest structures
written for float32 softmax ``out=`` and the cross-entropy with its gradient in place, at the
library's accuracy (bench/floor_memory.cpp, compiled here with g++ against the repository's
own headers), against fastsoftmax and ``np.copyto``, interleaved.

    taskset -c 1 python bench/floor_memory.py [--rounds 9]

The targets (issue 17): softmax ``out=`` at (8192, 1024), (256, 32000), (32, 128256) within
1.15x, 1.2x and 1.5x of ``np.copyto`` of the same array, the cross-entropy with its gradient
in place within 0.95x. Per shape, one thread, float32 logits 3 N(0, 1); arrays on 64-byte lines; every
candidate is checked first (softmax within 2.4 ulp of the exact value; the losses equal to fastsoftmax's
within 1e-6, the gradient within 32 eps of its largest entry), then timed in interleaved
rounds (the order rotating), medians, as ratios to ``np.copyto``:

* ``fs``: ``fs.softmax(x, out=y)``; ``fs.cross_entropy(x, labels, return_grad=True,
  inplace_grad=True)``;
* ``floor``: each row read once from memory block by block (8 KiB blocks: the block's
  maximum, then its exponentials against the running maximum); softmax: the exponentials
  into a scratch row, then scaled into y with non-temporal stores, either after the row
  (``rows``) or inside the next row's loop (``interleaved``, two scratch rows taking turns);
  ``+pf``: software prefetch 32 KiB ahead; ``two passes``: log_softmax's structure, a read
  pass (block maxima and the sum of the exponentials, nothing stored), then exp(x - max) again
  times 1 / sum from L2, two exponentials an element; the cross-entropy: the exponentials in
  place, then the row scaled in place while in L1/L2.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import tempfile
from pathlib import Path

import fastsoftmax as fs
import numpy as np
from floor_half import compile_floor, cpu_flags, report, timed

ROOT = Path(__file__).resolve().parent.parent
SHAPES = [(8192, 1024), (256, 32000), (32, 128256)]
AHEAD = 8192  # elements: 32 KiB


def build(folder: Path) -> ctypes.CDLL:
    """floor_memory.cpp as a shared library, its functions' argument types set."""
    c = compile_floor("floor_memory", folder)
    p, z = ctypes.c_void_p, ctypes.c_size_t
    c.softmax_f32.argtypes = [p, p, z, z, ctypes.c_int, ctypes.c_int, z]
    c.ce_f32.argtypes = [p, p, z, z, z]
    c.ce_f32.restype = ctypes.c_double
    return c


def aligned(a: np.ndarray) -> np.ndarray:
    """A copy of a whose data starts on a 64-byte line (the floor's streaming stores need it)."""
    raw = np.empty(a.nbytes + 64, np.uint8)
    off = (-raw.ctypes.data) % 64
    out = raw[off : off + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def run_shape(c: ctypes.CDLL, shape: tuple[int, int], rounds: int) -> None:
    """Check, then time, the candidates at one shape."""
    from reference import ref_softmax, ulp_error

    rows, n = shape
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    x, y = aligned(x), aligned(np.empty_like(x))
    px, py = x.ctypes.data, y.ctypes.data
    ref = ref_softmax(x)
    ok = ref > 1e-30
    variants = {
        "rows": (0, 1, 0),
        "interleaved": (1, 1, 0),
        "interleaved+pf": (1, 1, AHEAD),
        "interleaved, stores": (1, 0, 0),
        "two passes+pf": (2, 1, AHEAD),
    }
    for name, (mode, stream, ahead) in variants.items():
        y.fill(np.nan)
        c.softmax_f32(px, py, rows, n, mode, stream, ahead)
        assert ulp_error(y[ok], ref[ok], np.float32).max() <= 2.4, name
        assert not np.isnan(y).any(), name
    softmax = {
        "copy": lambda: np.copyto(y, x),
        "fs": lambda: fs.softmax(x, out=y),
        **{
            f"floor {name}": (lambda m=m, s=s, a=a: c.softmax_f32(px, py, rows, n, m, s, a))
            for name, (m, s, a) in variants.items()
        },
    }
    report(shape, "softmax out=", timed(softmax, rounds, x.size), "copy")

    # The arithmetic alone: the same rows, as few as make at most 512 KiB, so that they stay
    # in L2 between calls; each time scaled to the whole array's element count.
    k = min(rows, max(1, (512 << 10) // (4 * n)))
    xs, ys = aligned(x[:k]), aligned(y[:k])
    ps, qs = xs.ctypes.data, ys.ctypes.data
    small = {
        "fs": lambda: fs.softmax(xs, out=ys),
        "floor interleaved, stores": lambda: c.softmax_f32(ps, qs, k, n, 1, 0, 0),
        "floor rows, stores": lambda: c.softmax_f32(ps, qs, k, n, 0, 0, 0),
    }
    med = {name: t * rows / k for name, t in timed(small, rounds, xs.size).items()}
    report(shape, f"softmax, {k} rows in L2, scaled to the array", med, "fs")

    labels = rng.integers(0, n, rows).astype(np.int64)
    pl = labels.ctypes.data
    for ahead in (0, AHEAD):
        a, b = x.copy(), x.copy()
        mine = c.ce_f32(a.ctypes.data, pl, rows, n, ahead)
        theirs = float(fs.cross_entropy(b, labels, return_grad=True, inplace_grad=True)[0])
        assert abs(mine - theirs) <= 1e-6 * abs(theirs), (mine, theirs)
        assert np.abs(a - b).max() <= 32 * np.finfo(np.float32).eps * np.abs(b).max()
    # (each keeps overwriting its own array with the gradient, as the in-place call does)
    xf, f0, f1 = x.copy(), x.copy(), x.copy()
    p0, p1 = f0.ctypes.data, f1.ctypes.data
    ce = {
        "copy": lambda: np.copyto(y, x),
        "fs": lambda: fs.cross_entropy(xf, labels, return_grad=True, inplace_grad=True),
        "floor": lambda: c.ce_f32(p0, pl, rows, n, 0),
        "floor+pf": lambda: c.ce_f32(p1, pl, rows, n, AHEAD),
    }
    report(shape, "ce + grad in place", timed(ce, rounds, x.size), "copy")
    xk, fk, lk = aligned(x[:k]), aligned(x[:k]), labels[:k].copy()
    pk, plk = fk.ctypes.data, lk.ctypes.data
    small = {
        "fs": lambda: fs.cross_entropy(xk, lk, return_grad=True, inplace_grad=True),
        "floor": lambda: c.ce_f32(pk, plk, k, n, 0),
    }
    med = {name: t * rows / k for name, t in timed(small, rounds, xk.size).items()}
    report(shape, f"ce + grad, {k} rows in L2, scaled to the array", med, "fs")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--shapes", help="e.g. 8192x1024,256x32000")
    args = p.parse_args()
    if not {"avx512f", "avx512bw"} <= cpu_flags():
        sys.exit("bench/floor_memory.py needs an x86-64 CPU with AVX-512 (Linux)")
    shapes = SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]  # type: ignore[misc]
    sys.path.insert(0, str(ROOT / "tests"))
    fs.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        c = build(Path(tmp))
        for shape in shapes:
            run_shape(c, shape, args.rounds)


if __name__ == "__main__":
    main()

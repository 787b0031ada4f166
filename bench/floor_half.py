"""The floor of issue 13's half-precision speed target, measured: the simplest kernels at the
library's accuracy (bench/floor_half.cpp, compiled here with g++ against the repository's
own headers) against fastsoftmax, interleaved.

    taskset -c 1 python bench/floor_half.py [--rounds 9]

The target asks bfloat16 and float16 softmax with ``out=`` and the cross-entropy's loss with
an in-place gradient for at most 0.6x the float32 time of the same call. The float32
kernels run from memory at the rate they run in cache (compute-bound), so halving the bytes
can only help as much as the arithmetic per element shrinks; this puts a number on that.

Per shape, one thread, float32 logits 3 N(0, 1) and their bfloat16 copy; every candidate is
checked first (softmax: the floor's float32 within 2.4 ulp of the exact value, its bfloat16
within 1 ulp of the correctly rounded value; the cross-entropy's losses agree with
fastsoftmax's, and the float32 gradients within 32 eps of the largest), then timed
in interleaved rounds (the order rotating), medians, as a ratio to fastsoftmax's float32 call:

* ``fs f32`` / ``fs bf16``: ``fs.softmax(x, out=y)``, or
  ``fs.cross_entropy(x, labels, return_grad=True, inplace_grad=True)``;
* ``floor f32``: three passes per row (maximum; exp(x - max) stored with their double sum;
  the scaling), non-temporal stores for arrays past 8 MiB;
* ``floor bf16 int`` / ``floor bf16 insn``: the same from and to bfloat16 (a float scratch
  row), narrowed by integer rounding or by vcvtneps2bf16.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import fastsoftmax as fs
import ml_dtypes
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHAPES = [(8192, 1024), (256, 32000), (32, 128256), (64, 1024)]
BF16 = np.dtype(ml_dtypes.bfloat16)


TARGET_FLAGS = {
    "avx512": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mfma"],
    "avx2": ["-mavx2", "-mfma", "-mf16c"],
}


def compile_floor(stem: str, folder: Path, target: str = "avx512") -> ctypes.CDLL:
    """bench/<stem>.cpp as a shared library in folder, with the library's flags for target."""
    lib = folder / f"lib{stem}.so"
    subprocess.run(
        [
            "g++", "-std=c++17", "-O3", "-fPIC", "-shared", "-ffp-contract=off",
            *TARGET_FLAGS[target],
            f"-DFASTSOFTMAX_TARGET={target}", f"-I{ROOT / 'cpp' / 'include'}",
            f"-I{ROOT / 'cpp' / 'src'}", str(ROOT / "bench" / f"{stem}.cpp"), "-o", str(lib),
        ],
        check=True,
    )  # fmt: skip
    return ctypes.CDLL(str(lib))


def build(folder: Path) -> ctypes.CDLL:
    """floor_half.cpp as a shared library, its functions' argument types set."""
    c = compile_floor("floor_half", folder)
    p, z = ctypes.c_void_p, ctypes.c_size_t
    for name in ("softmax_f32", "softmax_bf16_int", "softmax_bf16_insn"):
        getattr(c, name).argtypes = [p, p, z, z, ctypes.c_int]
    for name in ("ce_f32", "ce_bf16_insn"):
        getattr(c, name).argtypes = [p, p, z, z]
        getattr(c, name).restype = ctypes.c_double
    return c


def timed(cands: dict[str, Callable[[], object]], rounds: int, size: int) -> dict[str, float]:
    """Median seconds per call of each candidate, in interleaved rounds."""
    reps = max(1, int(3e7 // size))
    samples: dict[str, list[float]] = {k: [] for k in cands}
    items = list(cands.items())
    for r in range(rounds):
        for k, f in items[r % len(items) :] + items[: r % len(items)]:
            t = time.perf_counter()
            for _ in range(reps):
                f()
            samples[k].append((time.perf_counter() - t) / reps)
    return {k: statistics.median(v) for k, v in samples.items()}


def report(shape: tuple[int, int], what: str, med: dict[str, float], base: str) -> None:
    cells = "  ".join(f"{k} {v * 1e3:.3f} ms ({v / med[base]:.2f})" for k, v in med.items())
    print(f"{shape} {what}: {cells}")


def run_shape(c: ctypes.CDLL, shape: tuple[int, int], rounds: int) -> None:
    """Check, then time, the candidates at one shape."""
    from reference import ref_softmax, ulp_error
    from test_half_precision import ulps_apart

    rows, n = shape
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    xb = x.astype(BF16)
    y, yb = np.empty_like(x), np.empty_like(xb)
    big = int(x.nbytes >= 8 << 20)
    px, py, pxb, pyb = (a.ctypes.data for a in (x, y, xb, yb))
    c.softmax_f32(px, py, rows, n, big)
    ref = ref_softmax(x)
    ok = ref > 1e-30
    assert ulp_error(y[ok], ref[ok], np.float32).max() <= 2.4
    for name in ("softmax_bf16_int", "softmax_bf16_insn"):
        getattr(c, name)(pxb, pyb, rows, n, big)
        assert ulps_apart(yb, ref_softmax(xb), BF16).max() <= 1, name
    softmax = {
        "fs f32": lambda: fs.softmax(x, out=y),
        "floor f32": lambda: c.softmax_f32(px, py, rows, n, big),
        "fs bf16": lambda: fs.softmax(xb, out=yb),
        "floor bf16 int": lambda: c.softmax_bf16_int(pxb, pyb, rows, n, big),
        "floor bf16 insn": lambda: c.softmax_bf16_insn(pxb, pyb, rows, n, big),
        "copy f32": lambda: np.copyto(y, x),
    }
    report(shape, "softmax out=", timed(softmax, rounds, x.size), "fs f32")

    labels = rng.integers(0, n, rows).astype(np.int64)
    pl = labels.ctypes.data
    a, b = xb.copy(), xb.copy()
    mine = c.ce_bf16_insn(a.ctypes.data, pl, rows, n)
    theirs = float(fs.cross_entropy(b, labels, return_grad=True, inplace_grad=True)[0])
    assert abs(mine - theirs) <= 1e-6 * abs(theirs), (mine, theirs)
    a32, b32 = x.copy(), x.copy()
    mine = c.ce_f32(a32.ctypes.data, pl, rows, n)
    theirs = float(fs.cross_entropy(b32, labels, return_grad=True, inplace_grad=True)[0])
    assert abs(mine - theirs) <= 1e-6 * abs(theirs), (mine, theirs)
    scale = np.abs(b32).max()  # (the gradients: within the README's 32 eps of the largest)
    assert np.abs(a32 - b32).max() <= 32 * np.finfo(np.float32).eps * scale
    # (each keeps overwriting its own array with the gradient, as the in-place call does)
    xf, xh, ff, fh = x.copy(), xb.copy(), x.copy(), xb.copy()
    pf, ph = ff.ctypes.data, fh.ctypes.data
    ce = {
        "fs f32": lambda: fs.cross_entropy(xf, labels, return_grad=True, inplace_grad=True),
        "floor f32": lambda: c.ce_f32(pf, pl, rows, n),
        "fs bf16": lambda: fs.cross_entropy(xh, labels, return_grad=True, inplace_grad=True),
        "floor bf16 insn": lambda: c.ce_bf16_insn(ph, pl, rows, n),
    }
    report(shape, "ce + grad in place", timed(ce, rounds, x.size), "fs f32")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args()
    if not {"avx512f", "avx512bw", "avx512_bf16"} <= cpu_flags():
        sys.exit("bench/floor_half.py needs an x86-64 CPU with AVX-512 and AVX512-BF16 (Linux)")
    sys.path.insert(0, str(ROOT / "tests"))
    fs.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        c = build(Path(tmp))
        for shape in SHAPES:
            run_shape(c, shape, args.rounds)


if __name__ == "__main__":
    main()

"""Benchmark fastsoftmax against NumPy: ``python -m fastsoftmax`` (or ``-m fastsoftmax.bench``).

For each shape and operation, fastsoftmax and a careful NumPy implementation
(in place, preallocated output) run interleaved, several rounds each; the
table shows medians, the speed-up, and the maximum error of each against a
float64 (or longdouble) reference computed from the same input.
``cross_entropy`` is the mean loss over random integer labels together with
its gradient, written into a preallocated buffer by both (fastsoftmax with
``inplace_grad=True`` on a scratch copy of the logits, whose later calls run on
the previous gradient: the same work on any finite data; allocating a fresh
gradient costs page faults that have nothing to do with the kernel); its error
is the loss's relative error.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np

from . import _api, _cross_entropy
from ._config import simd_target

DEFAULT_SHAPES: tuple[tuple[int, int], ...] = (
    (4096, 10),
    (4096, 128),
    (1024, 1000),
    (256, 32000),
    (32, 128256),
    (8192, 1024),
    (1, 1000),
)
OPS = ("softmax", "log_softmax", "logsumexp", "cross_entropy")


def numpy_softmax(x: np.ndarray, o: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Careful NumPy softmax: in place into preallocated o (m, s: row buffers)."""
    np.max(x, axis=-1, keepdims=True, out=m)
    np.subtract(x, m, out=o)
    np.exp(o, out=o)
    np.sum(o, axis=-1, keepdims=True, out=s)
    np.divide(o, s, out=o)
    return o


def numpy_log_softmax(x: np.ndarray, o: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    np.max(x, axis=-1, keepdims=True, out=m)
    np.subtract(x, m, out=o)
    np.exp(o, out=o)
    np.sum(o, axis=-1, keepdims=True, out=s)
    np.log(s, out=s)
    np.subtract(x, m, out=o)
    np.subtract(o, s, out=o)
    return o


def numpy_logsumexp(x: np.ndarray, o: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    np.max(x, axis=-1, keepdims=True, out=m)
    np.subtract(x, m, out=o)
    np.exp(o, out=o)
    np.sum(o, axis=-1, keepdims=True, out=s)
    np.log(s, out=s)
    np.add(s, m, out=s)
    return s[..., 0]


def numpy_cross_entropy(
    x: np.ndarray, y: np.ndarray, g: np.ndarray, m: np.ndarray, s: np.ndarray
) -> tuple[float, np.ndarray]:
    """Careful NumPy mean cross-entropy of (N, C) logits and its gradient, into g (m, s: rows)."""
    n = x.shape[0]
    rows = np.arange(n)
    np.max(x, axis=1, keepdims=True, out=m)
    np.subtract(x, m, out=g)
    picked = g[rows, y]  # x[y] - max
    np.exp(g, out=g)
    np.sum(g, axis=1, keepdims=True, out=s)
    loss = float(np.mean(np.log(s[:, 0]) - picked))
    np.reciprocal(s, out=s)
    s *= 1.0 / n
    np.multiply(g, s, out=g)
    g[rows, y] -= 1.0 / n
    return loss, g


def reference_cross_entropy(x: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy in longdouble."""
    w = x.astype(np.longdouble)
    m = w.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(w - m).sum(axis=1))
    return float(np.mean(lse - w[np.arange(len(y)), y]))


NUMPY_IMPLS = {
    "softmax": numpy_softmax,
    "log_softmax": numpy_log_softmax,
    "logsumexp": numpy_logsumexp,
}


def reference(op: str, x: np.ndarray) -> np.ndarray:
    """float64 reference (longdouble for float64 inputs)."""
    wide = np.longdouble if x.dtype == np.float64 else np.float64
    r: np.ndarray = x.astype(wide)
    m = r.max(axis=-1, keepdims=True)
    e = np.exp(r - m)
    s = e.sum(axis=-1, keepdims=True)
    out: np.ndarray
    if op == "softmax":
        out = e / s
    elif op == "log_softmax":
        out = (r - m) - np.log(s)
    else:
        out = (m + np.log(s))[..., 0]
    return out


def max_error(op: str, got: np.ndarray, ref: np.ndarray) -> float:
    """Max relative error (softmax) or max abs error / max(1, |ref|) (log ops)."""
    got = got.astype(ref.dtype)
    if op == "softmax":
        mask = ref > 1e-30
        return float(np.max(np.abs(got - ref)[mask] / ref[mask])) if mask.any() else 0.0
    return float(np.max(np.abs(got - ref) / np.maximum(1.0, np.abs(ref))))


def time_interleaved(
    fns: Sequence[Callable[[], object]], rounds: int, min_time: float
) -> list[float]:
    """Median seconds per call of each fn, timed in interleaved rounds."""
    loops = []
    for fn in fns:  # warm up and size the inner loop to about min_time
        fn()
        n, t = 1, 0.0
        while True:
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            t = time.perf_counter() - t0
            if t >= min_time or n >= 1 << 20:
                break
            n *= 2 if t == 0 else max(2, min(10, int(min_time / max(t, 1e-9)) + 1))
        loops.append(n)
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            n = loops[i]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[i].append((time.perf_counter() - t0) / n)
    return [float(np.median(s)) for s in samples]


def run(
    shapes: Sequence[tuple[int, ...]],
    dtype: np.dtype,
    rounds: int,
    min_time: float,
    ops: Sequence[str] = OPS,
) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    rows: list[dict[str, object]] = []
    for shape in shapes:
        x = (rng.standard_normal(shape) * 3).astype(dtype)
        o = np.empty_like(x)
        m = np.empty((*shape[:-1], 1), dtype)
        s = np.empty_like(m)
        y = rng.integers(0, shape[-1], shape[:-1])
        for op in ops:
            if op == "cross_entropy":
                if len(shape) != 2:
                    continue
                scratch = x.copy()
                t_fs, t_np = time_interleaved(
                    [
                        partial(
                            _cross_entropy.cross_entropy,
                            scratch,
                            y,
                            return_grad=True,
                            inplace_grad=True,
                        ),
                        partial(numpy_cross_entropy, x, y, o, m, s),
                    ],
                    rounds,
                    min_time,
                )
                ref_loss = reference_cross_entropy(x, y)
                ours_loss = float(_cross_entropy.cross_entropy(x, y))
                np_loss = numpy_cross_entropy(x, y, o, m, s)[0]
                errors = [abs(v - ref_loss) / abs(ref_loss) for v in (ours_loss, np_loss)]
            else:
                ours = getattr(_api, op)
                np_impl = NUMPY_IMPLS[op]
                fs_out = np.empty(shape[:-1], dtype) if op == "logsumexp" else np.empty_like(x)
                t_fs, t_np = time_interleaved(
                    [partial(ours, x, out=fs_out), partial(np_impl, x, o, m, s)], rounds, min_time
                )
                ref = reference(op, x)
                errors = [
                    max_error(op, ours(x), ref),
                    max_error(op, np_impl(x, o, m, s).copy(), ref),
                ]
            rows.append(
                {
                    "shape": shape,
                    "op": op,
                    "fastsoftmax_s": t_fs,
                    "numpy_s": t_np,
                    "speedup": t_np / t_fs,
                    "err_fastsoftmax": errors[0],
                    "err_numpy": errors[1],
                }
            )
    return rows


def format_table(rows: Sequence[dict[str, object]]) -> str:
    head = f"{'shape':>14} {'op':>12} {'fastsoftmax':>12} {'numpy':>12} {'speed-up':>9} {'err ours':>9} {'err numpy':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        shape = "x".join(str(d) for d in r["shape"])  # type: ignore[attr-defined]
        lines.append(
            f"{shape:>14} {r['op']:>12} {_fmt_time(r['fastsoftmax_s']):>12} "  # type: ignore[arg-type]
            f"{_fmt_time(r['numpy_s']):>12} {r['speedup']:>8.1f}x "  # type: ignore[arg-type]
            f"{r['err_fastsoftmax']:>9.1e} {r['err_numpy']:>9.1e}"
        )
    return "\n".join(lines)


def _fmt_time(t: float) -> str:
    if t < 1e-3:
        return f"{t * 1e6:.1f} us"
    return f"{t * 1e3:.2f} ms"


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}; use e.g. 512x50257") from None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastsoftmax", description=__doc__.splitlines()[0])
    p.add_argument(
        "--shape", type=_parse_shape, action="append", help="e.g. 512x50257 (repeatable)"
    )
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds per measurement")
    p.add_argument("--min-time", type=float, default=0.02, help="seconds per timed sample")
    p.add_argument("--quick", action="store_true", help="fewer rounds, shorter samples")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.min_time = 3, 0.005
    print(f"fastsoftmax SIMD target: {simd_target()}   numpy {np.__version__}   dtype {args.dtype}")
    print(
        f"median of {args.rounds} interleaved rounds; errors: softmax max relative "
        "(outputs > 1e-30), log ops max |err| / max(1, |ref|), cross_entropy (mean loss "
        "and gradient) the loss's relative error, vs a float64 reference\n"
    )
    rows = run(args.shape or DEFAULT_SHAPES, np.dtype(args.dtype), args.rounds, args.min_time)
    print(format_table(rows))
    return 0

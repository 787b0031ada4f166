"""The cost of ``where=`` masks (issue 15's bounds: a full (N, C) mask at most 1.3x the plain
call, a (1, C) mask at most 1.1x), and of ``-inf`` logits, interleaved rounds, medians,
float32, ``out=``.

``where``: softmax, log_softmax, logsumexp and softmax_backward with a full (N, C) mask, a
(1, C) mask and an (N, 1) mask (80% True), each against the plain call on the same array.
``-inf``: the plain softmax, log_softmax and logsumexp of rows with 20% of their entries
``-inf`` (how masks are usually applied by hand) against the same rows without them; with
``--old``, also the build importable as ``fastsoftmax_old`` (see bench/compare_builds.py).
Run pinned to one CPU for one thread::

    taskset -c 1 python bench/masks.py [--rounds R] [--only where|inf] [--old]
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

import fastsoftmax as fs
import numpy as np
from fastsoftmax.bench import time_interleaved

# tiles (10), grouped rows (100), pipelined rows (1000), long rows (32000), from memory
SHAPES = [(8192, 10), (4096, 100), (1024, 1000), (256, 32000), (8192, 1024)]
OPS = ["softmax", "log_softmax", "logsumexp", "softmax_backward"]
INF_OPS = ["softmax", "log_softmax", "logsumexp"]


def masks(rounds: int, rng: np.random.Generator) -> None:
    print(f"where= against the plain call, float32, out=, one thread, {rounds} rounds, medians")
    for shape in SHAPES:
        x = (rng.standard_normal(shape) * 3).astype(np.float32)
        full = rng.random(shape) < 0.8
        kinds = {"(N, C)": full, "(1, C)": full[:1], "(N, 1)": full[:, :1]}
        y = fs.softmax(x)
        g = rng.standard_normal(shape).astype(np.float32)
        for op in OPS:
            f = getattr(fs, op)
            args = (g, y) if op.endswith("backward") else (x,)
            out = fs.logsumexp(x) if op == "logsumexp" else np.empty_like(x)
            calls = [lambda f=f, a=args, o=out: f(*a, out=o)]
            calls += [lambda f=f, a=args, o=out, w=w: f(*a, out=o, where=w) for w in kinds.values()]
            plain, *masked = time_interleaved(calls, rounds, 0.05)
            ratios = ", ".join(f"{k} {t / plain:.2f}x" for k, t in zip(kinds, masked))
            print(f"  {shape} {op}: plain {plain * 1e6:.0f} us; {ratios}")


def inf_rows(rounds: int, rng: np.random.Generator, old: bool) -> None:
    builds: dict[str, Any] = {"this build": fs}
    if old:
        builds["fastsoftmax_old"] = importlib.import_module("fastsoftmax_old")
    print(f"rows with 20% -inf against the same rows without, {rounds} rounds, medians")
    shape = (1024, 1000)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    xi = x.copy()
    xi[rng.random(shape) < 0.2] = -np.inf
    for name, m in builds.items():
        for op in INF_OPS:
            f = getattr(m, op)
            out = m.logsumexp(x) if op == "logsumexp" else np.empty_like(x)
            plain, inf = time_interleaved(
                [lambda f=f, o=out: f(x, out=o), lambda f=f, o=out: f(xi, out=o)], rounds, 0.05
            )
            print(
                f"  {name} {shape} {op}: {plain * 1e6:.0f} us, with -inf {inf * 1e6:.0f} us "
                f"({inf / plain:.2f}x)"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--only", choices=["where", "inf"])
    ap.add_argument("--old", action="store_true", help="also time fastsoftmax_old (-inf rows)")
    args = ap.parse_args()
    fs.set_num_threads(1)
    rng = np.random.default_rng(0)
    if args.only != "inf":
        masks(args.rounds, rng)
    if args.only != "where":
        inf_rows(args.rounds, rng, args.old)


if __name__ == "__main__":
    main()

"""The cost of ``temperature=`` (issue 15's bound: at most 5% over the plain call), interleaved
rounds, medians, float32.

Cases: ``fs.cross_entropy(x, labels, return_grad=True)`` against the same call with
``temperature=2.0``; then softmax, log_softmax, logsumexp and the two backward functions
(``out=``) against the same calls with ``temperature=2.0``; on rows of several lengths and
with the classes on axis 1 of a 3-d array. Run pinned to one CPU for one thread::

    taskset -c 1 python bench/temperature.py [--rounds R] [--only family|cross_entropy]
"""

from __future__ import annotations

import argparse

import fastsoftmax as fs
import numpy as np
from fastsoftmax.bench import time_interleaved

CASES = [((8192, 10), -1), ((4096, 100), -1), ((4096, 1000), -1), ((512, 32000), -1),
         ((8, 21, 4096), 1)]  # fmt: skip
# the softmax family: register tiles (5), tiles (10), grouped rows (100), pipelined rows
# (1000), long rows (32000), columns (axis 1)
FAMILY_CASES = [((16384, 5), -1), ((8192, 10), -1), ((4096, 100), -1), ((4096, 1000), -1),
                ((64, 32000), -1), ((8, 21, 4096), 1)]  # fmt: skip
FAMILY = ["softmax", "log_softmax", "logsumexp", "softmax_backward", "log_softmax_backward"]


def family(rounds: int, rng: np.random.Generator) -> None:
    print(f"softmax family with out=, float32, one thread, {rounds} rounds, medians (T=2 / plain)")
    for shape, axis in FAMILY_CASES:
        x = (rng.standard_normal(shape) * 3).astype(np.float32)
        y = fs.softmax(x, axis=axis)
        g = rng.standard_normal(shape).astype(np.float32)
        ratios = []
        for op in FAMILY:
            f = getattr(fs, op)
            args = (g, y) if op.endswith("backward") else (x,)
            out = fs.logsumexp(x, axis=axis) if op == "logsumexp" else np.empty_like(x)
            plain, scaled = time_interleaved(
                [
                    lambda f=f, a=args, o=out, ax=axis: f(*a, axis=ax, out=o),
                    lambda f=f, a=args, o=out, ax=axis: f(*a, axis=ax, out=o, temperature=2.0),
                ],
                rounds,
                0.05,
            )
            ratios.append(f"{op} {plain * 1e6:.0f} us {scaled / plain:.3f}x")
        print(f"  {shape} axis={axis}: " + ", ".join(ratios))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--only", choices=["family", "cross_entropy"])
    args = ap.parse_args()
    fs.set_num_threads(1)
    rng = np.random.default_rng(0)
    if args.only != "cross_entropy":
        family(args.rounds, rng)
    if args.only == "family":
        return
    print(f"cross_entropy with its gradient, float32, one thread, {args.rounds} rounds, medians")
    for shape, axis in CASES:
        x = (rng.standard_normal(shape) * 3).astype(np.float32)
        lshape = tuple(s for d, s in enumerate(shape) if d != axis % len(shape))
        labels = rng.integers(0, shape[axis], lshape)
        cands = {
            "plain": lambda x=x, y=labels, a=axis: fs.cross_entropy(x, y, axis=a, return_grad=True),
            "T=2": lambda x=x, y=labels, a=axis: fs.cross_entropy(
                x, y, axis=a, temperature=2.0, return_grad=True
            ),
        }
        plain, scaled = time_interleaved(list(cands.values()), args.rounds, 0.05)
        print(
            f"  {shape} axis={axis}: plain {plain * 1e3:.3f} ms, T=2 {scaled * 1e3:.3f} ms: "
            f"{scaled / plain:.3f}x"
        )


if __name__ == "__main__":
    main()

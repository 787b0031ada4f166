"""The cost of ``temperature=`` (issue 15's bound: at most 5% over the plain call), interleaved
rounds, medians, float32, one call each with the gradient.

Cases: ``fs.cross_entropy(x, labels, return_grad=True)`` against the same call with
``temperature=2.0``, on rows of several lengths and with the classes on axis 1 of a 3-d
array. Run pinned to one CPU for one thread::

    taskset -c 1 python bench/temperature.py [--rounds R]
"""

from __future__ import annotations

import argparse

import fastsoftmax as fs
import numpy as np
from fastsoftmax.bench import time_interleaved

CASES = [((8192, 10), -1), ((4096, 100), -1), ((4096, 1000), -1), ((512, 32000), -1),
         ((8, 21, 4096), 1)]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    fs.set_num_threads(1)
    rng = np.random.default_rng(0)
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

"""Two builds of fastsoftmax side by side in one process: the plain softmax family's time, this
build over another (the same 30 cases as bench/temperature.py's family), interleaved medians.

The other build is imported as ``fastsoftmax_old``: copy its installed package directory to
``DIR/fastsoftmax_old`` (its relative imports keep working under that name), then::

    PYTHONPATH=DIR taskset -c 1 python bench/compare_builds.py [avx512|avx2|baseline]
"""

from __future__ import annotations

import sys

import fastsoftmax as new
import fastsoftmax_old as old  # type: ignore[import-not-found]
import numpy as np
from fastsoftmax.bench import time_interleaved
from temperature import FAMILY, FAMILY_CASES  # (bench/temperature.py, beside this script)


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else new.simd_target()
    for m in (new, old):
        m._core.set_num_threads(1)
        m._core.set_target(target)
    rng = np.random.default_rng(0)
    print(f"this build / the other, {target}, float32 out=, one thread, 21 rounds, medians")
    for shape, axis in FAMILY_CASES:
        x = (rng.standard_normal(shape) * 3).astype(np.float32)
        y = new.softmax(x, axis=axis)
        g = rng.standard_normal(shape).astype(np.float32)
        res = []
        for op in FAMILY:
            args = (g, y) if op.endswith("backward") else (x,)
            out = new.logsumexp(x, axis=axis) if op == "logsumexp" else np.empty_like(x)
            fo, fn = getattr(old, op), getattr(new, op)
            to, tn = time_interleaved(
                [
                    lambda fo=fo, a=args, o=out, ax=axis: fo(*a, axis=ax, out=o),
                    lambda fn=fn, a=args, o=out, ax=axis: fn(*a, axis=ax, out=o),
                ],
                21,
                0.05,
            )
            res.append(f"{op} {to * 1e6:.0f} us {tn / to:.3f}x")
        print(f"  {shape} axis={axis}: " + ", ".join(res), flush=True)


if __name__ == "__main__":
    main()

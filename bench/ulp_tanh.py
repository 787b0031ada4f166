"""Maximum error in ulp of fastsoftmax's vector tanh (the soft-capping of cross_entropy).

For every target this CPU runs, float32 and float64, over 10^7 inputs: uniform in
[-20, 20], uniform in [-1, 1], around the switch between the two formulas (|x| in
[0.5, 0.6]) and log-uniform magnitudes from 1e-30 to 30. Reference: NumPy's tanh in
float64 (float32 inputs) or longdouble (float64 inputs).

    python bench/ulp_tanh.py
"""

from __future__ import annotations

import sys

import fastsoftmax
import numpy as np
from fastsoftmax import _core

sys.path.insert(0, __file__.rsplit("/bench/", 1)[0] + "/tests")
from reference import ulp_error

N = 10_000_000


def inputs(rng: np.random.Generator) -> np.ndarray:
    q = N // 4
    return np.concatenate(
        [
            rng.uniform(-20, 20, q),
            rng.uniform(-1, 1, q),
            np.sign(rng.uniform(-1, 1, q)) * rng.uniform(0.5, 0.6, q),
            np.sign(rng.uniform(-1, 1, q)) * 10.0 ** rng.uniform(-30, 1.5, q),
        ]
    )


def main() -> None:
    x64 = inputs(np.random.default_rng(0))
    print(f"fastsoftmax {fastsoftmax.__version__}, numpy {np.__version__}; {N} inputs")
    print("target     f32 tanh (at x)              f64 tanh (at x)")
    for name, usable in fastsoftmax.simd_targets().items():
        if not usable:
            continue
        _core.set_target(name)
        cells = []
        for dtype, wide in ((np.float32, np.float64), (np.float64, np.longdouble)):
            x = x64.astype(dtype)
            err = ulp_error(_core.vtanh(x), np.tanh(x.astype(wide)), dtype)
            i = int(np.argmax(err))
            cells.append(f"{err[i]:.2f} (at {x[i]:.6g})")
        print(f"{name:<10} {cells[0]:<28} {cells[1]}")


if __name__ == "__main__":
    main()

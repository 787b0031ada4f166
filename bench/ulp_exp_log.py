"""Maximum error, in ulp, of fastsoftmax's own vectorized exp and log.

float32 exp: every float32 in [-104, 0] (about 1.1e9 values); float32 log:
every positive finite float32 in [1e-38, 1e38] sampled densely (or all of them
with --full); float64: 10^7 random inputs per function. Each target this CPU
supports is measured (FASTSOFTMAX_SIMD is not needed: the target is switched
in-process). The reference is NumPy's float64 (for float32) or longdouble
(for float64) exp/log of the same input.

    python bench/ulp_exp_log.py            # what bench/RESULTS.md records
    python bench/ulp_exp_log.py --quick    # 10^7 samples instead of every float
"""

from __future__ import annotations

import argparse
import time

import fastsoftmax
import numpy as np
from fastsoftmax import _core


def ulp_error(got: np.ndarray, ref: np.ndarray, dtype: type) -> np.ndarray:
    """|got - ref| in units of the spacing of dtype at ref (subnormal spacing below)."""
    info = np.finfo(dtype)
    r = np.abs(ref)
    # spacing of the format at |ref|: 2^(floor(log2 r) - mant), floored at the subnormal step
    e = np.floor(np.log2(np.maximum(r, info.smallest_subnormal)))
    spacing = np.maximum(np.exp2(e - info.nmant), info.smallest_subnormal)
    err = np.abs(got.astype(ref.dtype) - ref) / spacing
    same = got.astype(ref.dtype) == ref  # exact, including inf == inf and 0 == 0
    return np.where(same, 0.0, err)


def exp_f32_all(chunk: int = 1 << 24) -> tuple[float, float, float]:
    """Max ulp error of float32 exp over every float32 in [-104, 0]: (normal results, all, x at max)."""
    # negative floats: bit patterns from 0x80000000 (-0.0) up to the bits of -104.0
    start = np.uint32(0x80000000)
    stop = np.float32(-104.0).view(np.uint32)
    worst_normal, worst_all, worst_x = 0.0, 0.0, 0.0
    tiny = np.finfo(np.float32).tiny
    for s in range(int(start), int(stop) + 1, chunk):
        bits = np.arange(s, min(s + chunk, int(stop) + 1), dtype=np.uint64).astype(np.uint32)
        x = bits.view(np.float32)
        ref = np.exp(x.astype(np.float64))
        err = ulp_error(_core.vexp(x), ref, np.float32)
        normal = ref >= tiny
        if normal.any():
            i = int(np.argmax(np.where(normal, err, 0)))
            if err[i] > worst_normal:
                worst_normal, worst_x = float(err[i]), float(x[i])
        worst_all = max(worst_all, float(err.max()))
    return worst_normal, worst_all, worst_x


def sampled(fn: str, dtype: type, n: int, rng: np.random.Generator) -> float:
    wide = np.float64 if dtype == np.float32 else np.longdouble
    if fn == "exp":
        lo = -87.0 if dtype == np.float32 else -708.0
        hi = 88.0 if dtype == np.float32 else 709.0
        x = rng.uniform(lo, hi, n).astype(dtype)
        ref = np.exp(x.astype(wide))
        got = _core.vexp(x)
    else:
        big = 38 if dtype == np.float32 else 307
        x = (10.0 ** rng.uniform(-big, big, n)).astype(dtype)
        x = np.concatenate([x, rng.uniform(0.5, 2.0, n // 4).astype(dtype)])
        ref = np.log(x.astype(wide))
        got = _core.vlog(x)
    return float(ulp_error(got, ref, dtype).max())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="sample float32 exp instead of every value")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    print(f"fastsoftmax {fastsoftmax.__version__}, numpy {np.__version__}")
    print(
        f"{'target':<9} {'f32 exp [-104,0]':>22} {'f32 exp':>8} {'f32 log':>8} {'f64 exp':>8} {'f64 log':>8}"
    )
    for target, usable in fastsoftmax.simd_targets().items():
        if not usable:
            continue
        _core.set_target(target)
        t0 = time.perf_counter()
        if args.quick:
            x = rng.uniform(-104, 0, 10**7).astype(np.float32)
            ref = np.exp(x.astype(np.float64))
            err = ulp_error(_core.vexp(x), ref, np.float32)
            normal = ref >= np.finfo(np.float32).tiny
            every = f"{err[normal].max():.2f} (all {err.max():.2f})"
        else:
            wn, wa, wx = exp_f32_all()
            every = f"{wn:.2f} at {wx:.6g} (all {wa:.2f})"
        row = [
            every,
            f"{sampled('exp', np.float32, 10**7, rng):.2f}",
            f"{sampled('log', np.float32, 10**7, rng):.2f}",
            f"{sampled('exp', np.float64, 10**7, rng):.2f}",
            f"{sampled('log', np.float64, 10**7, rng):.2f}",
        ]
        print(
            f"{target:<9} {row[0]:>22} {row[1]:>8} {row[2]:>8} {row[3]:>8} {row[4]:>8}"
            f"   ({time.perf_counter() - t0:.0f} s)"
        )


if __name__ == "__main__":
    main()

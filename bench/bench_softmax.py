"""Issue-2 speed targets: fastsoftmax vs careful NumPy, PyTorch and the copy floor, one thread.

For each shape (float32 by default), all implementations run interleaved in one
process (medians of several rounds, so machine drift cancels out of the ratios):

- ``fs``       fastsoftmax.softmax(x)              (allocates its result)
- ``fs out=``  fastsoftmax.softmax(x, out=o)
- ``numpy``    careful NumPy: max, subtract, exp, sum, divide, all in place into o
- ``torch``    torch.softmax(t, dim=-1) with torch.set_num_threads(1) (if installed)
- ``copy``     np.copyto(o, x): reading the input once and writing the output once,
               the memory-bandwidth floor of any softmax with out=
- ``np.exp``   np.exp(x) (for the per-call overhead target at (1, 1000))
- ``our exp``  fastsoftmax's own vectorized exp of x into a preallocated array: the
               exp-throughput floor of any softmax built on it (one exp per element)

    python bench/bench_softmax.py                 # the table in bench/RESULTS.md
    python bench/bench_softmax.py --op log_softmax
"""

from __future__ import annotations

import argparse
import os
import platform
from functools import partial

import fastsoftmax
import numpy as np
from fastsoftmax import _core
from fastsoftmax.bench import (
    DEFAULT_SHAPES,
    NUMPY_IMPLS,
    max_error,
    reference,
    time_interleaved,
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--op", default="softmax", choices=["softmax", "log_softmax", "logsumexp"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--min-time", type=float, default=0.05)
    args = p.parse_args()
    fastsoftmax.set_num_threads(1)  # one thread, as the peers (the suite compares all)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        torch = None

    dtype = np.dtype(args.dtype)
    ours = getattr(fastsoftmax, args.op)
    print(
        f"fastsoftmax {fastsoftmax.__version__} ({fastsoftmax.simd_target()}), numpy {np.__version__}"
        + (f", torch {torch.__version__} (1 thread)" if torch else ", torch not installed")
    )
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; op={args.op}, "
        f"dtype={args.dtype}; medians of {args.rounds} interleaved rounds\n"
    )
    cols = ["fs", "fs out=", "numpy", "torch", "copy", "np.exp", "our exp"]
    print(
        "| shape | "
        + " | ".join(cols)
        + " | numpy/fs out= | torch/fs | fs out=/copy | fs out=/our exp | fs/np.exp"
        + " | err fs | err numpy | err torch |"
    )
    print("|---" * (len(cols) + 9) + "|")
    rng = np.random.default_rng(0)
    for shape in DEFAULT_SHAPES:
        x = (rng.standard_normal(shape) * 3).astype(dtype)
        o = np.empty_like(x)
        m = np.empty((*shape[:-1], 1), dtype)
        s = np.empty_like(m)
        fs_out = np.empty(shape[:-1], dtype) if args.op == "logsumexp" else np.empty_like(x)
        np_impl = NUMPY_IMPLS[args.op]
        fns = [partial(ours, x), partial(ours, x, out=fs_out), partial(np_impl, x, o, m, s)]
        if torch is not None:
            t = torch.from_numpy(x)
            tfn = {
                "softmax": torch.softmax,
                "log_softmax": torch.log_softmax,
                "logsumexp": torch.logsumexp,
            }[args.op]
            fns.append(partial(tfn, t, -1))
        flat, flat_out = x.reshape(-1), o.reshape(-1)
        fns += [partial(np.copyto, o, x), partial(np.exp, x), partial(_core.vexp, flat, flat_out)]
        times = time_interleaved(fns, args.rounds, args.min_time)
        if torch is None:
            times.insert(3, float("nan"))
        fs_t, fso_t, np_t, th_t, cp_t, exp_t, vexp_t = times
        ref = reference(args.op, x)
        err_fs = max_error(args.op, ours(x), ref)
        err_np = max_error(args.op, np_impl(x, o, m, s).copy(), ref)
        err_th = max_error(args.op, tfn(t, -1).numpy(), ref) if torch is not None else float("nan")

        def us(v: float) -> str:
            return f"{v * 1e6:.1f} us" if v < 1e-3 else f"{v * 1e3:.3f} ms"

        print(
            f"| {shape[0]}x{shape[1]} | "
            + " | ".join(us(v) for v in times)
            + f" | {np_t / fso_t:.2f} | {th_t / fs_t:.2f} | {fso_t / cp_t:.2f}"
            + f" | {fso_t / vexp_t:.2f} | {fs_t / exp_t:.2f}"
            + f" | {err_fs:.1e} | {err_np:.1e} | {err_th:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

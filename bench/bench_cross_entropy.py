"""Issue-3 speed targets: fused cross-entropy vs PyTorch, careful NumPy and the memory floor.

Single thread, integer labels, reduction="mean", forward + gradient. For each
shape, all implementations run interleaved in one process (medians of several
rounds, so machine drift cancels out of the ratios):

- ``fs``          fastsoftmax.cross_entropy(x, y, return_grad=True)   (allocates grad)
- ``fs inplace``  the same with inplace_grad=True on its own copy of the logits (after
                  the first call, on the previous call's gradient: the kernels do the
                  same work on any finite data)
- ``fs fwd``      fastsoftmax.cross_entropy(x, y): the loss only
- ``numpy``       careful NumPy, in place into preallocated buffers: max, subtract,
                  exp, sum, log, gather, scale, subtract at the labels
- ``torch``       F.cross_entropy(t, y) + .backward(), torch.set_num_threads(1)
- ``torch fwd``   F.cross_entropy(t, y) without autograd
- ``copy``        np.copyto(g, x): reading the logits once and writing the gradient
                  once, the memory-bandwidth floor of any forward + gradient
- ``read``        x.max(): one read of the logits, the floor of the forward

    python bench/bench_cross_entropy.py               # the table in bench/RESULTS.md
    python bench/bench_cross_entropy.py --memory      # peak memory of inplace_grad
    python bench/bench_cross_entropy.py --kdim        # (N, C, H, W), classes on axis 1
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tracemalloc
from functools import partial

import fastsoftmax
import numpy as np
from fastsoftmax.bench import numpy_cross_entropy, time_interleaved
from fastsoftmax.bench import reference_cross_entropy as reference_loss

SHAPES = ((4096, 10), (4096, 128), (1024, 1000), (256, 32000), (32, 128256), (8192, 1024))
# --kdim: (N, C, H, W) logits, classes on axis 1 (segmentation)
KDIM_SHAPES = ((8, 21, 128, 128), (2, 150, 64, 64), (16, 10, 32, 32))


def torch_calls(torch, x, y):
    """F.cross_entropy + backward(), and F.cross_entropy alone, on copies of x and y."""
    import torch.nn.functional as F

    yt = torch.from_numpy(y)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)

    def fwd_bwd():
        tx.grad = None
        loss = F.cross_entropy(tx, yt)
        loss.backward()
        return loss

    def fwd():
        with torch.no_grad():
            return F.cross_entropy(tx, yt)

    return fwd_bwd, fwd


def timing(args, torch) -> None:
    dtype = np.dtype(args.dtype)
    print(
        f"fastsoftmax {fastsoftmax.__version__} ({fastsoftmax.simd_target()}), numpy {np.__version__}"
        + (f", torch {torch.__version__} (1 thread)" if torch else ", torch not installed")
    )
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; dtype={args.dtype}; "
        f"medians of {args.rounds} interleaved rounds\n"
    )
    cols = ["fs", "fs inplace", "fs fwd", "numpy", "torch", "torch fwd", "copy", "read"]
    print(
        "| shape | "
        + " | ".join(cols)
        + " | torch/fs | numpy/fs | fs/copy | fs inplace/copy | fs fwd/read | torch fwd/fs fwd"
        + " | err fs | err numpy | err torch |"
    )
    print("|---" * (len(cols) + 10) + "|")
    rng = np.random.default_rng(0)
    for shape in args.shape or SHAPES:
        x = (rng.standard_normal(shape) * 3).astype(dtype)
        y = rng.integers(0, shape[1], shape[0])
        xi = x.copy()
        g = np.empty_like(x)
        m = np.empty((shape[0], 1), dtype)
        s = np.empty_like(m)
        fns = [
            partial(fastsoftmax.cross_entropy, x, y, return_grad=True),
            partial(fastsoftmax.cross_entropy, xi, y, return_grad=True, inplace_grad=True),
            partial(fastsoftmax.cross_entropy, x, y),
            partial(numpy_cross_entropy, x, y, g, m, s),
        ]
        if torch is not None:
            torch_fwd_bwd, torch_fwd = torch_calls(torch, x, y)
            fns += [torch_fwd_bwd, torch_fwd]
        fns += [partial(np.copyto, g, x), x.max]
        times = time_interleaved(fns, args.rounds, args.min_time)
        if torch is None:
            times[4:4] = [float("nan")] * 2
        fs_t, fsi_t, fwd_t, np_t, th_t, thf_t, cp_t, rd_t = times
        ref = reference_loss(x, y)

        def err(v: float, ref: float = ref) -> float:
            return abs(v - ref) / abs(ref)

        err_fs = err(float(fastsoftmax.cross_entropy(x, y)))
        err_np = err(numpy_cross_entropy(x, y, g, m, s)[0])
        err_th = err(float(torch_fwd())) if torch is not None else float("nan")

        def us(v: float) -> str:
            return f"{v * 1e6:.1f} us" if v < 1e-3 else f"{v * 1e3:.3f} ms"

        print(
            f"| {shape[0]}x{shape[1]} | "
            + " | ".join(us(v) for v in times)
            + f" | {th_t / fs_t:.2f} | {np_t / fs_t:.2f} | {fs_t / cp_t:.2f} | {fsi_t / cp_t:.2f}"
            + f" | {fwd_t / rd_t:.2f} | {thf_t / fwd_t:.2f}"
            + f" | {err_fs:.1e} | {err_np:.1e} | {err_th:.1e} |",
            flush=True,
        )


def kdim(args, torch) -> None:
    """Classes on axis 1: fs (allocating, in place, forward) against torch (1 thread)."""
    print(
        "| shape (axis=1) | fs | fs inplace | fs fwd | torch | torch fwd | torch/fs"
        " | torch/fs inplace | torch fwd/fs fwd |"
    )
    print("|---" * 9 + "|")
    rng = np.random.default_rng(0)
    for shape in KDIM_SHAPES:
        x = (rng.standard_normal(shape) * 3).astype(args.dtype)
        y = rng.integers(0, shape[1], shape[:1] + shape[2:])
        xi = x.copy()
        fns = [
            partial(fastsoftmax.cross_entropy, x, y, axis=1, return_grad=True),
            partial(fastsoftmax.cross_entropy, xi, y, axis=1, return_grad=True, inplace_grad=True),
            partial(fastsoftmax.cross_entropy, x, y, axis=1),
        ]
        if torch is not None:
            torch_fwd_bwd, torch_fwd = torch_calls(torch, x, y)
            fns += [torch_fwd_bwd, torch_fwd]
        t = time_interleaved(fns, args.rounds, args.min_time)
        if torch is None:
            t += [float("nan")] * 2
        print(
            f"| {'x'.join(map(str, shape))} | "
            + " | ".join(f"{v * 1e3:.2f} ms" for v in t)
            + f" | {t[3] / t[0]:.2f} | {t[3] / t[1]:.2f} | {t[4] / t[2]:.2f} |",
            flush=True,
        )


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB; macOS: bytes
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def memory(args) -> None:
    """Peak extra memory of one inplace_grad call on a large array (then a return_grad one)."""
    shape = args.shape[0] if args.shape else (8192, 32000)
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    y = np.random.default_rng(1).integers(0, shape[1], shape[0])
    print(
        f"logits {shape} float32: {x.nbytes / 2**20:.0f} MiB; peak RSS before: {peak_rss_mib():.0f} MiB"
    )
    for label, kwargs in [
        ("inplace_grad=True", {"inplace_grad": True}),
        ("return_grad=True (new gradient array)", {}),
    ]:
        before = peak_rss_mib()
        tracemalloc.start()
        fastsoftmax.cross_entropy(x, y, return_grad=True, **kwargs)
        _, traced = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"{label}: tracemalloc peak {traced / 2**10:.1f} KiB, "
            f"peak RSS grew by {peak_rss_mib() - before:.1f} MiB"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--min-time", type=float, default=0.05)
    p.add_argument(
        "--shape",
        action="append",
        type=lambda s: tuple(int(v) for v in s.split("x")),
        help="e.g. 512x50257 (repeatable)",
    )
    p.add_argument("--memory", action="store_true", help="measure the peak memory of inplace_grad")
    p.add_argument("--kdim", action="store_true", help="(N, C, H, W) logits, classes on axis 1")
    args = p.parse_args()
    fastsoftmax.set_num_threads(1)  # one thread, as the peers (python -m fastsoftmax.bench: all)
    if args.memory:
        return memory(args)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        torch = None
    if args.kdim:
        return kdim(args, torch)
    timing(args, torch)


if __name__ == "__main__":
    main()

"""Issue-13 overhead targets: what framework arrays cost per call, at a small shape.

Every case runs interleaved in one process (medians of the rounds, so that drift of a
shared machine cancels out of the differences):

- ``undecorated``  the function under the framework-array wrapper (``f.__wrapped__``):
                   the NumPy path as it was before the wrapper (target: the wrapper
                   costs NumPy calls at most ~0.1 us)
- NumPy arrays     the public functions on NumPy arrays
- torch tensors    the same calls on torch tensors over the same memory
                   (target: softmax at most 2 us more than on the NumPy array)
- JAX arrays       (with --jax) the same on JAX arrays (a copy of each result)

    taskset -c 1 python bench/bench_framework_arrays.py
    taskset -c 1 python bench/bench_framework_arrays.py --shape 1x1000 --jax
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import fastsoftmax as fs
import numpy as np
from fastsoftmax.bench import time_interleaved


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="1x1000", help="rows x classes (default 1x1000)")
    p.add_argument("--rounds", type=int, default=31)
    p.add_argument("--min-time", type=float, default=0.01, help="seconds per sample")
    p.add_argument("--jax", action="store_true", help="JAX arrays too")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    rows, classes = (int(n) for n in args.shape.split("x"))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, classes)).astype(np.float32)
    o = np.empty_like(a)
    y = rng.integers(0, classes, rows)
    t, to, ty = torch.from_numpy(a), torch.from_numpy(o), torch.from_numpy(y)
    assert t.data_ptr() == a.ctypes.data  # the same memory

    calls: dict[str, Callable[..., object]] = {
        "softmax(x)": lambda x, out, labels: fs.softmax(x),
        "softmax(x, out=o)": lambda x, out, labels: fs.softmax(x, out=out),
        "logsumexp(x)": lambda x, out, labels: fs.logsumexp(x),
        "softmax_backward(x, x)": lambda x, out, labels: fs.softmax_backward(x, x),
        "cross_entropy(x, y)": lambda x, out, labels: fs.cross_entropy(x, labels),
    }
    raw = {
        "softmax(x)": lambda: fs.softmax.__wrapped__(a),
        "softmax(x, out=o)": lambda: fs.softmax.__wrapped__(a, out=o),
        "logsumexp(x)": lambda: fs.logsumexp.__wrapped__(a),
        "softmax_backward(x, x)": lambda: fs.softmax_backward.__wrapped__(a, a),
        "cross_entropy(x, y)": lambda: fs.cross_entropy.__wrapped__(a, y),
    }
    inputs: dict[str, tuple[object, object, object]] = {
        "numpy": (a, o, y),
        "torch": (t, to, ty),
    }
    if args.jax:
        import jax.numpy as jnp

        inputs["jax"] = (jnp.asarray(a), None, jnp.asarray(y))
    cases: dict[tuple[str, str], Callable[[], object]] = {}
    for name, call in calls.items():
        cases[(name, "undecorated")] = raw[name]
        for kind, (x, out, labels) in inputs.items():
            if out is None and "out=" in name:
                continue  # (JAX arrays are immutable)
            cases[(name, kind)] = lambda c=call, x=x, out=out, labels=labels: c(x, out, labels)
    for f in cases.values():
        f()
    medians = dict(zip(cases, time_interleaved(list(cases.values()), args.rounds, args.min_time)))

    kinds = ["undecorated", *inputs]
    print(f"shape {rows}x{classes} float32, one thread; medians of {args.rounds} rounds, us/call")
    header = f"{'call':24s}" + "".join(f"{k:>13s}" for k in kinds)
    header += f"{'wrapper':>10s}" + "".join(f"{k + ' - np':>12s}" for k in kinds[2:])
    print(header)
    for name in calls:
        row = f"{name:24s}"
        for k in kinds:
            v = medians.get((name, k))
            row += f"{v * 1e6:13.3f}" if v is not None else f"{'-':>13s}"
        numpy_t = medians[(name, "numpy")]
        row += f"{(numpy_t - medians[(name, 'undecorated')]) * 1e9:+8.0f}ns"
        for k in kinds[2:]:
            v = medians.get((name, k))
            row += f"{(v - numpy_t) * 1e6:+12.3f}" if v is not None else f"{'-':>12s}"
        print(row)


if __name__ == "__main__":
    main()

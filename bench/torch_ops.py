"""fastsoftmax.torch against PyTorch: the cross-entropy's per-call cost and a training step.

Two measurements, each in interleaved rounds (the candidates take turns within a round;
medians over rounds):

* ``calls``: ``F.cross_entropy(x, t)`` and ``fst.cross_entropy(x, t)``, forward alone and
  forward + ``backward()``, at (1, 1000), (64, 1000), (512, 1000) float32;
* ``step``: a language-model head's step, ``logits = hidden @ W.T`` (``nn.Linear``), the
  loss, ``backward()``, at batch 2048, hidden 512, vocabulary 32,000 (float32 or bfloat16):
  the loss part (forward + backward of the loss alone, on the same logits) and the whole step;
  with the loss part, its floor out of place: a read of the logits (``x.sum()``) and a copy
  of them into a fresh tensor (``torch.empty_like(x).copy_(x)``), no arithmetic: what a
  forward that keeps the logits and a backward that writes a fresh gradient must move.

Run pinned to one CPU for one thread (``taskset -c 1``), with ``THP_MEM_ALLOC_ENABLE=1``
for PyTorch's huge-page allocator (say which in RESULTS.md)::

    taskset -c 1 python bench/torch_ops.py calls
    taskset -c 1 python bench/torch_ops.py step --dtype float32 --threads 1 [--compile]
    taskset -c 1 python bench/torch_ops.py kernels --dtype float32   (the loss part's pieces)

``--compile`` compiles the loss (and each step's forward: the linear layer and the loss)
with ``torch.compile(fullgraph=True)`` and the default backend, Inductor, which fuses
F.cross_entropy itself: our operator against Inductor's kernel.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any, Union

import fastsoftmax
import fastsoftmax.torch as fst
import torch
import torch.nn.functional as F

Timed = Union[Callable[[], object], "tuple[Callable[[], Any], Callable[[Any], object]]"]


def _time(f: Timed, number: int) -> float:
    """Seconds per call: the best of 3 runs of `number` calls. f is a callable, or a pair
    (prepare, run): run(prepare()) is timed, prepare() is not (number must be 1)."""
    best = float("inf")
    for _ in range(3):
        if isinstance(f, tuple):
            prepared = f[0]()
            t0 = time.perf_counter()
            f[1](prepared)
        else:
            t0 = time.perf_counter()
            for _ in range(number):
                f()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def _rounds(cands: dict[str, Timed], rounds: int, number: int) -> dict[str, float]:
    """Median seconds per call of each candidate over interleaved rounds."""
    times: dict[str, list[float]] = {n: [] for n in cands}
    for _ in range(rounds):
        for name, f in cands.items():
            times[name].append(_time(f, number))
    return {n: statistics.median(v) for n, v in times.items()}


def calls(rounds: int) -> None:
    print("| shape | F.cross_entropy fwd | fst fwd | F fwd+bwd | fst fwd+bwd | fst/F fwd+bwd |")
    print("|---|---|---|---|---|---|")
    for shape in [(1, 1000), (64, 1000), (512, 1000)]:
        x = torch.randn(*shape, requires_grad=True)
        t = torch.randint(0, shape[1], (shape[0],))
        torch.testing.assert_close(fst.cross_entropy(x, t), F.cross_entropy(x, t))
        number = max(20, 20000 // shape[0])
        r = _rounds(
            {
                "F fwd": lambda x=x, t=t: F.cross_entropy(x, t),
                "fst fwd": lambda x=x, t=t: fst.cross_entropy(x, t),
                "F both": lambda x=x, t=t: F.cross_entropy(x, t).backward(),
                "fst both": lambda x=x, t=t: fst.cross_entropy(x, t).backward(),
            },
            rounds,
            number,
        )
        us = {k: v * 1e6 for k, v in r.items()}
        print(
            f"| {shape} | {us['F fwd']:.1f} µs | {us['fst fwd']:.1f} µs | {us['F both']:.1f} µs"
            f" | {us['fst both']:.1f} µs | {r['fst both'] / r['F both']:.2f} |"
        )


def step(dtype: torch.dtype, rounds: int, compiled: bool, parts: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    n, d, v = 2048, 512, 32000
    head = torch.nn.Linear(d, v, bias=False, dtype=dtype)
    hidden = torch.randn(n, d, dtype=dtype)
    target = torch.randint(0, v, (n,))
    logits = torch.randn(n, v, dtype=dtype) * 2

    def loss_only(fn: Callable[..., torch.Tensor]) -> Timed:
        # The logits as a model hands them over: the output of an operation (untimed: a
        # copy), of which the gradient is taken (torch.autograd.grad: as the loss's backward
        # returns it to the layer below; inplace_backward refuses a leaf, as PyTorch's
        # in-place operations do).
        if compiled:
            fn = torch.compile(fn, fullgraph=True)

        def prepare() -> torch.Tensor:
            return logits.detach().requires_grad_() * 1.0

        def run(x: torch.Tensor) -> None:
            torch.autograd.grad(fn(x, target), x)

        return prepare, run

    def inplace(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return fst.cross_entropy(x, t, inplace_backward=True)

    def whole(fn: Callable[..., torch.Tensor]) -> Callable[[], object]:
        def forward(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return fn(head(h), t)

        if compiled:  # (Inductor, PyTorch's default backend: F.cross_entropy fused by it)
            forward = torch.compile(forward, fullgraph=True)

        def run() -> None:
            head.zero_grad(set_to_none=True)
            forward(hidden, target).backward()

        run()  # (compiles)
        return run

    torch.testing.assert_close(
        fst.cross_entropy(logits, target).float(),
        F.cross_entropy(logits.float(), target),
        rtol=1e-2 if dtype is torch.bfloat16 else 1e-5,
        atol=0,
    )

    def floor(x: torch.Tensor) -> None:
        # What any out-of-place loss part that keeps the logits for its backward (as the
        # issue asks) must at least do, with no arithmetic: read the logits (forward), then
        # read them again and write a fresh gradient of their size (backward).
        x.sum()
        torch.empty_like(x).copy_(x)

    make = {"loss": loss_only, "step": whole}
    cands = {
        f"{part} {name}": make[part](fn)
        for part in parts
        for name, fn in (
            ("F", F.cross_entropy),
            ("fst", fst.cross_entropy),
            ("fst inplace", inplace),
        )
    }
    if "loss" in parts:
        cands["loss floor"] = (lambda: logits.detach() * 1.0, floor)
    r = _rounds(cands, rounds, 1)
    ms = {k: x * 1e3 for k, x in r.items()}
    label = f"{dtype}{' compiled' if compiled else ''}, threads {torch.get_num_threads()}"
    for part in parts:
        base = r[f"{part} F"]
        cells = " | ".join(
            f"{ms[k]:.1f} ms ({base / r[k]:.2f}x)" for k in (f"{part} fst", f"{part} fst inplace")
        )
        if part == "loss":
            cells += f" | {ms['loss floor']:.1f} ms ({base / r['loss floor']:.2f}x)"
        print(f"| {label} | {part} | {ms[f'{part} F']:.1f} ms | {cells} |")


def kernels(dtype: str, rounds: int) -> None:
    """The loss part's pieces at the step's shape, through the binding (NumPy arrays): the
    forward with its per-example lse, the backward from it into a preallocated and into a
    fresh array, in place, and what a fresh array's first touch costs alone."""
    import ml_dtypes
    import numpy as np
    from fastsoftmax import _core

    dt = np.dtype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2048, 32000)) * 2).astype(dt)
    t = rng.integers(0, 32000, 2048)
    lse = np.empty(2048)
    g, xi = np.empty_like(x), x.copy()

    def ce(logits: np.ndarray, saved: object, grad: object, lse_out: object) -> None:
        _core.cross_entropy(
            logits, 1, t, None, saved, grad, None, None, lse_out, "mean", None, 0.0, 0.0, 0.0, -100
        )

    ce(x, None, None, lse)
    saved = lse.astype(np.float32 if dt.itemsize < 8 else np.float64)
    r = _rounds(
        {
            "forward (+lse)": lambda: ce(x, None, None, lse),
            "backward, preallocated": lambda: ce(x, saved, g, None),
            "backward, fresh np.empty": lambda: ce(x, saved, np.empty_like(x), None),
            "backward, in place": lambda: ce(xi, saved, xi, None),
            "np.empty + fill(0)": lambda: np.empty_like(x).fill(0),
            "np.copyto": lambda: np.copyto(g, x),
        },
        rounds,
        1,
    )
    for name, sec in r.items():
        print(f"| {dtype} (2048, 32000) | {name} | {sec * 1e3:.1f} ms |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["calls", "step", "kernels"])
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--threads", type=int, default=0, help="both pools (0: leave as they are)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--compile", action="store_true", help="step: torch.compile each step")
    p.add_argument("--parts", default="loss,step", help="step: loss, step or both")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
        fastsoftmax.set_num_threads(a.threads)
    if a.what == "calls":
        calls(a.rounds)
    elif a.what == "kernels":
        kernels(a.dtype, a.rounds)
    else:
        step(getattr(torch, a.dtype), a.rounds, a.compile, tuple(a.parts.split(",")))


if __name__ == "__main__":
    main()

"""fastsoftmax.torch against PyTorch: the cross-entropy's per-call cost and a training step.

Two measurements, each in interleaved rounds (the candidates take turns within a round;
medians over rounds):

* ``calls``: ``F.cross_entropy(x, t)`` and ``fst.cross_entropy(x, t)``, forward alone and
  forward + ``backward()``, at (1, 1000), (64, 1000), (512, 1000) float32;
* ``step``: a language-model head's step, ``logits = hidden @ W.T`` (``nn.Linear``), the
  loss, ``backward()``, at batch 2048, hidden 512, vocabulary 32,000 (float32 or bfloat16):
  the loss part (forward + backward of the loss alone, on the same logits) and the whole step.

Run pinned to one CPU for one thread (``taskset -c 1``), with ``THP_MEM_ALLOC_ENABLE=1``
for PyTorch's huge-page allocator (say which in RESULTS.md)::

    taskset -c 1 python bench/torch_ops.py calls
    taskset -c 1 python bench/torch_ops.py step --dtype float32 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import fastsoftmax
import fastsoftmax.torch as fst
import torch
import torch.nn.functional as F


def _time(f: Callable[[], object], number: int) -> float:
    """Seconds per call: the best of 3 runs of `number` calls."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(number):
            f()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def _rounds(cands: dict[str, Callable[[], object]], rounds: int, number: int) -> dict[str, float]:
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


def step(dtype: torch.dtype, rounds: int) -> None:
    torch.manual_seed(0)
    n, d, v = 2048, 512, 32000
    head = torch.nn.Linear(d, v, bias=False, dtype=dtype)
    hidden = torch.randn(n, d, dtype=dtype)
    target = torch.randint(0, v, (n,))
    logits = torch.randn(n, v, dtype=dtype) * 2

    def loss_only(fn: Callable[..., torch.Tensor]) -> Callable[[], object]:
        def run() -> None:
            x = logits.detach().requires_grad_()
            fn(x, target).backward()

        return run

    def whole(fn: Callable[..., torch.Tensor]) -> Callable[[], object]:
        def run() -> None:
            head.zero_grad(set_to_none=True)
            fn(head(hidden), target).backward()

        return run

    torch.testing.assert_close(
        fst.cross_entropy(logits, target).float(),
        F.cross_entropy(logits.float(), target),
        rtol=1e-2 if dtype is torch.bfloat16 else 1e-5,
        atol=0,
    )
    r = _rounds(
        {
            "loss F": loss_only(F.cross_entropy),
            "loss fst": loss_only(fst.cross_entropy),
            "step F": whole(F.cross_entropy),
            "step fst": whole(fst.cross_entropy),
        },
        rounds,
        1,
    )
    ms = {k: x * 1e3 for k, x in r.items()}
    print(f"| {dtype} | threads torch {torch.get_num_threads()}, fastsoftmax "
          f"{fastsoftmax.get_num_threads()} | loss F {ms['loss F']:.1f} ms | loss fst "
          f"{ms['loss fst']:.1f} ms ({r['loss F'] / r['loss fst']:.2f}x) | step F "
          f"{ms['step F']:.1f} ms | step fst {ms['step fst']:.1f} ms "
          f"({r['step F'] / r['step fst']:.2f}x) |")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["calls", "step"])
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--threads", type=int, default=0, help="both pools (0: leave as they are)")
    p.add_argument("--rounds", type=int, default=7)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
        fastsoftmax.set_num_threads(a.threads)
    if a.what == "calls":
        calls(a.rounds)
    else:
        step(getattr(torch, a.dtype), a.rounds)


if __name__ == "__main__":
    main()

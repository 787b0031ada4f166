"""fastsoftmax.sample against the same chain written with PyTorch operations (issue 15's
bound: >= 10x faster with top_k=50, top_p=0.9, >= 5x with top_p alone, one thread).

The PyTorch chain is transformers' TopK, TopP and MinP warpers as they are written
(``torch.topk``; ``torch.sort`` of the whole vocabulary, softmax, cumsum, scatter), then
``softmax`` and ``torch.multinomial``. Interleaved rounds, medians. Run pinned to one CPU::

    taskset -c 1 python bench/sampling.py [--rounds R]
"""

from __future__ import annotations

import argparse

import fastsoftmax as fs
import numpy as np
import torch
from fastsoftmax.bench import time_interleaved

SHAPES = [(1, 128256), (64, 128256), (256, 32000)]
SETTINGS = [{"top_k": 50, "top_p": 0.9}, {"top_p": 0.9}]


def torch_chain(scores: torch.Tensor, top_k: int | None = None, top_p: float | None = None):
    if top_k is not None:
        kth = torch.topk(scores, top_k)[0][..., -1, None]
        scores = scores.masked_fill(scores < kth, -float("inf"))
    if top_p is not None:
        sorted_logits, sorted_indices = torch.sort(scores, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - top_p)
        remove[..., -1:] = 0
        remove = remove.scatter(1, sorted_indices, remove)
        scores = scores.masked_fill(remove, -float("inf"))
    return torch.multinomial(scores.softmax(dim=-1), num_samples=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    fs.set_num_threads(1)
    print(f"torch {torch.__version__}, one thread, {args.rounds} rounds, medians")
    for shape in SHAPES:
        x = (np.random.default_rng(0).standard_normal(shape) * 3).astype(np.float32)
        xt = torch.from_numpy(x)
        for settings in SETTINGS:
            cands = {
                "fastsoftmax": lambda x=x, s=settings: fs.sample(x, seed=1, **s),
                "torch chain": lambda xt=xt, s=settings: torch_chain(xt, **s),
            }
            ours, theirs = time_interleaved(list(cands.values()), args.rounds, 0.05)
            print(
                f"  {shape} {settings}: fastsoftmax {ours * 1e3:.3f} ms, torch chain "
                f"{theirs * 1e3:.3f} ms: {theirs / ours:.1f}x"
            )


if __name__ == "__main__":
    main()

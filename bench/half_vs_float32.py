"""bfloat16 and float16 against float32, the same call, interleaved: issue 13's speed check.

    taskset -c 1 python bench/half_vs_float32.py [--rounds 21] [--threads 1]

For softmax with ``out=`` and the cross-entropy's loss with an in-place gradient
(``return_grad=True, inplace_grad=True``), at the issue's shapes, each round times a
batch of calls on float32, bfloat16 and float16 copies of the same logits (in turn,
the order rotating between rounds: fastsoftmax.bench.timing) and keeps each
half-precision time over the float32 time of the same round; the table gives the
medians. The target: at most
0.6x (half the bytes moved).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import fastsoftmax as fs
import ml_dtypes
import numpy as np
from fastsoftmax.bench.timing import time_interleaved_samples

SHAPES = [(8192, 1024), (256, 32000), (32, 128256)]
DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    fs.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print("| shape | op | float32 | bfloat16 | float16 | bf16/f32 | f16/f32 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for shape in SHAPES:
        x32 = (rng.standard_normal(shape) * 3).astype(np.float32)
        labels = rng.integers(0, shape[1], shape[0])
        calls: dict[str, dict[str, Callable[[], object]]] = {"softmax out=": {}, "ce+grad": {}}
        for name, dt in DTYPES.items():
            x = x32.astype(dt)
            o = np.empty_like(x)
            g = x.copy()  # (in place: later calls run on the previous gradient, same work)
            calls["softmax out="][name] = lambda x=x, o=o: fs.softmax(x, out=o)
            calls["ce+grad"][name] = lambda g=g, labels=labels: fs.cross_entropy(
                g, labels, return_grad=True, inplace_grad=True
            )
        for op, by_dtype in calls.items():
            names = list(by_dtype)
            # one sample of each dtype per round, the first one rotating
            samples = dict(
                zip(names, time_interleaved_samples(list(by_dtype.values()), args.rounds, 0.05))
            )
            med = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
            rb, rf = (
                statistics.median([h / f for h, f in zip(samples[k], samples["float32"])])
                for k in names[1:]
            )
            print(
                f"| {shape[0]}x{shape[1]} | {op} | {med['float32']:.2f} ms | "
                f"{med['bfloat16']:.2f} ms | {med['float16']:.2f} ms | {rb:.2f} | {rf:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""fastsoftmax.entropy and fastsoftmax.kl_div against cross_entropy with soft labels (issue
15's speed bound: within 1.3x, with the gradient), and against the same quantities written
with NumPy, in interleaved rounds (medians over rounds).

Per shape (float32, one call each, ``return_grad=True`` unless ``--no-grad``):

* ``ce_soft``: ``fs.cross_entropy(x, fs.softmax(y))``, the reference point;
* ``entropy``: ``fs.entropy(x)``;
* ``kl_logits`` / ``kl_probs`` / ``kl_log_probs``: ``fs.kl_div`` with the target as logits,
  probabilities or log probabilities;
* ``numpy_kl``: ``sum(t * (log t - log_softmax(x)))`` with ``scipy.special`` (no gradient).

``--close S`` makes the student the teacher plus S times standard normal noise (a KL of
about S^2 / 2 per row), where kl_div takes its term-by-term pass; by default the two are
independent (KLs of several nats, where the plain sum is accurate enough).

Run pinned to one CPU for one thread::

    taskset -c 1 python bench/divergence.py [--shape N C ...] [--rounds R] [--threads T]
        [--close S] [--no-grad]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import fastsoftmax as fs
import numpy as np
from fastsoftmax.bench import time_interleaved
from scipy import special

SHAPES = [(512, 32000), (64, 128256), (4096, 1000)]


def run(shape: tuple[int, int], rounds: int, grad: bool, close: float | None) -> None:
    rng = np.random.default_rng(0)
    y = (rng.standard_normal(shape) * 3).astype(np.float32)
    if close is None:
        x = (rng.standard_normal(shape) * 3).astype(np.float32)
    else:
        x = (y + close * rng.standard_normal(shape)).astype(np.float32)
    probs = fs.softmax(y)
    log_probs = fs.log_softmax(y)
    cands: dict[str, Callable[[], object]] = {
        "ce_soft": lambda: fs.cross_entropy(x, probs, return_grad=grad),
        "entropy": lambda: fs.entropy(x, return_grad=grad),
        "kl_logits": lambda: fs.kl_div(x, y, return_grad=grad),
        "kl_probs": lambda: fs.kl_div(x, probs, target_kind="probs", return_grad=grad),
        "kl_log_probs": lambda: fs.kl_div(x, log_probs, target_kind="log_probs", return_grad=grad),
        "numpy_kl": lambda: np.sum(probs * (log_probs - special.log_softmax(x, axis=-1))),
    }
    # checked before timing: the KL against float64
    want = (
        special.rel_entr(
            special.softmax(y.astype(np.float64), -1), special.softmax(x.astype(np.float64), -1)
        ).sum()
        / shape[0]
    )
    got = float(fs.kl_div(x, y))
    assert abs(got - want) <= 1e-5 * want, (got, want)
    medians = dict(zip(cands, time_interleaved(list(cands.values()), rounds, 0.05)))
    base = medians["ce_soft"]
    pair = "independent" if close is None else f"close ({close})"
    print(
        f"{shape} float32, {'with' if grad else 'without'} gradient, {pair} distributions, "
        f"{fs.get_num_threads()} thread(s), {rounds} rounds:"
    )
    for k, m in medians.items():
        print(f"  {k:13s} {m * 1e3:8.2f} ms  {m / base:5.2f}x ce_soft")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=2, action="append", metavar=("N", "C"))
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-grad", action="store_true")
    ap.add_argument("--close", type=float, default=None)
    args = ap.parse_args()
    fs.set_num_threads(args.threads)
    for shape in args.shape or SHAPES:
        run(tuple(shape), args.rounds, not args.no_grad, args.close)


if __name__ == "__main__":
    main()

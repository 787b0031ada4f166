"""Two builds of fastsoftmax in one process, call batches interleaved: per-op ratios.

    taskset -c 1 python bench/interleave_builds.py BEFORE_PKG AFTER_PKG [--rounds 41]

BEFORE_PKG and AFTER_PKG are installed ``fastsoftmax`` package folders (each
venv's ``site-packages/fastsoftmax``). Both are copied into a temporary folder
as the packages ``fs_before`` and ``fs_after`` (the package imports its
extension relatively, so both load side by side) and imported by the same
interpreter. For each operation of the quick suite's shapes, every round
times a batch of calls of one build, then of the other (the order alternating
between rounds: fastsoftmax.bench.timing), and keeps after/before; the table gives the median ratio over
the rounds and its 10th-90th percentile band. A drift of the machine falls on
both builds within a round, so the ratio resolves a few percent where separate
processes (``compare_builds.py``) do not.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
from fastsoftmax.bench.timing import time_interleaved_samples

SHAPES = [(4096, 10), (128, 1000), (16, 32000)]


def load(pkg: Path, name: str, into: Path) -> ModuleType:
    shutil.copytree(pkg, into / name, ignore=shutil.ignore_patterns("__pycache__"))
    return importlib.import_module(name)


def builds_of(before: Path | None, target: str | None) -> dict[str, ModuleType]:
    """{"after": this fastsoftmax} and, with `before` (an installed package folder), its
    copy loaded beside it as "before"; both switched to the SIMD `target` if given. The
    copy's temporary folder is removed when the process exits."""
    import fastsoftmax

    builds: dict[str, ModuleType] = {"after": fastsoftmax}
    if before:
        tmp = tempfile.mkdtemp()
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        sys.path.insert(0, tmp)
        builds["before"] = load(before, "fs_before", Path(tmp))
    if target:
        for fs in builds.values():
            fs._core.set_target(target)
    return builds


def inputs(shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """The suite's inputs (bench/suite.py, make_inputs), shared by both builds: the same
    addresses, so that neither build gets a luckier placement of its arrays."""
    rng = np.random.default_rng(list(shape))
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    y = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return {
        "x": x,
        "g": rng.standard_normal(shape).astype(np.float32),
        "labels": rng.integers(0, shape[1], shape[0]),
        "y": y,
        "ly": np.log(y),
        "o": np.empty_like(x),
        "scratch": x.copy(),
    }


def calls(fs: ModuleType, a: dict[str, np.ndarray]) -> dict[str, Callable[[], object]]:
    """The quick suite's fastsoftmax calls (bench/suite.py, FastSoftmax.build) on one shape."""
    x, g, labels, y, ly, o, scratch = (
        a[k] for k in ("x", "g", "labels", "y", "ly", "o", "scratch")
    )
    return {
        "softmax": lambda: fs.softmax(x),
        "softmax out=": lambda: fs.softmax(x, out=o),
        "log_softmax": lambda: fs.log_softmax(x),
        "log_softmax out=": lambda: fs.log_softmax(x, out=o),
        "logsumexp": lambda: fs.logsumexp(x),
        "softmax_backward out=": lambda: fs.softmax_backward(g, y, out=o),
        "log_softmax_backward out=": lambda: fs.log_softmax_backward(g, ly, out=o),
        "cross_entropy": lambda: fs.cross_entropy(x, labels),
        "cross_entropy_grad": lambda: fs.cross_entropy(x, labels, return_grad=True),
        "cross_entropy_grad inplace": lambda: fs.cross_entropy(
            scratch, labels, return_grad=True, inplace_grad=True
        ),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path, help="the earlier build's installed package folder")
    p.add_argument("after", type=Path, help="the later build's installed package folder")
    p.add_argument("--rounds", type=int, default=41, help="rounds per operation and shape")
    p.add_argument("--batch-s", type=float, default=0.01, help="seconds per batch of calls")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        builds = [
            load(args.before, "fs_before", Path(tmp)),
            load(args.after, "fs_after", Path(tmp)),
        ]
        for fs in builds:
            fs.use_threads(1)
        print("| shape | op | before | after | after/before (median) | 10th-90th pct |")
        print("|---|---|---:|---:|---:|---|")
        worst = 0.0
        for shape in SHAPES:
            arrays = inputs(shape)
            before, after = calls(builds[0], arrays), calls(builds[1], arrays)
            for op in before:
                # one sample of each build per round, the first one alternating
                tb, ta = time_interleaved_samples(
                    [before[op], after[op]], args.rounds, args.batch_s
                )
                ratios = [a / b for a, b in zip(ta, tb)]
                q = statistics.quantiles(ratios, n=10)
                med = statistics.median(ratios)
                worst = max(worst, med)
                print(
                    f"| {shape[0]}x{shape[1]} | {op} | {statistics.median(tb) * 1e6:.1f} us "
                    f"| {statistics.median(ta) * 1e6:.1f} us | {med:.3f} | {q[0]:.3f}-{q[-1]:.3f} |",
                    flush=True,
                )
        print(f"\nlargest median after/before: {worst:.3f} ({args.rounds} rounds each)")


if __name__ == "__main__":
    main()

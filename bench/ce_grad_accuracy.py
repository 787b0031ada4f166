"""The cross-entropy gradient's error against a long-double reference, float32.

    python bench/ce_grad_accuracy.py

For random logits (standard normal times 1, 10 and 100) of 2 to 32,000 classes and
random integer labels, every SIMD target this machine runs: the largest error of the
gradient of the summed loss, in units of float32's eps times the row's largest gradient
entry, over rows whose loss is above 1e-3 and over the confident rows (loss below it, down
to 1e-30: the gradient's entries are then themselves tiny). The reference takes the
label's entry as -(sum of the other exponentials) / sum, without the cancellation of
p - 1.
"""

from __future__ import annotations

import fastsoftmax as fs
import numpy as np

SHAPES = [(256, 2), (4096, 10), (1024, 1000), (64, 32000)]
SCALES = [1, 10, 100]
EPS = float(np.finfo(np.float32).eps)


def reference(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The gradient of the summed loss and each row's loss, in long double."""
    xl = x.astype(np.longdouble)
    e = np.exp(xl - xl.max(axis=1, keepdims=True))
    s = e.sum(axis=1)
    rows = np.arange(x.shape[0])
    grad = e / s[:, None]
    others = e.copy()
    others[rows, y] = 0
    grad[rows, y] = -others.sum(axis=1) / s
    loss = np.log1p(others.sum(axis=1) / e[rows, y])
    return grad, loss


def main() -> None:
    rng = np.random.default_rng(0)
    targets = [t for t, usable in fs.simd_targets().items() if usable]
    print("max |error| / (eps * the row's largest |gradient|), float32, reduction='sum'")
    print(f"{'scale':>5} {'classes':>7} " + " ".join(f"{t:>22}" for t in targets))
    print(f"{'':>13} " + " ".join(f"{'loss>1e-3  loss<=1e-3':>22}" for _ in targets))
    for scale in SCALES:
        for shape in SHAPES:
            x = (rng.standard_normal(shape) * scale).astype(np.float32)
            y = rng.integers(0, shape[1], shape[0])
            ref, loss = reference(x, y)
            top = np.abs(ref).max(axis=1)
            kept = top > 1e-30  # (below: gradients that float32 cannot hold)
            cells = []
            for target in targets:
                fs._core.set_target(target)
                _, g = fs.cross_entropy(x, y, reduction="sum", return_grad=True)
                err = (np.abs(g.astype(np.float64) - ref.astype(np.float64)).max(axis=1)) / (
                    EPS * top.astype(np.float64)
                )
                parts = [
                    f"{err[rows].max():9.2f}" if rows.any() else f"{'-':>9}"
                    for rows in (kept & (loss > 1e-3), kept & (loss <= 1e-3))
                ]
                cells.append(f"{parts[0]}  {parts[1]}  ")
            print(f"{scale:>5} {shape[1]:>7} " + " ".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()

"""The NumPy implementations fastsoftmax is compared with.

*Careful* NumPy works in place into preallocated arrays (``o`` the size of the
input, ``m`` and ``s`` one value per row), as a NumPy user who cares about speed
would write it; *naive* NumPy is the textbook expression (still subtracting the
maximum), allocating its temporaries and result. Both take (rows, classes)
arrays and work along the last axis. NumPy runs these operations on one thread.

float16 and bfloat16 (``ml_dtypes.bfloat16``) are computed in float32 and cast
back: :func:`via_into` (careful, preallocated) and :func:`via` (naive).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Union

import numpy as np

# What the implementations return: an array, a loss, or a loss and its gradient.
Output = Union[np.ndarray, float, tuple[float, np.ndarray]]


def numpy_softmax(x: np.ndarray, o: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Careful NumPy softmax: in place into preallocated o (m, s: row buffers)."""
    np.max(x, axis=-1, keepdims=True, out=m)
    np.subtract(x, m, out=o)
    np.exp(o, out=o)
    np.sum(o, axis=-1, keepdims=True, out=s)
    np.divide(o, s, out=o)
    return o


def numpy_log_softmax(x: np.ndarray, o: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    np.max(x, axis=-1, keepdims=True, out=m)
    np.subtract(x, m, out=o)
    np.exp(o, out=o)
    np.sum(o, axis=-1, keepdims=True, out=s)
    np.log(s, out=s)
    np.subtract(x, m, out=o)
    np.subtract(o, s, out=o)
    return o


def numpy_logsumexp(x: np.ndarray, o: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    np.max(x, axis=-1, keepdims=True, out=m)
    np.subtract(x, m, out=o)
    np.exp(o, out=o)
    np.sum(o, axis=-1, keepdims=True, out=s)
    np.log(s, out=s)
    np.add(s, m, out=s)
    return s[..., 0]


def numpy_softmax_backward(
    g: np.ndarray, y: np.ndarray, o: np.ndarray, s: np.ndarray
) -> np.ndarray:
    """Careful NumPy y * (g - sum(g * y)), given y = softmax(x), into o (s: row buffer)."""
    np.multiply(g, y, out=o)
    np.sum(o, axis=-1, keepdims=True, out=s)
    np.subtract(g, s, out=o)
    np.multiply(o, y, out=o)
    return o


def numpy_log_softmax_backward(
    g: np.ndarray, y: np.ndarray, o: np.ndarray, s: np.ndarray
) -> np.ndarray:
    """Careful NumPy g - exp(y) * sum(g), given y = log_softmax(x), into o (s: row buffer)."""
    np.sum(g, axis=-1, keepdims=True, out=s)
    np.exp(y, out=o)
    np.multiply(o, s, out=o)
    np.subtract(g, o, out=o)
    return o


def numpy_cross_entropy_loss(
    x: np.ndarray, y: np.ndarray, o: np.ndarray, m: np.ndarray, s: np.ndarray
) -> float:
    """Careful NumPy mean cross-entropy of (N, C) logits x and integer labels y (o: scratch)."""
    np.max(x, axis=1, keepdims=True, out=m)
    np.subtract(x, m, out=o)
    picked = o[np.arange(x.shape[0]), y]  # x[y] - max
    np.exp(o, out=o)
    np.sum(o, axis=1, keepdims=True, out=s)
    return float(np.mean(np.log(s[:, 0]) - picked))


def numpy_cross_entropy(
    x: np.ndarray, y: np.ndarray, g: np.ndarray, m: np.ndarray, s: np.ndarray
) -> tuple[float, np.ndarray]:
    """Careful NumPy mean cross-entropy of (N, C) logits and its gradient, into g (m, s: rows)."""
    n = x.shape[0]
    rows = np.arange(n)
    np.max(x, axis=1, keepdims=True, out=m)
    np.subtract(x, m, out=g)
    picked = g[rows, y]  # x[y] - max
    np.exp(g, out=g)
    np.sum(g, axis=1, keepdims=True, out=s)
    loss = float(np.mean(np.log(s[:, 0]) - picked))
    np.reciprocal(s, out=s)
    s *= 1.0 / n
    np.multiply(g, s, out=g)
    g[rows, y] -= 1.0 / n
    return loss, g


NUMPY_IMPLS = {
    "softmax": numpy_softmax,
    "log_softmax": numpy_log_softmax,
    "logsumexp": numpy_logsumexp,
}


def naive_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


def naive_log_softmax(x: np.ndarray) -> np.ndarray:
    d = x - x.max(axis=-1, keepdims=True)
    out: np.ndarray = d - np.log(np.exp(d).sum(axis=-1, keepdims=True))
    return out


def naive_logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1)
    out: np.ndarray = m + np.log(np.exp(x - m[:, None]).sum(axis=-1))
    return out


def naive_softmax_backward(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    out: np.ndarray = y * (g - (g * y).sum(axis=-1, keepdims=True))
    return out


def naive_log_softmax_backward(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    out: np.ndarray = g - np.exp(y) * g.sum(axis=-1, keepdims=True)
    return out


def naive_cross_entropy_loss(x: np.ndarray, y: np.ndarray) -> float:
    return float(-naive_log_softmax(x)[np.arange(x.shape[0]), y].mean())


def naive_cross_entropy(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and its gradient: (softmax - one-hot) / N."""
    n = x.shape[0]
    rows = np.arange(n)
    lp = naive_log_softmax(x)
    loss = float(-lp[rows, y].mean())
    g = np.exp(lp)
    g[rows, y] -= 1.0
    g /= n
    return loss, g


def via_into(
    f: Callable[[], Output],
    inputs: Sequence[tuple[np.ndarray, np.ndarray]],
    out: np.ndarray | None,
) -> Output:
    """f computed on wider copies of the inputs, its array cast into out (careful NumPy).

    inputs: (array, preallocated wider array f reads) pairs, copied first; out:
    where f's array result (a gradient, for a loss and gradient) is cast, in the
    inputs' dtype (None: f returns a loss alone, returned as it is).
    """
    for src, dst in inputs:
        np.copyto(dst, src)
    r = f()
    if out is None:
        return r
    if isinstance(r, tuple):
        np.copyto(out, r[1], casting="same_kind")
        return r[0], out
    np.copyto(out, r, casting="same_kind")
    return out


def via(wide: np.dtype, f: Callable[..., Output], *args: np.ndarray) -> Output:
    """f of args converted to wide (integer arrays, the labels, as they are), its array cast back.

    The allocating counterpart of via_into: x.astype(float32), the formula,
    .astype(x.dtype) of the result.
    """
    narrow = args[0].dtype
    r = f(*(a.astype(wide) if a.dtype == narrow else a for a in args))
    if isinstance(r, tuple):
        return r[0], r[1].astype(narrow)
    return r.astype(narrow) if isinstance(r, np.ndarray) else r

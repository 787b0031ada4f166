"""The NumPy implementations fastsoftmax is compared with.

*Careful* NumPy works in place into preallocated arrays (``o`` the size of the
input, ``m`` and ``s`` one value per row), as a NumPy user who cares about speed
would write it; *naive* NumPy is the textbook expression (still subtracting the
maximum), allocating its temporaries and result. Both take (rows, classes)
arrays and work along the last axis. NumPy runs these operations on one thread.
"""

from __future__ import annotations

import numpy as np


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

"""Wide-precision references and the error measure of each operation.

References are computed in float64 for float32 inputs and in longdouble for
float64 inputs, the textbook way, so their own rounding is negligible.
"""

from __future__ import annotations

from typing import Union

import numpy as np

# What an implementation returns, as NumPy: an array, a loss, or a loss and its gradient.
Result = Union[np.ndarray, float, tuple[float, np.ndarray]]

ERROR_MEASURES = {
    "softmax": "max relative error over outputs > 1e-30",
    "log_softmax": "max |err| / max(1, |ref|)",
    "logsumexp": "max |err| / max(1, |ref|)",
    # relative to the size of the formula's terms (its condition), as tests/test_backward.py
    "softmax_backward": "max |err| / (|y| * (|grad| + sum(|grad * y|)))",
    "log_softmax_backward": "max |err| / (|grad| + exp(y) * sum(|grad|))",
    "cross_entropy": "relative error of the mean loss",
    "cross_entropy_grad": (
        "the larger of the mean loss's relative error and the gradient's "
        "max |err| / ((softmax + one-hot) / N) over entries where that is > 1e-30 / N"
    ),
}


def _wide(x: np.ndarray) -> np.ndarray:
    wide = np.longdouble if x.dtype == np.float64 else np.float64
    return x.astype(wide)


def reference(op: str, x: np.ndarray) -> np.ndarray:
    """softmax, log_softmax or logsumexp of x along the last axis, in a wider dtype."""
    r = _wide(x)
    m = r.max(axis=-1, keepdims=True)
    e = np.exp(r - m)
    s = e.sum(axis=-1, keepdims=True)
    out: np.ndarray
    if op == "softmax":
        out = e / s
    elif op == "log_softmax":
        out = (r - m) - np.log(s)
    else:
        out = (m + np.log(s))[..., 0]
    return out


def reference_backward(op: str, g: np.ndarray, y: np.ndarray) -> np.ndarray:
    """softmax_backward (y = softmax) or log_softmax_backward (y = log_softmax), wide."""
    gw, yw = _wide(g), _wide(y)
    out: np.ndarray
    if op == "softmax_backward":
        out = yw * (gw - np.sum(gw * yw, axis=-1, keepdims=True))
    else:
        out = gw - np.exp(yw) * np.sum(gw, axis=-1, keepdims=True)
    return out


def backward_terms(op: str, g: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The size of the backward formula's terms at each element, wide (the error's scale)."""
    gw, yw = np.abs(_wide(g)), _wide(y)
    out: np.ndarray
    if op == "softmax_backward":
        out = np.abs(yw) * (gw + np.sum(gw * np.abs(yw), axis=-1, keepdims=True))
    else:
        out = gw + np.exp(yw) * np.sum(gw, axis=-1, keepdims=True)
    return out


def reference_cross_entropy(x: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy in longdouble."""
    w = x.astype(np.longdouble)
    m = w.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(w - m).sum(axis=1))
    return float(np.mean(lse - w[np.arange(len(y)), y]))


def reference_cross_entropy_grad(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of the mean cross-entropy, (softmax - one-hot) / N, in a wider dtype.

    And the size of its terms, (softmax + one-hot) / N: the scale of its error.
    """
    p = reference("softmax", x)
    rows = np.arange(len(y))
    g, terms = p.copy(), p
    g[rows, y] -= 1
    terms[rows, y] += 1
    return g / len(y), terms / len(y)


def max_error(op: str, got: np.ndarray, ref: np.ndarray) -> float:
    """The error measure (ERROR_MEASURES) of softmax, log_softmax or logsumexp."""
    got = np.asarray(got).astype(ref.dtype)
    if op == "softmax":
        mask = ref > 1e-30
        return float(np.max(np.abs(got - ref)[mask] / ref[mask])) if mask.any() else 0.0
    return float(np.max(np.abs(got - ref) / np.maximum(1.0, np.abs(ref))))


def terms_error(got: np.ndarray, ref: np.ndarray, terms: np.ndarray, floor: float) -> float:
    """max |got - ref| / terms over the entries whose terms exceed floor."""
    mask = terms > floor
    err = np.abs(np.asarray(got).astype(ref.dtype) - ref)
    return float(np.max(err[mask] / terms[mask])) if mask.any() else 0.0


class Reference:
    """The reference result of one operation on one input, and the error of a result against it."""

    def __init__(
        self,
        op: str,
        x: np.ndarray,
        y: np.ndarray | None = None,
        g: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ) -> None:
        self.op = op
        self.loss = 0.0
        self.array: np.ndarray | None = None
        self.terms: np.ndarray | None = None  # the size of the result's terms
        self.floor = 0.0  # where terms are smaller, the error is not measured
        if op in ("softmax", "log_softmax", "logsumexp"):
            self.array = reference(op, x)
        elif op in ("softmax_backward", "log_softmax_backward"):
            assert y is not None
            assert g is not None
            self.array = reference_backward(op, g, y)
            self.terms = backward_terms(op, g, y)
        else:
            assert labels is not None
            self.loss = reference_cross_entropy(x, labels)
            if op == "cross_entropy_grad":
                self.array, self.terms = reference_cross_entropy_grad(x, labels)
                self.floor = 1e-30 / len(labels)

    def error(self, got: Result) -> float:
        """The error of ``got`` under this operation's measure (ERROR_MEASURES)."""
        if self.op == "cross_entropy":
            assert isinstance(got, float)
            return _rel(got, self.loss)
        if self.op == "cross_entropy_grad":
            assert isinstance(got, tuple)
            assert self.array is not None
            assert self.terms is not None
            grad_error = terms_error(got[1], self.array, self.terms, self.floor)
            return max(_rel(got[0], self.loss), grad_error)
        assert isinstance(got, np.ndarray)
        assert self.array is not None
        if self.terms is not None:
            return terms_error(got, self.array, self.terms, self.floor)
        return max_error(self.op, got, self.array)


def _rel(v: float, ref: float) -> float:
    return abs(v - ref) / abs(ref) if ref != 0 else abs(v)

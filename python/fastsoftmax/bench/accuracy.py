"""Wide-precision references and the error measure of each operation.

References are computed in float64 for float32, float16 and bfloat16 inputs and
in longdouble for float64 inputs, the textbook way, so their own rounding is
negligible.

Each measure is a relative error. Where a result (or the size of its terms) is
below ``tiny``, the smallest normal number of the case's dtype, it is measured
against ``tiny`` instead: subnormal results carry fewer bits, and float16's
start at 6.1e-5, where softmax outputs and cross-entropy gradients often lie. A
correctly rounded result then has an error of at most eps / 2 under every
measure (eps: the dtype's machine epsilon, one ulp at 1.0), and
:func:`in_eps` expresses an error in units of eps: 0.5 for correct rounding,
whatever the dtype (eps = 2^-7 for bfloat16, 2^-10 float16, 2^-23 float32,
2^-52 float64).
"""

from __future__ import annotations

from typing import Any, Union

import ml_dtypes
import numpy as np

# What an implementation returns, as NumPy: an array, a loss, or a loss and its gradient.
Result = Union[np.ndarray, float, tuple[float, np.ndarray]]

ERROR_MEASURES = {
    "softmax": "max |err| / max(ref, tiny)",
    "log_softmax": "max |err| / max(1, |ref|)",
    "logsumexp": "max |err| / max(1, |ref|)",
    # relative to the size of the formula's terms (its condition), as tests/test_backward.py
    "softmax_backward": "max |err| / max(|y| * (|grad| + sum(|grad * y|)), tiny)",
    "log_softmax_backward": "max |err| / max(|grad| + exp(y) * sum(|grad|), tiny)",
    "cross_entropy": "relative error of the mean loss",
    "cross_entropy_grad": (
        "the larger of the mean loss's relative error and the gradient's "
        "max |err| / max((softmax + one-hot) / N, tiny)"
    ),
}
# What the measures above and the err/eps column mean, for the report.
ERROR_UNITS = (
    "tiny: the smallest normal number of the case's dtype (2^-126 float32 and bfloat16, "
    "2^-14 float16, 2^-1022 float64). err/eps: the max error in units of the dtype's "
    "machine epsilon (one ulp at 1.0: 2^-23 float32, 2^-52 float64, 2^-10 float16, "
    "2^-7 bfloat16); a correctly rounded result is at most 0.5"
)

# The dtypes of the suite, by the names the options, the table and the JSON file use.
DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
}
HALF_DTYPES = (DTYPES["float16"], DTYPES["bfloat16"])


def numpy_dtype(name: str | np.dtype) -> np.dtype:
    """The NumPy dtype of a name in DTYPES ("bfloat16": ml_dtypes.bfloat16)."""
    return DTYPES[name] if isinstance(name, str) else np.dtype(name)


def _finfo(dtype: str | np.dtype) -> Any:
    """np.finfo, or ml_dtypes.finfo for bfloat16 (which NumPy's does not know)."""
    dt = numpy_dtype(dtype)
    if dt == DTYPES["bfloat16"]:
        return ml_dtypes.finfo(dt)  # type: ignore[no-untyped-call]  # ml_dtypes has no hints here
    return np.finfo(dt)


def eps(dtype: str | np.dtype) -> float:
    """The dtype's machine epsilon: one ulp at 1.0."""
    return float(_finfo(dtype).eps)


def tiny(dtype: str | np.dtype) -> float:
    """The dtype's smallest normal number."""
    return float(_finfo(dtype).tiny)


def in_eps(error: float, dtype: str | np.dtype) -> float:
    """An error under ERROR_MEASURES in units of the dtype's eps (0.5: correctly rounded)."""
    return error / eps(dtype)


def _wide(x: np.ndarray) -> np.ndarray:
    """float64 (longdouble for float64); float16 and bfloat16 convert exactly."""
    wide = np.longdouble if x.dtype == np.float64 else np.float64
    return np.asarray(x).astype(wide)


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
    """Mean cross-entropy, wide (float64; longdouble for float64 logits)."""
    w = _wide(x)
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


def max_error(op: str, got: np.ndarray, ref: np.ndarray, floor: float = 0.0) -> float:
    """The error measure (ERROR_MEASURES) of softmax, log_softmax or logsumexp.

    floor: tiny of the case's dtype (softmax outputs below it count against it).
    """
    got = np.asarray(got).astype(ref.dtype)
    if op == "softmax":
        return terms_error(got, ref, np.abs(ref), floor)
    return float(np.max(np.abs(got - ref) / np.maximum(1.0, np.abs(ref))))


def terms_error(got: np.ndarray, ref: np.ndarray, terms: np.ndarray, floor: float) -> float:
    """max |got - ref| / max(terms, floor) (0 where both are 0)."""
    err = np.abs(np.asarray(got).astype(ref.dtype) - ref)
    scale = np.maximum(terms, floor)
    mask = scale > 0
    return float(np.max(err[mask] / scale[mask])) if mask.any() else 0.0


class Reference:
    """The reference result of one operation on one input, and the error of a result against it.

    The case's dtype is x's (the logits'): it sets the measures' floor, tiny.
    """

    def __init__(
        self,
        op: str,
        x: np.ndarray,
        y: np.ndarray | None = None,
        g: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ) -> None:
        self.op = op
        self.dtype = x.dtype
        self.loss = 0.0
        self.array: np.ndarray | None = None
        self.terms: np.ndarray | None = None  # the size of the result's terms
        self.floor = tiny(x.dtype)  # where terms are smaller, the error is relative to this
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
        return max_error(self.op, got, self.array, self.floor)


def _rel(v: float, ref: float) -> float:
    return abs(v - ref) / abs(ref) if ref != 0 else abs(v)

"""Bad input never crashes: one table of wrong arguments to every public function.

Each row calls one public function with one kind of wrong argument and requires

- exactly the row's exception type (not a subclass: ``fastsoftmax._core.Fallback``, a
  ValueError the fast paths catch, must never escape; NumPy's own subclass of
  MemoryError excepted);
- a fragment of its message naming the offending value (the value itself, its dtype or
  shape, with the argument's name);
- that no array argument changed: the memory each one spans is compared byte for byte
  before and after the call, ``out`` and the logits of ``inplace_grad`` included (every
  row fails before anything is written).

Huge arrays are zero-stride views of one element (``as_strided``), up to 2^62 elements
of no memory; every row with them fails before a kernel would walk them (an output that
cannot be allocated, a conversion NumPy's size computation refuses, shapes that disagree,
a label out of range). NumPy itself refuses a shape whose size in bytes overflows int64,
so no such array can be passed.

Accepted by design, so not here: integer and bool inputs (computed as float64), NaN and
infinite values, ``axis=()``, probability labels that are negative or do not sum to 1
(as in PyTorch), an ``out`` of ``cross_entropy_backward`` that overlaps the logits
partially (computed through a temporary).
"""

from __future__ import annotations

import ctypes
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fastsoftmax as fs
import numpy as np
import pytest
from numpy.exceptions import AxisError
from numpy.lib.stride_tricks import as_strided

try:
    from numpy.lib.array_utils import byte_bounds
except ImportError:  # NumPy < 2.0
    from numpy import byte_bounds  # type: ignore[attr-defined,no-redef]


@pytest.fixture(params=["active"], autouse=True)
def simd(request):  # argument checking does not depend on the SIMD target: run once
    return request.param


@dataclass(frozen=True)
class Row:
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    error: type[BaseException] = ValueError
    match: str = ""  # a literal fragment of the message


ROWS: list[Any] = []


def row(ident: str, error: type[BaseException], match: str, func, *args, **kwargs) -> None:
    ROWS.append(pytest.param(Row(func, args, kwargs, error, match), id=ident))


# ---------------------------------------------------------------- inputs ---


def f32(*shape: int) -> np.ndarray:
    return np.linspace(-2, 2, math.prod(shape), dtype=np.float32).reshape(shape)


def probs(*shape: int) -> np.ndarray:
    return fs.softmax(f32(*shape))


def read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def huge(shape: tuple[int, ...], dtype: Any = np.float32, fill: Any = 0) -> np.ndarray:
    """A read-only view of one element repeated to `shape`: no memory behind it."""
    one = np.full(1, fill, dtype)
    return as_strided(one, shape=shape, strides=(0,) * len(shape), writeable=False)


def shifted(shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Two (3, 10) float32 views of one buffer, the second `shift` elements further on."""
    buf = np.linspace(-1, 1, 30 + shift, dtype=np.float32)
    return buf[:30].reshape(3, 10), buf[shift:].reshape(3, 10)


def short(value: Any) -> str:
    """value's repr for a test id, at most 24 characters."""
    r = repr(value)
    return r if len(r) <= 24 else r[:21] + "..."


H = 2**30  # (H, H) float32: 2^60 elements, 4 EiB
HUGE_ROWS = 2**59  # (HUGE_ROWS, 2) float32: 4 EiB; HUGE_ROWS float32 results: 2 EiB

# (what, factory, error, message with {name} for the argument's name)
BAD_ARRAYS: list[tuple[str, Callable[[], Any], type[BaseException], str]] = [
    ("list-of-strings", lambda: ["a", "b", "c"], TypeError, "{name} has dtype <U1"),
    ("None", lambda: None, TypeError, "{name} has dtype object"),
    ("object-array", lambda: np.array([1.0, None, 2.0]), TypeError, "{name} has dtype object"),
    (
        "object-array-of-floats",
        lambda: np.array([1.0, 2.0, 3.0], dtype=object),
        TypeError,
        "{name} has dtype object",
    ),
    ("complex", lambda: np.ones(3, np.complex64), TypeError, "{name} has dtype complex64"),
    ("str", lambda: "abc", TypeError, "{name} has dtype <U3"),
    ("bytes", lambda: b"abc", TypeError, "{name} has dtype |S3"),
    (
        "datetime64",
        lambda: np.array([1, 2, 3], "datetime64[s]"),
        TypeError,
        "{name} has dtype datetime64[s]",
    ),
    (
        "structured",
        lambda: np.zeros(3, [("a", "f4")]),
        TypeError,
        "{name} has dtype [('a', '<f4')]",
    ),
    ("dict", lambda: {"a": 1.0}, TypeError, "{name} has dtype object"),
    ("ragged-list", lambda: [1.0, [2.0, 3.0]], ValueError, "inhomogeneous shape"),
]

UNARY = [fs.softmax, fs.log_softmax, fs.logsumexp]
BINARY = [fs.softmax_backward, fs.log_softmax_backward]


# ------------------------------------------- softmax, log_softmax, logsumexp, backward ---

for op in UNARY:
    name = op.__name__
    for what, bad, error, message in BAD_ARRAYS:
        row(f"{name}-x-{what}", error, message.format(name="x"), op, bad())
for op in BINARY:
    name = op.__name__
    for what, bad, error, message in BAD_ARRAYS:
        row(f"{name}-grad-{what}", error, message.format(name="grad"), op, bad(), f32(3))
        row(f"{name}-y-{what}", error, message.format(name="y"), op, f32(3), bad())
    for shape in [(3, 2), (3,), (2, 3, 1), (1, 3)]:
        row(
            f"{name}-y-of-shape-{shape}",
            ValueError,
            f"grad and y must have the same shape, got (2, 3) and {shape}",
            op,
            f32(2, 3),
            f32(*shape),
        )


def operands(op: Callable[..., Any], x: Any) -> tuple[Any, ...]:
    """(x,) for a unary op, (x, a y of x's shape and dtype) for a backward op."""
    if op not in BINARY:
        return (x,)
    y = probs(*x.shape) if x.ndim else np.float32(1.0)
    return x, y.astype(x.dtype)


for op in [*UNARY, *BINARY]:
    name = op.__name__
    x = f32(2, 3)
    # bad axes
    for axis, error, message in [
        (2, AxisError, "axis 2 is out of bounds for array of dimension 2"),
        (-3, AxisError, "axis -3 is out of bounds for array of dimension 2"),
        (2**70, AxisError, f"axis {2**70} is out of bounds"),
        (-(2**70), AxisError, f"axis {-(2**70)} is out of bounds"),
        ((0, 2), AxisError, "axis 2 is out of bounds for array of dimension 2"),
        ((0, 2**70), AxisError, f"axis {2**70} is out of bounds"),
        (1.0, TypeError, "got 1.0"),
        (np.float64(1.0), TypeError, f"got {np.float64(1.0)!r}"),
        ("0", TypeError, "got '0'"),
        ([0, 1], TypeError, "got [0, 1]"),
        ((0, 0.5), TypeError, "got (0, 0.5)"),
        (("a",), TypeError, "got ('a',)"),
        ((1, -1), ValueError, "repeated axis in axis (1, -1)"),
    ]:
        row(f"{name}-axis-{short(axis)}", error, message, op, *operands(op, x), axis=axis)
    row(
        f"{name}-0d-input-axis-0",
        AxisError,
        "axis 0 is out of bounds for array of dimension 0",
        op,
        *operands(op, np.float32(1.0)),
        axis=0,
    )

    # bad out
    expected = (2,) if op is fs.logsumexp else (2, 3)
    for what, out, error, message in [
        (
            "wrong-shape",
            np.empty((3, 2), np.float32),
            ValueError,
            f"out has shape (3, 2), expected {expected}",
        ),
        (
            "wrong-ndim",
            np.empty((*expected, 1), np.float32),
            ValueError,
            f"out has shape {(*expected, 1)}, expected {expected}",
        ),
        (
            "wrong-dtype",
            np.empty(expected, np.float64),
            ValueError,
            "out has dtype float64, expected float32",
        ),
        (
            "byte-swapped",
            np.empty(expected, ">f4"),
            ValueError,
            "out has dtype >f4, expected float32",
        ),
        (
            "int-view",
            np.empty(expected, np.float32).view(np.int32),
            ValueError,
            "out has dtype int32, expected float32",
        ),
        ("read-only", read_only(np.empty(expected, np.float32)), ValueError, "out is read-only"),
        ("list", np.empty(expected).tolist(), TypeError, "out must be a numpy.ndarray, got list"),
        ("scalar", np.float32(0), TypeError, "out must be a numpy.ndarray, got float32"),
        ("str", "out", TypeError, "out must be a numpy.ndarray, got str"),
    ]:
        row(f"{name}-out-{what}", error, message, op, *operands(op, f32(2, 3)), out=out)
    # the result dtype is not the input's: float16 in, float16 out; integers in, float64 out
    row(
        f"{name}-float16-input-float32-out",
        ValueError,
        "out has dtype float32, expected float16",
        op,
        *operands(op, f32(2, 3).astype(np.float16)),
        out=np.empty(expected, np.float32),
    )
    row(
        f"{name}-int-input-int-out",
        ValueError,
        "out has dtype int64, expected float64",
        op,
        *operands(op, np.arange(6).reshape(2, 3)),
        out=np.empty(expected, np.int64),
    )

    # huge: the result cannot be allocated; out of the wrong shape; a read-only out
    big = huge((H, H))
    one = (big, big) if op in BINARY else (big,)
    if op is fs.logsumexp:
        row(
            f"{name}-huge-rows",
            MemoryError,
            f"shape ({HUGE_ROWS},)",
            op,
            huge((HUGE_ROWS, 2)),
        )
        row(
            f"{name}-huge-columns",
            MemoryError,
            f"shape ({HUGE_ROWS},)",
            op,
            huge((2, HUGE_ROWS)),
            axis=0,
        )
        row(
            f"{name}-huge-keepdims",
            MemoryError,
            f"shape ({HUGE_ROWS},)",
            op,
            huge((HUGE_ROWS, 2)),
            keepdims=True,
        )
        result: tuple[int, ...] = (H,)
    else:
        row(f"{name}-huge", MemoryError, f"shape ({H}, {H})", op, *one)
        row(f"{name}-huge-axis-0", MemoryError, f"shape ({H}, {H})", op, *one, axis=0)
        result = (H, H)
    row(f"{name}-huge-out-read-only", ValueError, "out is read-only", op, *one, out=huge(result))
    row(
        f"{name}-huge-out-of-the-wrong-shape",
        ValueError,
        f"out has shape (2, 2), expected {result}",
        op,
        *one,
        out=np.empty((2, 2), np.float32),
    )
    # 2^62 int8 elements exist as a zero-stride view; as float64 they cannot
    int8 = huge((2**31, 2**31), np.int8)
    row(
        f"{name}-huge-int8",
        ValueError,
        f"{'grad' if op in BINARY else 'x'} of shape (2147483648, 2147483648) and dtype int8 "
        "is too large to convert",
        op,
        *((int8, int8) if op in BINARY else (int8,)),
    )
    if op in BINARY:
        row(
            f"{name}-huge-shapes-that-differ",
            ValueError,
            f"got ({H}, {H}) and ({H}, {H - 1})",
            op,
            big,
            huge((H, H - 1)),
        )

# out overlapping an input partially: the same buffer, shifted; reversed; transposed
for op in [fs.softmax, fs.log_softmax]:
    name = op.__name__
    for shift in (1, 10, 29):
        x, out = shifted(shift)
        row(f"{name}-out-shifted-by-{shift}", ValueError, "out overlaps an input", op, x, out=out)
    x, out = shifted(1)
    row(f"{name}-out-shifted-axis-None", ValueError, "out overlaps", op, x, axis=None, out=out)
    x, out = shifted(10)
    row(f"{name}-out-shifted-axis-0", ValueError, "out overlaps", op, x, axis=0, out=out)
    buf = np.linspace(-1, 1, 33).astype(np.float16)
    row(
        f"{name}-float16-out-shifted",
        ValueError,
        "out overlaps",
        op,
        buf[:30].reshape(3, 10),
        out=buf[3:].reshape(3, 10),
    )
    flat = np.linspace(-1, 1, 40, dtype=np.float32)
    row(f"{name}-out-is-x[1:]", ValueError, "out overlaps", op, flat, out=flat[1:])
    square = f32(4, 4)
    row(f"{name}-out-reversed", ValueError, "out overlaps", op, square, out=square[:, ::-1])
    square = f32(4, 4)
    row(f"{name}-out-transposed", ValueError, "out overlaps", op, square, out=square.T)
    x = read_only(f32(2, 3))
    row(f"{name}-read-only-x-as-its-own-out", ValueError, "out is read-only", op, x, out=x)

for op in BINARY:
    name = op.__name__
    for shift in (1, 5, 29):
        part, out = shifted(shift)
        row(
            f"{name}-out-over-grad-shifted-by-{shift}",
            ValueError,
            "out overlaps an input",
            op,
            part,
            probs(3, 10),
            out=out,
        )
        part, out = shifted(shift)
        row(
            f"{name}-out-over-y-shifted-by-{shift}",
            ValueError,
            "out overlaps an input",
            op,
            f32(3, 10),
            part,
            out=out,
        )
    part, out = shifted(5)
    row(
        f"{name}-out-shifted-axes", ValueError, "out overlaps", op, part, part, axis=(0, 1), out=out
    )
    square = f32(4, 4)
    row(f"{name}-out-y-transposed", ValueError, "out overlaps", op, f32(4, 4), square, out=square.T)
    g = read_only(f32(2, 3))
    row(f"{name}-read-only-grad-as-out", ValueError, "out is read-only", op, g, probs(2, 3), out=g)

x = f32(4, 5)
row("logsumexp-out-is-a-column-of-x", ValueError, "out overlaps", fs.logsumexp, x, out=x[:, 0])
x = f32(4, 5)
row("logsumexp-out-is-the-last-column", ValueError, "out overlaps", fs.logsumexp, x, out=x[:, -1])
x = f32(4, 5)
row(
    "logsumexp-axes-out-in-x",
    ValueError,
    "out overlaps",
    fs.logsumexp,
    x.reshape(2, 2, 5),
    axis=(1, 2),
    out=x[0, :2],
)
x, out = shifted(1)
row("logsumexp-out-in-x-axis-0", ValueError, "out overlaps", fs.logsumexp, x, axis=0, out=out[0])
x = f32(2, 3)
row("logsumexp-out-is-x", ValueError, "out has shape (2, 3), expected (2,)", fs.logsumexp, x, out=x)
row(
    "logsumexp-keepdims-out-without-the-axis",
    ValueError,
    "out has shape (2,), expected (2, 1)",
    fs.logsumexp,
    f32(2, 3),
    keepdims=True,
    out=np.empty(2, np.float32),
)
row(
    "logsumexp-out-with-the-axis-without-keepdims",
    ValueError,
    "out has shape (2, 1), expected (2,)",
    fs.logsumexp,
    f32(2, 3),
    out=np.empty((2, 1), np.float32),
)
row(
    "logsumexp-axis-None-out-not-0d",
    ValueError,
    "out has shape (1,), expected ()",
    fs.logsumexp,
    f32(2, 3),
    axis=None,
    out=np.empty(1, np.float32),
)


# ----------------------------------------------------------- cross_entropy ---

CE = fs.cross_entropy
CEB = fs.cross_entropy_backward


def labels() -> np.ndarray:
    return np.array([0, 1])


for what, bad, error, message in BAD_ARRAYS:
    row(f"cross_entropy-logits-{what}", error, message.format(name="logits"), CE, bad(), labels())
row("cross_entropy-0d-logits", ValueError, "at least one dimension", CE, np.float32(1.0), 0)
row(
    "cross_entropy-0-classes",
    ValueError,
    "0 classes along axis 1 (shape (2, 0))",
    CE,
    f32(2, 0),
    labels(),
)

for what, lab, error, message in [
    ("above", [0, 3], ValueError, "label 3 at position (1,) is outside [0, 3)"),
    ("negative", [-1, 0], ValueError, "label -1 at position (0,) is outside [0, 3)"),
    ("int8", np.array([0, 5], np.int8), ValueError, "label 5 at position (1,)"),
    (
        "uint64-beyond-int64",
        np.array([0, 2**64 - 1], np.uint64),
        ValueError,
        "label 18446744073709551615 at position (1,)",
    ),
    (
        "ignore_index-of-another-call",
        [0, -1],
        ValueError,
        "label -1 at position (1,) is outside [0, 3) and is not ignore_index (-100)",
    ),
    (
        "too-many",
        [0, 1, 2],
        ValueError,
        "integer labels must have the shape of logits without axis 1, (2,), got (3,)",
    ),
    ("2d", [[0, 1]], ValueError, "without axis 1, (2,), got (1, 2)"),
    ("0d", 0, ValueError, "without axis 1, (2,), got ()"),
    (
        "probabilities-of-the-wrong-shape",
        np.ones((3, 2)),
        ValueError,
        "probability labels must have the shape of logits, (2, 3), got (3, 2)",
    ),
    ("float-indices", [0.0, 1.0], ValueError, "probability labels must have the shape"),
    ("bool", [True, False], TypeError, "labels have dtype bool"),
    ("strings", ["a", "b"], TypeError, "labels have dtype <U1"),
    ("None", None, TypeError, "labels have dtype object"),
    ("object", np.array([0, 1], object), TypeError, "labels have dtype object"),
    ("complex", np.array([0, 1], complex), TypeError, "labels have dtype complex128"),
    (
        "datetime64",
        np.array([0, 1], "datetime64[s]"),
        TypeError,
        "labels have dtype datetime64[s]",
    ),
]:
    row(f"cross_entropy-labels-{what}", error, message, CE, f32(2, 3), lab)
k = np.zeros((2, 3, 4, 5))
y = np.zeros((2, 4, 5), np.int64)
y[1, 2, 3] = 7
row(
    "cross_entropy-K-d-label-position",
    ValueError,
    "label 7 at position (1, 2, 3)",
    CE,
    k,
    y,
    axis=1,
)

for what, w, error, message in [
    ("too-long", np.ones(4), ValueError, "one entry per class, shape (3,), got (4,)"),
    ("2d", np.ones((1, 3)), ValueError, "one entry per class, shape (3,), got (1, 3)"),
    ("scalar", 1.0, ValueError, "one entry per class, shape (3,), got ()"),
    ("negative", [1.0, -0.5, 1.0], ValueError, "non-negative, got -0.5 at class 1"),
    ("nan", [1.0, 1.0, np.nan], ValueError, "finite and non-negative, got nan at class 2"),
    ("inf", [1.0, np.inf, 1.0], ValueError, "finite and non-negative, got inf at class 1"),
    ("beyond-float32", [1.0, 1e300, 1.0], ValueError, "the first 1e+300 at class 1"),
    ("bool", np.ones(3, bool), TypeError, "weight must be real numbers, got dtype bool"),
    ("strings", ["a", "b", "c"], TypeError, "weight must be real numbers, got dtype <U1"),
    ("complex", np.ones(3, complex), TypeError, "got dtype complex128"),
    ("objects", [1.0, None, 1.0], TypeError, "weight must be real numbers, got dtype object"),
]:
    row(f"cross_entropy-weight-{what}", error, message, CE, f32(2, 3), labels(), weight=w)

for option, value, error, message in [
    ("reduction", "avg", ValueError, "reduction must be 'none', 'sum' or 'mean', got 'avg'"),
    ("reduction", "MEAN", ValueError, "got 'MEAN'"),
    ("reduction", None, ValueError, "got None"),
    ("reduction", b"mean", ValueError, "got b'mean'"),
    ("reduction", ["mean"], ValueError, "got ['mean']"),
    ("reduction", np.array("mean"), ValueError, "got array('mean'"),
    ("reduction", np.array(["mean", "sum"]), ValueError, "got array(['mean', 'sum']"),
    ("label_smoothing", 1.5, ValueError, "label_smoothing must be [0.0, 1.0], got 1.5"),
    ("label_smoothing", -0.1, ValueError, "label_smoothing must be [0.0, 1.0], got -0.1"),
    ("label_smoothing", math.nan, ValueError, "label_smoothing must be [0.0, 1.0], got nan"),
    ("label_smoothing", math.inf, ValueError, "got inf"),
    ("label_smoothing", 10**400, ValueError, "label_smoothing must be [0.0, 1.0], got 1000"),
    ("label_smoothing", None, TypeError, "label_smoothing must be a real number, got None"),
    ("label_smoothing", "0.1", TypeError, "label_smoothing must be a real number, got '0.1'"),
    ("label_smoothing", 0.1j, TypeError, "got 0.1j"),
    ("label_smoothing", np.array([0.1]), TypeError, "got array([0.1])"),
    ("z_loss", -1.0, ValueError, "z_loss must be >= 0.0, got -1.0"),
    ("z_loss", math.inf, ValueError, "z_loss must be finite, got inf"),
    ("z_loss", math.nan, ValueError, "z_loss must be >= 0.0, got nan"),
    ("z_loss", 10**400, ValueError, "z_loss must be finite, got 1000"),
    ("z_loss", b"0.1", TypeError, "z_loss must be a real number, got b'0.1'"),
    ("softcap", 0.0, ValueError, "softcap must be a positive finite number or None, got 0.0"),
    ("softcap", -2, ValueError, "softcap must be a positive finite number or None, got -2"),
    ("softcap", math.inf, ValueError, "softcap must be a positive finite number or None, got inf"),
    ("softcap", math.nan, ValueError, "softcap must be a positive finite number or None, got nan"),
    ("softcap", -(10**400), ValueError, "softcap must be a positive finite number or None"),
    ("softcap", 1e-50, ValueError, "softcap 1e-50 is out of the range of float32"),
    ("softcap", 1e39, ValueError, "softcap 1e+39 is out of the range of float32"),
    ("softcap", "30", TypeError, "softcap must be a real number, got '30'"),
    ("softcap", 1j, TypeError, "softcap must be a real number, got 1j"),
    ("axis", 2, AxisError, "axis 2 is out of bounds for array of dimension 2"),
    ("axis", -3, AxisError, "axis -3 is out of bounds for array of dimension 2"),
    ("axis", 2**70, AxisError, f"axis {2**70} is out of bounds"),
    ("axis", (0, 1), TypeError, "axis must be an integer, got (0, 1)"),
    ("axis", (1,), TypeError, "axis must be an integer, got (1,)"),
    ("axis", None, TypeError, "axis must be an integer, got None"),
    ("axis", [1], TypeError, "axis must be an integer, got [1]"),
    ("axis", 1.0, TypeError, "axis must be an integer, got 1.0"),
    ("ignore_index", 1.5, TypeError, "ignore_index must be an integer, got 1.5"),
    ("ignore_index", "1", TypeError, "ignore_index must be an integer, got '1'"),
    ("ignore_index", None, TypeError, "ignore_index must be an integer, got None"),
    ("ignore_index", 2**70, ValueError, f"ignore_index must fit in int64, got {2**70}"),
]:
    ident = f"cross_entropy-{option}-{short(value)}"
    row(ident, error, message, CE, f32(2, 3), labels(), **{option: value})
    if option in ("reduction", "label_smoothing", "softcap") and error is ValueError:
        # the backward checks its options as the forward does, before writing into out
        out = np.zeros((2, 3), np.float32)
        ident = f"cross_entropy_backward-{option}-{short(value)}"
        row(ident, error, message, CEB, f32(2, 3), labels(), out=out, **{option: value})
row(
    "cross_entropy-axis-None-1d-logits",
    TypeError,
    "axis must be an integer, got None",
    CE,
    f32(3),
    np.int64(1),
    axis=None,
)

for what, kwargs, error, message in [
    ("without-return_grad", {}, ValueError, "grad_out is only used with return_grad=True"),
    (
        "array-for-mean",
        {"return_grad": True, "grad_out": np.ones(2)},
        ValueError,
        "grad_out must be a scalar for reduction='mean', got shape (2,)",
    ),
    (
        "array-for-sum",
        {"return_grad": True, "reduction": "sum", "grad_out": np.ones(1)},
        ValueError,
        "grad_out must be a scalar for reduction='sum', got shape (1,)",
    ),
    (
        "not-broadcasting",
        {"return_grad": True, "reduction": "none", "grad_out": np.ones(3)},
        ValueError,
        "grad_out of shape (3,) does not broadcast to the per-example losses' shape (2,)",
    ),
    (
        "complex",
        {"return_grad": True, "grad_out": 1j},
        TypeError,
        "grad_out must be real numbers, got dtype complex128",
    ),
    ("string", {"return_grad": True, "grad_out": "1"}, TypeError, "got dtype <U1"),
    ("object", {"return_grad": True, "grad_out": object()}, TypeError, "got dtype object"),
]:
    kwargs.setdefault("grad_out", 1.0)
    row(f"cross_entropy-grad_out-{what}", error, message, CE, f32(2, 3), labels(), **kwargs)

# inplace_grad: the logits must be a writeable float ndarray, and stay untouched on error
for what, logits, kwargs, error, message in [
    (
        "without-return_grad",
        f32(2, 3),
        {},
        ValueError,
        "inplace_grad=True requires return_grad=True",
    ),
    (
        "read-only",
        read_only(f32(2, 3)),
        {"return_grad": True},
        ValueError,
        "inplace_grad=True needs writeable logits; these are read-only",
    ),
    (
        "int",
        np.ones((2, 3), np.int32),
        {"return_grad": True},
        TypeError,
        "inplace_grad=True needs floating-point logits, got dtype int32",
    ),
    (
        "bool",
        np.ones((2, 3), bool),
        {"return_grad": True},
        TypeError,
        "needs floating-point logits, got dtype bool",
    ),
    (
        "list",
        f32(2, 3).tolist(),
        {"return_grad": True},
        TypeError,
        "inplace_grad=True needs logits to be a numpy.ndarray, got list",
    ),
    (
        "label-out-of-range",
        f32(2, 3),
        {"return_grad": True, "labels": [0, 3]},
        ValueError,
        "label 3 at position (1,)",
    ),
    (
        "float16-label-out-of-range",
        f32(2, 3).astype(np.float16),
        {"return_grad": True, "labels": [-5, 0]},
        ValueError,
        "label -5 at position (0,)",
    ),
    (
        "negative-weight",
        f32(2, 3),
        {"return_grad": True, "weight": [1.0, 1.0, -1.0]},
        ValueError,
        "got -1.0 at class 2",
    ),
    (
        "bad-grad_out",
        f32(2, 3),
        {"return_grad": True, "grad_out": np.ones(2)},
        ValueError,
        "grad_out must be a scalar",
    ),
    (
        "huge-read-only",
        huge((H, H)),
        {"return_grad": True, "labels": huge((H,), np.int64)},
        ValueError,
        "these are read-only",
    ),
]:
    lab = kwargs.pop("labels", labels())
    row(
        f"cross_entropy-inplace_grad-{what}",
        error,
        message,
        CE,
        logits,
        lab,
        inplace_grad=True,
        **kwargs,
    )

# huge: results that cannot be allocated, shapes that disagree, a label out of range
row(
    "cross_entropy-huge-bad-label",
    ValueError,
    "label 7 at position (0,) is outside [0, 4)",
    CE,
    huge((2**58, 4)),
    huge((2**58,), np.int64, 7),
)
row(
    "cross_entropy-huge-return_grad",
    MemoryError,
    f"shape ({H}, {H})",
    CE,
    huge((H, H)),
    huge((H,), np.int64),
    return_grad=True,
)
row(
    "cross_entropy-huge-reduction-none",
    MemoryError,
    f"shape ({HUGE_ROWS},)",
    CE,
    huge((HUGE_ROWS, 2)),
    huge((HUGE_ROWS,), np.int64),
    reduction="none",
)
row(
    "cross_entropy-huge-int8-labels",
    MemoryError,
    f"shape ({HUGE_ROWS},) and data type int64",
    CE,
    huge((HUGE_ROWS, 2)),
    huge((HUGE_ROWS,), np.int8),
)
row(
    "cross_entropy-huge-labels-of-another-shape",
    ValueError,
    f"without axis 1, ({H},), got ({H + 1},)",
    CE,
    huge((H, H)),
    huge((H + 1,), np.int64),
)
row(
    "cross_entropy-huge-weight-of-another-length",
    ValueError,
    f"one entry per class, shape ({HUGE_ROWS},), got (3,)",
    CE,
    huge((2, HUGE_ROWS)),
    labels(),
    weight=np.ones(3),
)
row(
    "cross_entropy-huge-int8-logits",
    ValueError,
    "logits of shape (2147483648, 2147483648) and dtype int8 is too large to convert",
    CE,
    huge((2**31, 2**31), np.int8),
    huge((2**31,), np.int64),
)


# -------------------------------------------------- cross_entropy_backward ---

for what, lse, error, message in [
    (
        "of-the-wrong-shape",
        np.zeros((2, 1)),
        ValueError,
        "lse must have the per-example shape (2,), got (2, 1)",
    ),
    ("of-the-logits-shape", np.zeros((2, 3)), ValueError, "got (2, 3)"),
    ("complex", np.zeros(2, complex), TypeError, "lse must be real numbers, got dtype complex128"),
    ("strings", ["a", "b"], TypeError, "lse must be real numbers, got dtype <U1"),
    ("None-entries", [None, None], TypeError, "lse must be real numbers, got dtype object"),
]:
    out = np.zeros((2, 3), np.float32)
    row(
        f"cross_entropy_backward-lse-{what}",
        error,
        message,
        CEB,
        f32(2, 3),
        labels(),
        lse=lse,
        out=out,
    )

for what, out, error, message in [
    ("list", np.zeros((2, 3)).tolist(), TypeError, "out must be a numpy.ndarray, got list"),
    ("scalar", np.float32(0), TypeError, "out must be a numpy.ndarray, got float32"),
    (
        "wrong-dtype",
        np.zeros((2, 3)),
        ValueError,
        "out must have shape (2, 3) and dtype float32, got (2, 3) and float64",
    ),
    ("byte-swapped", np.zeros((2, 3), ">f4"), ValueError, "got (2, 3) and >f4"),
    ("wrong-shape", np.zeros((3, 2), np.float32), ValueError, "got (3, 2) and float32"),
    ("per-example-shape", np.zeros(2, np.float32), ValueError, "got (2,) and float32"),
    ("read-only", read_only(np.zeros((2, 3), np.float32)), ValueError, "out is read-only"),
]:
    row(f"cross_entropy_backward-out-{what}", error, message, CEB, f32(2, 3), labels(), out=out)
x = read_only(f32(2, 3))
row(
    "cross_entropy_backward-read-only-logits-as-out",
    ValueError,
    "out is read-only",
    CEB,
    x,
    labels(),
    out=x,
)
for what, lab, kwargs, error, message in [
    ("label-out-of-range", [0, 3], {}, ValueError, "label 3 at position (1,)"),
    ("labels-of-another-shape", [0, 1, 2], {}, ValueError, "(2,), got (3,)"),
    ("string-labels", ["a", "b"], {}, TypeError, "labels have dtype <U1"),
    ("negative-weight", [0, 1], {"weight": [1, -1, 1]}, ValueError, "got -1 at class 1"),
    ("axis-None", [0, 1], {"axis": None}, TypeError, "axis must be an integer, got None"),
    ("axis-out-of-range", [0, 1], {"axis": 2}, AxisError, "axis 2 is out of bounds"),
    (
        "grad_out-array-for-mean",
        [0, 1],
        {"grad_out": np.ones(2)},
        ValueError,
        "grad_out must be a scalar for reduction='mean', got shape (2,)",
    ),
    ("z_loss-negative", [0, 1], {"z_loss": -1.0}, ValueError, "z_loss must be >= 0.0, got -1.0"),
    ("ignore_index-float", [0, 1], {"ignore_index": 0.5}, TypeError, "got 0.5"),
]:
    out = np.zeros((2, 3), np.float32)
    row(f"cross_entropy_backward-{what}", error, message, CEB, f32(2, 3), lab, out=out, **kwargs)
for what, logits in [("None", None), ("complex", np.ones((2, 3), complex)), ("strings", "abc")]:
    row(
        f"cross_entropy_backward-logits-{what}",
        TypeError,
        "logits has dtype",
        CEB,
        logits,
        labels(),
    )
row(
    "cross_entropy_backward-huge",
    MemoryError,
    f"shape ({H}, {H})",
    CEB,
    huge((H, H)),
    huge((H,), np.int64),
)
row(
    "cross_entropy_backward-huge-lse-of-another-shape",
    ValueError,
    f"lse must have the per-example shape ({H},), got ({H - 1},)",
    CEB,
    huge((H, H)),
    huge((H,), np.int64),
    lse=huge((H - 1,)),
)
row(
    "cross_entropy_backward-huge-out-read-only",
    ValueError,
    "out is read-only",
    CEB,
    huge((H, H)),
    huge((H,), np.int64),
    out=huge((H, H)),
)


# ------------------------------------------------------------------ the test ---


def memory(a: np.ndarray) -> bytes:
    """A copy of the bytes `a` spans (one element for a zero-stride view)."""
    low, high = byte_bounds(a)
    return ctypes.string_at(low, high - low)


def test_row_ids_are_unique_and_every_public_function_has_rows():
    ids = [p.id for p in ROWS]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    public = {
        fs.softmax,
        fs.log_softmax,
        fs.logsumexp,
        fs.softmax_backward,
        fs.log_softmax_backward,
        fs.cross_entropy,
        fs.cross_entropy_backward,
    }
    assert {p.values[0].func for p in ROWS} == public


@pytest.mark.parametrize("case", ROWS)
def test_bad_input_raises_naming_the_value_and_writes_nothing(case: Row):
    arrays = [a for a in (*case.args, *case.kwargs.values()) if isinstance(a, np.ndarray)]
    before = [memory(a) for a in arrays]
    with pytest.raises(case.error, match=re.escape(case.match)) as info:
        case.func(*case.args, **case.kwargs)
    # exactly the row's type (a subclass could be _core.Fallback escaping), but for the
    # MemoryError subclass NumPy raises when an array cannot be allocated
    exact = type(info.value) is case.error or case.error is MemoryError
    assert exact, f"{type(info.value).__name__}: {info.value}"
    changed = [i for i, (a, b) in enumerate(zip(arrays, before)) if memory(a) != b]
    assert not changed, f"array arguments {changed} were modified"

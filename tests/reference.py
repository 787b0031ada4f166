"""Plain NumPy references and error measures for the tests.

The references are written the textbook way (m = max, e = exp(x - m), ...) in
a wider type than the input: float64 for float32/float16 inputs and
np.longdouble for float64 inputs, so their own rounding is negligible next to
the tolerances. They are meant for finite inputs (the edge cases are checked
against SciPy instead); warnings from inf arithmetic are silenced so that
pytest's ``filterwarnings = error`` does not trip on them.
"""

from __future__ import annotations

import numpy as np
import scipy.special

FLOATS = (np.float32, np.float64)

# README's accuracy guarantees: softmax's relative error (outputs above a tiny
# value), log_softmax's and logsumexp's absolute error per max(1, |value|).
SOFTMAX_RTOL = {np.float32: 1e-5, np.float64: 1e-13}
LOG_ATOL = {np.float32: 2e-6, np.float64: 4e-15}

# fastsoftmax's public computations (the rest of fs.__all__ is configuration). The
# fuzz target picks from this tuple by index: new names go at the end.
PUBLIC_OPS = (
    "softmax",
    "log_softmax",
    "logsumexp",
    "softmax_backward",
    "log_softmax_backward",
    "cross_entropy",
    "cross_entropy_backward",
)


def wide_dtype(dtype: np.dtype | type) -> type:
    """The dtype a reference for `dtype` is computed in."""
    return np.longdouble if np.dtype(dtype).itemsize >= 8 else np.float64


def widen(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(wide_dtype(x.dtype))


def ref_softmax(x: np.ndarray, axis=-1) -> np.ndarray:
    """softmax in the wide dtype: exp(x - max) / sum."""
    w = widen(x)
    with np.errstate(all="ignore"):
        m = np.max(w, axis=axis, keepdims=True)
        e = np.exp(w - m)
        return e / np.sum(e, axis=axis, keepdims=True)


def ref_log_softmax(x: np.ndarray, axis=-1) -> np.ndarray:
    """(x - max) - log(sum(exp(x - max))) in the wide dtype."""
    w = widen(x)
    with np.errstate(all="ignore"):
        m = np.max(w, axis=axis, keepdims=True)
        return (w - m) - np.log(np.sum(np.exp(w - m), axis=axis, keepdims=True))


def ref_logsumexp(x: np.ndarray, axis=-1, keepdims: bool = False) -> np.ndarray:
    """max + log(sum(exp(x - max))) in the wide dtype."""
    w = widen(x)
    with np.errstate(all="ignore"):
        m = np.max(w, axis=axis, keepdims=True)
        r = m + np.log(np.sum(np.exp(w - m), axis=axis, keepdims=True))
    return r if keepdims else np.squeeze(r, axis=axis)


def ref_softmax_backward(grad: np.ndarray, y: np.ndarray, axis=-1) -> np.ndarray:
    """y * (grad - sum(grad * y)) in the wide dtype."""
    g, yy = widen(grad), widen(y)
    return yy * (g - np.sum(g * yy, axis=axis, keepdims=True))


def ref_log_softmax_backward(grad: np.ndarray, y: np.ndarray, axis=-1) -> np.ndarray:
    """grad - exp(y) * sum(grad) in the wide dtype."""
    g, yy = widen(grad), widen(y)
    return g - np.exp(yy) * np.sum(g, axis=axis, keepdims=True)


REFERENCES = {
    "softmax": ref_softmax,
    "log_softmax": ref_log_softmax,
    "logsumexp": ref_logsumexp,
}


def scipy_op(name: str, x: np.ndarray, axis=-1) -> np.ndarray:
    """SciPy's softmax / log_softmax / logsumexp, with NumPy's warnings silenced."""
    with np.errstate(all="ignore"):
        return np.asarray(getattr(scipy.special, name)(x, axis=axis))


def ulp_error(got: np.ndarray, ref: np.ndarray, dtype: type) -> np.ndarray:
    """|got - ref| in units of the spacing of `dtype` at ref (subnormal spacing below).

    `ref` is the exact (wide) value; equal values, including equal infinities,
    count as 0.
    """
    info = np.finfo(dtype)
    ref = np.asarray(ref)
    got = np.asarray(got).astype(ref.dtype)
    with np.errstate(all="ignore"):
        r = np.abs(ref)
        e = np.floor(np.log2(np.maximum(r, ref.dtype.type(info.smallest_subnormal))))
        spacing = np.maximum(np.exp2(e - info.nmant), ref.dtype.type(info.smallest_subnormal))
        err = np.abs(got - ref) / spacing
    return np.where(got == ref, 0.0, err).astype(np.float64)


def describe_worst(err: np.ndarray, *arrays: tuple[str, np.ndarray]) -> str:
    """A message naming the worst element of `err` and the arrays' values there."""
    flat = np.nan_to_num(np.asarray(err, dtype=np.float64), nan=np.inf)
    i = np.unravel_index(int(np.argmax(flat)), flat.shape)
    parts = [f"worst at index {tuple(int(k) for k in i)}: error {flat[i]!r}"]
    for name, a in arrays:
        parts.append(f"{name}={np.asarray(a)[i]!r}")
    return ", ".join(parts)


def assert_softmax_close(got, ref, rtol: float, tiny: float, context: str = "") -> None:
    """Relative error <= rtol wherever ref > tiny; absolute error <= rtol * tiny elsewhere."""
    got = np.asarray(got)
    ref = np.asarray(ref)
    assert got.shape == ref.shape, f"shape {got.shape}, expected {ref.shape} {context}"
    with np.errstate(all="ignore"):
        diff = np.abs(got.astype(ref.dtype) - ref)
        rel = np.where(ref > tiny, diff / np.where(ref > tiny, ref, 1), diff / tiny)
    bad = ~(rel <= rtol)
    assert not bad.any(), (
        f"{int(bad.sum())} of {bad.size} elements off by more than rtol={rtol} "
        f"(relative where ref > {tiny}, else absolute / {tiny}); "
        + describe_worst(rel, ("got", got), ("ref", ref))
        + f" {context}"
    )


def assert_log_close(got, ref, atol: float, context: str = "") -> None:
    """|got - ref| <= atol * max(1, |ref|) elementwise, or got == ref rounded to got's dtype."""
    got = np.asarray(got)
    ref = np.asarray(ref)
    assert got.shape == ref.shape, f"shape {got.shape}, expected {ref.shape} {context}"
    with np.errstate(all="ignore"):
        # equal to the reference rounded to got's dtype: exact (covers overflow to -inf)
        same = got == ref.astype(got.dtype)
        err = np.abs(got.astype(ref.dtype) - ref) / np.maximum(1, np.abs(ref))
    err = np.where(same, 0, err)
    bad = ~(err <= atol)
    assert not bad.any(), (
        f"{int(bad.sum())} of {bad.size} elements off by more than {atol} * max(1, |ref|); "
        + describe_worst(err, ("got", got), ("ref", ref))
        + f" {context}"
    )


# Row shapes (rows, length) for the accuracy tests: lengths from 1 up to
# 200,000, crossing vector widths (4, 8, 16 lanes), the 4-vector unroll and
# the 64-vector blocks; about 200,000 elements at most per case.
ACCURACY_SHAPES = [
    (50, 1),
    (40, 2),
    (30, 3),
    (20, 15),
    (20, 16),
    (20, 17),
    (10, 100),
    (8, 1000),
    (4, 1025),
    (3, 4097),
    (2, 16385),
    (1, 65537),
    (1, 200000),
]

SCALES = ["1", "10", "100", "equal"]


def make_logits(rng: np.random.Generator, shape, scale: str, dtype) -> np.ndarray:
    """Random logits: standard normal times `scale`, or rows whose entries are all equal."""
    if scale == "equal":
        row_values = rng.normal(0, 10, size=(*shape[:-1], 1))
        return np.broadcast_to(row_values, shape).astype(dtype)
    return (rng.standard_normal(shape) * float(scale)).astype(dtype)


def normalize_axes(axis, ndim: int) -> tuple[int, ...]:
    """The axes an `axis` argument (int, tuple or None) names, non-negative and sorted."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, tuple):
        return tuple(sorted(a % ndim for a in axis))
    return (axis % ndim,)


def as_rows(a: np.ndarray, axis) -> np.ndarray:
    """The slices along `axis` (int, tuple or None: merged) as the rows of an (R, n) array.

    The rows come in the C order of the other axes, which is the order of a
    reduction's result; several axes are merged in their own C order.
    """
    a = np.asarray(a)
    axes = normalize_axes(axis, a.ndim)
    keep = [d for d in range(a.ndim) if d not in axes]
    rows = int(np.prod([a.shape[d] for d in keep], dtype=np.int64))
    n = int(np.prod([a.shape[d] for d in axes], dtype=np.int64))
    return np.transpose(a, [*keep, *axes]).reshape(rows, n)


def from_rows(rows: np.ndarray, shape: tuple[int, ...], axis) -> np.ndarray:
    """The inverse of as_rows: an array of `shape` whose slices along `axis` are `rows`."""
    axes = normalize_axes(axis, len(shape))
    keep = [d for d in range(len(shape)) if d not in axes]
    perm = [*keep, *axes]
    return np.transpose(rows.reshape([shape[d] for d in perm]), np.argsort(perm))


class Layout:
    """Where a view of shape `shape` lives inside a larger base array.

    ``order`` is the memory order of the axes (the base's axis j holds the view's
    axis ``order[j]``, so a reversed order is Fortran-like), ``steps`` the step of
    each view axis through the base (negative: reversed), ``margins`` the base
    elements left on both sides of each view axis, and ``misaligned`` puts the
    data one byte off its natural alignment. The parts of the base outside the
    view are filled with a value that would show if a kernel read or wrote them.
    """

    def __init__(self, shape, order=None, steps=None, margins=None, misaligned=False):
        ndim = len(shape)
        self.shape = tuple(shape)
        self.order = tuple(range(ndim)) if order is None else tuple(order)
        self.steps = (1,) * ndim if steps is None else tuple(steps)
        self.margins = (0,) * ndim if margins is None else tuple(margins)
        self.misaligned = misaligned

    def __repr__(self) -> str:
        return (
            f"Layout(shape={self.shape}, order={self.order}, steps={self.steps}, "
            f"margins={self.margins}, misaligned={self.misaligned})"
        )

    def base_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[a] * abs(self.steps[a]) + 2 * self.margins[a] for a in self.order)

    def view(self, base: np.ndarray) -> np.ndarray:
        """The view of `base` (an array of base_shape()) with this layout."""
        # (a trailing Ellipsis keeps a 0-d result an array, not a scalar)
        spans = [
            slice(self.margins[a], self.margins[a] + self.shape[a] * abs(self.steps[a]))
            for a in self.order
        ]
        region = base[(*spans, Ellipsis)]
        stepped = region[(*(slice(None, None, self.steps[a]) for a in self.order), Ellipsis)]
        return stepped.transpose(np.argsort(self.order))

    def allocate(self, dtype, fill) -> np.ndarray:
        """A base array, filled with `fill` (one byte off alignment if misaligned)."""
        dtype = np.dtype(dtype)
        shape = self.base_shape()
        if self.misaligned and dtype.itemsize > 1:
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            base = np.empty(size + 1, np.uint8)[1:].view(dtype).reshape(shape)
        else:
            base = np.empty(shape, dtype)
        base[...] = fill
        return base

    def place(self, values: np.ndarray, fill) -> tuple[np.ndarray, np.ndarray]:
        """(view, base): a view with this layout holding `values` (of this shape)."""
        values = np.asarray(values)
        assert values.shape == self.shape, (values.shape, self.shape)
        base = self.allocate(values.dtype, fill)
        view = self.view(base)
        view[...] = values
        return view, base

    def outside(self) -> np.ndarray:
        """A boolean array of base_shape(): True where the base is not part of the view."""
        mask = np.ones(self.base_shape(), bool)
        self.view(mask)[...] = False
        return mask


def poison(dtype) -> float | int | bool:
    """A fill value for the memory around a view: NaN for floats, an extreme for integers."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.nan
    if dtype.kind == "b":
        return True
    return np.iinfo(dtype).max


def check_like_scipy(
    name: str, got: np.ndarray, x: np.ndarray, labels: list[str], dtype, exact_zeros: bool = True
) -> None:
    """NaN/inf/zero pattern equal to SciPy's row by row; finite values accurate.

    exact_zeros=False leaves out the zeros, for random rows where a log_softmax of
    about -1 ulp may round to 0 in one implementation and not in the other.
    """
    expected = scipy_op(name, x, axis=-1)
    assert got.shape == expected.shape, f"shape {got.shape}, expected {expected.shape}"
    assert got.dtype == dtype, f"dtype {got.dtype}, expected {dtype}"
    g2 = got.reshape(len(labels), -1)
    e2 = expected.reshape(len(labels), -1)
    patterns = [("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)]
    if exact_zeros:
        patterns.append(("exact 0", lambda a: a == 0))
    for pattern, f in patterns:
        mismatch = f(g2) != f(e2)
        if mismatch.any():
            row, col = (int(i) for i in np.argwhere(mismatch)[0])
            rows_bad = sorted({labels[i] for i in np.nonzero(mismatch.any(axis=1))[0]})
            raise AssertionError(
                f"{name}: {pattern} pattern differs from SciPy in {len(rows_bad)} row case(s), "
                f"first: row '{labels[row]}', index {col}: got {g2[row, col]!r}, "
                f"SciPy {e2[row, col]!r}; all cases: {rows_bad}"
            )
    finite = np.isfinite(e2)
    if finite.any():
        ref = REFERENCES[name](x, axis=-1).reshape(e2.shape)
        if name == "softmax":
            assert_softmax_close(
                g2[finite], ref[finite], SOFTMAX_RTOL[dtype], 1e-30, "(finite entries)"
            )
        else:
            assert_log_close(g2[finite], ref[finite], LOG_ATOL[dtype], "(finite entries)")

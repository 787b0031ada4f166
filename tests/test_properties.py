"""Property-based tests (hypothesis) of the softmax family against the NumPy reference.

softmax, log_softmax, logsumexp (with and without keepdims), softmax_backward and
log_softmax_backward on random arrays of 0 to 4 dimensions (empty axes included),
every axis (negative ones, tuples of axes and None too), float16/float32/float64 and
integer/bool inputs, views with random strides, negative steps, transposed axes and
misaligned data inside a larger array (the memory around a view holds NaN, so a
kernel reading or writing outside the view shows), ``out=`` arrays of their own
layout or aliasing an input (in place), and values from wide ranges with NaN,
infinities, subnormals, +-3e38, the dtype's extremes and all-equal slices.

The properties:

- every result agrees with the reference on every SIMD target: NaN and infinities
  exactly where the README's edge-case table (SciPy's semantics) puts them, and the
  finite values within the README's accuracy (float16 is computed in float32: half an
  ulp of float16 more; integers and bools in float64);
- the slices of softmax sum to 1 where the input slice makes them finite;
- softmax and log_softmax are unchanged by adding a constant to a slice, and
  logsumexp moves by that constant;
- no input, nor anything around it, is modified unless it is ``out``;
- every SIMD target gives the same answer, to twice the documented accuracy.

Each example runs on every usable target inside the test (``on_target``), so the
conftest's per-target parametrization is switched off here. The number of examples
is the hypothesis profile's (tests/conftest.py: ``HYPOTHESIS_PROFILE=long`` for long
runs).
"""

from __future__ import annotations

import contextlib
import math

import fastsoftmax as fs
import numpy as np
import pytest
from fastsoftmax import _core
from hypothesis import given
from hypothesis import strategies as st
from reference import (
    Layout,
    as_rows,
    assert_log_close,
    assert_softmax_close,
    describe_worst,
    from_rows,
    normalize_axes,
    poison,
    ref_log_softmax,
    ref_log_softmax_backward,
    ref_logsumexp,
    ref_softmax,
    ref_softmax_backward,
    scipy_op,
    widen,
)
from test_backward import error_bound

TARGETS = [name for name, usable in fs.simd_targets().items() if usable]

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
INTEGERS = [np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64, np.bool_]

# The README's accuracy, by result dtype. float16 results are float32 results rounded
# once more: half an ulp of float16 (2^-11 relative) on top of twice float32's bound.
HALF_ULP16 = 2.0**-11
SOFTMAX_RTOL = {F32: 1e-5, F64: 1e-13, F16: HALF_ULP16 + 2e-5}
SOFTMAX_TINY = {F32: 1e-30, F64: float(np.finfo(F64).tiny), F16: float(np.finfo(F16).tiny)}
LOG_ATOL = {F32: 2e-6, F64: 4e-15, F16: HALF_ULP16 + 4e-6}

FORWARD = ["softmax", "log_softmax", "logsumexp"]
BACKWARD = ["softmax_backward", "log_softmax_backward"]

# slice lengths around the vector widths (4, 8, 16 lanes), the 4-vector unroll and blocks
# (hypothesis favours the first: not a trivial one)
LENGTHS = [17, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 65, 100, 257, 1025, 2049, 0]
MAX_SIZE = 5000  # elements per array, to keep examples cheap


@pytest.fixture(params=["every target"], autouse=True)
def simd(request):
    """Each example runs on every target inside the test (on_target), not once per test."""
    return request.param


@contextlib.contextmanager
def on_target(name: str):
    original = fs.simd_target()
    _core.set_target(name)
    try:
        yield
    finally:
        _core.set_target(original)


def work_dtype(dtype) -> np.dtype:
    """The dtype fastsoftmax computes in: float32 for float16, float64 for integers and bools."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return F32 if dtype.itemsize <= 4 else F64
    return F64


def result_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    return dtype if dtype.kind == "f" else F64


# ----------------------------------------------------------------------------- strategies


@st.composite
def shapes_and_axes(draw):
    """(shape, axis): 0 to 4 dimensions; axis an int (maybe negative), a tuple or None.

    One of the normalized axes gets a length from LENGTHS; an empty dimension is
    drawn now and then, anywhere.
    """
    ndim = draw(st.sampled_from([2, 1, 3, 4, 0]))
    shape = draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim))
    kind = draw(st.sampled_from(["int", "int", "int", "tuple", "none"])) if ndim else "none"
    if kind == "int":
        axis = draw(st.integers(-ndim, ndim - 1))
        axes = [axis % ndim]
    elif kind == "tuple":
        axes = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
        axis = tuple(a - ndim if draw(st.booleans()) else a for a in axes)
    else:
        axis, axes = None, list(range(ndim))
    if axes:
        long_axis = draw(st.sampled_from(axes))
        shape[long_axis] = draw(st.sampled_from(LENGTHS))
        budget = MAX_SIZE // max(shape[long_axis], 1)
        for d in range(ndim):
            if d != long_axis:
                shape[d] = max(1, min(shape[d], budget))
                budget //= shape[d]
    if ndim and draw(st.integers(0, 15)) == 5:  # (hypothesis favours 0: ask for another value)
        shape[draw(st.integers(0, ndim - 1))] = 0
    return tuple(shape), axis


def specials_of(dtype) -> list[float]:
    """NaN, infinities, zeros, subnormals, the smallest normal, +-3e38 (+-6e4 in float16), max."""
    info = np.finfo(dtype)
    huge = 6e4 if info.bits == 16 else 3e38
    values = [np.nan, np.inf, -np.inf, 0.0, -0.0, huge, -huge, float(info.max), -float(info.max)]
    sub = float(info.smallest_subnormal)
    values += [sub, -sub, 1000 * sub, float(info.tiny), -float(info.tiny)]
    return values


SPECIAL_POOLS = ["any", "-inf", "nan", "+inf", "tiny", "huge"]


def pool_of(name: str, dtype) -> list[float]:
    info = np.finfo(dtype)
    sub = float(info.smallest_subnormal)
    huge = 6e4 if info.bits == 16 else 3e38
    return {
        "any": specials_of(dtype),
        "-inf": [-np.inf],
        "nan": [np.nan],
        "+inf": [np.inf, -np.inf],
        "tiny": [sub, -sub, 0.0, -0.0, float(info.tiny)],
        "huge": [huge, -huge, float(info.max), -float(info.max)],
    }[name]


@st.composite
def arrays(draw, shape, axis, dtype, specials=True, masked=True, bound: float | None = None):
    """C-contiguous values of `dtype`: bulk from a seeded generator, -inf at a drawn
    density (`masked`), special values at a drawn density and at positions drawn by
    hypothesis (so they shrink) (`specials`), and some slices along `axis` all equal.
    `bound` caps the magnitudes of float values."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        x = rng.random(shape) < draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        if draw(st.booleans()):
            x = rng.integers(max(info.min, -100), min(info.max, 100), shape, endpoint=True)
        else:
            x = rng.integers(info.min, info.max, shape, endpoint=True, dtype=dtype)
        x = x.astype(dtype)
    else:
        info = np.finfo(dtype)
        top = float(info.max) if bound is None else bound
        with np.errstate(over="ignore", under="ignore"):
            if draw(st.booleans()):
                scale = draw(st.sampled_from([1e-3, 1.0, 10.0, 100.0, 1e4, 1e30, 3e38]))
                x = rng.standard_normal(shape) * scale
            else:  # magnitudes spread log-uniformly from the smallest subnormal to the top
                lo, hi = math.log10(float(info.smallest_subnormal)), math.log10(top)
                sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
                x = sign * 10 ** rng.uniform(lo, hi, shape)
            x = np.asarray(np.clip(x, -top, top)).astype(dtype)
        if masked and draw(st.booleans()):  # masked entries (whole slices too)
            x[rng.random(shape) < draw(st.sampled_from([0.05, 0.3, 0.9]))] = -np.inf
        if specials and draw(st.booleans()):
            pool = [
                v
                for v in pool_of(draw(st.sampled_from(SPECIAL_POOLS)), dtype)
                if not (math.isfinite(v) and abs(v) > top)
            ]
            mask = rng.random(shape) < draw(st.sampled_from([0.01, 0.1, 0.5, 1.0]))
            if pool:  # (empty: only values above the bound)
                x[mask] = rng.choice(pool, int(mask.sum()))
        if specials:
            for _ in range(draw(st.integers(0, 3))):  # at positions hypothesis can shrink
                if x.size:
                    value = draw(st.sampled_from(specials_of(dtype)))
                    if not (math.isfinite(value) and abs(value) > top):
                        x.flat[draw(st.integers(0, x.size - 1))] = value
    x = np.asarray(x, dtype=dtype)
    if x.size and draw(st.booleans()):  # some slices along the axis all equal
        rows = as_rows(x, axis).copy()
        equal = rng.random(rows.shape[0]) < draw(st.sampled_from([0.3, 1.0]))
        rows[equal] = rows[equal, :1]
        x = from_rows(rows, x.shape, axis)
    return np.array(x, order="C")  # (ascontiguousarray makes 0-d 1-d)


@st.composite
def layouts(draw, shape):
    """Contiguous, Fortran order, or random axis order, steps (negative too), margins and
    alignment."""
    ndim = len(shape)
    kind = draw(st.sampled_from(["C", "F", "random", "random"]))
    if kind == "C":
        return Layout(shape)
    if kind == "F":
        return Layout(shape, order=range(ndim)[::-1])
    order = draw(st.permutations(range(ndim)))
    steps = draw(st.lists(st.sampled_from([1, -1, 2, -2, 3, -3]), min_size=ndim, max_size=ndim))
    margins = draw(st.lists(st.integers(0, 1), min_size=ndim, max_size=ndim))
    return Layout(shape, order, steps, margins, misaligned=draw(st.integers(0, 4)) == 0)


FLOATS = [np.float16, np.float32, np.float32, np.float64, np.float64]


class Operand:
    """Values of one input and where they live; place() gives a fresh view and its base."""

    def __init__(self, values: np.ndarray, layout: Layout):
        self.values = values
        self.layout = layout

    def __repr__(self) -> str:
        return f"Operand({self.values.dtype}, {self.layout!r},\n{self.values!r})"

    def place(self) -> tuple[np.ndarray, np.ndarray]:
        return self.layout.place(self.values, poison(self.values.dtype))


@st.composite
def forward_cases(draw, dtypes=(*FLOATS, *FLOATS, *INTEGERS)):
    """(Operand, axis) for softmax, log_softmax and logsumexp."""
    shape, axis = draw(shapes_and_axes())
    dtype = draw(st.sampled_from(dtypes))
    values = draw(arrays(shape, axis, dtype))
    return Operand(values, draw(layouts(shape))), axis


def bound_for_backward(dtype, n: int) -> float:
    """Gradient magnitudes for which no intermediate of the backward formulas overflows
    the computation dtype (sum(grad) <= n * max |grad|, grad - sum twice that), so that
    only a result too large for the dtype may be infinite."""
    return float(np.finfo(work_dtype(dtype)).max) / (4 * (n + 1))


@st.composite
def backward_cases(draw, which: str):
    """(grad Operand, y Operand, axis), y = softmax or log_softmax of random logits
    (with -inf among them: y = 0 or -inf), rounded to y's dtype."""
    shape, axis = draw(shapes_and_axes())
    n = math.prod(shape[d] for d in range(len(shape)) if d in normalize_axes(axis, len(shape)))
    y_dtype = np.dtype(draw(st.sampled_from(FLOATS)))
    g_dtype = np.dtype(draw(st.sampled_from([*FLOATS, *FLOATS, *FLOATS, *INTEGERS])))
    # NaN and infinities spread to whole slices: in one example of four
    specials = draw(st.integers(0, 3)) == 1
    spread = draw(st.sampled_from([1.0, 10.0, 100.0, 1e4]))  # (wider: y is one-hot, dx 0)
    logits = draw(arrays(shape, axis, F64, specials=specials, bound=spread))
    op = "softmax" if which == "softmax_backward" else "log_softmax"
    y = from_rows(forward_reference(op, logits, axis), shape, axis)
    with np.errstate(over="ignore"):
        y = np.array(y, dtype=y_dtype, order="C")
    top = min(bound_for_backward(g_dtype, n), float(np.finfo(F64).max))
    if g_dtype.kind == "f":
        top = min(top, float(np.finfo(g_dtype).max))
    specials = draw(st.integers(0, 3)) == 1
    grad = draw(arrays(shape, axis, g_dtype, specials=specials, masked=specials, bound=top))
    return Operand(grad, draw(layouts(shape))), Operand(y, draw(layouts(shape))), axis


# ----------------------------------------------------------------------------- references


def forward_reference(name: str, values: np.ndarray, axis) -> np.ndarray:
    """The exact answer (wide dtype) slice by slice: (R, n) rows, or (R,) for logsumexp.

    Slices of finite values (and -inf) get the textbook formula of reference.py on the
    values in the computation dtype; the others get the README's edge-case table.
    """
    rows = as_rows(values.astype(work_dtype(values.dtype)), axis)
    nan = np.isnan(rows).any(axis=1)
    pinf = np.isposinf(rows).any(axis=1)
    only_ninf = np.isneginf(rows).all(axis=1)  # (and empty slices)
    special = nan | pinf | only_ninf
    plain = np.where(special[:, None], 0, rows)
    if name == "logsumexp":
        if rows.shape[1] == 0:
            return np.full(rows.shape[0], -np.inf, widen(rows).dtype)
        r = ref_logsumexp(plain, axis=-1)
        r[only_ninf] = -np.inf
        r[pinf] = np.inf
        r[nan] = np.nan
        return r
    if rows.shape[1] == 0:
        return widen(rows)
    if name == "softmax":
        r = ref_softmax(plain, axis=-1)
        r[special] = np.nan
        return r
    r = ref_log_softmax(plain, axis=-1)
    r[pinf] = np.where(np.isposinf(rows[pinf]), np.nan, -np.inf)
    r[nan | only_ninf] = np.nan
    return r


def assert_reference_is_scipy(name: str, values: np.ndarray, axis, ref: np.ndarray) -> None:
    """The NaN and infinities of forward_reference are SciPy's (on non-empty slices)."""
    rows = as_rows(values.astype(work_dtype(values.dtype)), axis)
    if rows.shape[1] == 0 or rows.shape[0] == 0:
        return
    expected = scipy_op(name, rows, axis=-1)
    with np.errstate(over="ignore"):
        mine = ref.astype(rows.dtype)
    for f in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(f(mine), f(expected), err_msg=f"{f.__name__} vs SciPy")


def backward_reference(name: str, grad: np.ndarray, y: np.ndarray, axis):
    """(exact result rows, their error bounds, where NaN or ref's infinity are both right).

    The bound is test_backward's: 8 eps of the computation dtype times the condition
    of the formula. For log_softmax_backward, exp(y) below the smallest normal of the
    computation dtype is subnormal there (absolute error up to about one subnormal
    spacing, times sum |grad|), and below two subnormal spacings it may round to 0 or
    not; when sum(grad) is infinite that decides between 0 * inf = NaN and an infinity.
    """
    work = np.result_type(work_dtype(grad.dtype), work_dtype(y.dtype))
    g, yy = as_rows(grad.astype(work), axis), as_rows(y.astype(work), axis)
    either = np.zeros(g.shape, bool)
    with np.errstate(all="ignore"):
        if name == "softmax_backward":
            ref = ref_softmax_backward(g, yy, axis=-1)
            bound = error_bound("softmax", g, yy, -1, work) if g.size else np.zeros_like(ref)
        else:
            ref = ref_log_softmax_backward(g, yy, axis=-1)
            bound = error_bound("log_softmax", g, yy, -1, work) if g.size else np.zeros_like(ref)
            sub = float(np.finfo(work).smallest_subnormal)
            total = np.sum(np.abs(widen(g)), axis=-1, keepdims=True)
            bound = bound + 2 * sub * total
            e = np.exp(widen(yy))
            either = np.isfinite(yy) & (e < 2 * sub) & np.isinf(np.sum(widen(g), -1, keepdims=True))
    return ref, bound, either


# ----------------------------------------------------------------------------- checks


def assert_specials_equal(got: np.ndarray, ref: np.ndarray, context: str, either=None) -> None:
    """NaN exactly where ref has NaN, ref's infinities exactly; NaN or an infinity `either`."""
    if either is None:
        either = np.zeros(ref.shape, bool)
    with np.errstate(invalid="ignore"):
        same = got.astype(ref.dtype) == ref
    bad = (np.isnan(got) != np.isnan(ref)) & ~either
    bad |= either & np.isfinite(got)
    assert not bad.any(), (
        f"NaN pattern differs at {int(bad.sum())} elements; "
        + describe_worst(bad, ("got", got), ("ref", ref))
        + f" {context}"
    )
    bad = np.isinf(ref) & ~same & ~either
    assert not bad.any(), (
        f"infinities differ at {int(bad.sum())} elements; "
        + describe_worst(bad, ("got", got), ("ref", ref))
        + f" {context}"
    )


def assert_forward_close(name: str, got_rows, ref_rows, dtype, context: str) -> None:
    assert_specials_equal(got_rows, ref_rows, context)
    finite = np.isfinite(ref_rows)
    if name == "softmax":
        assert_softmax_close(
            got_rows[finite], ref_rows[finite], SOFTMAX_RTOL[dtype], SOFTMAX_TINY[dtype], context
        )
    else:
        assert_log_close(got_rows[finite], ref_rows[finite], LOG_ATOL[dtype], context)


def assert_backward_close(got_rows, ref_rows, bound, either, dtype, context: str, factor=1):
    """Within `factor` times the bound of backward_reference plus half an ulp for float16
    results, or equal to ref rounded (overflow); NaN or an infinity `either`."""
    assert_specials_equal(got_rows, ref_rows, context, either)
    with np.errstate(all="ignore"):
        if dtype == F16:
            bound = bound + HALF_ULP16 * np.abs(ref_rows) + float(np.finfo(F16).smallest_subnormal)
        bound = factor * bound
        err = np.abs(got_rows.astype(ref_rows.dtype) - ref_rows)
        ok = (err <= bound) | (got_rows == ref_rows.astype(dtype))
    ok |= ~np.isfinite(ref_rows)
    assert ok.all(), (
        f"{int((~ok).sum())} elements off by more than the bound; "
        + describe_worst(np.where(ok, 0, err / bound), ("got", got_rows), ("ref", ref_rows))
        + f" {context}"
    )


def unchanged(base: np.ndarray, before: np.ndarray, where: np.ndarray | None = None) -> bool:
    """Bit for bit (NaN payloads and the sign of zero too), optionally only `where`."""
    if where is not None:
        base, before = base[where], before[where]
    return base.tobytes() == before.tobytes()


# ----------------------------------------------------------------------------- calls


def call(name: str, inputs, axis, out=None, keepdims: bool = False):
    kw: dict = {"axis": axis}
    if out is not None:
        kw["out"] = out
    if keepdims:
        kw["keepdims"] = True
    return getattr(fs, name)(*inputs, **kw)


def logsumexp_shape(shape, axis, keepdims: bool) -> tuple[int, ...]:
    axes = normalize_axes(axis, len(shape))
    if keepdims:
        return tuple(1 if d in axes else s for d, s in enumerate(shape))
    return tuple(s for d, s in enumerate(shape) if d not in axes)


# ----------------------------------------------------------------------------- properties


@pytest.mark.parametrize("name", FORWARD)
@given(data=st.data())
def test_forward_matches_the_reference_on_every_target(name, data):
    """Values, NaN and infinities of softmax / log_softmax / logsumexp (keepdims, out=).

    (The reference's own NaN and infinities are first checked against SciPy's.)
    """
    x_case, axis = data.draw(forward_cases(), "x")
    shape, dtype = x_case.values.shape, result_dtype(x_case.values.dtype)
    keepdims = name == "logsumexp" and data.draw(st.booleans(), "keepdims")
    out_shape = logsumexp_shape(shape, axis, keepdims) if name == "logsumexp" else shape
    modes = ["none", "new"]
    if name != "logsumexp" and x_case.values.dtype == dtype:
        modes.append("in place")
    mode = data.draw(st.sampled_from(modes), "out")
    out_layout = data.draw(layouts(out_shape), "out layout") if mode == "new" else None
    ref = forward_reference(name, x_case.values, axis)
    assert_reference_is_scipy(name, x_case.values, axis, ref)
    for target in TARGETS:
        x, _ = x_case.place()
        out = None
        if mode == "new":
            out = out_layout.view(out_layout.allocate(dtype, poison(dtype)))
        elif mode == "in place":
            out = x
        with on_target(target):
            got = call(name, [x], axis, out, keepdims)
        context = f"({name} on {target}, axis={axis!r}, keepdims={keepdims}, out: {mode})"
        if out is not None:
            assert got is out, context
        assert isinstance(got, np.ndarray), context
        assert got.dtype == dtype, context
        assert got.shape == out_shape, context
        got_rows = got.reshape(-1) if name == "logsumexp" else as_rows(got, axis)
        assert_forward_close(name, got_rows, ref, dtype, context)


@pytest.mark.parametrize("name", BACKWARD)
@given(data=st.data())
def test_backward_matches_the_reference_on_every_target(name, data):
    """softmax_backward / log_softmax_backward (out=, in place into grad or y)."""
    g_case, y_case, axis = data.draw(backward_cases(name), "grad, y")
    shape = g_case.values.shape
    dtype = np.result_type(result_dtype(g_case.values.dtype), result_dtype(y_case.values.dtype))
    modes = ["none", "new"]
    modes += [m for m, c in (("grad", g_case), ("y", y_case)) if c.values.dtype == dtype]
    mode = data.draw(st.sampled_from(modes), "out")
    out_layout = data.draw(layouts(shape), "out layout") if mode == "new" else None
    ref, bound, either = backward_reference(name, g_case.values, y_case.values, axis)
    for target in TARGETS:
        g, _ = g_case.place()
        y, _ = y_case.place()
        out = {"none": None, "grad": g, "y": y}.get(mode)
        if mode == "new":
            out = out_layout.view(out_layout.allocate(dtype, poison(dtype)))
        with on_target(target):
            got = call(name, [g, y], axis, out)
        context = f"({name} on {target}, axis={axis!r}, out: {mode})"
        if out is not None:
            assert got is out, context
        assert got.dtype == dtype, context
        assert got.shape == shape, context
        assert_backward_close(as_rows(got, axis), ref, bound, either, dtype, context)


@given(case=forward_cases())
def test_softmax_slices_sum_to_one_where_finite(case):
    """Each slice of finite values (with any -inf, not only -inf) sums to 1.

    The README's bound per element (relative rtol above tiny, absolute rtol * tiny
    below) adds up to rtol * (1 + n * tiny), plus the wide summation's own rounding.
    """
    x_case, axis = case
    dtype = result_dtype(x_case.values.dtype)
    rows = as_rows(x_case.values.astype(work_dtype(x_case.values.dtype)), axis)
    n = rows.shape[1]
    finite = ~(np.isnan(rows).any(1) | np.isposinf(rows).any(1) | np.isneginf(rows).all(1))
    rtol, tiny = SOFTMAX_RTOL[dtype], SOFTMAX_TINY[dtype]
    for target in TARGETS:
        x, _ = x_case.place()
        with on_target(target):
            y = as_rows(fs.softmax(x, axis=axis), axis)
        w = widen(y[finite])
        tol = rtol * (1 + n * tiny) + n * float(np.finfo(w.dtype).eps)
        assert np.isfinite(w).all(), f"non-finite entries in finite slices on {target}"
        sums = w.sum(axis=1)
        bad = ~(np.abs(sums - 1) <= tol)
        assert not bad.any(), (
            f"{int(bad.sum())} slices of {len(sums)} sum to {sums[bad][:5]} "
            f"(tolerance {tol:.3g}) on {target}, axis={axis!r}"
        )


# Values on a grid 2^-k with |x| <= bound and shifts |c| <= shift_bound: x + c is exact.
GRIDS = {F16: (2, 60, 128), F32: (6, 1024, 4096), F64: (10, 2**20, 2**30)}


@st.composite
def shift_cases(draw):
    shape, axis = draw(shapes_and_axes())
    dtype = np.dtype(draw(st.sampled_from([np.float16, np.float32, np.float64, np.int32])))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype.kind == "i":
        x = np.asarray(rng.integers(-(10**6), 10**6, shape, endpoint=True)).astype(dtype)
        c = draw(st.integers(-(10**6), 10**6))
    else:
        k, bound, shift_bound = GRIDS[dtype]
        spread = draw(st.sampled_from([0.1, 1.0, bound]))
        grid = np.round(rng.standard_normal(shape) * spread * 2**k)
        x = np.asarray(np.clip(grid, -bound * 2**k, bound * 2**k) / 2**k).astype(dtype)
        density = draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0]))
        mask = rng.random(shape) < density
        x[mask] = rng.choice([np.nan, np.inf, -np.inf, -np.inf], int(mask.sum()))
        c = draw(st.integers(-shift_bound * 2**k, shift_bound * 2**k)) / 2**k
    c = dtype.type(c)
    with np.errstate(invalid="ignore"):
        shifted = np.asarray(x + c)
    finite = np.isfinite(x)
    np.testing.assert_array_equal((shifted - c)[finite], x[finite])  # the shift is exact
    layout = draw(layouts(shape))
    return Operand(x, layout), Operand(shifted, layout), axis, c


@pytest.mark.parametrize("name", FORWARD)
@given(case=shift_cases())
def test_adding_a_constant_to_a_slice(name, case):
    """softmax and log_softmax do not change; logsumexp moves by the constant.

    Both results are within the README's accuracy of the same exact value, so they
    differ by at most twice that; NaN and infinities are the same.
    """
    x_case, s_case, axis, c = case
    dtype = result_dtype(x_case.values.dtype)
    for target in TARGETS:
        with on_target(target):
            a = getattr(fs, name)(x_case.place()[0], axis=axis)
            b = getattr(fs, name)(s_case.place()[0], axis=axis)
        context = f"({name} on {target}, axis={axis!r}, shift {c!r})"
        if name == "logsumexp":
            expected = widen(a) + widen(np.asarray(c, dtype))
            assert_specials_equal(b, expected, context)
            finite = np.isfinite(expected)
            atol = LOG_ATOL[dtype]
            with np.errstate(invalid="ignore"):
                tol = atol * (np.maximum(1, np.abs(expected)) + np.maximum(1, np.abs(widen(a))))
                err = np.abs(widen(b) - expected)
            bad = finite & ~(err <= tol)
            assert not bad.any(), (
                f"{int(bad.sum())} results off; "
                + describe_worst(np.where(bad, err / tol, 0), ("got", b), ("expected", expected))
                + f" {context}"
            )
        else:
            ra, rb = as_rows(a, axis), as_rows(b, axis)
            assert_specials_equal(rb, widen(ra), context)
            finite = np.isfinite(ra)
            if name == "softmax":
                rtol = SOFTMAX_RTOL[dtype]
                assert_softmax_close(
                    rb[finite],
                    widen(ra[finite]),
                    2 * rtol / (1 - rtol),
                    SOFTMAX_TINY[dtype],
                    context,
                )
            else:
                atol = LOG_ATOL[dtype]
                assert_log_close(rb[finite], widen(ra[finite]), 2 * atol / (1 - atol), context)


@st.composite
def calls(draw):
    """(name, input Operands, axis, keepdims, out mode, out Layout) for any public function."""
    name = draw(st.sampled_from(FORWARD + BACKWARD))
    keepdims = False
    if name in BACKWARD:
        g, y, axis = draw(backward_cases(name))
        inputs = [g, y]
        dtype = np.result_type(result_dtype(g.values.dtype), result_dtype(y.values.dtype))
        shape = g.values.shape
    else:
        x, axis = draw(forward_cases())
        inputs = [x]
        dtype = result_dtype(x.values.dtype)
        keepdims = name == "logsumexp" and draw(st.booleans())
        shape = x.values.shape
        if name == "logsumexp":
            shape = logsumexp_shape(shape, axis, keepdims)
    modes = ["none", "new"]
    if name != "logsumexp":
        modes += [i for i, op in enumerate(inputs) if op.values.dtype == dtype]
    mode = draw(st.sampled_from(modes))
    out_layout = draw(layouts(shape)) if mode == "new" else None
    return name, inputs, axis, keepdims, mode, out_layout, dtype


@given(case=calls(), read_only=st.booleans())
def test_inputs_are_unchanged_unless_they_are_out(case, read_only):
    """Every input (and the memory around it) is bit for bit the same after the call,
    except an input passed as out, whose memory around the view is the same; nothing
    around a separate out is written either. Inputs that are not out may be read-only."""
    name, operands, axis, keepdims, mode, out_layout, dtype = case
    for target in TARGETS:
        placed = [op.place() for op in operands]
        before = [base.copy() for _, base in placed]
        for i, (view, _) in enumerate(placed):
            if read_only and mode != i:
                view.flags.writeable = False
        out_base = out = None
        if mode == "new":
            out_base = out_layout.allocate(dtype, poison(dtype))
            out_before = out_base.copy()
            out = out_layout.view(out_base)
        elif mode != "none":
            out = placed[mode][0]
        with on_target(target):
            got = call(name, [view for view, _ in placed], axis, out, keepdims)
        context = f"({name} on {target}, axis={axis!r}, out: {mode})"
        if out is not None:
            assert got is out, context
        for i, ((_, base), old) in enumerate(zip(placed, before)):
            if mode == i:
                assert unchanged(base, old, operands[i].layout.outside()), (
                    f"input {i} (out) was written outside the view {context}"
                )
            else:
                assert unchanged(base, old), f"input {i} was modified {context}"
        if out_base is not None:
            assert unchanged(out_base, out_before, out_layout.outside()), (
                f"out was written outside the view {context}"
            )


@pytest.mark.skipif(len(TARGETS) < 2, reason="this CPU runs one SIMD target only")
@given(case=calls())
def test_every_target_gives_the_same_answer(case):
    """NaN and infinities identical, finite values within twice the documented accuracy
    (each target is within it of the same exact value)."""
    name, operands, axis, keepdims, mode, out_layout, dtype = case
    results = {}
    for target in TARGETS:
        placed = [op.place()[0] for op in operands]
        out = None
        if mode == "new":
            out = out_layout.view(out_layout.allocate(dtype, poison(dtype)))
        elif mode != "none":
            out = placed[mode]
        with on_target(target):
            got = call(name, placed, axis, out, keepdims)
        results[target] = got.reshape(-1) if name == "logsumexp" else as_rows(got, axis)
    first, *others = TARGETS
    a = results[first]
    if name in BACKWARD:
        _, bound, either = backward_reference(name, operands[0].values, operands[1].values, axis)
    for target in others:
        b = results[target]
        context = f"({name}: {target} vs {first}, axis={axis!r}, out: {mode})"
        wa = widen(a)
        assert_specials_equal(b, wa, context)
        finite = np.isfinite(wa)
        if name == "softmax":
            rtol = SOFTMAX_RTOL[dtype]
            assert_softmax_close(
                b[finite], wa[finite], 2 * rtol / (1 - rtol), SOFTMAX_TINY[dtype], context
            )
        elif name in FORWARD:
            atol = LOG_ATOL[dtype]
            assert_log_close(b[finite], wa[finite], 2 * atol / (1 - atol), context)
        else:
            assert_backward_close(b, wa, bound, either, dtype, context, factor=2)

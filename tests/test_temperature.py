"""temperature=T on softmax, log_softmax, logsumexp and their gradients (issue 15).

softmax(x, temperature=T) is softmax(x / T), and likewise for log_softmax and logsumexp,
computed without rounding x / T in the input dtype. softmax_backward(grad, y, temperature=T)
is the gradient with respect to x of y = softmax(x, temperature=T), that is
(1 / T) * y * (grad - sum(grad * y)), and log_softmax_backward's is
(1 / T) * (grad - exp(y) * sum(grad)).

The references are the textbook formulas on x / T in a wider type (float64 for float32 and
half inputs, longdouble for float64: reference.py's rule) and, for the NaN / inf / empty
cases, SciPy on x / T. Covered: every kernel path by shape (one-element rows, register
tiles, tiles, short, grouped, pipelined and long rows, segments, the streaming paths of
arrays past 8 MiB, columns of 2-d and 3-d arrays, gathered rows of negative-stride views),
a large common offset (x / T rounded to float32 would lose digits there), half precision
(1 ulp, test_half_precision's measure), any axis, converted dtypes, out= and in place,
thread counts (bit for bit), bad temperatures, and temperature=1 (bit for bit the call
without it). Every test runs on every SIMD target (conftest.py).
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import fastsoftmax as fs
import ml_dtypes
import numpy as np
import pytest
from reference import (
    LOG_ATOL,
    assert_log_close,
    describe_worst,
    normalize_axes,
    ref_log_softmax_backward,
    ref_softmax_backward,
    scipy_op,
    widen,
)
from test_backward import error_bound
from test_edge_cases import LAYOUTS, SMALL_TABLE, SMALL_TABLE_IDS, run_layout, special_rows
from test_half_precision import HALVES, assert_ulps
from test_half_precision import SHAPES as HALF_SHAPES

F32, F64 = np.float32, np.float64
F16, BF16 = np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)
FLOATS = [F32, F64]
TEMPERATURES = [0.3, 0.7, 2.5]
FORWARD = ("softmax", "log_softmax", "logsumexp")
BACKWARD = {"softmax": "softmax_backward", "log_softmax": "log_softmax_backward"}
REF_BACKWARD = {"softmax": ref_softmax_backward, "log_softmax": ref_log_softmax_backward}
INF, NAN = np.inf, np.nan

# softmax: relative error <= PROB_RTOL + ARG_RTOL * |log p|. The argument (x - max) / T
# is rounded a few times (1 / T, the product), an error that grows with |log p|;
# the log functions: LOG_ATOL * max(1, |ref|), reference.py's.
PROB_RTOL = {F32: 2e-6, F64: 1e-13}
ARG_RTOL = {F32: 4 * 2.0**-24, F64: 4 * 2.0**-53}

# Row lengths crossing every row kernel (one element; register tiles up to 8; tiles up to
# 48-128; rows of one vector; grouped logs up to 2 KiB; pipelined rows up to 32 KiB; longer
# rows block by block), each on 37 rows (partial groups of rows) and the shorter ones on
# 300 rows too (many tiles); 40,000 (past L1) on 3 rows.
LENGTHS = [1, 2, 3, 5, 8, 10, 16, 33, 64, 100, 1000, 5000, 40000]
ROW_SHAPES = [
    *((37, n) for n in LENGTHS if n <= 5000),
    *((300, n) for n in LENGTHS if n <= 1000),
    (3, 40000),
]


# ------------------------------------------------------------------------ helpers --


def reference(x: Any, t: float, axis: Any = -1) -> dict[str, np.ndarray]:
    """softmax, log_softmax and logsumexp of x / T, the textbook way, in the wide dtype."""
    w = widen(x) / t
    with np.errstate(all="ignore"):
        m = np.max(w, axis=axis, keepdims=True)
        e = np.exp(w - m)
        s = np.sum(e, axis=axis, keepdims=True)
        return {
            "softmax": e / s,
            "log_softmax": (w - m) - np.log(s),
            "logsumexp": np.squeeze(m + np.log(s), axis=axis),
        }


def forward(x: Any, t: Any, axis: Any = -1) -> dict[str, np.ndarray]:
    return {name: getattr(fs, name)(x, axis, temperature=t) for name in FORWARD}


def assert_probabilities_close(
    got: Any,
    ref: Any,
    tol_dtype: type,
    rtol: float | None = None,
    arg_rtol: float | None = None,
    context: str = "",
) -> None:
    """Relative error <= rtol + arg_rtol * |log ref| where ref is a normal number of
    tol_dtype; below, absolute error <= that bound times its smallest normal number."""
    rtol = PROB_RTOL[tol_dtype] if rtol is None else rtol
    arg_rtol = ARG_RTOL[tol_dtype] if arg_rtol is None else arg_rtol
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, f"shape {got.shape}, expected {ref.shape} {context}"
    tiny = float(np.finfo(tol_dtype).tiny)
    with np.errstate(all="ignore"):
        normal = ref > tiny
        bound = rtol + arg_rtol * np.abs(np.log(np.where(normal, ref, tiny)))
        diff = np.abs(got.astype(ref.dtype) - ref)
        err = np.where(normal, diff / np.where(normal, ref, 1), diff / tiny) / bound
    bad = ~(err <= 1)
    assert not bad.any(), (
        f"softmax: {int(bad.sum())} of {bad.size} elements off by more than "
        f"rtol={rtol} + {arg_rtol} * |log p|; "
        + describe_worst(err, ("got", got), ("ref", ref))
        + f" {context}"
    )


def assert_forward_close(
    got: dict[str, np.ndarray], ref: dict[str, np.ndarray], tol_dtype: type, context: str = ""
) -> None:
    assert_probabilities_close(got["softmax"], ref["softmax"], tol_dtype, context=context)
    for name in ("log_softmax", "logsumexp"):
        assert_log_close(got[name], ref[name], LOG_ATOL[tol_dtype], f"{name} {context}")


def assert_backward_close(
    which: str, got: Any, grad: Any, y: Any, axis: Any, dtype: type, t: float, context: str = ""
) -> None:
    """got against 1 / T times reference.py's VJP, within test_backward's bound divided by T
    (10 eps times the condition of the formula: 8 there, and the scaling's roundings)."""
    ref = REF_BACKWARD[which](grad, y, axis=axis) / t
    assert got.shape == ref.shape, f"shape {got.shape}, expected {ref.shape} {context}"
    assert got.dtype == dtype, f"dtype {got.dtype}, expected {dtype} {context}"
    ratio = np.abs(widen(got) - ref) / (error_bound(which, grad, y, axis, dtype, c=10) / t)
    bad = ~(ratio <= 1)
    assert not bad.any(), (
        f"{which}_backward, T={t}: {int(bad.sum())} elements off by more than "
        "10 eps x condition / T; "
        + describe_worst(ratio, ("got", got), ("ref", ref), ("grad", grad), ("y", y))
        + f" {context}"
    )


def assert_same_bits(got: Any, want: Any, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert (got.dtype, got.shape) == (want.dtype, want.shape), what
    if got.tobytes() != want.tobytes():
        np.testing.assert_array_equal(got.astype(np.float64), want.astype(np.float64), what)
        raise AssertionError(f"{what}: equal values, different bits (the sign of a zero?)")


def grad_and_y(
    rng: np.random.Generator, shape: Any, dtype: Any, which: str, t: float, axis: Any = -1
) -> tuple[np.ndarray, np.ndarray]:
    """(grad, y): y = softmax (or log_softmax) of random logits at temperature T, in dtype."""
    y = reference(rng.standard_normal(shape) * 2, t, axis)[which].astype(dtype)
    return rng.standard_normal(shape).astype(dtype), y


# ------------------------------------------------------------ the forward results --


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
def test_rows(rng, shape, dtype, temperature):
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    got = forward(x, temperature)
    for name, r in got.items():
        assert r.dtype == dtype, name
    assert_forward_close(got, reference(x, temperature), dtype)


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("shape", "axis"), [((None, 37), 0), ((3, None, 20), 1)], ids=str)
@pytest.mark.parametrize("n", [1, 2, 3, 8, 33, 100, 1000, 5000])
def test_columns(rng, n, shape, axis, dtype, temperature):
    """The axis strided, another contiguous: column tiles (up to 4096), columns in place."""
    shape = tuple(n if s is None else s for s in shape)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    assert_forward_close(forward(x, temperature, axis), reference(x, temperature, axis), dtype)


VIEWS = {
    "reversed axis": lambda a: a[:, ::-1],  # gathered rows
    "reversed rows": lambda a: a[::-1],
    "strided both ways": lambda a: a[::-3, ::-2],
    "fortran": np.asfortranarray,
}


@pytest.mark.parametrize("temperature", [0.3, 2.5])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("n", [5, 1000])
def test_views(rng, n, view, axis, dtype, temperature):
    x = VIEWS[view]((rng.standard_normal((40, n)) * 2).astype(dtype))
    assert_forward_close(forward(x, temperature, axis), reference(x, temperature, axis), dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_long_rows_cut_into_segments(rng, dtype):
    """A few rows of 300,000, cut into segments across the threads; in the second row the
    later segments are far below the first (their exponentials vanish next to its)."""
    x = (rng.standard_normal((2, 300_000)) * 2).astype(dtype)
    x[1, 100_000:] -= 30
    ref = reference(x, 0.7)
    with fs.use_threads(1):
        serial = forward(x, 0.7)
    assert_forward_close(serial, ref, dtype, "1 thread")
    with fs.use_threads(2):
        parallel = forward(x, 0.7)
    for name in FORWARD:
        assert_same_bits(parallel[name], serial[name], f"{name}, 2 threads")


@pytest.mark.parametrize(
    ("dtype", "shape"), [(F32, (2048, 1100)), (F64, (1100, 1000))], ids=["float32", "float64"]
)
def test_large_arrays_stream(rng, dtype, shape):
    """Arrays of at least 8 MiB (kStreamBytes) take the from-memory paths, backward too."""
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    got = forward(x, 2.5)
    assert_forward_close(got, reference(x, 2.5), dtype)
    if dtype == F32:  # (the float64 references would be longdouble, slow at this size)
        g = rng.standard_normal(shape).astype(dtype)
        for which, y in (("softmax", got["softmax"]), ("log_softmax", got["log_softmax"])):
            dx = getattr(fs, BACKWARD[which])(g, y, temperature=2.5)
            assert_backward_close(which, dx, g, y, -1, dtype, 2.5)


OFFSET_CASES = [
    ((300, 10), -1),
    ((37, 1000), -1),
    ((3, 40000), -1),
    ((2, 70000), -1),  # segments
    ((1000, 37), 0),
    ((3, 100, 20), 1),
]


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize(("shape", "axis"), OFFSET_CASES, ids=str)
def test_large_common_offset_float32(rng, shape, axis, temperature):
    """x = 1000 + noise: x / T rounded to float32 would be off by up to half an ulp of
    1000 / T (2.4e-4 at T = 0.3); from the exact differences x - max the results are those
    of x / T."""
    x = (1000 + rng.standard_normal(shape)).astype(F32)
    got = forward(x, temperature, axis)
    ref = reference(x, temperature, axis)
    assert_probabilities_close(got["softmax"], ref["softmax"], F32, rtol=1e-5, arg_rtol=0)
    assert_log_close(got["log_softmax"], ref["log_softmax"], LOG_ATOL[F32], "log_softmax")
    np.testing.assert_allclose(got["logsumexp"], ref["logsumexp"], rtol=1e-6)


@pytest.mark.parametrize(
    ("row", "temperature"),
    [([3e38, 0.0, -1.0], 0.5), ([3e38, 1e38, 2e38], 2.5), ([-3e38, -1e38, 0.0], 0.3)],
    ids=str,
)
def test_huge_finite_logits_float32(row, temperature):
    """Finite logits whose (x - max) / T or max / T is past float32's range: the results of
    x / T rounded to float32 (0, -inf, +inf there), not NaN."""
    x = np.array([row, row[::-1]], F32)
    assert_forward_close(forward(x, temperature), reference(x, temperature), F32)


@pytest.mark.parametrize("temperature", [0.3, 2.5])
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("shape", HALF_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", HALVES)
def test_half_precision_within_one_ulp(rng, dtype, shape, axis, temperature):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    ref = reference(x, temperature, axis)
    for name in FORWARD:
        assert_ulps(getattr(fs, name)(x, axis, temperature=temperature), ref[name], dtype, name)


@pytest.mark.parametrize("temperature", [0.3, 2.5])
@pytest.mark.parametrize(
    ("shape", "axis"), [((64, 10), -1), ((4, 1000), -1), ((1000, 4), 0), ((2, 70000), -1)], ids=str
)
@pytest.mark.parametrize("dtype", HALVES)
def test_half_precision_large_common_offset(rng, dtype, shape, axis, temperature):
    x = (1000 + rng.standard_normal(shape) * 4).astype(dtype)
    ref = reference(x, temperature, axis)
    for name in FORWARD:
        assert_ulps(getattr(fs, name)(x, axis, temperature=temperature), ref[name], dtype, name)


@pytest.mark.parametrize(
    "axis", [0, 1, 2, -1, (0, 2), (1, 2), (0, 1, 2), None], ids=lambda a: f"axis={a}"
)
def test_any_axis_and_keepdims(rng, axis):
    x = (rng.standard_normal((6, 7, 8)) * 2).astype(F32)
    ref = reference(x, 0.7, axis)
    assert_forward_close(forward(x, 0.7, axis), ref, F32)
    kept = tuple(1 if d in normalize_axes(axis, 3) else s for d, s in enumerate(x.shape))
    got = fs.logsumexp(x, axis, keepdims=True, temperature=0.7)
    assert_log_close(got, ref["logsumexp"].reshape(kept), LOG_ATOL[F32], "keepdims")
    out = np.full(kept, NAN, F32)
    assert fs.logsumexp(x, axis, keepdims=True, out=out, temperature=0.7) is out
    assert_same_bits(out, got, "logsumexp keepdims out=")
    for which, backward in BACKWARD.items():
        g, y = grad_and_y(rng, x.shape, F32, which, 0.7, axis)
        dx = getattr(fs, backward)(g, y, axis, temperature=0.7)
        assert_backward_close(which, dx, g, y, axis, F32, 0.7)


@pytest.mark.parametrize("kind", ["int64", "longdouble", "list"])
def test_converted_inputs(rng, kind):
    """Integers and lists are computed as float64, longdouble in float64: float64's accuracy."""
    base = rng.integers(-8, 8, (5, 9))
    x: Any = {"int64": base, "longdouble": base.astype(np.longdouble) / 4, "list": base.tolist()}
    x = x[kind]
    got = forward(x, 0.7)
    want = np.longdouble if kind == "longdouble" else F64
    for name, r in got.items():
        assert r.dtype == want, name
    assert_forward_close(got, reference(np.asarray(x), 0.7), F64)


# ------------------------------------------------------------------- the gradients --

BACKWARD_CASES = [
    ((37, 1), -1, ""),
    ((300, 10), -1, ""),
    ((37, 100), -1, ""),
    ((8, 5000), -1, ""),
    ((2, 40000), -1, ""),
    ((100, 37), 0, ""),
    ((4, 33, 20), 1, ""),
    ((20, 200), -1, "reversed"),
    ((20, 200), 0, "reversed"),
]


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("which", ["softmax", "log_softmax"])
@pytest.mark.parametrize(("shape", "axis", "view"), BACKWARD_CASES, ids=str)
def test_backward(rng, shape, axis, view, which, dtype, temperature):
    g, y = grad_and_y(rng, shape, dtype, which, temperature, axis)
    if view == "reversed":
        g, y = g[..., ::-1], y[..., ::-1]
    dx = getattr(fs, BACKWARD[which])(g, y, axis, temperature=temperature)
    assert_backward_close(which, dx, g, y, axis, dtype, temperature)


@pytest.mark.parametrize("temperature", [0.3, 2.5])
@pytest.mark.parametrize(("shape", "axis"), [((64, 10), -1), ((8, 1000), -1), ((30, 7, 5), 1)])
@pytest.mark.parametrize("dtype", HALVES)
def test_half_precision_backward(rng, dtype, shape, axis, temperature):
    """1 ulp, or the float32 arithmetic's own error where the formula cancels
    (test_half_precision's allowance), both scaled by 1 / T."""
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    scale = float(np.max(np.abs(g.astype(np.float64)))) / temperature
    y = fs.softmax(x, axis, temperature=temperature)
    dx = fs.softmax_backward(g, y, axis, temperature=temperature)
    ref = ref_softmax_backward(g, y, axis) / temperature
    assert_ulps(dx, ref, dtype, "softmax_backward", 2e-7 * scale)
    ly = fs.log_softmax(x, axis, temperature=temperature)
    dx = fs.log_softmax_backward(g, ly, axis, temperature=temperature)
    ref = ref_log_softmax_backward(g, ly, axis) / temperature
    assert_ulps(dx, ref, dtype, "log_softmax_backward", 2e-7 * scale * shape[axis])


# ------------------------------------------------------- temperature=1, out=, threads --

ONE_CASES = [
    *((F32, (3 if n > 5000 else 37, n), -1) for n in LENGTHS),
    (F32, (2, 70000), -1),  # segments
    (F32, (100, 37), 0),
    (F32, (3, 33, 20), 1),
    (F64, (300, 10), -1),
    (F64, (37, 1000), -1),
    (F64, (100, 37), 0),
    (F16, (37, 100), -1),
    (F16, (100, 37), 0),
    (BF16, (300, 10), -1),
    (BF16, (37, 1000), -1),
]


@pytest.mark.parametrize("one", [1.0, 1], ids=["1.0", "int 1"])
@pytest.mark.parametrize(
    ("dtype", "shape", "axis"), ONE_CASES, ids=lambda v: getattr(v, "__name__", str(v))
)
def test_temperature_one_is_bit_for_bit_the_plain_call(rng, dtype, shape, axis, one):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    for name in FORWARD:
        f = getattr(fs, name)
        assert_same_bits(f(x, axis, temperature=one), f(x, axis), name)
        assert_same_bits(f(x[..., ::-1], axis, temperature=one), f(x[..., ::-1], axis), name)
    g = rng.standard_normal(shape).astype(dtype)
    for which, y in (("softmax", fs.softmax(x, axis)), ("log_softmax", fs.log_softmax(x, axis))):
        f = getattr(fs, BACKWARD[which])
        assert_same_bits(f(g, y, axis, temperature=one), f(g, y, axis), BACKWARD[which])


@pytest.mark.parametrize("dtype", [F32, F64, F16, BF16], ids=str)
def test_out_and_in_place(rng, dtype):
    x = (rng.standard_normal((40, 100)) * 2).astype(dtype)
    t = 0.7
    for name in ("softmax", "log_softmax"):
        f = getattr(fs, name)
        want = f(x, temperature=t)
        out = np.full(x.shape, NAN, dtype)
        assert f(x, temperature=t, out=out) is out
        assert_same_bits(out, want, f"{name} out=")
        y = x.copy()
        assert f(y, temperature=t, out=y) is y
        assert_same_bits(y, want, f"{name} in place")
        base = np.full((40, 300), NAN, dtype)
        strided = base[:, ::-3]
        assert f(x, temperature=t, out=strided) is strided
        np.testing.assert_array_equal(base[:, 1::3].astype(np.float64), NAN)  # untouched
        if dtype in (F16, BF16):
            assert_ulps(strided, reference(x, t)[name], dtype, f"{name} strided out=")
        elif name == "softmax":
            assert_probabilities_close(strided, reference(x, t)[name], dtype)
        else:
            assert_log_close(strided, reference(x, t)[name], LOG_ATOL[dtype])
    want = fs.logsumexp(x, temperature=t)
    out = np.full(40, NAN, dtype)
    assert fs.logsumexp(x, temperature=t, out=out) is out
    assert_same_bits(out, want, "logsumexp out=")
    g = rng.standard_normal(x.shape).astype(dtype)
    for which, backward in BACKWARD.items():
        f = getattr(fs, backward)
        y = getattr(fs, which)(x, temperature=t)
        want = f(g, y, temperature=t)
        for target in ("grad", "y"):
            gg, yy = g.copy(), y.copy()
            inplace = gg if target == "grad" else yy
            assert f(gg, yy, temperature=t, out=inplace) is inplace
            assert_same_bits(inplace, want, f"{backward} out={target}")


def thread_cases(rng: np.random.Generator) -> list[tuple[str, Any]]:
    """(name, function of no argument) over the driver's paths, every function, with T."""
    t = 0.7
    x = (rng.standard_normal((300, 700)) * 4).astype(F32)
    g = rng.standard_normal(x.shape).astype(F32)
    p, lp = fs.softmax(x, temperature=t), fs.log_softmax(x, temperature=t)
    cols = rng.standard_normal((40, 30, 200)) * 3  # float64, axis 1: columns
    neg = x[:, ::-1]  # gathered rows
    long = (rng.standard_normal((3, 100_000)) * 5).astype(F32)  # segments
    half = x.astype(BF16)
    return [
        *((name, functools.partial(getattr(fs, name), x, temperature=t)) for name in FORWARD),
        ("softmax_backward", lambda: fs.softmax_backward(g, p, temperature=t)),
        ("log_softmax_backward", lambda: fs.log_softmax_backward(g, lp, temperature=t)),
        ("softmax columns", lambda: fs.softmax(cols, axis=1, temperature=t)),
        ("logsumexp columns", lambda: fs.logsumexp(cols, axis=0, temperature=t)),
        ("softmax_backward columns", lambda: fs.softmax_backward(cols, cols, 1, temperature=t)),
        ("log_softmax gathered", lambda: fs.log_softmax(neg, temperature=t)),
        ("softmax segments", lambda: fs.softmax(long, temperature=t)),
        ("log_softmax segments", lambda: fs.log_softmax(long, temperature=t)),
        ("logsumexp segments", lambda: fs.logsumexp(long, temperature=t)),
        ("softmax bfloat16", lambda: fs.softmax(half, temperature=t)),
    ]


def test_every_thread_count_gives_bitwise_the_same_results(rng):
    work = thread_cases(rng)
    with fs.use_threads(1):
        serial = {name: np.array(f(), copy=True) for name, f in work}
    for n in (2, 3, 5):  # more threads than CPUs too
        with fs.use_threads(n):
            for name, f in work:
                assert_same_bits(f(), serial[name], f"{name}, {n} threads")


# ------------------------------------------------------------------ SciPy's edge cases --


@pytest.mark.parametrize("temperature", [0.3, 2.5])
@pytest.mark.parametrize("n", [1, 2, 5, 17, 65, 1025])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", FORWARD)
def test_special_values_match_scipy(rng, name, dtype, layout, n, temperature):
    """test_edge_cases' rows (NaN, +inf, -inf at the ends, in vector tails, at block edges,
    only -inf, ...) on every layout: NaN / +inf / -inf (and softmax's exact zeros) where
    SciPy has them for x / T, the finite values accurate."""
    rows, labels = special_rows(n, rng, np.float64)
    x = (rows / 3).astype(dtype)  # (the finite entries standard normal)
    if len(labels) % 2:  # columns3d splits the rows in two halves
        x = np.concatenate([x, rng.standard_normal((1, n)).astype(dtype)])
        labels.append("finite (padding)")
    x.setflags(write=False)
    op = functools.partial(getattr(fs, name), temperature=temperature)
    got = run_layout(op, x, layout, reduce=name == "logsumexp")
    assert got.dtype == dtype
    expected = scipy_op(name, (widen(x) / temperature).astype(np.float64))
    assert got.shape == expected.shape
    patterns = {"NaN": np.isnan, "+inf": np.isposinf, "-inf": np.isneginf}
    if name == "softmax":
        patterns["exact 0"] = lambda a: a == 0
    for pattern, f in patterns.items():
        mismatch = f(got) != f(expected)
        if mismatch.any():
            row = int(np.argwhere(mismatch)[0][0])
            raise AssertionError(
                f"{name}: {pattern} pattern differs from SciPy's for x / T, first in row "
                f"'{labels[row]}': got {got[row]!r}, SciPy {expected[row]!r}"
            )
    finite = np.isfinite(expected)
    ref = reference(x, temperature)[name]
    if name == "softmax":
        assert_probabilities_close(got[finite], ref[finite], dtype, context="(finite)")
    else:
        assert_log_close(got[finite], ref[finite], LOG_ATOL[dtype], "(finite)")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(
    ("row", "softmax", "log_softmax", "logsumexp"),
    [*SMALL_TABLE, ([1.0, -INF], [1.0, 0.0], [0.0, -INF], 2.0)],
    ids=[*SMALL_TABLE_IDS, "1, -inf"],
)
def test_small_table(dtype, row, softmax, log_softmax, logsumexp):
    """test_edge_cases' table at T = 0.5, exact."""
    x = np.array(row, dtype=dtype)
    for name, want in (("softmax", softmax), ("log_softmax", log_softmax)):
        np.testing.assert_array_equal(
            getattr(fs, name)(x, temperature=0.5), np.array(want, dtype=dtype), name
        )
    np.testing.assert_array_equal(fs.logsumexp(x, temperature=0.5), dtype(logsumexp))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("shape", "axis"), [((6, 1), -1), ((1, 6), 0), ((2, 1, 3), 1)], ids=str)
def test_one_element_axes(dtype, shape, axis):
    """softmax 1, log_softmax 0, logsumexp x / T; NaN, +inf and -inf as SciPy."""
    x = np.array([1.5, -3.0, 0.0, INF, -INF, NAN], dtype).reshape(shape)
    finite = np.isfinite(x)
    np.testing.assert_array_equal(
        fs.softmax(x, axis, temperature=0.7), np.where(finite, 1, NAN).astype(dtype)
    )
    np.testing.assert_array_equal(
        fs.log_softmax(x, axis, temperature=0.7), np.where(finite, 0, NAN).astype(dtype)
    )
    got = fs.logsumexp(x, axis, temperature=0.7)
    want = np.squeeze(widen(x) / 0.7, axis=axis)
    assert got.dtype == dtype
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    np.testing.assert_array_equal(got[~np.isfinite(got)], want[~np.isfinite(want)])
    rtol = {F32: 2.5e-7, F64: 5e-16}[dtype]
    np.testing.assert_allclose(got[np.isfinite(got)], want[np.isfinite(want)], rtol=rtol)


@pytest.mark.parametrize(
    ("shape", "axis"), [((3, 0), -1), ((0, 3), 0), ((0, 3), -1), ((2, 0, 4), 1)], ids=str
)
def test_empty_axis(shape, axis):
    """Empty results; logsumexp over an empty axis is -inf (as SciPy)."""
    x = np.zeros(shape, F32)
    for name in ("softmax", "log_softmax"):
        got = getattr(fs, name)(x, axis, temperature=0.7)
        assert (got.shape, got.dtype) == (shape, F32), name
    reduced = shape[:axis] + shape[axis + 1 :] if axis >= 0 else shape[:-1]
    np.testing.assert_array_equal(
        fs.logsumexp(x, axis, temperature=0.7), np.full(reduced, -INF, F32)
    )
    for name in BACKWARD.values():
        got = getattr(fs, name)(x, x.copy(), axis, temperature=0.7)
        assert (got.shape, got.dtype) == (shape, F32), name


# ------------------------------------------------------------------ bad temperatures --

ALL = [*FORWARD, *BACKWARD.values()]


def call(name: str, x: np.ndarray, out: np.ndarray | None, temperature: Any) -> Any:
    f = getattr(fs, name)
    if name in BACKWARD.values():
        return f(x, fs.softmax(x), out=out, temperature=temperature)
    return f(x, out=out, temperature=temperature)


def sentinel_out(name: str, x: np.ndarray) -> np.ndarray:
    return np.full(x.shape[:-1] if name == "logsumexp" else x.shape, 7.0, x.dtype)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5, math.inf, -math.inf, math.nan], ids=repr)
def test_temperature_not_positive_and_finite(name, value):
    x = np.linspace(-1, 1, 12, dtype=F32).reshape(3, 4)
    out = sentinel_out(name, x)
    message = f"temperature must be positive and finite, got {re.escape(repr(value))}"
    with pytest.raises(ValueError, match=message):
        call(name, x, out, value)
    assert (out == 7).all()


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("value", [True, np.True_, "2"], ids=repr)
def test_temperature_not_a_real_number(name, value):
    x = np.linspace(-1, 1, 12, dtype=F32).reshape(3, 4)
    out = sentinel_out(name, x)
    message = f"temperature must be a real number, got {re.escape(repr(value))}"
    with pytest.raises(TypeError, match=message):
        call(name, x, out, value)
    assert (out == 7).all()


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    ("dtype", "value"),
    [(F32, 1e-40), (F32, 1e38), (F16, 1e-40), (BF16, 1e39), (F64, 1e-309), (F64, 1e308)],
    ids=str,
)
def test_one_over_temperature_must_be_a_normal_number(name, dtype, value):
    """1 / T is a normal number of the compute dtype (float32 for the half-precision ones)."""
    x = np.linspace(-1, 1, 12).reshape(3, 4).astype(dtype)
    out = sentinel_out(name, x)
    message = f"temperature must be between .*got {re.escape(repr(value))}"
    with pytest.raises(ValueError, match=message):
        call(name, x, out, value)
    assert (out.astype(np.float64) == 7).all()
    if name in FORWARD:  # in place: x untouched
        before = x.copy()
        with pytest.raises(ValueError, match="temperature must be between"):
            getattr(fs, name)(x, out=x if name != "logsumexp" else None, temperature=value)
        assert_same_bits(x, before, "x after a refused call")


def test_the_ends_of_the_accepted_range():
    x = np.array([1.0, 3.0, 2.0, 3.0])
    np.testing.assert_array_equal(fs.softmax(x, temperature=1e-40), [0, 0.5, 0, 0.5])
    x32 = x.astype(F32)
    np.testing.assert_allclose(fs.softmax(x32, temperature=1e37), 0.25, rtol=1e-6)
    np.testing.assert_allclose(fs.logsumexp(x32, temperature=1e37), np.log(4), rtol=1e-6)


@pytest.mark.parametrize("dtype", [F32, np.float64, np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("n", [2, 5, 10, 100, 3000])
@pytest.mark.parametrize("end", ["smallest", "largest"])
def test_every_path_at_the_ends_of_the_accepted_range(dtype, n, end):
    """The smallest temperature whose 1 / T is still accepted (1 / T the compute type's largest
    value: s * log2(e) overflows it) and the largest (1 / T its smallest normal), on rows and
    columns of several lengths: exact answers, never NaN (log2(e) times the scale once
    overflowed to inf, and every softmax was NaN)."""
    ct = np.float64 if dtype == np.float64 else F32
    fi = np.finfo(ct)
    t = 1 / float(fi.max) * (1 + 1e-6) if end == "smallest" else 1 / float(fi.tiny) * (1 - 1e-6)
    x = np.zeros((7, n))
    x[:, 1] = 1.0  # (smallest T: one-hot on the maximum; largest: uniform)
    x = x.astype(dtype)
    for axis, xv in ((-1, x), (0, np.ascontiguousarray(x.T))):
        p = fs.softmax(xv, axis=axis, temperature=t).astype(np.float64)
        lse = fs.logsumexp(xv, axis=axis, temperature=t).astype(np.float64)
        if end == "smallest":
            want = np.zeros((7, n))
            want[:, 1] = 1.0
            np.testing.assert_array_equal(p, want if axis == -1 else want.T)
            assert np.all(lse > 1e37), lse  # 1 / T, rounded in the output dtype (inf in half)
        else:
            tol = 1e-3 if np.dtype(dtype).itemsize >= 4 else 2.0**-7  # (1 ulp in 8 bits)
            np.testing.assert_allclose(p, 1.0 / n, rtol=tol)
            np.testing.assert_allclose(lse, np.log(n), rtol=tol)


@pytest.mark.parametrize("threads", [1, 2])
def test_row_spread_beyond_the_largest_value(threads):
    """x - max overflows (the row spreads beyond the dtype's largest value) where (x - max) / T
    does not: the answers of the exact x / T, on short rows, columns and the segments of long
    rows (whose merged sums rescale by (max_a - max_b) / T), never a lost entry."""
    x = np.array([[-3e38, 3e38, 0.0]], F32)
    for axis, xv in ((-1, x), (0, np.ascontiguousarray(x.T))):
        got = fs.log_softmax(xv, axis=axis, temperature=2.5).reshape(-1)
        np.testing.assert_allclose(got, [-2.4e38, 0.0, -1.2e38], rtol=1e-6)
    x64 = np.array([-1e308, 1e308, 0.0])
    np.testing.assert_allclose(fs.log_softmax(x64, temperature=10.0), [-2e307, 0, -1e307])
    np.testing.assert_allclose(
        fs.softmax(x64, temperature=1e307), [2.0610600462e-09, 0.99995460, 4.5397868e-05], rtol=1e-7
    )
    np.testing.assert_allclose(fs.logsumexp(x64, temperature=1e307), 10.0000454009604, rtol=1e-13)
    long = np.zeros((2, 300_000))
    long[:, :150_000] = -1e308
    long[:, -1] = 1e308
    with fs.use_threads(threads):
        lse = fs.logsumexp(long, temperature=1e307)
        p = fs.softmax(long, temperature=1e307)
        lp = fs.log_softmax(long, temperature=1e307)
    z = long / 1e307  # (exact enough: the reference in float64)
    want = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    np.testing.assert_allclose(lse, want, rtol=1e-12)
    np.testing.assert_allclose(p[:, 0], np.exp(z[:, 0] - want), rtol=1e-9)
    np.testing.assert_allclose(lp[:, 0], z[:, 0] - want, rtol=1e-12)


def test_temperature_is_keyword_only_and_takes_numpy_scalars(rng):
    x = rng.standard_normal((4, 9)).astype(F32)
    with pytest.raises(TypeError):
        fs.softmax(x, -1, 2.0)
    with pytest.raises(TypeError):
        fs.softmax_backward(x, x, -1, 2.0)
    for value, same in ((np.float64(0.7), 0.7), (np.float32(0.5), 0.5), (np.int64(2), 2.0)):
        for name in FORWARD:
            f = getattr(fs, name)
            assert_same_bits(f(x, temperature=value), f(x, temperature=same), f"{name} {value!r}")

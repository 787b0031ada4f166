"""where= masks on softmax, log_softmax, logsumexp and their gradients (issue 15).

JAX's semantics: entries where ``where`` is False are left out of their slice. softmax
gives 0 there, log_softmax -inf, logsumexp sums the included entries only, and the
gradients are 0 there. A slice with nothing included gives softmax 0, log_softmax and
logsumexp -inf and a zero gradient, never NaN; a NaN or inf under the mask never reaches
the result. The mask broadcasts to the input ((1, C) and (N, 1) masks are not expanded).

Checked two ways: bit for bit against the plain call on the input with its excluded
entries replaced by -inf (what the kernels run; every kernel path by row length, every
dtype), and against a float64 / longdouble reference on the included entries alone
(accuracy, at several temperatures). Also: every axis and layout (columns, gathered
negative-stride rows, 3-d), tuple axes, NaN / inf under and inside the mask, out= and in
place, bad masks, thread counts. Every test runs on every SIMD target (conftest.py).
"""

from __future__ import annotations

import doctest
from typing import Any

import fastsoftmax as fs
import ml_dtypes
import numpy as np
import pytest
from fastsoftmax import _api
from reference import widen

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
F16, BF16 = np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)
INF, NAN = np.inf, np.nan
FORWARD = ("softmax", "log_softmax", "logsumexp")
BACKWARD = ("softmax_backward", "log_softmax_backward")
# the forward op whose output each gradient takes
OF = {"softmax_backward": "softmax", "log_softmax_backward": "log_softmax"}
# Row lengths crossing the row kernels (one element, register tiles, tiles, one vector,
# grouped rows (log_softmax at 100, logsumexp at 200), pipelined rows, long rows past L1)
LENGTHS = [1, 2, 3, 5, 8, 10, 16, 33, 64, 100, 200, 1000, 5000, 40000]
MASKS = ("full", "(1, C)", "(N, 1)", "empty rows")


def make_mask(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A mask of the given kind for an (N, C) input: about 70% True."""
    full = rng.random(shape) < 0.7
    if kind == "full":
        full[:, 0] = True  # (no empty row by chance: that is its own kind)
        return full
    if kind == "(1, C)":
        full[0, 0] = True
        return full[:1]
    if kind == "(N, 1)":
        col = full[:, :1].copy()
        col[::3] = False
        return col
    full[::4] = False  # "empty rows": every fourth row has nothing included
    return full


def plain_equivalent(op: str, x: np.ndarray, w: np.ndarray, **kw: Any) -> np.ndarray:
    """The plain call on x with its excluded entries replaced by -inf, and the rows with
    nothing included set to the documented value."""
    wb = np.broadcast_to(w, x.shape)
    r = getattr(fs, op)(np.where(wb, x, -INF).astype(x.dtype), **kw)
    r[~wb.any(axis=-1)] = 0 if op == "softmax" else -INF
    return r


def plain_gradient(op: str, g: np.ndarray, y: np.ndarray, w: np.ndarray, **kw: Any) -> np.ndarray:
    """The plain gradient with g = 0 at the excluded entries (y is 0 or -inf there already),
    0 on the rows with nothing included."""
    wb = np.broadcast_to(w, g.shape)
    # (the 0 in g's dtype: NumPy 2.0's where() of a bfloat16 array and a Python int crashes)
    r = getattr(fs, op)(np.where(wb, g, np.zeros((), g.dtype)), y, **kw)
    r[~wb.any(axis=-1)] = 0
    return r


def reference(op: str, x: np.ndarray, w: np.ndarray, t: float = 1.0) -> np.ndarray:
    """op on the included entries of each row of x / t (last axis), in the wide dtype."""
    wb = np.broadcast_to(w, x.shape)
    z = np.where(wb, widen(x) / t, -INF)
    with np.errstate(all="ignore"):
        m = np.max(z, axis=-1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        e = np.where(wb, np.exp(z - m), 0)
        s = np.sum(e, axis=-1, keepdims=True)
        if op == "softmax":
            return np.where(wb, e / s, 0)
        if op == "log_softmax":
            return np.where(wb, z - m - np.log(s), -INF)
        return (m + np.log(s))[..., 0]


def reference_gradient(op: str, g: np.ndarray, y: np.ndarray, w: np.ndarray, t: float):
    wb = np.broadcast_to(w, g.shape)
    gw, yw = np.where(wb, widen(g), 0), widen(y)
    if op == "softmax_backward":
        yw = np.where(wb, yw, 0)
        r = yw * (gw - np.sum(gw * yw, axis=-1, keepdims=True))
    else:
        p = np.where(wb, np.exp(yw), 0)
        r = gw - p * np.sum(gw, axis=-1, keepdims=True)
    return np.where(wb, r / t, 0)


# ----------------------------------------------------- bit for bit, every kernel path --


def reads_mask_in_passes(op: str, dtype: np.dtype, kind: str, n: int) -> bool:
    """Whether driver.cpp gives these rows to Kernels::masked_softmax_long_row (float32 /
    float64, the mask contiguous along the rows, softmax from 8192 classes), whose passes
    are not the plain kernels' for the row length (the same accuracy, other bits)."""
    return dtype in (F32, F64) and kind != "(N, 1)" and op == "softmax" and n >= 8192


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("dtype", [F32, F64, F16, BF16], ids=str)
def test_forward_is_the_plain_call_on_the_filled_input(rng, dtype, kind, n):
    """Every kernel path by row length (37 rows: partial groups and tiles); bit for bit,
    but where the mask is read in the kernels' passes: within 4 ulp there."""
    shape = (37 if n < 40000 else 3, n)
    x = rng.normal(0, 3, shape).astype(dtype)
    w = make_mask(kind, shape, rng)
    for op in FORWARD:
        got = getattr(fs, op)(x, where=w)
        want = plain_equivalent(op, x, w)
        if reads_mask_in_passes(op, dtype, kind, n):
            np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=op)
            np.testing.assert_allclose(got, want, rtol=4 * np.finfo(dtype).eps, atol=0, err_msg=op)
        else:
            np.testing.assert_array_equal(got, want, err_msg=op)


@pytest.mark.parametrize("n", [1, 3, 10, 33, 100, 1000, 5000])
@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("dtype", [F32, F64, F16, BF16], ids=str)
def test_gradients_are_the_plain_call_on_the_filled_input(rng, dtype, kind, n):
    shape = (37, n)
    x = rng.normal(0, 3, shape).astype(dtype)
    g = rng.normal(0, 1, shape).astype(dtype)
    w = make_mask(kind, shape, rng)
    for op in BACKWARD:
        y = getattr(fs, OF[op])(x, where=w)
        # (grad's excluded entries are ignored: 7 there)
        got = getattr(fs, op)(np.where(np.broadcast_to(w, shape), g, dtype.type(7)), y, where=w)
        np.testing.assert_array_equal(got, plain_gradient(op, g, y, w), err_msg=op)


@pytest.mark.parametrize("n", [1, 5, 100, 5000])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_a_mask_of_all_true_is_the_plain_call(rng, dtype, n):
    """Bit for bit, but where the mask is read in the passes (within 4 ulp there); a
    scalar True broadcasts to every entry (stride 0: the (N, 1) way)."""
    x = rng.normal(0, 3, (37, n)).astype(dtype)
    g = rng.normal(0, 1, x.shape).astype(dtype)
    for kind, w in (("full", np.ones(x.shape, bool)), ("(1, C)", np.ones((1, n), bool)),
                    ("(N, 1)", True)):  # fmt: skip
        for op in FORWARD:
            f = getattr(fs, op)
            if reads_mask_in_passes(op, np.dtype(dtype), kind, n):
                np.testing.assert_allclose(f(x, where=w), f(x), rtol=4 * np.finfo(dtype).eps)
            else:
                np.testing.assert_array_equal(f(x, where=w), f(x))
        for op in BACKWARD:
            y = getattr(fs, OF[op])(x)
            f = getattr(fs, op)
            np.testing.assert_array_equal(f(g, y, where=w), f(g, y))


# -------------------------------------------------------------------------- accuracy --


@pytest.mark.parametrize("t", [1.0, 0.7, 3.0])
@pytest.mark.parametrize("n", [2, 10, 100, 1000, 40000])
@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("dtype", [F32, F64])
def test_accuracy_against_the_wide_reference(rng, dtype, kind, n, t):
    """Against the formulas on the included entries alone, in float64 / longdouble."""
    shape = (37 if n < 40000 else 3, n)
    x = (rng.normal(0, 3, shape) + 100).astype(dtype)  # (an offset: x - max must be exact)
    w = make_mask(kind, shape, rng)
    eps = np.finfo(dtype).eps
    for op in FORWARD:
        got = getattr(fs, op)(x, where=w, temperature=t)
        ref = reference(op, x, w, t)
        assert np.array_equal(np.isneginf(got), np.isneginf(ref)), op
        fin = np.isfinite(ref)
        if op == "softmax":  # (x - max) / T is rounded: an error that grows with |log p|
            pos = ref > 0
            tol = 8 * eps * (1 + np.abs(np.log(ref[pos])))
            assert np.all(np.abs(got[pos] - ref[pos]) <= tol * ref[pos]), op
            assert np.all(got[~pos] == 0), op
        else:
            err = np.abs(got[fin] - ref[fin]) / np.maximum(1, np.abs(ref[fin]))
            assert err.max(initial=0) <= 16 * eps, op
    g = rng.normal(0, 1, shape).astype(dtype)
    for op in BACKWARD:
        y = getattr(fs, OF[op])(x, where=w, temperature=t)
        got = getattr(fs, op)(g, y, where=w, temperature=t)
        ref = reference_gradient(op, g, y, w, t)
        scale = np.max(np.abs(ref), axis=-1, keepdims=True) + np.max(np.abs(widen(g))) / t
        assert np.all(np.abs(got - ref) <= 64 * eps * scale), op
        assert np.all(got[~np.broadcast_to(w, shape)] == 0), op


# ------------------------------------------------------------------ special values --


@pytest.mark.parametrize("n", [3, 16, 100, 5000, 9000])
@pytest.mark.parametrize("dtype", [F32, F64, F16])
def test_nan_and_inf_under_the_mask_do_not_leak(rng, dtype, n):
    x = rng.normal(0, 3, (6, n)).astype(dtype)
    w = rng.random(x.shape) < 0.5
    w[:, 0] = True
    w[:, 1] = False
    clean = fs.softmax(x, where=w)
    for v in (NAN, INF, -INF):
        dirty = x.copy()
        dirty[:, 1] = v
        dirty[~w] = v
        for op in FORWARD:
            f = getattr(fs, op)
            np.testing.assert_array_equal(f(dirty, where=w), f(x, where=w), err_msg=f"{op} {v}")
        g = rng.normal(0, 1, x.shape).astype(dtype)
        gd = np.where(w, g, v).astype(dtype)
        yd = np.where(w, clean, v).astype(dtype)
        np.testing.assert_array_equal(
            fs.softmax_backward(gd, yd, where=w), fs.softmax_backward(g, clean, where=w)
        )
        ly = fs.log_softmax(x, where=w)
        lyd = np.where(w, ly, v).astype(dtype)
        np.testing.assert_array_equal(
            fs.log_softmax_backward(gd, lyd, where=w), fs.log_softmax_backward(g, ly, where=w)
        )


@pytest.mark.parametrize("n", [1, 2, 7, 64, 200, 1000, 9000])
@pytest.mark.parametrize("dtype", [F32, F64, F16, BF16], ids=str)
@pytest.mark.parametrize("kind", ["full", "(N, 1)"])
def test_slices_with_nothing_included(dtype, kind, n):
    """softmax 0, log_softmax and logsumexp -inf, gradients exactly 0, whatever the row
    holds (NaN and inf included)."""
    x = np.array([[NAN] * n, [INF] * n, [-INF] * n, list(range(n))], dtype=dtype)
    w = np.zeros(x.shape if kind == "full" else (4, 1), bool)
    assert np.all(fs.softmax(x, where=w) == 0)
    assert np.all(fs.log_softmax(x, where=w) == -INF)
    assert np.all(fs.logsumexp(x, where=w) == -INF)
    for op in BACKWARD:
        r = getattr(fs, op)(x, x, where=w)
        assert np.all(r == 0), op


def special_masked_rows(dtype, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Five rows of n with column 1 excluded: NaN included, +inf included, only -inf
    included, +inf excluded (a finite row), -inf included among finite values."""
    w = np.ones((5, n), bool)
    w[:, 1] = False
    x = np.zeros((5, n), dtype)
    x[0, 2] = NAN  # NaN included
    x[1, 2] = INF  # +inf included
    x[2, :] = -INF  # only -inf included
    x[3, 1] = INF  # +inf excluded: a finite row
    x[4, 0] = -INF  # -inf included, the rest finite
    return x, w


@pytest.mark.parametrize("n", [4, 33, 100, 200, 1000, 9000])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_special_values_among_the_included_entries(dtype, n):
    """SciPy's rules on the included entries; the excluded ones keep their values."""
    x, w = special_masked_rows(dtype, n)
    sm, lsm, lse = fs.softmax(x, where=w), fs.log_softmax(x, where=w), fs.logsumexp(x, where=w)
    inc = w[0]
    assert np.all(np.isnan(sm[:3][:, inc]))
    assert np.all(sm[:, ~inc] == 0)
    assert np.all(np.isnan(lsm[0, inc]))
    assert np.all(np.isnan(lsm[2, inc]))
    assert np.isnan(lsm[1, 2])
    assert np.all(lsm[1, inc & (np.arange(n) != 2)] == -INF)
    assert np.all(lsm[:, ~inc] == -INF)
    np.testing.assert_array_equal(lse[:3], [NAN, INF, -INF])
    np.testing.assert_allclose(sm[3, inc], 1 / (n - 1), rtol=4 * np.finfo(dtype).eps)
    np.testing.assert_allclose(lse[3], np.log(n - 1), rtol=4 * np.finfo(dtype).eps)
    assert sm[4, 0] == 0
    assert lsm[4, 0] == -INF


@pytest.mark.parametrize("n", [3, 4, 10, 15, 33, 100, 200, 1000, 9000])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_special_rows_are_the_plain_call_on_the_filled_input(dtype, n):
    """The special rows (a NaN, a +inf or only -inf included, nothing included) beside
    ordinary ones, in every path that reads the mask (register tiles, groups, rows one by
    one): the plain call's bits on the filled input, with the fill (0, or -inf) at every
    excluded entry as the documented semantics say, but softmax from 8192 classes (its own
    passes): the same NaN, -inf and 0 entries there."""
    x, w = special_masked_rows(dtype, n)
    w = np.concatenate([w, np.zeros((1, n), bool), w])  # (nothing included: row 5)
    x = np.concatenate([x, x[:1], x[::-1]])
    for op in FORWARD:
        got = getattr(fs, op)(x, where=w)
        want = plain_equivalent(op, x, w)
        if op != "logsumexp":
            want = np.where(w, want, 0 if op == "softmax" else -INF).astype(dtype)
        if reads_mask_in_passes(op, dtype, "full", n):
            special = ~np.isfinite(want) | (want == 0)
            np.testing.assert_array_equal(got[special], want[special], err_msg=op)
        else:
            np.testing.assert_array_equal(got, want, err_msg=op)


@pytest.mark.parametrize("t", [0.7, 3.0])
@pytest.mark.parametrize("n", [3, 10, 15, 100, 200, 1000, 5000])
@pytest.mark.parametrize("kind", ["full", "(1, C)"])
def test_a_temperature_reads_the_mask_as_the_plain_call(rng, kind, n, t):
    """temperature= through the paths that read the mask: the plain call's bits on the
    filled input at the same temperature."""
    shape = (37, n)
    x = rng.normal(0, 3, shape).astype(np.float32)
    w = make_mask(kind, shape, rng)
    for op in FORWARD:
        got = getattr(fs, op)(x, where=w, temperature=t)
        np.testing.assert_array_equal(got, plain_equivalent(op, x, w, temperature=t), err_msg=op)
    g = rng.normal(0, 1, shape).astype(np.float32)
    for op in BACKWARD:
        y = getattr(fs, OF[op])(x, where=w, temperature=t)
        got = getattr(fs, op)(g, y, where=w, temperature=t)
        np.testing.assert_array_equal(got, plain_gradient(op, g, y, w, temperature=t), err_msg=op)


@pytest.mark.parametrize("n", [3, 10, 100, 200, 1000])
def test_rows_that_do_not_lie_end_to_end(rng, n):
    """Rows contiguous along the axis but apart (a slice of wider rows), and a mask whose
    rows are apart too: the paths that need rows end to end refuse them, the others read
    the mask with its own distance between rows; the plain call's bits on the filled
    input either way."""
    x = rng.normal(0, 3, (37, n + 5)).astype(np.float32)[:, :n]
    wide = make_mask("full", (37, n + 3), rng)
    for w in (wide[:, :n], np.ascontiguousarray(wide[:, :n])):
        for op in FORWARD:
            got = getattr(fs, op)(x, where=w)
            np.testing.assert_array_equal(got, plain_equivalent(op, x, w), err_msg=op)
            out = np.full((37, n + 2), 7, np.float32)[:, :n]  # (out= rows apart as well)
            if op != "logsumexp":
                getattr(fs, op)(x, where=w, out=out)
                np.testing.assert_array_equal(out, got, err_msg=op)


# --------------------------------------------------------------- axes and layouts --


@pytest.mark.parametrize("op", FORWARD + BACKWARD)
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("view", ["contiguous", "fortran", "negative strides", "every other"])
def test_every_axis_and_layout(rng, op, axis, view):
    """Columns, gathered rows and strided views: the same values as the contiguous call
    with the axis last (bit for bit: every way computes a line with the same kernels)."""
    base = rng.normal(0, 3, (6, 9, 20))
    wbase = rng.random(base.shape) < 0.6
    wbase[:, ::4, :] = False  # lines with nothing included along axis 0 and 2
    if view == "fortran":
        base, wbase = np.asfortranarray(base), np.asfortranarray(wbase)
    elif view == "negative strides":
        base, wbase = base[::-1, :, ::-1], wbase[::-1, :, ::-1]
    elif view == "every other":
        base = np.repeat(base, 2, axis=2)[:, :, ::2]
    x = base.astype(np.float32)
    w = wbase
    f = getattr(fs, op)
    if op in BACKWARD:
        y = getattr(fs, OF[op])(x, axis=axis, where=w)
        got = f(x, y, axis=axis, where=w)
        last = f(
            np.ascontiguousarray(np.moveaxis(x, axis, -1)),
            np.ascontiguousarray(np.moveaxis(y, axis, -1)),
            where=np.moveaxis(w, axis, -1),
        )
    else:
        got = f(x, axis=axis, where=w)
        last = f(np.ascontiguousarray(np.moveaxis(x, axis, -1)), where=np.moveaxis(w, axis, -1))
    if op != "logsumexp":
        last = np.moveaxis(last, -1, axis)
    np.testing.assert_array_equal(got, last)


@pytest.mark.parametrize("mask_shape", [(1, 9, 1), (6, 1, 20), (20,), (9, 20), ()])
def test_masks_broadcast_along_any_axes(rng, mask_shape):
    x = rng.normal(0, 3, (6, 9, 20)).astype(np.float32)
    w = rng.random(mask_shape) < 0.6
    wb = np.broadcast_to(w, x.shape)
    for axis in (0, 1, 2):
        for op in FORWARD:
            f = getattr(fs, op)
            np.testing.assert_array_equal(
                f(x, axis=axis, where=w), f(x, axis=axis, where=wb.copy())
            )


@pytest.mark.parametrize("axis", [(0, 2), (1, 2), None])
def test_tuple_axes_and_keepdims(rng, axis):
    x = rng.normal(0, 3, (4, 5, 6))
    w = rng.random(x.shape) < 0.5
    w[0] = False  # a slice with nothing included along (1, 2)
    axes = tuple(range(3)) if axis is None else axis
    keep = [d for d in range(3) if d not in axes]
    xt = np.transpose(x, keep + list(axes)).reshape(*[x.shape[d] for d in keep], -1)
    wt = np.transpose(w, keep + list(axes)).reshape(xt.shape)
    for op in ("softmax", "log_softmax"):
        got = getattr(fs, op)(x, axis=axis, where=w)
        flat = getattr(fs, op)(xt, where=wt)
        back = np.transpose(
            flat.reshape(*[x.shape[d] for d in keep], *[x.shape[d] for d in axes]),
            np.argsort(keep + list(axes)),
        )
        np.testing.assert_array_equal(got, back, err_msg=op)
    np.testing.assert_array_equal(fs.logsumexp(x, axis=axis, where=w), fs.logsumexp(xt, where=wt))
    kept = fs.logsumexp(x, axis=axis, where=w, keepdims=True)
    assert kept.shape == tuple(1 if d in axes else x.shape[d] for d in range(3))


# ------------------------------------------------------------- out=, dtypes, threads --


def test_out_and_in_place(rng):
    x = rng.normal(0, 3, (40, 33)).astype(np.float32)
    w = rng.random(x.shape) < 0.5
    want = fs.softmax(x, where=w)
    out = np.empty_like(x)
    assert fs.softmax(x, where=w, out=out) is out
    np.testing.assert_array_equal(out, want)
    inplace = x.copy()
    fs.softmax(inplace, where=w, out=inplace)
    np.testing.assert_array_equal(inplace, want)
    lse = np.empty(40, np.float32)
    fs.logsumexp(x, where=w, out=lse)
    np.testing.assert_array_equal(lse, fs.logsumexp(x, where=w))
    g = rng.normal(0, 1, x.shape).astype(np.float32)
    gi = g.copy()
    fs.softmax_backward(gi, want, where=w, out=gi)
    np.testing.assert_array_equal(gi, fs.softmax_backward(g, want, where=w))
    # a converted dtype (out float64 for float32 logits is not allowed: result dtype)
    xi = np.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(
        fs.softmax(xi, where=xi % 2 == 0), fs.softmax(xi.astype(float), where=xi % 2 == 0)
    )


def test_masks_that_are_lists_and_framework_bools(rng):
    x = rng.normal(0, 1, (3, 4))
    w = [[True, False, True, True]]
    np.testing.assert_array_equal(fs.softmax(x, where=w), fs.softmax(x, where=np.array(w)))


@pytest.mark.parametrize("op", FORWARD)
def test_threads_give_the_same_bits(rng, op):
    x = rng.normal(0, 3, (3000, 257)).astype(np.float32)
    w = rng.random(x.shape) < 0.6
    w[::7] = False
    f = getattr(fs, op)
    with fs.use_threads(1):
        one = f(x, where=w)
    with fs.use_threads(4):
        four = f(x, where=w)
    np.testing.assert_array_equal(one, four)


@pytest.mark.parametrize("n", [100, 1027, 7001, 9001])
@pytest.mark.parametrize("kind", ["full", "(1, C)"])
def test_rows_past_the_streaming_threshold_are_the_rows_alone(rng, kind, n):
    """Arrays past 8 MiB (softmax's rows streamed through a scratch row, the outputs
    written with non-temporal stores; log_softmax and the gradients likewise; logsumexp
    alongside): each row gets the bits it
    gets alone, in cache, special rows among them (a NaN and a +inf included, only -inf
    included, nothing included)."""
    shape = ((8 << 20) // (4 * n) + 3, n)
    x = rng.normal(0, 3, shape).astype(np.float32)
    g = rng.normal(0, 1, shape).astype(np.float32)
    w = make_mask(kind, shape, rng)
    wb = np.broadcast_to(w, shape)
    first = int(np.argmax(wb[0]))  # (an included entry of every row: (1, C) too)
    x[1, first], x[2, first], x[3] = NAN, INF, -INF
    x[4, ~wb[4]] = NAN  # (excluded)
    if kind == "full":
        w[5] = False
    rows = [0, 1, 2, 3, 4, 5, 6, 7, shape[0] // 2, shape[0] - 2, shape[0] - 1]
    wr = (lambda r: w[r : r + 1]) if kind == "full" else (lambda r: w)
    for op in FORWARD:  # (log_softmax: its rows' streamed stores too)
        y = getattr(fs, op)(x, where=w)
        for r in rows:
            alone = getattr(fs, op)(x[r : r + 1], where=wr(r))
            np.testing.assert_array_equal(y[r : r + 1], alone, err_msg=f"{op} row {r}")
    for op in BACKWARD:
        yy = getattr(fs, OF[op])(x, where=w)
        got = getattr(fs, op)(g, yy, where=w)
        for r in rows:
            alone = getattr(fs, op)(g[r : r + 1], yy[r : r + 1], where=wr(r))
            np.testing.assert_array_equal(got[r : r + 1], alone, err_msg=f"{op} row {r}")


# -------------------------------------------------------------------------- errors --


@pytest.mark.parametrize("op", FORWARD + BACKWARD)
def test_bad_masks_raise_and_write_nothing(op):
    x = np.zeros((3, 4), np.float32)
    f = getattr(fs, op)
    args = (x, x) if op in BACKWARD else (x,)
    out = np.full((3,) if op == "logsumexp" else (3, 4), 7, np.float32)
    with pytest.raises(TypeError, match="where must be an array of bools, got dtype int64"):
        f(*args, where=np.ones((3, 4), np.int64), out=out)
    with pytest.raises(TypeError, match="got dtype float32"):
        f(*args, where=np.ones((3, 4), np.float32), out=out)
    with pytest.raises(ValueError, match=r"where has shape \(3, 5\).*\(3, 4\)"):
        f(*args, where=np.ones((3, 5), bool), out=out)
    with pytest.raises(ValueError, match=r"where has shape \(2, 3, 4\)"):
        f(*args, where=np.ones((2, 3, 4), bool), out=out)
    assert np.all(out == 7)


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_gradients_whose_included_sum_overflows_are_zero_where_excluded(dtype, axis):
    """Finite included grads whose sum overflows: the excluded entries stay 0 (not 0 * inf)."""
    big = np.finfo(dtype).max
    g = np.array([[big, big, 5.0, big], [1.0, 2.0, 3.0, 4.0]] * 40, dtype)
    w = np.array([True, True, False, True])
    for name, op in (("log_softmax", "log_softmax_backward"), ("softmax", "softmax_backward")):
        y = getattr(fs, name)(np.zeros_like(g), where=w)
        if name == "softmax":
            y = np.where(w, np.array(big, dtype), 0).astype(dtype) * np.ones_like(g)
        gg, yy, ww = (g, y, w) if axis == -1 else (g.T, y.T, w[:, None])
        with np.errstate(all="ignore"):
            r = getattr(fs, op)(gg, yy, axis=axis, where=ww)
        r = r if axis == -1 else r.T
        assert np.all(r[:, 2] == 0), op


def test_out_interleaved_with_the_mask_without_sharing_bytes():
    """A mask and an out that are fields of one structured array: their spans overlap, no
    byte is shared; the call goes through (the binding's span test alone would refuse)."""
    dt = np.dtype([("x", "f8"), ("m", "?")], align=True)
    a = np.zeros(8, dt)
    a["m"] = [True, False] * 4
    x = np.arange(8.0)
    want = fs.softmax(x, where=a["m"].copy())
    np.testing.assert_array_equal(fs.softmax(x, where=a["m"], out=a["x"]), want)
    np.testing.assert_array_equal(a["x"], want)
    lse_w = np.zeros(3, [("v", "f8"), ("m", "?", (4,))])
    lse_w["m"] = [[True, False, True, True]] * 3
    xs = np.arange(12.0).reshape(3, 4)
    got = fs.logsumexp(xs, where=lse_w["m"], out=lse_w["v"])
    np.testing.assert_array_equal(got, fs.logsumexp(xs, where=lse_w["m"].copy()))


def test_out_overlapping_the_mask_is_refused():
    buf = np.zeros(64, np.float32)
    x = np.ones((2, 8), np.float32)
    w = buf.view(bool)[:16].reshape(2, 8)
    with pytest.raises(ValueError, match="out overlaps where"):
        fs.softmax(x, where=w, out=buf[:16].reshape(2, 8))


def test_the_docstring_examples_run():
    """The family's examples (where= among them), on every target."""
    result = doctest.testmod(_api, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 19
    assert result.failed == 0


# ------------------------------------------------------------------------- entropy --


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", [F32, F64, BF16], ids=str)
def test_entropy_over_the_included_classes(rng, dtype, axis):
    """entropy(where=) is the entropy of each slice's included classes alone (and its
    gradient, 0 at the excluded classes); nothing included: 0 and a zero gradient; NaN and
    inf under the mask have no effect."""
    x = rng.normal(0, 3, (12, 50)).astype(dtype)
    w = rng.random(x.shape) < 0.5
    w[3] = False
    dirty = x.copy()
    dirty[~w] = NAN
    dirty[0, ~w[0]] = INF
    xs, ws = (dirty, w) if axis == 1 else (dirty.T, w.T)
    h, g = fs.entropy(xs, axis=axis, where=ws, temperature=0.8, return_grad=True)
    if axis == 0:
        g = g.T
    tol = 1e-5 if dtype != F64 else 1e-12
    for r in range(x.shape[0]):
        if not w[r].any():
            assert h[r] == 0
            assert np.all(g[r] == 0)
            continue
        hr, gr = fs.entropy(x[r, w[r]], temperature=0.8, return_grad=True)
        np.testing.assert_allclose(h[r], hr, rtol=tol, atol=tol)
        np.testing.assert_allclose(g[r, w[r]].astype(float), gr.astype(float), rtol=tol, atol=tol)
        assert np.all(g[r, ~w[r]] == 0)
    with pytest.raises(TypeError, match="where must be an array of bools"):
        fs.entropy(x, where=np.ones(x.shape, np.int8))
    with pytest.raises(ValueError, match="does not broadcast"):
        fs.entropy(x, where=np.ones(3, bool))

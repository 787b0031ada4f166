"""float16 and bfloat16 (ml_dtypes) storage: every function, on every SIMD target.

The kernels load 16-bit values into float32 registers and round each output once
(cpp/src/arch/common_ops.hpp, Converting; generic/blocks.hpp, kExpInOutput). The
criterion of issue 13: every output within 1 ulp of the correctly rounded float64
reference in its own dtype. ``correctly_rounded`` rounds the float64 reference to
the dtype's precision by hand (ml_dtypes converts float64 through float32, which
could round twice), and ``ulps_apart`` counts the representable values between two
arrays of the dtype, subnormals included. Where the math itself cancels (the
backward functions, the cross-entropy's gradient), the float32 arithmetic's own
rounding of the terms is allowed as well, as an absolute error.
"""

from __future__ import annotations

import fastsoftmax as fs
import ml_dtypes
import numpy as np
import pytest
from fastsoftmax import _core
from reference import (
    ref_log_softmax,
    ref_log_softmax_backward,
    ref_logsumexp,
    ref_softmax,
    ref_softmax_backward,
)
from test_cross_entropy import ref_cross_entropy

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
HALVES = [pytest.param(F16, id="float16"), pytest.param(BF16, id="bfloat16")]
# significand bits (with the implicit one), smallest normal exponent, largest finite
FORMAT = {F16: (11, -14, 65504.0), BF16: (8, -126, float(ml_dtypes.finfo(BF16).max))}


def correctly_rounded(ref: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float64 values rounded to nearest even at dtype's precision (as float64)."""
    p, emin, big = FORMAT[dtype]
    r = np.asarray(ref, np.float64)
    with np.errstate(all="ignore"):
        e = np.floor(np.log2(np.abs(r)))
        q = np.exp2(np.maximum(e, emin) - (p - 1))  # the quantum (subnormals: fixed)
        out = np.where(np.isfinite(r) & (r != 0), np.rint(r / q) * q, r)
    # beyond the largest finite value by half a quantum or more: +-inf
    return np.where(np.abs(out) > big, np.copysign(np.inf, r), out)


def ordered(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The dtype's values as integers in their order (+0 and -0 both 0)."""
    bits = np.ascontiguousarray(np.asarray(a).astype(dtype)).view(np.uint16).astype(np.int64)
    return np.where(bits & 0x8000, -(bits & 0x7FFF), bits)


def ulps_apart(got: np.ndarray, ref64: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """How many values of dtype lie between got and the correctly rounded ref64 (NaN
    where exactly one of them is NaN, 0 where both are)."""
    cr = correctly_rounded(ref64, dtype)
    got64 = np.asarray(got).astype(np.float64)
    d = np.abs(ordered(got, dtype) - ordered(cr, dtype)).astype(np.float64)
    both_nan = np.isnan(got64) & np.isnan(cr)
    one_nan = np.isnan(got64) ^ np.isnan(cr)
    return np.where(both_nan, 0.0, np.where(one_nan, np.nan, d))


def assert_ulps(got, ref64, dtype, what, atol: float = 0.0) -> None:
    got = np.asarray(got)
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    d = ulps_apart(got, ref64, dtype)
    if atol:
        with np.errstate(invalid="ignore"):
            near = np.abs(got.astype(np.float64) - np.asarray(ref64, np.float64)) <= atol
        d = np.where(near, 0.0, d)
    bad = ~(d <= 1)
    if bad.any():
        i = tuple(int(k) for k in np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} outputs more than 1 ulp from the correctly rounded "
            f"reference; first at {i}: got {got[i]!r}, reference {np.asarray(ref64)[i]!r}"
        )


def logits(rng: np.random.Generator, shape, dtype, scale=3.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(dtype)


SHAPES = [(1, 1), (7, 3), (64, 10), (33, 100), (4, 1000), (2, 40000), (3, 1, 17)]


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("axis", [-1, 0])
def test_forward_within_one_ulp(rng, dtype, shape, axis):
    x = logits(rng, shape, dtype)
    assert_ulps(fs.softmax(x, axis), ref_softmax(x, axis), dtype, "softmax")
    assert_ulps(fs.log_softmax(x, axis), ref_log_softmax(x, axis), dtype, "log_softmax")
    assert_ulps(fs.logsumexp(x, axis), ref_logsumexp(x, axis), dtype, "logsumexp")


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("shape", [(64, 10), (33, 100), (8, 3000), (2, 40000)], ids=str)
def test_peaked_rows_log_softmax_near_zero(rng, dtype, shape):
    """Peaked rows: the top class's log_softmax is a small negative number (-1e-7 and so),
    -(sum - 1), whose few ulp in 8 or 11 bits a float sum holding the maximum's 1 would lose
    (the row groups and long rows once summed in float lanes: baseline's one lane, 3.3e-6
    for -3.2e-6)."""
    x = logits(rng, shape, dtype, scale=10.0)
    assert_ulps(fs.log_softmax(x), ref_log_softmax(x), dtype, "log_softmax")
    assert_ulps(fs.logsumexp(x), ref_logsumexp(x), dtype, "logsumexp")


@pytest.mark.parametrize("dtype", HALVES)
def test_long_rows_and_threads(rng, dtype):
    """Rows past L1 (block by block) and rows split across threads (segments)."""
    x = logits(rng, (2, 300_000), dtype)
    for threads in (1, 2):
        with fs.use_threads(threads):
            assert_ulps(fs.softmax(x), ref_softmax(x), dtype, f"softmax, {threads} threads")
            assert_ulps(fs.log_softmax(x), ref_log_softmax(x), dtype, "log_softmax")
            assert_ulps(fs.logsumexp(x), ref_logsumexp(x), dtype, "logsumexp")


@pytest.mark.parametrize("dtype", HALVES)
def test_large_array_streams(rng, dtype):
    """An array past the streaming threshold (kStreamBytes, 8 MiB): the from_memory paths."""
    x = logits(rng, (2048, 2100), dtype)
    assert_ulps(fs.softmax(x), ref_softmax(x), dtype, "softmax")
    assert_ulps(fs.log_softmax(x), ref_log_softmax(x), dtype, "log_softmax")


@pytest.mark.parametrize("dtype", HALVES)
def test_special_values(dtype):
    p, emin, big = FORMAT[dtype]
    tiny = 2.0 ** (emin - (p - 1))  # the smallest subnormal
    rows = [
        [0.0, 0.0, 0.0, 0.0, 0.0],  # all equal
        [big, big, 0.0, -big, 1.0],  # the largest finite
        [tiny, -tiny, 2 * tiny, 0.0, 2.0**emin],  # subnormals
        [-np.inf, 0.0, 1.0, -np.inf, 2.0],  # masked classes
        [-np.inf] * 5,  # only -inf
        [np.inf, 0.0, 1.0, 2.0, 3.0],  # +inf
        [np.nan, 0.0, 1.0, 2.0, 3.0],  # NaN
        [-20.0, 0.0, -30.0, 3.0, -40.0],  # outputs that are float16 subnormals
    ]
    x = np.array(rows, dtype=np.float64).astype(dtype)
    with np.errstate(all="ignore"):
        ref = {
            "softmax": fs.softmax(x.astype(np.float64)),  # (SciPy's edge cases: test_edge_cases)
            "log_softmax": fs.log_softmax(x.astype(np.float64)),
            "logsumexp": fs.logsumexp(x.astype(np.float64)),
        }
    for op, r in ref.items():
        assert_ulps(getattr(fs, op)(x), r, dtype, op)


@pytest.mark.parametrize("dtype", HALVES)
def test_views_and_out(rng, dtype):
    base = logits(rng, (40, 64), dtype)
    for view in (base[:, ::2], base[::-1], base.T, base[3:30:3, 5:50]):
        for axis in (-1, 0):
            ref = ref_softmax(view, axis)
            assert_ulps(fs.softmax(view, axis), ref, dtype, "softmax of a view")
            out = np.full(view.shape, np.nan, dtype)
            assert fs.softmax(view, axis, out=out) is out
            assert_ulps(out, ref, dtype, "softmax out=")
    x = base.copy()
    ref = ref_log_softmax(x)
    assert fs.log_softmax(x, out=x) is x  # in place
    assert_ulps(x, ref, dtype, "log_softmax in place")
    lse_out = np.empty(40, dtype)
    fs.logsumexp(base, out=lse_out)
    assert_ulps(lse_out, ref_logsumexp(base), dtype, "logsumexp out=")


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("shape", [(64, 10), (8, 1000), (30, 7, 5)], ids=str)
def test_backward(rng, dtype, shape):
    x = logits(rng, shape, dtype)
    g = rng.standard_normal(shape).astype(dtype)
    for axis in (-1, 1):
        y = fs.softmax(x, axis)
        scale = float(np.max(np.abs(g.astype(np.float64))))
        got = fs.softmax_backward(g, y, axis)
        assert_ulps(got, ref_softmax_backward(g, y, axis), dtype, "softmax_backward", 2e-7 * scale)
        ly = fs.log_softmax(x, axis)
        got = fs.log_softmax_backward(g, ly, axis)
        ref = ref_log_softmax_backward(g, ly, axis)
        assert_ulps(got, ref, dtype, "log_softmax_backward", 2e-7 * scale * shape[axis])


CE_OPTIONS = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"label_smoothing": 0.1},
    {"z_loss": 1e-3},
    {"softcap": 5.0},
    {"weight": "w"},
    {"ignore_index": 1},
]


def _ce_kwargs(opts, rng, n):
    kw = dict(opts)
    if kw.get("weight") == "w":
        kw["weight"] = rng.uniform(0.5, 2.0, n).astype(np.float32)
    return kw


@pytest.mark.parametrize("dtype", HALVES)
# (3, 20001): rows past 32 KiB, whose gradient goes out with streaming stores from an
# unaligned start (not in place)
@pytest.mark.parametrize("shape", [(64, 10), (16, 1000), (4, 5000), (3, 20001)], ids=str)
@pytest.mark.parametrize("opts", CE_OPTIONS, ids=lambda o: ",".join(o) or "plain")
def test_cross_entropy(rng, dtype, shape, opts):
    x = logits(rng, shape, dtype)
    labels = rng.integers(0, shape[-1], shape[0])
    labels[::5] = 1
    kw = _ce_kwargs(opts, rng, shape[-1])
    ref_loss, ref_grad = ref_cross_entropy(x, labels, **kw)
    loss, grad = fs.cross_entropy(x, labels, return_grad=True, **kw)
    assert np.asarray(loss).dtype == np.float32  # (the loss of half-precision logits)
    np.testing.assert_allclose(loss, ref_loss, rtol=3e-6, atol=1e-6)
    scale = float(np.max(np.abs(ref_grad)))
    assert_ulps(grad, ref_grad, dtype, "cross_entropy gradient", 2**-22 * scale)
    np.testing.assert_array_equal(fs.cross_entropy(x, labels, **kw), loss)  # (same without grad)
    inplace = x.copy()
    _, g2 = fs.cross_entropy(inplace, labels, return_grad=True, inplace_grad=True, **kw)
    assert g2 is inplace
    np.testing.assert_array_equal(g2.view(np.uint16), grad.view(np.uint16))


@pytest.mark.parametrize("dtype", HALVES)
def test_cross_entropy_probabilities_kdim_and_backward(rng, dtype):
    x = logits(rng, (6, 9, 4, 5), dtype)
    t = rng.dirichlet(np.ones(9), size=(6, 4, 5)).transpose(0, 3, 1, 2).astype(dtype)
    ref_loss, ref_grad = ref_cross_entropy(x, t, axis=1)
    loss, grad = fs.cross_entropy(x, t, axis=1, return_grad=True)
    np.testing.assert_allclose(loss, ref_loss, rtol=3e-6)
    scale = float(np.max(np.abs(ref_grad)))
    assert_ulps(grad, ref_grad, dtype, "probabilities, axis=1", 2**-22 * scale)
    labels = rng.integers(0, 9, (6, 4, 5))
    ref_loss, ref_grad = ref_cross_entropy(x, labels, axis=1, label_smoothing=0.2)
    loss, grad = fs.cross_entropy(x, labels, axis=1, label_smoothing=0.2, return_grad=True)
    np.testing.assert_allclose(loss, ref_loss, rtol=3e-6)
    assert_ulps(grad, ref_grad, dtype, "labels, axis=1", 2**-22 * float(np.max(np.abs(ref_grad))))
    lse = fs.logsumexp(x.astype(np.float32), axis=1)
    back = fs.cross_entropy_backward(x, labels, axis=1, lse=lse, label_smoothing=0.2)
    assert back.dtype == dtype
    assert_ulps(back, ref_grad, dtype, "cross_entropy_backward with lse", 2**-20 * scale)


@pytest.mark.parametrize("dtype", HALVES)
def test_cross_entropy_special_logits(dtype):
    x = np.array([[0.0, -np.inf, 1.0], [np.nan, 0.0, 1.0], [np.inf, 0.0, 1.0]]).astype(dtype)
    labels = np.array([0, 1, 2])
    loss, grad = fs.cross_entropy(x, labels, reduction="none", return_grad=True)
    assert np.isfinite(loss[0])
    assert np.isnan(loss[1:]).all()
    assert grad[0, 1] == 0
    assert np.isnan(grad[1:].astype(np.float32)).all()


def test_dtypes_are_detected_by_equality_not_by_character():
    """bfloat16 is ml_dtypes' dtype (kind "V"); other ml_dtypes types are refused by name."""
    assert BF16.kind == "V"
    x = np.zeros((2, 3), BF16)
    assert fs.softmax(x).dtype == BF16
    for name in ("float8_e4m3fn", "float8_e5m2"):
        with pytest.raises(TypeError, match=name):
            fs.softmax(np.zeros((2, 3), getattr(ml_dtypes, name)))
    with pytest.raises(TypeError, match="complex"):
        fs.softmax(np.zeros((2, 3), np.complex64))


def test_scalar_conversions_match_numpy_and_ml_dtypes():
    """The portable scalar conversions (fastsoftmax/half.hpp, the baseline target's
    loads and stores) against NumPy's float16 and ml_dtypes' bfloat16, on every float16
    and bfloat16 value and on float32 values at and between them (ties included)."""
    for dtype in (F16, BF16):
        every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dtype)
        x = every.astype(np.float32)
        x = x[np.isfinite(x)]
        mid = ((x[:-1].astype(np.float64) + x[1:]) / 2).astype(np.float32)
        probe = np.concatenate([x, mid, np.nextafter(mid, np.float32(np.inf))])
        probe = probe[np.isfinite(probe)]
        probe = probe[probe.astype(dtype).astype(np.float32) != 0]  # (logsumexp(-0) is +0)
        old = fs.simd_target()
        try:
            _core.set_target("baseline")
            # softmax of a one-element axis is 1, but logsumexp of it is the value itself:
            # a load and a store of each element through the scalar conversions
            got = fs.logsumexp(probe.astype(np.float32).astype(dtype)[:, None], axis=1)
        finally:
            _core.set_target(old)
        np.testing.assert_array_equal(
            got.view(np.uint16), probe.astype(dtype).view(np.uint16), err_msg=str(dtype)
        )

"""The package's own vectorized exp, log, log1p and tanh (``_core.vexp`` / ``vlog`` / ``vlog1p`` /
``vtanh``) on the active target.

Accuracy in ulp against NumPy's float64 (for float32) or np.longdouble (for
float64) functions, over at least 10^6 inputs per function and dtype, plus
the exact special values.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastsoftmax import _core
from reference import describe_worst, ulp_error

N = 1_000_000
F32, F64 = np.float32, np.float64
WIDE = {F32: np.float64, F64: np.longdouble}
dtypes = pytest.mark.parametrize("dtype", [F32, F64])


def exact_exp(x: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.exp(x.astype(WIDE[x.dtype.type]))


def exact_log(x: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.log(x.astype(WIDE[x.dtype.type]))


def exp_inputs(rng, dtype) -> np.ndarray:
    lo, hi = (-104.0, 89.0) if dtype == F32 else (-746.0, 710.0)
    parts = [
        rng.uniform(lo, hi, N // 2),
        rng.uniform(-1, 1, N // 4),
        np.sign(rng.uniform(-1, 1, N // 4)) * 10.0 ** rng.uniform(-30, 0, N // 4),
    ]
    return np.concatenate(parts).astype(dtype)


def log_inputs(rng, dtype) -> np.ndarray:
    big = 38 if dtype == F32 else 307
    info = np.finfo(dtype)
    parts = [
        10.0 ** rng.uniform(-big, big, N // 2),
        rng.uniform(0.5, 2.0, N // 4),
        1.0 + rng.uniform(-1e-3, 1e-3, N // 8),
        float(info.smallest_subnormal) * rng.integers(1, 2**info.nmant, N // 8).astype(np.float64),
    ]
    return np.concatenate(parts).astype(dtype)


def assert_ulp(got, ref, dtype, mask, limit, what):
    err = ulp_error(got, ref, dtype)
    err = np.where(mask, err, 0.0)
    assert (err <= limit).all(), (
        f"{what}: {int((err > limit).sum())} results off by more than {limit} ulp; "
        + describe_worst(err, ("got", got), ("exact", ref))
    )


@dtypes
def test_exp_within_2_ulp_where_the_result_is_normal(rng, dtype):
    x = exp_inputs(rng, dtype)
    assert x.size >= N
    ref = exact_exp(x)
    with np.errstate(all="ignore"):
        rounded = ref.astype(dtype)
    normal = np.isfinite(rounded) & (rounded >= np.finfo(dtype).tiny)
    assert normal.sum() > N // 2
    assert_ulp(_core.vexp(x), ref, dtype, normal, 2.0, f"exp {np.dtype(dtype)}")


@dtypes
def test_exp_with_subnormal_results_within_1_subnormal_step(rng, dtype):
    info = np.finfo(dtype)
    lo, hi = float(np.log(info.smallest_subnormal)) - 0.7, float(np.log(info.tiny))
    x = rng.uniform(lo, hi, N // 4).astype(dtype)
    ref = exact_exp(x)
    got = _core.vexp(x)
    err = np.abs(got.astype(ref.dtype) - ref) / ref.dtype.type(info.smallest_subnormal)
    assert (err <= 1).all(), "exp in the subnormal range: " + describe_worst(
        err, ("x", x), ("got", got), ("exact", ref)
    )


@dtypes
def test_exp_around_the_overflow_threshold(dtype):
    """Consecutive floats around log(max): finite and accurate below, +inf above."""
    t = dtype(np.log(np.finfo(dtype).max))
    x = t + np.arange(-2000, 2000) * np.spacing(t)
    x = x.astype(dtype)
    ref = exact_exp(x)
    with np.errstate(all="ignore"):
        rounded = ref.astype(dtype)
    got = _core.vexp(x)
    overflow = ~np.isfinite(rounded)
    assert overflow.any()
    assert not overflow.all()
    np.testing.assert_array_equal(got[overflow], np.inf, err_msg="exp should overflow to +inf")
    assert_ulp(got, ref, dtype, ~overflow, 2.0, "exp just below overflow")


@dtypes
def test_exp_around_the_underflow_threshold(dtype):
    """Consecutive floats around log(smallest subnormal / 2): 0 below, the subnormal above."""
    t = dtype(np.log(np.finfo(dtype).smallest_subnormal))
    x = (t + np.arange(-3000, 3000) * np.spacing(t)).astype(dtype)
    ref = exact_exp(x)
    got = _core.vexp(x)
    err = np.abs(got.astype(ref.dtype) - ref) / ref.dtype.type(np.finfo(dtype).smallest_subnormal)
    assert (err <= 1).all(), "exp near underflow: " + describe_worst(
        err, ("x", x), ("got", got), ("exact", ref)
    )


@dtypes
def test_exp_special_values(dtype):
    info = np.finfo(dtype)
    very_negative = -200.0 if dtype == F32 else -1000.0
    large = 89.0 if dtype == F32 else 710.0
    x = np.array(
        [-np.inf, np.inf, np.nan, very_negative, -info.max, large, info.max, 0.0, -0.0],
        dtype=dtype,
    )
    got = _core.vexp(x)
    assert got.dtype == dtype
    assert got[0] == 0, f"exp(-inf) = {got[0]!r}"
    assert not np.signbit(got[0]), f"exp(-inf) = {got[0]!r}"
    assert got[1] == np.inf, f"exp(+inf) = {got[1]!r}"
    assert np.isnan(got[2]), f"exp(nan) = {got[2]!r}"
    assert got[3] == 0, f"exp({very_negative}) = {got[3]!r}"
    assert got[4] == 0, f"exp(-max) = {got[4]!r}"
    assert got[5] == np.inf, f"exp({large}) = {got[5]!r}"
    assert got[6] == np.inf, f"exp(max) = {got[6]!r}"
    assert got[7] == 1, f"exp(0) = {got[7]!r}"
    assert got[8] == 1, f"exp(-0) = {got[8]!r}"


@dtypes
def test_log_within_2_ulp(rng, dtype):
    x = log_inputs(rng, dtype)
    assert x.size >= N
    ref = exact_log(x)
    assert_ulp(
        _core.vlog(x), ref, dtype, np.ones(x.shape, dtype=bool), 2.0, f"log {np.dtype(dtype)}"
    )


@dtypes
def test_log_of_subnormals(rng, dtype):
    info = np.finfo(dtype)
    steps = np.unique(np.concatenate([np.arange(1, 4097), rng.integers(1, 2**info.nmant, 50000)]))
    x = (steps.astype(np.float64) * float(info.smallest_subnormal)).astype(dtype)
    assert (x > 0).all()
    assert (x < info.tiny).all()
    assert_ulp(
        _core.vlog(x), exact_log(x), dtype, np.ones(x.shape, dtype=bool), 2.0, "log(subnormal)"
    )


@dtypes
def test_log_special_values(dtype):
    info = np.finfo(dtype)
    x = np.array(
        [0.0, -0.0, -1.0, -np.inf, np.inf, np.nan, 1.0, -info.smallest_subnormal], dtype=dtype
    )
    got = _core.vlog(x)
    assert got.dtype == dtype
    assert got[0] == -np.inf, f"log(0) = {got[0]!r}"
    assert got[1] == -np.inf, f"log(-0) = {got[1]!r}"
    assert np.isnan(got[2]), f"log(-1) = {got[2]!r}"
    assert np.isnan(got[3]), f"log(-inf) = {got[3]!r}"
    assert got[4] == np.inf, f"log(inf) = {got[4]!r}"
    assert np.isnan(got[5]), f"log(nan) = {got[5]!r}"
    assert got[6] == 0, f"log(1) = {got[6]!r}"
    assert np.isnan(got[7]), f"log(-smallest subnormal) = {got[7]!r}"


@dtypes
def test_log_of_extremes(dtype):
    info = np.finfo(dtype)
    x = np.array([info.max, info.tiny, info.smallest_subnormal, 2.0, 0.5], dtype=dtype)
    assert_ulp(_core.vlog(x), exact_log(x), dtype, np.ones(5, dtype=bool), 2.0, "log of extremes")


def tanh_inputs(rng, dtype) -> np.ndarray:
    parts = [
        rng.uniform(-20, 20, N // 4),
        rng.uniform(-1, 1, N // 4),
        rng.uniform(0.5, 0.6, N // 8),  # around the switch between the two formulas
        -rng.uniform(0.5, 0.6, N // 8),
        np.sign(rng.uniform(-1, 1, N // 4)) * 10.0 ** rng.uniform(-30, 1.5, N // 4),
    ]
    return np.concatenate(parts).astype(dtype)


def log1p_inputs(rng, dtype) -> np.ndarray:
    big = 38 if dtype == F32 else 307
    near_minus_one = 7 if dtype == F32 else 15
    parts = [
        10.0 ** rng.uniform(-big, big, N // 2),
        rng.uniform(-0.999, 1.0, N // 4),
        -1.0 + 10.0 ** rng.uniform(-near_minus_one, -0.01, N // 4),
    ]
    x = np.concatenate(parts).astype(dtype)
    return x[x > -1]


@dtypes
def test_log1p_within_2_3_ulp(rng, dtype):
    """vlog1p (the cross-entropy's loss of confident rows) is within its stated 2.3 ulp bound."""
    x = log1p_inputs(rng, dtype)
    assert x.size >= 0.99 * N
    with np.errstate(all="ignore"):
        ref = np.log1p(x.astype(WIDE[dtype]))
    assert_ulp(_core.vlog1p(x), ref, dtype, np.ones(x.shape, dtype=bool), 2.3, "log1p")


@dtypes
def test_log1p_special_values(dtype):
    info = np.finfo(dtype)
    x = np.array([0.0, -0.0, -1.0, np.nan, info.tiny, 1e-30, info.max], dtype)
    got = _core.vlog1p(x)
    assert got[0] == 0
    assert not np.signbit(got[0])
    assert got[1] == 0
    assert np.signbit(got[1])
    assert got[2] == -np.inf
    assert np.isnan(got[3])
    assert got[4] == info.tiny  # log1p(u) = u for tiny u
    assert got[5] == dtype(1e-30)
    assert np.isfinite(got[6])


@dtypes
def test_tanh_within_4_ulp(rng, dtype):
    x = tanh_inputs(rng, dtype)
    got = _core.vtanh(x)
    err = ulp_error(got, np.tanh(x.astype(WIDE[dtype])), dtype)
    assert err.max() <= 4.0, describe_worst(err, ("x", x), ("got", got))
    assert np.all(np.abs(got) <= 1)


@dtypes
def test_tanh_special_values(dtype):
    info = np.finfo(dtype)
    x = np.array([0.0, np.inf, -np.inf, np.nan, info.max, -info.max, info.tiny], dtype)
    got = _core.vtanh(x)
    np.testing.assert_array_equal(got[:3], [0.0, 1.0, -1.0])
    assert np.isnan(got[3])
    np.testing.assert_array_equal(got[4:6], [1.0, -1.0])
    assert got[6] == info.tiny  # tanh(x) = x for tiny x
    assert np.signbit(_core.vtanh(np.array([-0.0], dtype))[0])  # tanh(-0) = -0


@dtypes
@pytest.mark.parametrize("fn", ["vexp", "vlog", "vlog1p", "vtanh"])
def test_lengths_and_tails_give_the_same_values(rng, dtype, fn):
    """Every length 0..70 (partial vectors): each element as in a long array, nothing past the end."""
    f = getattr(_core, fn)
    x = (
        rng.uniform(0.1, 20, 200).astype(dtype)
        if fn == "vlog"
        else rng.uniform(-20, 20, 200).astype(dtype)
    )
    full = f(x)
    for n in range(71):
        got = f(x[:n].copy())
        assert got.shape == (n,)
        np.testing.assert_array_equal(got, full[:n], err_msg=f"length {n}")
        # a window that starts inside the array exercises unaligned starts
        np.testing.assert_array_equal(
            f(x[3 : 3 + n]), full[3 : 3 + n], err_msg=f"offset 3, length {n}"
        )


@pytest.mark.parametrize("fn", ["vexp", "vlog", "vlog1p", "vtanh"])
def test_rejects_what_it_cannot_take(fn):
    f = getattr(_core, fn)
    with pytest.raises(ValueError, match="contiguous 1-d"):
        f(np.ones(10)[::2])
    with pytest.raises(ValueError, match="contiguous 1-d"):
        f(np.ones((2, 3)))
    with pytest.raises(TypeError, match="dtype"):
        f(np.ones(4, dtype=np.int64))

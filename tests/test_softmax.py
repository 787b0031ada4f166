"""Accuracy and basic properties of softmax and log_softmax on finite inputs."""

from __future__ import annotations

import fastsoftmax as fs
import numpy as np
import pytest
from reference import (
    ACCURACY_SHAPES,
    LOG_ATOL,
    SCALES,
    SOFTMAX_RTOL,
    assert_log_close,
    assert_softmax_close,
    describe_worst,
    make_logits,
    ref_log_softmax,
    ref_softmax,
    ulp_error,
    widen,
)

shapes = pytest.mark.parametrize("shape", ACCURACY_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
scales = pytest.mark.parametrize("scale", SCALES)

# Required accuracy (see the package's spec).
SOFTMAX_TINY = {np.float32: 1e-30, np.float64: float(np.finfo(np.float64).tiny)}


@shapes
@scales
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_relative_error(rng, shape, scale, dtype):
    x = make_logits(rng, shape, scale, dtype)
    y = fs.softmax(x)
    assert y.dtype == dtype
    assert_softmax_close(
        y,
        ref_softmax(x),
        SOFTMAX_RTOL[dtype],
        SOFTMAX_TINY[dtype],
        f"(shape {shape}, scale {scale})",
    )


@shapes
@scales
def test_softmax_float32_ulp_not_worse_than_numpy(rng, shape, scale):
    """Per element, ours is at most 2 ulp worse than NumPy's float32 exp(x - max) / sum."""
    x = make_logits(rng, shape, scale, np.float32)
    ref = ref_softmax(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    naive = e / e.sum(axis=-1, keepdims=True)
    assert naive.dtype == np.float32
    ours = ulp_error(fs.softmax(x), ref, np.float32)
    theirs = ulp_error(naive, ref, np.float32)
    excess = ours - theirs
    assert (excess <= 2).all(), (
        f"{int((excess > 2).sum())} elements more than 2 ulp worse than NumPy; "
        + describe_worst(excess, ("ulp_ours", ours), ("ulp_numpy", theirs), ("x", x), ("ref", ref))
    )


@shapes
@scales
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_softmax_absolute_error(rng, shape, scale, dtype):
    x = make_logits(rng, shape, scale, dtype)
    y = fs.log_softmax(x)
    assert y.dtype == dtype
    assert_log_close(y, ref_log_softmax(x), LOG_ATOL[dtype], f"(shape {shape}, scale {scale})")


@shapes
@pytest.mark.parametrize("scale", ["1", "100"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_rows_sum_to_one(rng, shape, scale, dtype):
    x = make_logits(rng, shape, scale, dtype)
    sums = widen(fs.softmax(x)).sum(axis=-1)
    tol = 10 * np.finfo(dtype).eps
    np.testing.assert_allclose(
        sums.astype(np.float64), 1.0, rtol=0, atol=tol, err_msg=f"row sums, shape {shape}"
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 16, 33, 1000, 5000])
def test_softmax_and_log_softmax_invariant_to_adding_a_constant(rng, dtype, n):
    # logits on a 1/64 grid so that x + c is exact in float32 as well
    x = (np.round(rng.normal(0, 10, (6, n)) * 64) / 64).astype(dtype)
    c = dtype(512.0)
    shifted = x + c
    np.testing.assert_array_equal(shifted - c, x)  # the shift is exact
    assert_softmax_close(
        fs.softmax(shifted), widen(fs.softmax(x)), SOFTMAX_RTOL[dtype], SOFTMAX_TINY[dtype]
    )
    assert_log_close(fs.log_softmax(shifted), widen(fs.log_softmax(x)), LOG_ATOL[dtype])


@pytest.mark.parametrize("op", [fs.softmax, fs.log_softmax])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_single_element_rows_are_exact(rng, op, dtype):
    x = (rng.standard_normal((37, 1)) * 100).astype(dtype)
    expected = 1.0 if op is fs.softmax else 0.0
    np.testing.assert_array_equal(op(x), np.full_like(x, expected))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [2, 3, 17, 1000, 4097])
def test_all_equal_rows_are_uniform(dtype, n):
    x = np.full((3, n), -7.25, dtype=dtype)
    y = fs.softmax(x)
    # 1/n rounded once (one division, one multiplication by exp(0) = 1)
    np.testing.assert_allclose(y, np.full_like(x, 1.0 / n), rtol=np.finfo(dtype).eps, atol=0)
    np.testing.assert_allclose(
        fs.log_softmax(x), np.full_like(x, -np.log(n)), rtol=2 * np.finfo(dtype).eps, atol=0
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_logits_do_not_overflow(rng, dtype):
    big = np.finfo(dtype).max / 4
    x = (rng.uniform(-1, 1, (5, 40)) * 50).astype(dtype) + dtype(big)
    y = fs.softmax(x)
    assert np.isfinite(y).all(), "softmax of large finite logits has non-finite entries"
    assert_softmax_close(y, ref_softmax(x), SOFTMAX_RTOL[dtype], SOFTMAX_TINY[dtype])
    assert_log_close(fs.log_softmax(x), ref_log_softmax(x), LOG_ATOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_finite_logits(dtype):
    """Rows mixing +-max finite values: x - max overflows to -inf, which is the right answer."""
    hi = np.finfo(dtype).max
    x = np.array([[hi, -hi, 0.0, hi], [-hi, -hi, -hi, -hi], [hi, hi, hi, hi]], dtype=dtype)
    assert_softmax_close(fs.softmax(x), ref_softmax(x), SOFTMAX_RTOL[dtype], SOFTMAX_TINY[dtype])
    assert_log_close(fs.log_softmax(x), ref_log_softmax(x), LOG_ATOL[dtype])


def test_softmax_and_log_softmax_are_monotonic_in_the_logits(rng):
    x = np.sort(rng.normal(0, 5, (4, 300)), axis=-1)
    y = fs.softmax(x)
    assert (np.diff(y, axis=-1) >= 0).all(), "softmax of sorted logits is not sorted"
    assert (np.diff(fs.log_softmax(x), axis=-1) >= 0).all(), (
        "log_softmax of sorted logits is not sorted"
    )

"""Accuracy, shapes and keepdims of logsumexp on finite inputs."""

from __future__ import annotations

import fastsoftmax as fs
import numpy as np
import pytest
from reference import (
    ACCURACY_SHAPES,
    LOG_ATOL,
    SCALES,
    assert_log_close,
    make_logits,
    ref_logsumexp,
    widen,
)

dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64])


@pytest.mark.parametrize("shape", ACCURACY_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("scale", SCALES)
@dtypes
def test_logsumexp_absolute_error(rng, shape, scale, dtype):
    x = make_logits(rng, shape, scale, dtype)
    r = fs.logsumexp(x)
    assert r.dtype == dtype
    assert r.shape == shape[:-1]
    assert_log_close(r, ref_logsumexp(x), LOG_ATOL[dtype], f"(shape {shape}, scale {scale})")


@pytest.mark.parametrize("shape", [(7, 1), (5, 19), (300, 17), (1000, 64), (33, 4097)])
@dtypes
def test_logsumexp_over_columns_absolute_error(rng, shape, dtype):
    """axis=0 of a C-contiguous array: the column kernels."""
    x = make_logits(rng, shape, "10", dtype)
    r = fs.logsumexp(x, axis=0)
    assert r.shape == shape[1:]
    assert_log_close(r, ref_logsumexp(x, axis=0), LOG_ATOL[dtype])


@pytest.mark.parametrize("shape", [(4, 5, 6), (2, 3, 1, 17)])
@pytest.mark.parametrize("axis", [0, 1, -1, (0, 1), (0, -1), (1, 2), None])
@dtypes
def test_logsumexp_keepdims_shape_and_values(rng, shape, axis, dtype):
    x = make_logits(rng, shape, "10", dtype)
    kept = fs.logsumexp(x, axis=axis, keepdims=True)
    dropped = fs.logsumexp(x, axis=axis)
    expected = ref_logsumexp(x, axis=axis, keepdims=True)
    assert kept.shape == expected.shape, f"keepdims shape {kept.shape}, expected {expected.shape}"
    assert dropped.shape == np.squeeze(expected, axis=axis).shape
    np.testing.assert_array_equal(kept, dropped.reshape(kept.shape))
    assert_log_close(kept, expected, LOG_ATOL[dtype])
    # keepdims=True broadcasts against x: x - logsumexp is log_softmax (to rounding)
    scale = float(np.abs(x).max() + np.abs(kept).max())
    np.testing.assert_allclose(
        x - kept, fs.log_softmax(x, axis=axis), rtol=0, atol=8 * np.finfo(dtype).eps * scale
    )


@dtypes
def test_logsumexp_over_all_axes_is_a_0d_array(rng, dtype):
    x = make_logits(rng, (3, 4, 5), "1", dtype)
    r = fs.logsumexp(x, axis=None)
    assert isinstance(r, np.ndarray)
    assert r.shape == ()
    assert r.dtype == dtype
    assert_log_close(r, ref_logsumexp(x, axis=None), LOG_ATOL[dtype])


@dtypes
@pytest.mark.parametrize("n", [1, 2, 16, 1000, 4097])
def test_logsumexp_shift(rng, dtype, n):
    """logsumexp(x + c) == logsumexp(x) + c for an exact shift."""
    x = (np.round(rng.normal(0, 10, (5, n)) * 64) / 64).astype(dtype)
    c = dtype(256.0)
    np.testing.assert_array_equal((x + c) - c, x)
    assert_log_close(fs.logsumexp(x + c), widen(fs.logsumexp(x)) + 256, LOG_ATOL[dtype])


@dtypes
@pytest.mark.parametrize("n", [1, 3, 16, 17, 1000, 100000])
def test_logsumexp_of_equal_values(dtype, n):
    v = dtype(-3.5)
    x = np.full((2, n), v, dtype=dtype)
    expected = np.longdouble(v) + np.log(np.longdouble(n))
    assert_log_close(fs.logsumexp(x), np.full(2, expected), LOG_ATOL[dtype])


@dtypes
def test_logsumexp_of_single_elements_is_exact(rng, dtype):
    x = (rng.standard_normal((40, 1)) * 100).astype(dtype)
    np.testing.assert_array_equal(fs.logsumexp(x), x[:, 0])
    np.testing.assert_array_equal(fs.logsumexp(x.T, axis=0), x[:, 0])


@dtypes
@pytest.mark.parametrize(
    ("shape", "axis", "result_shape"),
    [((3, 0), -1, (3,)), ((0, 3), 0, (3,)), ((2, 0, 5), 1, (2, 5)), ((0,), 0, ())],
)
def test_logsumexp_over_an_empty_axis_is_minus_inf(dtype, shape, axis, result_shape):
    r = fs.logsumexp(np.zeros(shape, dtype=dtype), axis=axis)
    assert r.shape == result_shape
    assert r.dtype == dtype
    np.testing.assert_array_equal(r, np.full(result_shape, -np.inf, dtype=dtype))


@dtypes
def test_logsumexp_with_nothing_left_over_is_empty(dtype):
    r = fs.logsumexp(np.zeros((0, 4), dtype=dtype), axis=-1)
    assert r.shape == (0,)
    assert r.dtype == dtype

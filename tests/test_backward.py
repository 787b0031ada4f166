"""softmax_backward and log_softmax_backward: reference VJPs, the Jacobian, finite differences."""

from __future__ import annotations

import fastsoftmax as fs
import numpy as np
import pytest
from reference import (
    describe_worst,
    ref_log_softmax,
    ref_log_softmax_backward,
    ref_softmax,
    ref_softmax_backward,
    widen,
)

LENGTHS = [1, 2, 15, 16, 17, 63, 64, 65, 1000, 1025, 4097, 70000]


def make_case(rng, shape, dtype, which: str, axis=-1, scale=3.0):
    """(grad, y) with y a softmax (or log_softmax) of random logits, in dtype."""
    logits = rng.standard_normal(shape) * scale
    y = ref_softmax(logits, axis=axis) if which == "softmax" else ref_log_softmax(logits, axis=axis)
    grad = rng.standard_normal(shape)
    return grad.astype(dtype), y.astype(dtype)


def error_bound(which: str, grad, y, axis, dtype, c: float = 8) -> np.ndarray:
    """c * eps times the condition of the formula at each element.

    softmax:     y * (g - sum(g * y))  ->  y * (|g| + sum(|g * y|))
    log_softmax: g - exp(y) * sum(g)   ->  |g| + exp(y) * sum(|g|)
    """
    g, yy = np.abs(widen(grad)), widen(y)
    eps = np.finfo(dtype).eps
    if which == "softmax":
        scale = np.abs(yy) * (g + np.sum(g * np.abs(yy), axis=axis, keepdims=True))
    else:
        scale = g + np.exp(yy) * np.sum(g, axis=axis, keepdims=True)
    return c * eps * scale + np.finfo(dtype).tiny


def assert_vjp_close(which, got, grad, y, axis, dtype, context=""):
    ref = (ref_softmax_backward if which == "softmax" else ref_log_softmax_backward)(
        grad, y, axis=axis
    )
    assert got.shape == ref.shape
    assert got.dtype == dtype
    err = np.abs(widen(got) - ref)
    bound = error_bound(which, grad, y, axis, dtype)
    ratio = err / bound
    assert (ratio <= 1).all(), (
        f"{which}_backward off by more than 8 eps x condition at {int((ratio > 1).sum())} elements; "
        + describe_worst(ratio, ("got", got), ("ref", ref), ("grad", grad), ("y", y))
        + f" {context}"
    )


OPS = {"softmax": fs.softmax_backward, "log_softmax": fs.log_softmax_backward}
which_param = pytest.mark.parametrize("which", ["softmax", "log_softmax"])
dtype_param = pytest.mark.parametrize("dtype", [np.float32, np.float64])


@which_param
@dtype_param
@pytest.mark.parametrize("n", LENGTHS)
def test_backward_rows_match_reference_vjp(rng, which, dtype, n):
    rows = max(1, min(20, 100000 // n))
    grad, y = make_case(rng, (rows, n), dtype, which)
    assert_vjp_close(which, OPS[which](grad, y), grad, y, -1, dtype, f"rows of length {n}")


@which_param
@dtype_param
@pytest.mark.parametrize("n", [1, 2, 17, 33, 100, 1025])
@pytest.mark.parametrize("width", [1, 5, 16, 37])
def test_backward_columns_match_reference_vjp(rng, which, dtype, n, width):
    grad, y = make_case(rng, (n, width), dtype, which, axis=0)
    assert_vjp_close(
        which, OPS[which](grad, y, axis=0), grad, y, 0, dtype, f"columns of length {n}"
    )


@which_param
@dtype_param
@pytest.mark.parametrize(
    "layout", ["fortran", "reversed", "strided", "transposed3d", "3d axis 1", "mixed"]
)
def test_backward_layouts_match_reference_vjp(rng, which, dtype, layout):
    shape = (6, 10, 34)
    axis = 1 if layout == "3d axis 1" else -1
    grad, y = make_case(rng, shape, dtype, which, axis=axis)
    views = {
        "fortran": np.asfortranarray,
        "reversed": lambda a: a[::-1, :, ::-1],
        "strided": lambda a: a[:, ::2, ::3],
        # same values, memory order (1, 2, 0): the reduction axis is the slowest
        "transposed3d": lambda a: np.ascontiguousarray(a.transpose(2, 0, 1)).transpose(1, 2, 0),
        "3d axis 1": lambda a: a,
        "mixed": lambda a: a[::-2, 1:, ::-1],
    }
    g, yy = views[layout](grad), views[layout](y)
    assert_vjp_close(which, OPS[which](g, yy, axis=axis), g, yy, axis, dtype, layout)


@which_param
def test_backward_mixed_layouts_of_grad_and_y(rng, which):
    grad, y = make_case(rng, (12, 40), np.float64, which)
    g = np.asfortranarray(grad)
    yy = y[::-1][::-1]  # a C-order view
    out = np.empty((40, 12)).T
    assert OPS[which](g, yy, out=out) is out
    assert_vjp_close(which, out, grad, y, -1, np.float64)


@which_param
@pytest.mark.parametrize("axis", [-1, 0])
def test_backward_equals_gradient_times_analytic_jacobian(rng, which, axis):
    x = rng.standard_normal((4, 4)) * 2
    g = rng.standard_normal((4, 4))
    if axis == 0:
        x, g = x.T.copy(), g.T.copy()
    s = ref_softmax(x, axis=axis).astype(np.float64)
    y = s if which == "softmax" else ref_log_softmax(x, axis=axis).astype(np.float64)
    got = OPS[which](g, y, axis=axis)
    gm = np.moveaxis(g, axis, -1)
    sm = np.moveaxis(s, axis, -1)
    expected = np.empty_like(gm)
    for r in range(gm.shape[0]):
        p = sm[r]
        if which == "softmax":
            jac = np.diag(p) - np.outer(p, p)  # d softmax_i / d x_j
        else:
            jac = np.eye(4) - np.outer(np.ones(4), p)  # d log_softmax_i / d x_j
        expected[r] = gm[r] @ jac
    np.testing.assert_allclose(got, np.moveaxis(expected, -1, axis), rtol=1e-13, atol=1e-15)


@which_param
@pytest.mark.parametrize("n", [1, 3, 8, 21])
def test_backward_matches_finite_differences(rng, which, n):
    x = rng.standard_normal((2, n))
    g = rng.standard_normal((2, n))
    forward = ref_softmax if which == "softmax" else ref_log_softmax

    def loss(z: np.ndarray) -> np.ndarray:  # one loss per row
        return np.sum(widen(g) * forward(z), axis=-1)

    h = 1e-6
    numeric = np.empty_like(x)
    for j in range(n):
        e = np.zeros_like(x)
        e[:, j] = h
        numeric[:, j] = ((loss(x + e) - loss(x - e)) / (2 * h)).astype(np.float64)
    y = forward(x).astype(np.float64)
    got = OPS[which](g, y)
    np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-8)


@which_param
@dtype_param
@pytest.mark.parametrize("n", [2, 17, 1000, 4097])
def test_backward_sums_to_zero_along_the_axis(rng, which, dtype, n):
    """Adding a constant to a row does not change the output: the gradient sums to zero."""
    grad, y = make_case(rng, (5, n), dtype, which)
    total = widen(OPS[which](grad, y)).sum(axis=-1)
    bound = error_bound(which, grad, y, -1, dtype).sum(axis=-1)
    # y itself is rounded to dtype: sum(softmax) = 1 only to ~ n eps
    bound = bound + 4 * n * np.finfo(dtype).eps * np.abs(widen(grad)).max()
    assert (np.abs(total) <= bound).all(), f"row sums {total}, bounds {bound}"


@dtype_param
def test_softmax_backward_is_zero_where_y_is_zero(rng, dtype):
    x = rng.standard_normal((4, 33))
    x[:, ::4] = -np.inf
    y = ref_softmax(x).astype(dtype)
    grad = rng.standard_normal((4, 33)).astype(dtype)
    got = fs.softmax_backward(grad, y)
    np.testing.assert_array_equal(got[:, ::4], 0)
    assert np.isfinite(got).all()


@dtype_param
def test_log_softmax_backward_passes_grad_where_y_is_minus_inf(rng, dtype):
    x = rng.standard_normal((4, 33))
    x[:, 1::5] = -np.inf
    y = ref_log_softmax(x).astype(dtype)
    grad = rng.standard_normal((4, 33)).astype(dtype)
    got = fs.log_softmax_backward(grad, y)
    np.testing.assert_array_equal(got[:, 1::5], grad[:, 1::5])
    assert np.isfinite(got).all()


@which_param
@dtype_param
def test_backward_with_forward_outputs_of_the_package(rng, which, dtype):
    """The intended use: y from fastsoftmax's own forward pass."""
    x = (rng.standard_normal((8, 300)) * 4).astype(dtype)
    y = fs.softmax(x) if which == "softmax" else fs.log_softmax(x)
    grad = rng.standard_normal((8, 300)).astype(dtype)
    assert_vjp_close(which, OPS[which](grad, y), grad, y, -1, dtype)

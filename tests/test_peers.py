"""Cross-checks against PyTorch's CPU softmax, log_softmax, logsumexp and autograd.

Skipped when torch is not installed (``pip install ".[peers]"``); run with
``pytest -m peers``.
"""

from __future__ import annotations

import fastsoftmax as fs
import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.peers

TOL = {np.float32: {"rtol": 1e-5, "atol": 1e-6}, np.float64: {"rtol": 1e-12, "atol": 1e-14}}
SHAPES = [(1, 1), (7, 3), (16, 17), (5, 1000), (2, 4097), (3, 4, 33)]
dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64])
shapes = pytest.mark.parametrize("shape", SHAPES, ids=str)


def logits(rng, shape, dtype) -> np.ndarray:
    return (rng.standard_normal(shape) * 5).astype(dtype)


def axes(shape) -> list[int]:
    return sorted({-1, 0, len(shape) // 2})


@dtypes
@shapes
def test_softmax_matches_torch(rng, dtype, shape):
    x = logits(rng, shape, dtype)
    for axis in axes(shape):
        expected = torch.softmax(torch.from_numpy(x), dim=axis).numpy()
        np.testing.assert_allclose(
            fs.softmax(x, axis=axis), expected, **TOL[dtype], err_msg=f"axis {axis}"
        )


@dtypes
@shapes
def test_log_softmax_matches_torch(rng, dtype, shape):
    x = logits(rng, shape, dtype)
    for axis in axes(shape):
        expected = torch.log_softmax(torch.from_numpy(x), dim=axis).numpy()
        np.testing.assert_allclose(
            fs.log_softmax(x, axis=axis), expected, **TOL[dtype], err_msg=f"axis {axis}"
        )


@dtypes
@shapes
def test_logsumexp_matches_torch(rng, dtype, shape):
    x = logits(rng, shape, dtype)
    for axis in axes(shape):
        expected = torch.logsumexp(torch.from_numpy(x), dim=axis).numpy()
        np.testing.assert_allclose(
            fs.logsumexp(x, axis=axis), expected, **TOL[dtype], err_msg=f"axis {axis}"
        )


@dtypes
def test_logsumexp_over_several_axes_matches_torch(rng, dtype):
    x = logits(rng, (3, 4, 5), dtype)
    expected = torch.logsumexp(torch.from_numpy(x), dim=(0, 2), keepdim=True).numpy()
    np.testing.assert_allclose(fs.logsumexp(x, axis=(0, 2), keepdims=True), expected, **TOL[dtype])


@pytest.mark.parametrize("which", ["softmax", "log_softmax"])
@dtypes
@shapes
def test_backward_matches_torch_autograd(rng, which, dtype, shape):
    x = logits(rng, shape, dtype)
    g = rng.standard_normal(shape).astype(dtype)
    forward = getattr(torch, which)
    backward = fs.softmax_backward if which == "softmax" else fs.log_softmax_backward
    for axis in axes(shape):
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        yt = forward(xt, dim=axis)
        yt.backward(torch.from_numpy(g))
        expected = xt.grad.numpy()
        y = yt.detach().numpy()
        np.testing.assert_allclose(
            backward(g, y, axis=axis), expected, **TOL[dtype], err_msg=f"axis {axis}"
        )


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
@dtypes
def test_special_values_match_torch(name, dtype):
    """Where torch and SciPy agree (NaN anywhere, rows with -inf entries), so do we."""
    x = np.array(
        [[1.0, np.nan, 2.0, 0.5], [1.0, -np.inf, 2.0, 0.5], [-np.inf, -np.inf, 3.0, -np.inf]],
        dtype=dtype,
    )
    torch_op = getattr(torch, name)
    expected = torch_op(torch.from_numpy(x), dim=-1).numpy()
    np.testing.assert_allclose(getattr(fs, name)(x), expected, **TOL[dtype])

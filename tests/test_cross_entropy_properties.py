"""Property-based tests of fastsoftmax.cross_entropy (hypothesis) against the NumPy reference.

Random shapes (1 to 4 dimensions), class axes, dtypes, layouts (reversed and strided
views), options and values, including -inf (masked classes), large magnitudes and
ignored labels; the loss and gradient must match the reference of
test_cross_entropy.py, the input must be left unchanged, and the answer must be the
same on every SIMD target (the autouse fixture runs each property on each one).
"""

from __future__ import annotations

import fastsoftmax as fs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cross_entropy import TOL, ref_cross_entropy

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def problems(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    axis = draw(st.integers(0, ndim - 1))
    n = draw(st.sampled_from([1, 2, 3, 10, 17, 70, 300]))
    shape = (*shape[:axis], n, *shape[axis + 1 :])
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1e-3, 1.0, 10.0, 1e3]))
    x = rng.standard_normal(shape) * scale
    if draw(st.booleans()):  # masked classes (never a whole slice)
        mask = rng.random(shape) < 0.2
        idx = [slice(None)] * ndim
        idx[axis] = 0
        mask[tuple(idx)] = False
        x[mask] = -np.inf
    x = x.astype(dtype)
    soft = draw(st.booleans())
    ex_shape = shape[:axis] + shape[axis + 1 :]
    kw: dict = {"axis": axis, "reduction": draw(st.sampled_from(["none", "sum", "mean"]))}
    if soft:
        t = rng.random(shape) ** 3
        labels = (t / t.sum(axis=axis, keepdims=True)).astype(dtype)
    else:
        idx = [slice(None)] * ndim
        idx[axis] = 0
        labels = np.zeros(ex_shape, np.int64)  # class 0: never a masked one
        if draw(st.booleans()):
            labels = rng.integers(0, n, ex_shape)
            finite = np.isfinite(np.take_along_axis(x, np.expand_dims(labels, axis), axis))
            labels = np.where(np.squeeze(finite, axis), labels, 0)
        if draw(st.booleans()) and labels.size:
            labels.flat[rng.integers(labels.size)] = kw.setdefault("ignore_index", -100)
    if draw(st.booleans()):
        kw["weight"] = (rng.random(n) + 0.1).astype(dtype)
    if draw(st.booleans()):
        kw["label_smoothing"] = draw(st.sampled_from([0.0, 0.1, 1.0]))
    if draw(st.booleans()):
        kw["z_loss"] = 1e-3
    if draw(st.booleans()):
        kw["softcap"] = draw(st.sampled_from([1.0, 30.0]))
    layout = draw(st.sampled_from(["c", "reversed", "strided"]))
    if layout == "reversed":
        x = x[(slice(None, None, -1),) * ndim]
        labels = labels[(slice(None, None, -1),) * labels.ndim] if labels.ndim else labels
    elif layout == "strided":
        x = np.repeat(x, 2, axis=axis)[(slice(None),) * axis + (slice(None, None, 2),)]
    return x, labels, kw


@SETTINGS
@given(problems())
def test_cross_entropy_matches_the_reference(problem):
    x, labels, kw = problem
    dtype = x.dtype.type
    before = x.copy()
    if kw.get("label_smoothing", 0) > 0 or labels.dtype.kind != "i":
        # smoothing or probabilities over masked classes: +inf or NaN, as in PyTorch
        x = np.where(np.isfinite(x), x, 0).astype(x.dtype)
        before = x.copy()
    ref_loss, ref_grad = ref_cross_entropy(x, labels, **kw)
    loss, grad = fs.cross_entropy(x, labels, return_grad=True, **kw)
    np.testing.assert_array_equal(x, before)  # the input is untouched
    np.testing.assert_allclose(
        np.asarray(loss, np.float64),
        np.asarray(ref_loss, np.float64),
        rtol=4 * TOL[dtype],
        atol=float(np.finfo(dtype).tiny),  # losses below the dtype's range round to 0
    )  # (a label on a masked class: +inf in both)
    # the gradient is a difference of terms (softmax and target): its error is relative to
    # their size, which a nearly exact prediction can make far larger than the result
    if kw["reduction"] == "mean":
        w = kw.get("weight", np.ones(x.shape[kw["axis"]]))
        if labels.dtype.kind == "i":
            kept = labels != kw.get("ignore_index", -100)
            denom = float(np.sum(w[labels[kept]])) if kept.any() else 1.0
        else:
            denom = max(labels.size // x.shape[kw["axis"]], 1)
        s_ce = 1.0 / (denom or 1.0)
    else:
        s_ce = 1.0
    finite = x[np.isfinite(x)]
    lse_bound = (float(np.max(np.abs(finite), initial=0)) + np.log(x.shape[kw["axis"]])) * (
        1 if "softcap" not in kw else 0
    ) + kw.get("softcap", 0)
    terms = s_ce * float(np.max(kw.get("weight", 1.0))) * (1 + 2 * kw.get("z_loss", 0) * lse_bound)
    scale = max(float(np.max(np.abs(ref_grad), initial=0)), terms)
    np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=4 * TOL[dtype] * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(data=st.data())
def test_cross_entropy_is_shift_invariant(dtype, data):
    """Adding a constant to an example's logits changes neither its loss nor its gradient."""
    n = data.draw(st.integers(1, 200))
    rows = data.draw(st.integers(1, 5))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((rows, n)).astype(dtype)
    y = rng.integers(0, n, rows)
    shift = dtype(data.draw(st.sampled_from([-64.0, -1.0, 0.5, 32.0])))  # exact in x + shift
    loss, grad = fs.cross_entropy(x, y, reduction="none", return_grad=True)
    loss2, grad2 = fs.cross_entropy(x + shift, y, reduction="none", return_grad=True)
    np.testing.assert_allclose(loss2, loss, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-6)
    np.testing.assert_allclose(grad2, grad, atol=1e-5 if dtype == np.float32 else 1e-12)

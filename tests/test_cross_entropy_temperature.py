"""cross_entropy(temperature=T) and cross_entropy_backward(temperature=T): the loss of
logits / T (before soft-capping) and its gradient with respect to the logits, against the
same call on logits divided by T in float64 (whose gradient, times 1 / T, is the chain
rule's). Every layout the kernels take (short rows, rows, long rows, the classes on a
strided axis, 3-d), every option, every SIMD target."""

from __future__ import annotations

from typing import Any

import fastsoftmax as fs
import ml_dtypes
import numpy as np
import pytest

OPTIONS = [
    {},
    {"label_smoothing": 0.1},
    {"z_loss": 1e-3},
    {"softcap": 5.0},
    {"weight": "w", "reduction": "sum"},
    {"reduction": "none", "ignore_index": 1},
]


def reference(x: np.ndarray, labels: np.ndarray, t: float, axis: int, **kw: Any) -> Any:
    """The same call on logits / T in float64; the gradient carries 1 / T."""
    loss, g = fs.cross_entropy(x.astype(np.float64) / t, labels, axis=axis, return_grad=True, **kw)
    return loss, g / t


def options(kw: dict[str, Any], n: int) -> dict[str, Any]:
    kw = dict(kw)
    if kw.get("weight") == "w":
        kw["weight"] = np.linspace(0.5, 2.0, n)
    return kw


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(o) or "plain")
@pytest.mark.parametrize("n", [1, 3, 8, 33, 300, 5000])
@pytest.mark.parametrize("temperature", [0.5, 2.5])
def test_integer_labels_by_rows(rng: np.random.Generator, opts: Any, n: int, temperature: float):
    x = (rng.standard_normal((37, n)) * 3).astype(np.float32)
    labels = rng.integers(0, n, 37)
    kw = options(opts, n)
    loss, g = fs.cross_entropy(x, labels, temperature=temperature, return_grad=True, **kw)
    want, gwant = reference(x, labels, temperature, -1, **kw)
    np.testing.assert_allclose(loss, want, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(g, gwant, rtol=0, atol=2e-6 * max(1.0, float(np.abs(gwant).max())))
    back = fs.cross_entropy_backward(x, labels, temperature=temperature, **kw)
    np.testing.assert_allclose(
        back, gwant, rtol=0, atol=2e-6 * max(1.0, float(np.abs(gwant).max()))
    )


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_probabilities_any_axis_and_strides(rng: np.random.Generator, axis: int):
    x = rng.standard_normal((6, 40, 9))[:, ::-1]
    t = fs.softmax(rng.standard_normal(x.shape), axis=axis)
    loss, g = fs.cross_entropy(x, t, axis=axis, temperature=1.7, return_grad=True, z_loss=1e-2)
    want, gwant = reference(x, t, 1.7, axis, z_loss=1e-2)
    np.testing.assert_allclose(loss, want, rtol=1e-12)
    np.testing.assert_allclose(g, gwant, rtol=0, atol=1e-14)


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(o) or "plain")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [3, 21])
def test_integer_labels_classes_on_axis_1(rng: np.random.Generator, opts: Any, dtype, n: int):
    """(N, C, d) with the classes on axis 1: the column tiles, which scale the logits as
    they read them (integer labels alone, with or without weights) or scale their tile
    first (smoothing, z-loss); soft-capping gathers rows."""
    x = (rng.standard_normal((3, n, 70)) * 3).astype(dtype)
    labels = rng.integers(0, n, (3, 70))
    kw = options(opts, n)
    if kw.get("reduction") == "none":
        kw["ignore_index"] = 1
    loss, g = fs.cross_entropy(x, labels, axis=1, temperature=0.6, return_grad=True, **kw)
    want, gwant = reference(x, labels, 0.6, 1, **kw)
    rtol, atol = (2e-5, 2e-6) if dtype == np.float32 else (1e-12, 1e-14)
    np.testing.assert_allclose(loss, want, rtol=rtol, atol=atol)
    np.testing.assert_allclose(g, gwant, rtol=0, atol=atol * max(1.0, float(np.abs(gwant).max())))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature", [1e-6, 1e-10, 1e-20, 1e-30])
def test_tiny_temperatures(rng: np.random.Generator, dtype, temperature: float):
    """Quotients far beyond 2^24 (float) or 2^53 (double) times 88: the exponentials of
    x / T - max, each one fused multiply-add against the rounded maximum, stay at most 1
    (they had overflowed to a NaN or -inf loss); every layout: register tiles, tiles, row
    groups, rows, long rows, columns, with and without the options' linear terms."""
    if dtype == np.float32 and temperature < 1e-30:
        pytest.skip("1 / T is not a normal float32")
    for shape, axis in [((50, 5), -1), ((50, 20), -1), ((20, 100), -1), ((6, 3000), -1),
                        ((2, 40000), -1), ((3, 21, 40), 1)]:  # fmt: skip
        x = rng.standard_normal(shape).astype(dtype)
        lshape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
        labels = rng.integers(0, shape[axis], lshape)
        for kw in ({}, {"label_smoothing": 0.1}):
            loss, g = fs.cross_entropy(x, labels, axis=axis, temperature=temperature,
                                       reduction="none", return_grad=True, **kw)  # fmt: skip
            want, gwant = reference(x, labels, temperature, axis, reduction="none", **kw)
            f32 = dtype == np.float32
            np.testing.assert_allclose(loss, want, rtol=1e-5 if f32 else 1e-12)
            top = float(np.abs(gwant).max())
            np.testing.assert_allclose(g, gwant, rtol=0, atol=(2e-6 if f32 else 1e-13) * top)


def test_overflowing_quotients_count_as_inf(rng: np.random.Generator):
    """A logit whose quotient by T overflows the dtype: +inf (the row's loss and gradient
    NaN, as for a +inf logit), or -inf (its class left out), in every layout."""
    big = float(np.finfo(np.float32).max) / 2
    for shape, axis in [((40, 5), -1), ((40, 300), -1), ((4, 5, 30), 1)]:
        x = rng.standard_normal(shape).astype(np.float32)
        index = (0,) * len(shape)
        x[index] = big
        low = list(index)
        low[axis] = 1
        low[0] = 1 % shape[0]
        x[tuple(low)] = -big
        lshape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
        labels = np.zeros(lshape, np.int64)
        labels[(1 % shape[0],) + (0,) * (len(lshape) - 1)] = 2
        loss, g = fs.cross_entropy(x, labels, axis=axis, temperature=0.25, reduction="none",
                                   return_grad=True)  # fmt: skip
        assert np.isnan(loss[(0,) * len(lshape)])
        assert np.isnan(np.take(g, 0, axis=0).flat[0])
        finite = np.ones(lshape, bool)
        finite[(0,) * len(lshape)] = False
        assert np.isfinite(loss[finite]).all()
        ref = x.astype(np.float64) * 4
        ref[tuple(low)] = -np.inf
        want = fs.cross_entropy(ref, labels, axis=axis, reduction="none")
        np.testing.assert_allclose(loss[finite], want[finite], rtol=2e-5)


def test_classes_on_axis_1_of_3d_half_precision(rng: np.random.Generator):
    """(half precision: gathered rows, not the column tiles, which would round x / T)"""
    x = (rng.standard_normal((4, 50, 30)) * 2).astype(np.float16)
    labels = rng.integers(0, 50, (4, 30))
    loss, g = fs.cross_entropy(x, labels, axis=1, temperature=0.8, return_grad=True)
    want, gwant = reference(x, labels, 0.8, 1)
    np.testing.assert_allclose(loss, want, rtol=2e-6)
    np.testing.assert_allclose(g.astype(np.float64), gwant, rtol=0, atol=2e-3 * np.abs(gwant).max())


def test_classes_on_axis_1_of_3d_and_saved_lse(rng: np.random.Generator):
    x = (rng.standard_normal((4, 50, 30)) * 2).astype(np.float32)
    labels = rng.integers(0, 50, (4, 30))
    loss, g = fs.cross_entropy(x, labels, axis=1, temperature=0.8, return_grad=True)
    want, gwant = reference(x, labels, 0.8, 1)
    np.testing.assert_allclose(loss, want, rtol=2e-6)
    np.testing.assert_allclose(g, gwant, rtol=0, atol=1e-7)
    lse = fs.logsumexp(x.astype(np.float64) / 0.8, axis=1)
    back = fs.cross_entropy_backward(x, labels, axis=1, lse=lse, temperature=0.8)
    np.testing.assert_allclose(back, gwant, rtol=0, atol=1e-7)


def test_half_precision_and_inplace(rng: np.random.Generator):
    x32 = (rng.standard_normal((16, 700)) * 3).astype(np.float32)
    labels = rng.integers(0, 700, 16)
    for half in (np.float16, ml_dtypes.bfloat16):
        x = x32.astype(half)
        loss, g = fs.cross_entropy(x, labels, temperature=2.0, return_grad=True)
        want, gwant = reference(x, labels, 2.0, -1)
        assert g.dtype == half
        np.testing.assert_allclose(loss, want, rtol=1e-6)
        np.testing.assert_allclose(
            g.astype(np.float64), gwant, rtol=0, atol=2e-3 * np.abs(gwant).max()
        )
    x = x32.copy()
    loss, g = fs.cross_entropy(x, labels, temperature=2.0, return_grad=True, inplace_grad=True)
    assert g is x
    np.testing.assert_allclose(g, reference(x32, labels, 2.0, -1)[1], rtol=0, atol=1e-8)


@pytest.mark.parametrize("temperature", [0.37, 1e-30, 1e30, 1e-39, 1e38])
def test_the_common_call_and_the_general_path_agree(rng: np.random.Generator, temperature):
    """A float temperature in the common call (ndarray logits, int64 labels, default options)
    takes the Python layer's short path from 1e-30 to 1e30; int32 labels take the general
    path: the same bits. Beyond that range float64 logits still work (1 / T is normal there),
    and float32 ones raise the general path's error."""
    x = rng.standard_normal((40, 7))
    labels = rng.integers(0, 7, 40)
    fast = fs.cross_entropy(x, labels, temperature=temperature, return_grad=True)
    slow = fs.cross_entropy(x, labels.astype(np.int32), temperature=temperature, return_grad=True)
    assert fast[0] == slow[0]
    np.testing.assert_array_equal(fast[1], slow[1])
    x32 = x.astype(np.float32)
    if 1e-30 <= temperature <= 1e30:
        fast = fs.cross_entropy(x32, labels, temperature=temperature, return_grad=True)
        slow = fs.cross_entropy(x32, labels.astype(np.int32), temperature=temperature,
                                return_grad=True)  # fmt: skip
        assert fast[0] == slow[0]
        np.testing.assert_array_equal(fast[1], slow[1])
    else:
        with pytest.raises(ValueError, match="temperature must be between"):
            fs.cross_entropy(x32, labels, temperature=temperature)


def test_temperature_one_is_the_plain_call_bit_for_bit(rng: np.random.Generator):
    x = rng.standard_normal((20, 100)).astype(np.float32)
    labels = rng.integers(0, 100, 20)
    a = fs.cross_entropy(x, labels, return_grad=True, softcap=4.0)
    b = fs.cross_entropy(x, labels, return_grad=True, softcap=4.0, temperature=1)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


def test_bad_temperature():
    x = np.zeros((2, 3), np.float32)
    y = np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="temperature must be positive and finite, got 0"):
        fs.cross_entropy(x, y, temperature=0)
    with pytest.raises(TypeError, match="temperature must be a real number"):
        fs.cross_entropy(x, y, temperature="2")
    with pytest.raises(ValueError, match="temperature must be between"):
        fs.cross_entropy_backward(x, y, temperature=1e-40)

"""fastsoftmax.entropy and fastsoftmax.kl_div against float64 / longdouble references.

Every test runs on every SIMD target this CPU has (conftest's ``simd`` fixture).
"""

from __future__ import annotations

import doctest
from typing import Any

import fastsoftmax as fs
import ml_dtypes
import numpy as np
import pytest
from fastsoftmax import _divergence
from numpy.exceptions import AxisError

LD = np.longdouble


def log_softmax_ref(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, LD)
    m = np.max(x, axis=axis, keepdims=True)
    return (x - m) - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def entropy_ref(x: np.ndarray, axis: int = -1, temperature: float = 1.0) -> np.ndarray:
    """log(k) + log1p(r / k) + sum e (m - z) / s in longdouble (an exact identity whose
    terms are all non-negative: accurate for peaked rows too)."""
    z = np.moveaxis(np.asarray(x, LD), axis, -1) / LD(temperature)
    d = z - np.max(z, axis=-1, keepdims=True)
    e = np.exp(d)
    k = np.sum(d == 0, axis=-1).astype(LD)
    r = np.sum(np.where(d == 0, 0, e), axis=-1)
    w = np.sum(np.where(e == 0, 0, e * -d), axis=-1)
    return np.log(k) + np.log1p(r / k) + w / (k + r)


def entropy_grad_ref(x: np.ndarray, axis: int = -1, temperature: float = 1.0) -> np.ndarray:
    lp = log_softmax_ref(np.asarray(x, LD) / LD(temperature), axis)
    h = np.expand_dims(entropy_ref(x, axis, temperature), axis)
    return -np.exp(lp) * (lp + h) / LD(temperature)


def target_log_probs(target: np.ndarray, kind: str, axis: int, temperature: float) -> np.ndarray:
    t = np.asarray(target, LD)
    if kind == "logits":
        return log_softmax_ref(t / LD(temperature), axis)
    if kind == "probs":
        with np.errstate(divide="ignore"):
            return np.log(t)
    return t


def kl_ref(
    x: np.ndarray, target: np.ndarray, kind: str, axis: int = -1, temperature: float = 1.0
) -> np.ndarray:
    """Per-slice sum t (log t - log p) in longdouble, zero-probability classes adding 0."""
    lt = target_log_probs(target, kind, axis, temperature)
    lp = log_softmax_ref(np.asarray(x, LD) / LD(temperature), axis)
    t = np.exp(lt)
    with np.errstate(invalid="ignore"):  # (0 * -inf where t = 0: left out)
        return np.sum(np.where(t == 0, 0, t * (lt - lp)), axis=axis)


def kl_grad_ref(
    x: np.ndarray, target: np.ndarray, kind: str, axis: int = -1, temperature: float = 1.0
) -> np.ndarray:
    t = np.exp(target_log_probs(target, kind, axis, temperature))
    p = np.exp(log_softmax_ref(np.asarray(x, LD) / LD(temperature), axis))
    return (p * np.sum(t, axis=axis, keepdims=True) - t) / LD(temperature)


def close(got: Any, want: Any, rtol: float, atol: float = 0.0) -> None:
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


TOL = {np.float32: 2e-6, np.float64: 1e-13}
SIZES = [1, 2, 7, 16, 33, 100, 1000, 40000]


# ------------------------------------------------------------------ entropy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("temperature", [1.0, 0.37, 4.5])
def test_entropy_random_rows(rng: np.random.Generator, dtype: Any, n: int, temperature: float):
    x = (rng.standard_normal((5, n)) * 4).astype(dtype)
    h, g = fs.entropy(x, temperature=temperature, return_grad=True)
    assert h.dtype == dtype
    assert h.shape == (5,)
    assert g.dtype == dtype
    assert g.shape == x.shape
    close(h, entropy_ref(x, -1, temperature), TOL[dtype], 1e-300)
    gref = entropy_grad_ref(x, -1, temperature)
    close(g, gref, 0, TOL[dtype] * 8 * float(np.max(np.abs(gref)) + 1e-30))
    np.testing.assert_array_equal(fs.entropy(x, temperature=temperature), h)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_entropy_peaked_rows_keep_relative_accuracy(dtype: Any):
    x = np.zeros((4, 1000), dtype)
    x[:, 1:] = -np.array([10, 30, 60, 80], dtype)[:, None]  # float64 only below -745 underflows
    x[:, 5] += 1  # not all equal
    want = entropy_ref(x)
    assert np.all(want > 0)
    assert want[2] < 1e-20
    close(fs.entropy(x), want, 1e-5 if dtype == np.float32 else 1e-12)


def test_entropy_ties_and_uniform_rows():
    x = np.full((3, 50), 2.5, np.float32)
    x[1, :10] = 3.0  # ten tied maxima
    close(fs.entropy(x), entropy_ref(x), 1e-6)
    close(fs.entropy(x)[0], np.log(50), 1e-7)
    h, g = fs.entropy(np.array([[7.0]]), return_grad=True)  # one class: H = 0, gradient 0
    assert h[0] == 0
    assert g[0, 0] == 0


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_entropy_every_axis_and_strided_views(rng: np.random.Generator, axis: int):
    base = rng.standard_normal((6, 7, 40)) * 3
    for x in (base, base[::-1, :, ::-2], np.asfortranarray(base), base[:, 2:5, 1::3]):
        h, g = fs.entropy(x, axis, temperature=0.8, return_grad=True)
        close(h, entropy_ref(x, axis, 0.8), 1e-13)
        close(g, entropy_grad_ref(x, axis, 0.8), 0, 1e-14)


def test_entropy_special_rows():
    inf, nan = np.inf, np.nan
    x = np.array(
        [
            [0.0, 1.0, nan, 2.0],  # NaN: NaN
            [0.0, inf, 1.0, 2.0],  # +inf: no softmax (as fs.softmax)
            [-inf, -inf, -inf, -inf],  # only -inf: NaN
            [-inf, 1.0, -inf, 2.0],  # -inf beside finite values: probability 0
        ],
        np.float32,
    )
    h, g = fs.entropy(x, return_grad=True)
    assert np.all(np.isnan(h[:3]))
    assert np.all(np.isnan(g[:3]))
    close(h[3], entropy_ref(x[3:, [1, 3]])[0], 1e-6)
    assert g[3, 0] == 0
    assert g[3, 2] == 0
    assert np.all(np.isfinite(g[3]))
    # a NaN in one row leaves the others alone
    assert np.isfinite(fs.entropy(np.array([[1.0, nan], [1.0, 2.0]]))[1])


def test_entropy_empty_and_half_dtypes(rng: np.random.Generator):
    assert np.all(np.isnan(fs.entropy(np.zeros((3, 0), np.float32))))
    assert fs.entropy(np.zeros((0, 5), np.float32)).shape == (0,)
    x32 = (rng.standard_normal((4, 300)) * 3).astype(np.float32)
    for half in (np.float16, ml_dtypes.bfloat16):
        x = x32.astype(half)
        h, g = fs.entropy(x, return_grad=True)
        assert h.dtype == np.float32
        assert g.dtype == half
        close(h, entropy_ref(x.astype(np.float64)), 2e-6)
        gref = entropy_grad_ref(x.astype(np.float64))
        tol = 2.0 ** (-8 if half is ml_dtypes.bfloat16 else -11)
        close(g.astype(np.float64), gref, tol, 1e-7)


def test_entropy_bad_arguments():
    x = np.zeros((2, 3), np.float32)
    for bad in (1e46, 1e-39):  # 1 / T not a normal float32
        with pytest.raises(ValueError, match=r"temperature must be between .* for float32 logits"):
            fs.entropy(x, temperature=bad)
        with pytest.raises(ValueError, match="temperature must be between"):
            fs.kl_div(x, x, temperature=bad)
    assert fs.entropy(x.astype(np.float64), temperature=1e46)[0] == pytest.approx(np.log(3))
    for bad in (0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="temperature must be positive and finite, got"):
            fs.entropy(x, temperature=bad)
    for bad in ("2", True, None, np.ones(2)):
        with pytest.raises(TypeError, match="temperature must be a real number"):
            fs.entropy(x, temperature=bad)
    with pytest.raises(AxisError):
        fs.entropy(x, axis=2)
    with pytest.raises(TypeError, match="complex128"):
        fs.entropy(x.astype(np.complex128))


# ------------------------------------------------------------------ kl_div

KINDS = ["logits", "probs", "log_probs"]


def as_kind(y: np.ndarray, kind: str, axis: int = -1) -> np.ndarray:
    """Target logits y as the given kind, rounded to y's dtype."""
    if kind == "logits":
        return y
    lt = log_softmax_ref(y, axis)
    return (np.exp(lt) if kind == "probs" else lt).astype(y.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", SIZES)
def test_kl_div_random_rows(rng: np.random.Generator, dtype: Any, kind: str, n: int):
    x = (rng.standard_normal((4, n)) * 3).astype(dtype)
    t = as_kind((rng.standard_normal((4, n)) * 3).astype(dtype), kind)
    for temperature in (1.0, 2.5):
        kl, g = fs.kl_div(
            x, t, target_kind=kind, temperature=temperature, reduction="none", return_grad=True
        )
        assert kl.dtype == dtype
        assert kl.shape == (4,)
        assert g.dtype == dtype
        want = kl_ref(x, t, kind, -1, temperature)  # (0 for n = 1: atol)
        close(kl, want, 1e-5 if dtype == np.float32 else 1e-12, 1e-20)
        gref = kl_grad_ref(x, t, kind, -1, temperature)
        close(g, gref, 0, TOL[dtype] * 4 * float(np.max(np.abs(gref)) + 1e-30))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [10, 1000, 32000])
@pytest.mark.parametrize(("shift", "temperature"), [(0.0, 1.0), (7.0, 1.0), (3.0, 0.7)])
def test_kl_div_nearly_agreeing_keeps_relative_accuracy(
    rng: np.random.Generator, dtype: Any, kind: str, n: int, shift: float, temperature: float
):
    """The issue's bound: relative error <= 1e-5 in float32 at KL ~ 1e-8 (the difference
    CE - H had 7.6e-6 absolute error at 5e-7)."""
    y = (rng.standard_normal((3, n)) * 2).astype(dtype)
    x = (y + shift + 1.4e-4 * rng.standard_normal(y.shape)).astype(dtype)
    t = as_kind((y / temperature).astype(dtype), kind) if kind != "logits" else y
    want = kl_ref(x, t, kind, -1, temperature)
    if kind == "logits":  # (probs and log_probs rounded to float32 are not normalized)
        assert np.all((want > 1e-11) & (want < 1e-7))
    got = fs.kl_div(x, t, target_kind=kind, temperature=temperature, reduction="none")
    # float64: log t (probs) and exp(log t) (log_probs) are rounded in float64, and a
    # target's log probability enters a KL to first order: 1e-16 absolute, 1e-8 here
    close(got, want, 1e-5 if dtype == np.float32 else 1e-7 if kind != "logits" else 1e-9)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("noise", [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0])
def test_kl_div_keeps_relative_accuracy_at_every_size(
    rng: np.random.Generator, kind: str, noise: float
):
    """KL from 1e-7 to 1: float32 probability targets take a float pass whose result is kept
    only when it is large against its rounding bound, else a float64 pass; either way the
    relative error stays below 1e-5, across the switch."""
    y = (rng.standard_normal((6, 5000)) * 2).astype(np.float32)
    x = (y + noise * rng.standard_normal(y.shape) * np.arange(1, 7)[:, None]).astype(np.float32)
    t = as_kind(y, kind)
    want = kl_ref(x, t, kind)
    kl, g = fs.kl_div(x, t, target_kind=kind, reduction="none", return_grad=True)
    close(kl, want, 1e-5)
    # (the gradient p St - t, each term rounded in float32: error ~ ulp(p))
    close(g, kl_grad_ref(x, t, kind), 0, 1e-6 * float(np.max(np.exp(log_softmax_ref(x)))))


def test_kl_div_identical_distributions_give_zero():
    x = np.random.default_rng(3).standard_normal((3, 500)).astype(np.float32)
    kl, g = fs.kl_div(x, x, reduction="none", return_grad=True)
    assert np.all(np.abs(kl) < 1e-12)
    assert np.max(np.abs(g)) < 1e-7


def test_kl_div_reductions_and_gradient_scale(rng: np.random.Generator):
    x = rng.standard_normal((2, 3, 50))
    t = rng.standard_normal((2, 3, 50))
    per = kl_ref(x, t, "logits")
    gsum = kl_grad_ref(x, t, "logits")
    for reduction, div in (("sum", 1), ("batchmean", 6), ("mean", 300)):
        v, g = fs.kl_div(x, t, reduction=reduction, return_grad=True)
        assert isinstance(v, np.float64)
        close(v, np.sum(per) / div, 1e-13)
        close(g, gsum / div, 0, 1e-15)
    v, g = fs.kl_div(x, t, reduction="none", return_grad=True)
    assert v.shape == (2, 3)
    close(g, gsum, 0, 1e-14)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_kl_div_every_axis_strides_and_broadcast(rng: np.random.Generator, axis: int, kind: str):
    y = rng.standard_normal((5, 6, 30))
    t = as_kind(y, kind, axis)
    x = rng.standard_normal((30, 6, 5)).transpose(2, 1, 0)[:, ::-1]  # strided, negative
    kl = fs.kl_div(x, t, axis=axis, target_kind=kind, reduction="none", temperature=1.7)
    close(kl, kl_ref(x, t, kind, axis, 1.7), 1e-12)
    # a target broadcast along the other axes (not expanded by the caller)
    tb = np.take(t, [0], axis=(axis + 1) % 3)
    kl, g = fs.kl_div(x, tb, axis=axis, target_kind=kind, reduction="sum", return_grad=True)
    full = np.broadcast_to(tb, x.shape)
    close(kl, np.sum(kl_ref(x, full, kind, axis)), 1e-12)
    close(g, kl_grad_ref(x, full, kind, axis), 0, 1e-14)


def test_kl_div_zero_probability_classes_add_zero():
    inf = np.inf
    x = np.array([[0.5, 1.0, -2.0, 3.0]], np.float32)
    cases = {
        "probs": np.array([[0.0, 0.5, 0.0, 0.5]], np.float32),
        "log_probs": np.array([[-inf, np.log(0.5), -inf, np.log(0.5)]], np.float32),
        "logits": np.array([[-inf, 1.0, -inf, 1.0]], np.float32),
    }
    for kind, t in cases.items():
        kl, g = fs.kl_div(x, t, target_kind=kind, reduction="none", return_grad=True)
        close(kl, kl_ref(x, t, kind), 1e-6)
        close(g, kl_grad_ref(x, t, kind), 0, 1e-7)


def test_kl_div_special_values():
    inf, nan = np.inf, np.nan
    x = np.array(
        [
            [0.0, 1.0, 2.0],
            [0.0, nan, 2.0],  # NaN logits
            [0.0, inf, 2.0],  # +inf logits: no softmax
            [-inf, -inf, -inf],  # no softmax
            [-inf, 1.0, 2.0],  # p = 0 where t > 0: +inf
            [0.0, 1.0, 2.0],
        ],
        np.float32,
    )
    t = np.array(
        [
            [0.2, 0.3, nan],
            [0.2, 0.3, 0.5],
            [0.2, 0.3, 0.5],
            [0.2, 0.3, 0.5],
            [0.2, 0.3, 0.5],
            [-0.1, 0.6, 0.5],
        ],  # a negative probability
        np.float32,
    )
    kl, g = fs.kl_div(x, t, target_kind="probs", reduction="none", return_grad=True)
    assert np.all(np.isnan(kl[[0, 1, 2, 3, 5]]))
    assert np.all(np.isnan(g[[0, 1, 2, 3, 5]]))
    assert kl[4] == inf
    close(g[4], kl_grad_ref(x[4:5], t[4:5], "probs")[0], 0, 1e-7)
    # logits targets: a +inf or only -inf has no softmax
    y = np.array([[0.0, inf, 1.0], [-inf, -inf, -inf]], np.float32)
    assert np.all(np.isnan(fs.kl_div(x[[0, 0]], y, reduction="none")))


def test_kl_div_half_dtypes(rng: np.random.Generator):
    x32 = (rng.standard_normal((4, 300)) * 3).astype(np.float32)
    y32 = (rng.standard_normal((4, 300)) * 3).astype(np.float32)
    for half in (np.float16, ml_dtypes.bfloat16):
        x, y = x32.astype(half), y32.astype(half)
        kl, g = fs.kl_div(x, y, reduction="none", return_grad=True)
        assert kl.dtype == np.float32
        assert g.dtype == half
        xd, yd = x.astype(np.float64), y.astype(np.float64)
        close(kl, kl_ref(xd, yd, "logits"), 1e-5)
        tol = 2.0 ** (-8 if half is ml_dtypes.bfloat16 else -11)
        close(g.astype(np.float64), kl_grad_ref(xd, yd, "logits"), tol, 1e-7)


def test_kl_div_threads_do_not_change_results(rng: np.random.Generator):
    x = rng.standard_normal((300, 700)).astype(np.float32)
    t = rng.standard_normal((300, 700)).astype(np.float32)
    with fs.use_threads(1):
        one = fs.kl_div(x, t, reduction="none", return_grad=True)
        h1 = fs.entropy(x, return_grad=True)
    with fs.use_threads(2):
        two = fs.kl_div(x, t, reduction="none", return_grad=True)
        h2 = fs.entropy(x, return_grad=True)
    for a, b in zip((*one, *h1), (*two, *h2)):
        np.testing.assert_array_equal(a, b)


def test_kl_div_bad_arguments():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="target_kind must be 'logits', 'probs' or 'log_probs'"):
        fs.kl_div(x, x, target_kind="prob")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction must be 'batchmean', 'mean', 'sum' or"):
        fs.kl_div(x, x, reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"target of shape \(2, 4\) does not broadcast"):
        fs.kl_div(x, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="temperature must be positive"):
        fs.kl_div(x, x, temperature=-2)
    with pytest.raises(AxisError):
        fs.kl_div(x, x, axis=-3)
    assert np.all(np.isnan(fs.kl_div(np.zeros((2, 0)), np.zeros((2, 0)), reduction="none")))
    assert np.isnan(fs.kl_div(np.zeros((0, 3)), np.zeros((0, 3))))


def test_docstring_examples_run():
    result = doctest.testmod(_divergence, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 6
    assert result.failed == 0

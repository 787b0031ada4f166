"""The mergeable parts of the softmax family (fs.logsumexp_parts and friends): parts of
slices merged into the one-call results, special values in some parts only, any axis and
strides, bad arguments. (fastsoftmax.dask, built on them: tests/test_dask.py.)"""

from __future__ import annotations

import fastsoftmax as fs
import ml_dtypes
import numpy as np
import pytest
from reference import (
    LOG_ATOL,
    SOFTMAX_RTOL,
    assert_log_close,
    assert_softmax_close,
    ref_log_softmax,
    ref_logsumexp,
    ref_softmax,
    ulp_error,
)

BF16 = np.dtype(ml_dtypes.bfloat16)


def data(rng: np.random.Generator, shape: tuple[int, ...], dtype, scale: float = 4.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, BF16])
def test_parts_merge_to_the_one_call_logsumexp(rng, dtype):
    x = data(rng, (7, 300), dtype)
    x[1, 50] = np.nan
    x[2, 200] = np.inf
    x[3, :] = -np.inf
    x[4, :150] = -np.inf
    cuts = [0, 1, 64, 150, 151, 300, 300]  # (an empty part, a one-element part)
    parts = [fs.logsumexp_parts(x[:, a:b], keepdims=True) for a, b in zip(cuts[:-1], cuts[1:])]
    m, s = fs.merge_logsumexp_parts(
        np.concatenate([p.max for p in parts], axis=1),
        np.concatenate([p.sumexp for p in parts], axis=1),
    )
    got = fs.logsumexp_from_parts(m, s, dtype=np.dtype(dtype))
    want = fs.logsumexp(x)
    assert got.dtype == want.dtype
    finite = np.isfinite(want.astype(np.float64))
    # NaN, +inf, -inf as one call (in float64: NumPy 2.0 compares no bfloat16 NaN as equal)
    np.testing.assert_array_equal(got[~finite].astype(np.float64), want[~finite].astype(np.float64))
    assert ulp_error(got[finite], want[finite].astype(np.float64), np.float32).max() <= 1 or (
        ulp_error(got[finite], ref_logsumexp(x)[finite], dtype).max() <= 1
    )
    assert np.isnan(m[1])
    assert np.isnan(s[1])
    assert m[2] == np.inf
    assert m[3] == -np.inf
    assert s[3] == 0


def test_parts_special_pairs(rng):
    p = fs.logsumexp_parts(np.array([[1.0, np.nan], [np.inf, 2.0], [-np.inf, -np.inf]]))
    np.testing.assert_array_equal(p.max, [np.nan, np.inf, -np.inf])
    np.testing.assert_array_equal(p.sumexp, [np.nan, 1.0, 0.0])
    empty = fs.logsumexp_parts(np.zeros((3, 0), np.float32))
    np.testing.assert_array_equal(empty.max, [-np.inf] * 3)
    np.testing.assert_array_equal(empty.sumexp, [0.0] * 3)
    none = fs.merge_logsumexp_parts(np.zeros((2, 0)), np.zeros((2, 0)))
    np.testing.assert_array_equal(none.max, [-np.inf, -np.inf])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_parts_along_any_axis_and_strides(rng, axis):
    x = data(rng, (5, 6, 70), np.float32)[:, ::-1, ::2]  # negative and non-unit strides
    m, s = fs.logsumexp_parts(x, axis)
    want = ref_logsumexp(x, axis)
    assert_log_close(m + np.log(s), want, LOG_ATOL[np.float32])
    y = fs.softmax_from_parts(x, m, s, axis)
    assert_softmax_close(y, ref_softmax(x, axis), SOFTMAX_RTOL[np.float32], 1e-30)
    out = np.empty_like(x)
    assert fs.log_softmax_from_parts(x, m, s, axis, out=out) is out
    assert_log_close(out, ref_log_softmax(x, axis), LOG_ATOL[np.float32])


@pytest.mark.parametrize(("n", "pieces"), [(1000, 10), (32000, 4), (777, 3)])
def test_softmax_sums_keep_softmax_accuracy_across_parts(rng, n, pieces):
    """for_softmax=True: a float32 softmax from merged parts is as accurate as the
    one-call softmax of the same rows on the same target, within half an ulp of its
    error against the exact value (logsumexp's sums: up to 1.0-2.9 ulp worse)."""
    x = data(rng, (64, n), np.float32)
    cuts = np.linspace(0, n, pieces + 1).astype(int)
    parts = [
        fs.logsumexp_parts(x[:, a:b], keepdims=True, for_softmax=True)
        for a, b in zip(cuts[:-1], cuts[1:])
    ]
    m, s = fs.merge_logsumexp_parts(
        np.concatenate([p.max for p in parts], axis=1),
        np.concatenate([p.sumexp for p in parts], axis=1),
        keepdims=True,
    )
    y = np.concatenate(
        [fs.softmax_from_parts(x[:, a:b], m, s) for a, b in zip(cuts[:-1], cuts[1:])], axis=1
    )
    want = ref_softmax(x)
    big = want > 1e-30
    one_call = ulp_error(fs.softmax(x)[big], want[big], np.float32).max()
    assert ulp_error(y[big], want[big], np.float32).max() <= one_call + 0.5
    # the pairs themselves: the same maxima, the sums within a few float32 roundings
    plain = fs.logsumexp_parts(x, keepdims=True)
    np.testing.assert_array_equal(m, plain.max)
    np.testing.assert_allclose(s, plain.sumexp, rtol=1e-6)


def test_from_parts_bad_pairs(rng):
    x = data(rng, (4, 10), np.float32)
    with pytest.raises(ValueError, match=r"max has shape \(3,\)"):
        fs.softmax_from_parts(x, np.zeros(3), np.ones(4))
    with pytest.raises(TypeError, match="one integer"):
        fs.logsumexp_parts(x, axis=(0, 1))


# ------------------------------------------------------------ cross-entropy --


def shard(x, labels, cuts, **kw):
    """The merged CrossEntropyParts of x cut along its classes at `cuts`."""
    n = x.shape[1]
    probs = labels.dtype.kind == "f"
    parts = [
        fs.cross_entropy_parts(
            x[:, a:b],
            labels[:, a:b] if probs else labels,
            class_start=a,
            num_classes=n,
            keepdims=True,
            **kw,
        )
        for a, b in zip(cuts[:-1], cuts[1:])
    ]
    return fs.merge_cross_entropy_parts(
        fs.CrossEntropyParts(*(np.concatenate(t, axis=1) for t in zip(*parts)))
    )


@pytest.mark.parametrize("soft", [False, True], ids=["labels", "probs"])
@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"label_smoothing": 0.2},
        {"weight": True},
        {"softcap": 3.0},
        {"weight": True, "label_smoothing": 0.1},
    ],
    ids=lambda o: "-".join(o) or "plain",
)
def test_cross_entropy_parts_merge_to_the_one_call_loss(rng, soft, opts):
    x = data(rng, (30, 50), np.float32, 3.0)
    x[0, 4] = np.nan
    x[1, 40] = np.inf
    x[2, :] = -np.inf
    x[3, 10:20] = -np.inf  # a part of only -inf
    labels = rng.integers(0, 50, 30)
    labels[4] = -100
    if soft:
        p = rng.random((30, 50))
        labels = (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    kw = dict(opts)
    if kw.pop("weight", False):
        kw["weight"] = rng.random(50) + 0.1
    merged = shard(x, labels, [0, 1, 10, 20, 20, 50], **kw)
    for red in ("none", "sum", "mean"):
        for z in (0.0, 1e-2):
            got = fs.cross_entropy_from_parts(
                merged, None if soft else labels, num_classes=50, reduction=red, z_loss=z,
                **{k: v for k, v in kw.items() if k != "softcap"},
            )  # fmt: skip
            want = fs.cross_entropy(x, labels, reduction=red, z_loss=z, **kw)
            assert np.asarray(got).dtype == np.asarray(want).dtype
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
            ok = np.isfinite(want) & (want != 0)
            np.testing.assert_allclose(np.asarray(got)[ok], np.asarray(want)[ok], rtol=1e-6)


def test_cross_entropy_parts_errors(rng):
    x = data(rng, (4, 10), np.float32)
    y = np.array([0, 1, 2, 30])
    with pytest.raises(ValueError, match=r"label 30 at position \(3,\) is outside \[0, 20\)"):
        fs.cross_entropy_parts(x, y, num_classes=20)
    with pytest.raises(ValueError, match="not within num_classes"):
        fs.cross_entropy_parts(x, y[:3].repeat(2)[:4], class_start=15, num_classes=20)
    with pytest.raises(ValueError, match="integer labels must have shape"):
        fs.cross_entropy_parts(x, np.zeros(5, np.int64))
    with pytest.raises(ValueError, match="reduction must be"):
        fs.cross_entropy_from_parts(fs.cross_entropy_parts(x, y[:3].repeat(2)[:4]), None,
                                    num_classes=10, reduction="avg")  # fmt: skip

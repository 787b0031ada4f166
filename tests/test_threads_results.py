"""Results do not depend on the number of threads, on every SIMD target: every driver
path of every function, and the few long rows that are cut into segments (checked
against the references, with non-finite entries in different segments, in place).
"""

from __future__ import annotations

import fastsoftmax as fs
import numpy as np
import pytest
from reference import (
    assert_log_close,
    assert_softmax_close,
    ref_log_softmax,
    ref_logsumexp,
    ref_softmax,
    scipy_op,
)

SETTINGS = [1, 2, 3, 5]  # more threads than CPUs too


@pytest.fixture(autouse=True)
def restore_threads():
    before = fs.get_num_threads()
    yield
    fs.set_num_threads(before)


# ------------------------------------------- results independent of the setting --


def cases(rng):
    """(name, function of no argument) covering every driver path of every function."""
    x = (rng.standard_normal((300, 700)) * 4).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    p = fs.softmax(x)
    lp = fs.log_softmax(x)
    cols = (rng.standard_normal((40, 30, 200)) * 3).astype(np.float64)  # axis 1: columns
    neg = x[:, ::-1]  # negative stride on the axis: gathered rows
    long = (rng.standard_normal((3, 100_000)) * 5).astype(np.float32)  # segments
    y = rng.integers(0, 700, 300)
    t = fs.softmax(rng.standard_normal(x.shape)).astype(np.float32)
    kd = rng.standard_normal((6, 21, 40, 50)).astype(np.float32)  # K-d: column tiles
    yk = rng.integers(0, 21, (6, 40, 50))
    return [
        ("softmax", lambda: fs.softmax(x)),
        ("log_softmax", lambda: fs.log_softmax(x)),
        ("logsumexp", lambda: fs.logsumexp(x)),
        ("softmax_backward", lambda: fs.softmax_backward(g, p)),
        ("log_softmax_backward", lambda: fs.log_softmax_backward(g, lp)),
        ("softmax columns", lambda: fs.softmax(cols, axis=1)),
        ("logsumexp columns", lambda: fs.logsumexp(cols, axis=0)),
        ("log_softmax_backward columns", lambda: fs.log_softmax_backward(cols, cols, axis=1)),
        ("softmax gathered", lambda: fs.softmax(neg)),
        ("logsumexp gathered", lambda: fs.logsumexp(neg)),
        ("softmax segments", lambda: fs.softmax(long)),
        ("log_softmax segments", lambda: fs.log_softmax(long)),
        ("logsumexp segments", lambda: fs.logsumexp(long)),
        ("cross_entropy", lambda: fs.cross_entropy(x, y, return_grad=True, label_smoothing=0.1)),
        ("cross_entropy sum", lambda: fs.cross_entropy(x, y, reduction="sum", z_loss=1e-3)),
        ("cross_entropy none", lambda: fs.cross_entropy(x, t, reduction="none")),
        ("cross_entropy K-d", lambda: fs.cross_entropy(kd, yk, axis=1, return_grad=True)),
        ("cross_entropy gathered", lambda: fs.cross_entropy(neg, y, return_grad=True)),
        ("cross_entropy_backward", lambda: fs.cross_entropy_backward(x, y, softcap=20.0)),
    ]


def flat(result):
    parts = result if isinstance(result, tuple) else (result,)
    return [np.array(r, copy=True) for r in parts]


def test_every_setting_gives_bitwise_the_same_results(rng):
    work = cases(rng)
    fs.set_num_threads(1)
    serial = {name: flat(f()) for name, f in work}
    for n in SETTINGS[1:]:
        fs.set_num_threads(n)
        for name, f in work:
            for got, want in zip(flat(f()), serial[name]):
                np.testing.assert_array_equal(got, want, err_msg=f"{name}, {n} threads")


# ------------------------------------------------------ rows cut into segments --

LONG = 3 * 32768 + 5  # three segments and a bit


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_segmented_rows_match_the_reference(rng, dtype):
    x = (rng.standard_normal((2, LONG)) * 20).astype(dtype)
    x[1, 40000:] -= 900  # the later segments' exponentials underflow against the first
    tol = {np.float32: (1e-5, 2e-6), np.float64: (1e-13, 4e-15)}[dtype]
    tiny = float(np.finfo(dtype).tiny)
    for n in SETTINGS:
        fs.set_num_threads(n)
        assert_softmax_close(fs.softmax(x), ref_softmax(x), tol[0], tiny, f"{n} threads")
        assert_log_close(fs.log_softmax(x), ref_log_softmax(x), tol[1], f"{n} threads")
        assert_log_close(fs.logsumexp(x), ref_logsumexp(x), tol[1], f"{n} threads")


def special_rows(dtype) -> np.ndarray:
    """Long rows whose non-finite entries sit in different segments."""
    rows = np.random.default_rng(2).standard_normal((7, LONG)).astype(dtype)
    rows[0, 70000] = np.nan  # a NaN in a later segment
    rows[1, :40000] = -np.inf  # a whole segment of -inf, the rest finite
    rows[2, 90000] = np.inf  # +inf in a later segment
    rows[3, :] = -np.inf  # every entry -inf
    rows[4, 5] = np.inf  # +inf in the first segment, NaN in the last
    rows[4, -1] = np.nan
    rows[5, 32768:65536] = -np.inf  # a middle segment of -inf
    rows[6, [10, 80000]] = np.inf  # +inf in two segments
    return rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
def test_segmented_rows_with_non_finite_entries_give_scipys_answers(op, dtype):
    x = special_rows(dtype)
    want = scipy_op(op, x.astype(np.float64), axis=-1)
    for n in SETTINGS:
        fs.set_num_threads(n)
        got = getattr(fs, op)(x)
        finite = np.isfinite(want)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{n} threads")
        np.testing.assert_array_equal(
            got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)]
        )
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_segmented_rows_in_place(op):
    x = special_rows(np.float32)
    x[3] = np.linspace(-5, 5, LONG)  # (a finite row too)
    want = getattr(fs, op)(x)
    for n in SETTINGS:
        fs.set_num_threads(n)
        y = x.copy()
        assert getattr(fs, op)(y, out=y) is y
        np.testing.assert_array_equal(y, want, err_msg=f"{n} threads")

"""Strides the layout planner (cpp/src/layout/plan.cpp) must read right, on every target.

Operands that step by 0 (broadcast views) along the axis or across the lines, axes of
length 1 between the others, a logsumexp output that is not contiguous (the column
kernels store theirs contiguously), labels that step by 0 or backwards in the K-d
cross-entropy's tiles. Each result is compared with the same call on contiguous copies
(another way through the driver) and must not depend on the number of threads.
"""

from __future__ import annotations

from typing import Any, Callable

import fastsoftmax as fs
import numpy as np
import pytest

RTOL = 1e-12  # float64 throughout: different ways, same values to rounding


def same_for_any_threads(call: Callable[[], Any]) -> Any:
    with fs.use_threads(1):
        one = call()
    with fs.use_threads(2):
        two = call()
    pairs = zip(one, two) if isinstance(one, tuple) else [(one, two)]
    for a, b in pairs:
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    return one


def check_softmax_family(x: np.ndarray, axis: int) -> None:
    copy = np.ascontiguousarray(x)
    for name in ["softmax", "log_softmax", "logsumexp"]:
        op = getattr(fs, name)
        got = same_for_any_threads(lambda op=op: op(x, axis=axis))
        np.testing.assert_allclose(got, op(copy, axis=axis), rtol=RTOL, atol=1e-300)
    y = fs.softmax(copy, axis=axis)
    got = same_for_any_threads(lambda: fs.softmax_backward(x, y, axis=axis))
    np.testing.assert_allclose(got, fs.softmax_backward(copy, y, axis=axis), rtol=RTOL, atol=1e-14)


@pytest.mark.parametrize("axis", [0, 1])
def test_broadcast_inputs(rng, axis):
    row = rng.standard_normal(33)
    check_softmax_family(np.broadcast_to(row, (50, 33)), axis)  # stride 0 across axis 0
    col = rng.standard_normal((50, 1))
    check_softmax_family(np.broadcast_to(col, (50, 33)), axis)  # stride 0 across axis 1


@pytest.mark.parametrize("axis", range(5))
def test_unit_axes_between_the_others(rng, axis):
    x = rng.standard_normal((3, 1, 5, 1, 7))
    check_softmax_family(x, axis)
    check_softmax_family(x.transpose(4, 1, 2, 3, 0), axis)


def test_logsumexp_into_a_strided_out(rng):
    x = rng.standard_normal((40, 30, 8))  # axis 1: columns, unless out is not contiguous
    want = fs.logsumexp(x, axis=1)
    for out in [np.empty((40, 8, 2))[..., 0], np.empty((8, 40)).T, np.empty((40, 8))]:
        got = same_for_any_threads(lambda out=out: fs.logsumexp(x, axis=1, out=out))
        assert got is out
        np.testing.assert_allclose(got, want, rtol=RTOL)


@pytest.mark.parametrize("labels_view", ["broadcast", "reversed", "strided"])
@pytest.mark.parametrize("return_grad", [False, True])
def test_cross_entropy_tiles_with_any_labels(rng, labels_view, return_grad):
    x = rng.standard_normal((3, 7, 5, 37))  # axis 1: column tiles
    base = rng.integers(0, 7, (3, 5, 74))
    labels = {
        "broadcast": np.broadcast_to(base[:1, :1, :37], (3, 5, 37)),
        "reversed": base[:, ::-1, ::-2],
        "strided": base[:, :, ::2],
    }[labels_view]
    kw = {"reduction": "none", "return_grad": return_grad}
    got = same_for_any_threads(lambda: fs.cross_entropy(x, labels, axis=1, **kw))
    rows = np.ascontiguousarray(np.moveaxis(x, 1, -1))  # classes last: rows
    want = fs.cross_entropy(rows, labels.copy(), axis=-1, **kw)
    if return_grad:
        np.testing.assert_allclose(got[0], want[0], rtol=RTOL)
        np.testing.assert_allclose(got[1], np.moveaxis(want[1], -1, 1), rtol=RTOL, atol=1e-17)
    else:
        np.testing.assert_allclose(got, want, rtol=RTOL)


def test_cross_entropy_probabilities_in_every_layout(rng):
    x = rng.standard_normal((4, 6, 9, 5))
    target = fs.softmax(rng.standard_normal((4, 6, 9, 5)), axis=1)
    kw = {"axis": 1, "return_grad": True, "label_smoothing": 0.1}
    views = [
        (x, target),  # tiles
        (x, np.asfortranarray(target)),  # the target's last axis strided: gathered
        (x[..., ::-1], target[..., ::-1]),  # negative strides: gathered
        (np.moveaxis(np.moveaxis(x, 1, -1).copy(), -1, 1), target),  # classes contiguous: rows
    ]
    for xv, tv in views:
        loss, grad = same_for_any_threads(lambda xv=xv, tv=tv: fs.cross_entropy(xv, tv, **kw))
        want = fs.cross_entropy(np.ascontiguousarray(xv), np.ascontiguousarray(tv), **kw)
        np.testing.assert_allclose(loss, want[0], rtol=RTOL)
        np.testing.assert_allclose(grad, want[1], rtol=RTOL, atol=1e-17)

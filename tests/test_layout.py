"""Every axis of 1-d to 4-d arrays, and strided, reversed, transposed and offset views.

The driver picks contiguous rows, vectorized columns or gathered rows from the
strides of the operands, so these tests reach every path; each result is
compared with the wide reference at the accuracy the package promises.
"""

from __future__ import annotations

import fastsoftmax as fs
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
)

TINY = {np.float32: 1e-30, np.float64: float(np.finfo(np.float64).tiny)}


def check_all_ops(x: np.ndarray, axis, dtype, context: str) -> None:
    ctx = f"({context}, axis={axis!r})"
    y = fs.softmax(x, axis=axis)
    assert y.shape == x.shape, ctx
    assert_softmax_close(
        y, ref_softmax(x, axis=axis), SOFTMAX_RTOL[dtype], TINY[dtype], "softmax " + ctx
    )
    assert_log_close(
        fs.log_softmax(x, axis=axis),
        ref_log_softmax(x, axis=axis),
        LOG_ATOL[dtype],
        "log_softmax " + ctx,
    )
    r = fs.logsumexp(x, axis=axis)
    assert_log_close(r, ref_logsumexp(x, axis=axis), LOG_ATOL[dtype], "logsumexp " + ctx)
    rk = fs.logsumexp(x, axis=axis, keepdims=True)
    assert_log_close(
        rk, ref_logsumexp(x, axis=axis, keepdims=True), LOG_ATOL[dtype], "logsumexp keepdims " + ctx
    )


def axes_of(ndim: int) -> list:
    return [*range(ndim), -1]


SHAPES = [(37,), (5, 19), (3, 4, 17), (2, 3, 5, 9), (19, 2, 1, 33)]
CASES = [(shape, axis) for shape in SHAPES for axis in axes_of(len(shape))]


@pytest.mark.parametrize(("shape", "axis"), CASES, ids=[f"{s}-axis{a}" for s, a in CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_axis_of_contiguous_arrays(rng, shape, axis, dtype):
    x = (rng.standard_normal(shape) * 10).astype(dtype)
    check_all_ops(x, axis, dtype, f"C order {shape}")
    check_all_ops(np.asfortranarray(x), axis, dtype, f"Fortran order {shape}")


def make_view(base: np.ndarray, kind: str) -> np.ndarray:
    """A view of the 3-d array `base` (6, 10, 34)."""
    views = {
        "step2 last": lambda b: b[:, :, ::2],
        "step2 first": lambda b: b[::2],
        "step3 middle": lambda b: b[:, ::3, :],
        "transposed": lambda b: b.T,
        "moveaxis": lambda b: np.moveaxis(b, -1, 0),
        "reversed last": lambda b: b[:, :, ::-1],
        "reversed first": lambda b: b[::-1],
        "reversed all": lambda b: b[::-1, ::-1, ::-1],
        "fortran": lambda b: np.asfortranarray(b),
        "offset": lambda b: b[1:, 3:, 5:],
        "mixed": lambda b: b[::-2, 1::3, 2:],
        "swap 0 1": lambda b: b.swapaxes(0, 1),
    }
    return views[kind](base)


VIEWS = [
    "step2 last",
    "step2 first",
    "step3 middle",
    "transposed",
    "moveaxis",
    "reversed last",
    "reversed first",
    "reversed all",
    "fortran",
    "offset",
    "mixed",
    "swap 0 1",
]


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("axis", [0, 1, 2, -1, (0, 2), None], ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_views(rng, view, axis, dtype):
    base = (rng.standard_normal((6, 10, 34)) * 10).astype(dtype)
    x = make_view(base, view)
    check_all_ops(x, axis, dtype, f"view '{view}' of shape {x.shape}, strides {x.strides}")


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_views_equal_contiguous_copies(rng, view, axis):
    """A view gives the result of its contiguous copy, to rounding."""
    base = (rng.standard_normal((6, 10, 34)) * 10).astype(np.float64)
    x = make_view(base, view)
    c = np.ascontiguousarray(x)
    np.testing.assert_allclose(
        fs.softmax(x, axis=axis), fs.softmax(c, axis=axis), rtol=2e-13, atol=1e-300
    )
    for op in (fs.log_softmax, fs.logsumexp):  # absolute error ~ eps near 0
        np.testing.assert_allclose(
            op(x, axis=axis), op(c, axis=axis), rtol=1e-14, atol=8e-15, err_msg=op.__name__
        )


@pytest.mark.parametrize("out_view", VIEWS)
@pytest.mark.parametrize("axis", [0, 1, 2, (1, 2)], ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_contiguous_out(rng, out_view, axis, dtype):
    x = (rng.standard_normal((6, 10, 34)) * 10).astype(dtype)
    v = make_view(x, out_view)  # the shape of the view; fill a fresh view of the same kind
    xin = np.ascontiguousarray(v)
    for op, ref in ((fs.softmax, ref_softmax), (fs.log_softmax, ref_log_softmax)):
        out_base = np.full(x.shape, np.nan, dtype=dtype)
        out = make_view(out_base, out_view)
        assert op(xin, axis=axis, out=out) is out
        if op is fs.softmax:
            assert_softmax_close(
                out, ref(xin, axis=axis), SOFTMAX_RTOL[dtype], TINY[dtype], op.__name__
            )
        else:
            assert_log_close(out, ref(xin, axis=axis), LOG_ATOL[dtype], op.__name__)
        # nothing outside the view was written
        outside = np.ones(x.shape, dtype=bool)
        make_view(outside, out_view)[...] = False
        assert np.isnan(out_base[outside]).all(), f"{op.__name__} wrote outside the out view"


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_logsumexp_non_contiguous_out(rng, axis):
    x = rng.standard_normal((6, 10, 34))
    rshape = tuple(s for d, s in enumerate(x.shape) if d != axis)
    big = np.full((rshape[0] * 2, rshape[1] * 3), np.nan)
    out = big[::2, ::-3]
    assert fs.logsumexp(x, axis=axis, out=out) is out
    assert_log_close(out, ref_logsumexp(x, axis=axis), LOG_ATOL[np.float64])
    assert np.isnan(big).sum() == big.size - out.size, "logsumexp wrote outside its out view"


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_widths_cross_vector_lanes(rng, n, dtype):
    """axis=0 of (len, n): n independent columns, so full vectors plus a partial one."""
    x = (rng.standard_normal((23, n)) * 10).astype(dtype)
    check_all_ops(x, 0, dtype, f"columns of width {n}")


@pytest.mark.parametrize("rows", [1, 33, 65, 100])
def test_long_columns_cross_accumulator_blocks(rng, rows):
    """Columns longer than the 32-row float accumulator blocks."""
    x = (rng.standard_normal((rows, 20)) * 10).astype(np.float32)
    check_all_ops(x, 0, np.float32, f"columns of length {rows}")


@pytest.mark.parametrize("n", range(1, 18))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_short_rows_any_count_and_row_stride(rng, n, dtype):
    """Rows of at most one vector go through in groups: every count, strided and reversed."""
    for rows in (1, 3, 4, 5, 9):
        base = (rng.standard_normal((2 * rows, n)) * 10).astype(dtype)
        for name, x in (
            ("contiguous", base[:rows]),
            ("every other row", base[::2]),
            ("reversed rows", base[::-1]),
        ):
            check_all_ops(x, -1, dtype, f"{rows} short rows of {n}, {name}")
        out = np.full(2 * rows, np.nan, dtype=dtype)
        assert fs.logsumexp(base[::2], out=out[::2]) is not None
        assert_log_close(
            out[::2], ref_logsumexp(base[::2]), LOG_ATOL[dtype], "strided logsumexp out"
        )
        assert np.isnan(out[1::2]).all(), "logsumexp wrote between the strided out's elements"

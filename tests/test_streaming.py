"""Arrays past the streaming threshold (kStreamBytes, 8 MiB): outputs written from memory.

Their rows are written with non-temporal stores, and the partial vector at the end of a
row waits for the next row (StreamedRows in cpp/src/generic/blocks.hpp): where the next
row starts right after it, the two go out as one aligned vector. These tests put rows at
every alignment, special rows between ordinary ones, outputs whose rows do not follow each
other and outputs that are the input, and check each row against the same row computed
alone (in cache, by other kernels) bit for bit, and the forward functions against the
float64 reference (the backward ones' rows alone are checked against it in
test_backward.py).
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
    ref_softmax,
)

STREAM_BYTES = 8 << 20
FORWARD = {"softmax": fs.softmax, "log_softmax": fs.log_softmax}
BACKWARD = {"softmax_backward": fs.softmax, "log_softmax_backward": fs.log_softmax}
OPS = [*FORWARD, *BACKWARD]
# 1024: every row at the same alignment; 1027, 7001, 9001 and 33001: each row at another
# one (rows past 32 KiB, 9001, 33001 and float64's 7001, go block by block, softmax's
# with the previous row written inside the next row's loop); 100: short rows.
LENGTHS = (100, 1024, 1027, 7001, 9001, 33001)
SPECIAL_ROWS = {  # row index: what is put there
    1: "nan",
    2: "+inf",
    4: "+inf after an ordinary row (ends a row's block walk early)",
    5: "all -inf",
    6: "-inf entries",
    7: "-inf in its first half (whole blocks of -inf in the long rows)",
}


def logits(rng: np.random.Generator, n: int, dtype) -> np.ndarray:
    """Enough rows of n logits to pass the streaming threshold, with special rows."""
    rows = STREAM_BYTES // (n * np.dtype(dtype).itemsize) + 3
    x = (rng.standard_normal((rows, n)) * 4).astype(dtype)
    x[1, n // 2] = np.nan
    x[2, n // 3] = np.inf
    x[4, n // 3] = np.inf
    x[5] = -np.inf
    x[6, ::3] = -np.inf
    x[7, : n // 2] = -np.inf
    return x


def inputs(op: str, x: np.ndarray) -> list[np.ndarray]:
    """The op's arguments for logits x: x, or (upstream gradient, forward output)."""
    if op in FORWARD:
        return [x]
    grad = np.cos(np.arange(x.size).reshape(x.shape) * 0.37).astype(x.dtype)
    return [grad, BACKWARD[op](x)]


def call(op: str, args: list[np.ndarray], **kw) -> np.ndarray:
    return getattr(fs, op)(*args, **kw)


def check_rows_alone(op: str, args: list[np.ndarray], got: np.ndarray, rng) -> None:
    """Row r of got is bitwise op of row r alone (the first, last, special and sampled rows)."""
    rows = got.shape[0]
    picks = {0, rows - 1, rows - 2, *range(8), *rng.integers(0, rows, 40).tolist()}
    for r in sorted(picks):
        alone = call(op, [a[r : r + 1] for a in args])[0]
        np.testing.assert_array_equal(got[r], alone, err_msg=f"{op}: row {r} of {rows} differs")


def check_reference(op: str, x: np.ndarray, y: np.ndarray) -> None:
    ordinary = np.ones(x.shape[0], bool)
    ordinary[list(SPECIAL_ROWS)] = False
    xs, ys = x[ordinary][::7], y[ordinary][::7]  # every 7th row: the reference is slow
    dtype = x.dtype.type
    if op == "softmax":
        assert_softmax_close(ys, ref_softmax(xs), SOFTMAX_RTOL[dtype], 1e-30)
    else:
        assert_log_close(ys, ref_log_softmax(xs), LOG_ATOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("op", OPS)
def test_rows(rng, op, n, dtype):
    x = logits(rng, n, dtype)
    args = inputs(op, x)
    got = call(op, args)
    check_rows_alone(op, args, got, rng)
    if op in FORWARD and dtype is not np.float16:  # (half precision: test_half_precision.py)
        check_reference(op, x, got)


@pytest.mark.parametrize("n", [1024, 1027, 9001])
@pytest.mark.parametrize("op", OPS)
def test_out_views(rng, op, n):
    """out= rows at any offset from alignment, rows apart, and the input itself."""
    x = logits(rng, n, np.float32)
    args = inputs(op, x)
    expected = call(op, args)
    rows = x.shape[0]
    for offset in (1, 2, 3):  # a flat buffer's elements [offset, offset + size)
        buf = np.full(x.size + 8, 7.0, np.float32)
        out = buf[offset : offset + x.size].reshape(x.shape)
        call(op, args, out=out)
        np.testing.assert_array_equal(out, expected, err_msg=f"out= at offset {offset}")
        np.testing.assert_array_equal(buf[:offset], 7.0, err_msg="wrote before out=")
        np.testing.assert_array_equal(buf[offset + x.size :], 7.0, err_msg="wrote after out=")
    # rows that do not follow each other: 5 elements between them
    wide = np.full((rows, n + 5), 7.0, np.float32)
    call(op, args, out=wide[:, 2 : n + 2])
    np.testing.assert_array_equal(wide[:, 2 : n + 2], expected, err_msg="out= rows apart")
    np.testing.assert_array_equal(wide[:, :2], 7.0, err_msg="wrote between out='s rows")
    np.testing.assert_array_equal(wide[:, n + 2 :], 7.0, err_msg="wrote between out='s rows")
    # in place (of each input)
    for k in range(len(args)):
        copies = [a.copy() for a in args]
        call(op, copies, out=copies[k])
        np.testing.assert_array_equal(copies[k], expected, err_msg=f"in place of input {k}")


@pytest.mark.parametrize("n", [1027, 9001])
@pytest.mark.parametrize("op", OPS)
def test_threads(rng, op, n):
    """The rows split between threads: the same bits as one thread."""
    args = inputs(op, logits(rng, n, np.float32))
    with fs.use_threads(1):
        one = call(op, args)
    with fs.use_threads(2):
        two = call(op, args)
    np.testing.assert_array_equal(two, one)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("n", [1027, 9001])
def test_cross_entropy_gradient_from_a_saved_lse(rng, dtype, n):
    """The cross-entropy's gradient from a saved logsumexp, into an array past the
    streaming threshold (non-temporal stores, the rows' ends ordinary ones, the label's
    entry after them): row for row the gradient of the same row alone, at any offset of
    out= and in place."""
    x = logits(rng, n, dtype)
    rows = x.shape[0]
    labels = rng.integers(0, n, rows)
    labels[3] = -100
    per_row = rng.standard_normal(rows)
    lse = fs.logsumexp(x)  # (NaN or +-inf on the special rows)
    kw = {"lse": lse, "reduction": "none", "grad_out": per_row}
    got = fs.cross_entropy_backward(x, labels, **kw)
    for r in sorted({0, rows - 1, *range(8), *rng.integers(0, rows, 20).tolist()}):
        alone = fs.cross_entropy_backward(
            x[r : r + 1],
            labels[r : r + 1],
            lse=lse[r : r + 1],
            reduction="none",
            grad_out=per_row[r : r + 1],
        )
        np.testing.assert_array_equal(got[r], alone[0], err_msg=f"row {r} of {rows} differs")
    for offset in (1, 2, 3):
        buf = np.full(x.size + 8, 7.0, dtype)
        out = buf[offset : offset + x.size].reshape(x.shape)
        fs.cross_entropy_backward(x, labels, out=out, **kw)
        np.testing.assert_array_equal(out, got, err_msg=f"out= at offset {offset}")
        np.testing.assert_array_equal(buf[:offset], 7.0, err_msg="wrote before out=")
        np.testing.assert_array_equal(buf[offset + x.size :], 7.0, err_msg="wrote after out=")
    inplace = x.copy()
    fs.cross_entropy_backward(inplace, labels, out=inplace, **kw)
    np.testing.assert_array_equal(inplace, got, err_msg="in place")

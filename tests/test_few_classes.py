"""Rows of very few classes, contiguous (the common classifier shapes, issue 17 part 1).

- One class: softmax is 1, log_softmax 0 and logsumexp the logit itself (+0 for -0), NaN
  where the logit is not finite (the general paths' answers), with no exponential at all,
  for every dtype, layout and SIMD target.
- 2 to 8 classes, rows laid end to end (float32 and the half types on AVX-512 and AVX2,
  float64 on AVX-512 to 7, NEON to 3): transposed in registers rather than
  through a tile in memory (register_tiles.hpp).
  The arithmetic is the tiles' lane by lane, so a row gets bitwise the answer it gets in a
  strided batch (which still goes by tiles or by rows), at any position of a batch whose
  length is not a multiple of the rows done together (16 or 32).
"""

from __future__ import annotations

import fastsoftmax as fs
import ml_dtypes
import numpy as np
import pytest
import scipy.special
from test_short_rows import make_batch

OPS = ["softmax", "log_softmax", "logsumexp"]
DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16]


def one_class_expected(name: str, x: np.ndarray) -> np.ndarray:
    v = x.astype(np.float64)
    finite = np.isfinite(v)
    if name == "softmax":
        out = np.where(finite, 1.0, np.nan)
    elif name == "log_softmax":
        out = np.where(finite, 0.0, np.nan)
    else:
        out = v + 0.0  # max + log(1): -0 gives +0, +-inf and NaN stay
    return out.astype(x.dtype)


def one_class_logits(rows: int, dtype) -> np.ndarray:
    rng = np.random.default_rng(rows)
    x = (rng.standard_normal(rows) * 30).astype(dtype)
    special = [np.inf, -np.inf, np.nan, -0.0, 0.0, float(ml_dtypes.finfo(dtype).max)]
    x[: min(rows, len(special))] = np.array(special[:rows], dtype=dtype)
    return x


@pytest.mark.parametrize("rows", [1, 5, 16, 37, 1000])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", OPS)
def test_one_class_rows_in_every_layout(name, dtype, rows):
    op = getattr(fs, name)
    x = one_class_logits(rows, dtype)
    want = one_class_expected(name, x)
    col = x.reshape(rows, 1)
    wide = np.zeros((rows, 3), dtype)  # rows 3 apart: the strided path
    wide[:, 1] = x
    views = {
        "contiguous (rows, 1)": col,
        "strided rows": wide[:, 1:2],
        "reversed rows": col[::-1],
        "axis 0 of (1, rows)": x.reshape(1, rows),
    }
    for label, v in views.items():
        axis = 0 if label.startswith("axis 0") else -1
        got = op(v, axis=axis)
        flat = np.asarray(got).reshape(-1)
        expect = want[::-1] if label == "reversed rows" else want
        assert flat.dtype == np.dtype(dtype), label
        assert np.array_equal(flat, expect, equal_nan=True), f"{label}: {flat} != {expect}"
        if name == "logsumexp":  # the sign of zero, too
            assert np.array_equal(np.signbit(flat), np.signbit(expect)), label
    if name != "logsumexp":
        y = col.copy()
        op(y, out=y)
        assert np.array_equal(y.reshape(-1), want, equal_nan=True), "in place"


# (10-33: rows by tiles whose last columns are not a whole block: 1 to 5 of them on
# avx2, 4 at 20 classes on avx512, element by element or by a block that overlaps the
# one before; on avx2's float32, contiguous rows of 9-16 by register tiles whose blocks
# overlap so too, strided ones by those tiles)
@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 20, 33])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", OPS)
def test_contiguous_rows_match_strided_rows_bitwise(rng, name, dtype, n):
    op = getattr(fs, name)
    with np.errstate(over="ignore"):  # (float32's large rows become inf in half precision)
        x = make_batch(rng, 77, n, np.float32).astype(dtype)  # 2 groups of 32, then 13 rows
    # the same rows, n + 3 apart, NaN between them: a kernel that reads past a
    # row (whole vectors where the rows lie far enough apart) must not use it
    padded = np.full((77, n + 3), np.nan, dtype)
    padded[:, :n] = x
    whole = op(x)
    strided = op(padded[:, :n])
    assert np.array_equal(whole, strided, equal_nan=True), "contiguous vs strided rows"
    if name != "logsumexp":  # into strided rows: nothing written between them
        out = np.full((77, n + 3), 7, dtype)
        op(x, out=out[:, :n])
        assert np.array_equal(whole, out[:, :n], equal_nan=True), "into strided rows"
        assert np.all(out[:, n:] == 7), "written between the rows of out="
    for start, stop in [(0, 1), (5, 6), (31, 33), (3, 77), (40, 77), (64, 77)]:
        part = op(x[start:stop])
        assert np.array_equal(whole[start:stop], part, equal_nan=True), f"rows {start}:{stop}"
    if name != "logsumexp":
        y = x.copy()
        op(y, out=y)
        assert np.array_equal(whole, y, equal_nan=True), "in place"


CE_OPTIONS = [
    {"reduction": "mean"},
    {"reduction": "sum", "ignore_index": 2},
    {"reduction": "none"},
    {"reduction": "none", "grad_out": "per-row"},
    {"reduction": "mean", "weight": "random"},
    {"reduction": "none", "temperature": 0.7},
    {"reduction": "mean", "weight": "random", "temperature": 2.5},
]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 15, 16, 17, 20])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", range(len(CE_OPTIONS)))
def test_cross_entropy_contiguous_rows_match_strided_rows_bitwise(rng, options, dtype, n):
    """Integer labels without smoothing or z-loss: contiguous rows of up to 8 classes (16
    on avx2's float32) go by register tiles, strided ones by tiles (longer rows both by
    tiles); the losses (and their sum, in the same order) and the gradients are the same
    bits, also in place, for any part of the batch and at a temperature."""
    rows = 77
    with np.errstate(over="ignore"):
        x = make_batch(rng, rows, n, np.float32).astype(dtype)
    kw = dict(CE_OPTIONS[options])
    labels = rng.integers(0, n, rows)
    labels[[4, 40]] = kw.get("ignore_index", -100)
    if kw.get("grad_out") == "per-row":
        kw["grad_out"] = rng.standard_normal(rows)
    if kw.get("weight") == "random":
        half = np.dtype(dtype).itemsize == 2  # (weights of half-precision logits: float32)
        kw["weight"] = (rng.random(n) * 2).astype(np.float32 if half else dtype)
    padded = np.full((rows, n + 3), np.nan, dtype)  # (NaN between the rows: never read)
    padded[:, :n] = x
    loss, grad = fs.cross_entropy(x, labels, return_grad=True, **kw)
    loss_s, grad_s = fs.cross_entropy(padded[:, :n], labels, return_grad=True, **kw)
    assert np.array_equal(loss, loss_s, equal_nan=True), "loss: contiguous vs strided rows"
    assert np.array_equal(grad, grad_s, equal_nan=True), "gradient: contiguous vs strided rows"
    no_grad = {k: v for k, v in kw.items() if k != "grad_out"}
    assert np.array_equal(loss, fs.cross_entropy(x, labels, **no_grad), equal_nan=True)
    xi = x.copy()
    loss_i = fs.cross_entropy(xi, labels, return_grad=True, inplace_grad=True, **kw)[0]
    assert np.array_equal(loss, loss_i, equal_nan=True), "loss in place"
    assert np.array_equal(grad, xi, equal_nan=True), "gradient in place"
    if kw["reduction"] == "none":
        for start, stop in [(0, 1), (31, 33), (40, 77)]:
            part = {k: (v[start:stop] if k == "grad_out" else v) for k, v in kw.items()}
            lp, gp = fs.cross_entropy(x[start:stop], labels[start:stop], return_grad=True, **part)
            assert np.array_equal(loss[start:stop], lp, equal_nan=True), f"rows {start}:{stop}"
            assert np.array_equal(grad[start:stop], gp, equal_nan=True), f"rows {start}:{stop}"


@pytest.mark.parametrize("n", [2, 3, 5, 8])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_labels_far_below_the_maximum(rng, reduction, dtype, n):
    """Rows whose label lies 70, 100 and 300 below the maximum (rows 10, 100 and 149 of 150),
    among finite rows: their loss is formed in double, lane by lane (exp(x[y] - max)
    underflows), so the register tiles' steps (32 or 64 rows) that hold them are taken
    again chunk by chunk, while rows 32 to 95 alone go two or four chunks at a time. The
    loss and gradient are the strided rows' bits, and the loss is the float64 reference's."""
    rows = 150
    x = rng.standard_normal((rows, n)).astype(dtype)
    labels = rng.integers(0, n, rows)
    for r, gap in [(10, 70.0), (100, 100.0), (149, 300.0)]:
        x[r, (labels[r] + 1) % n] = x[r, labels[r]] + gap
    labels[[4, 40]] = -100
    padded = np.zeros((rows, n + 3), dtype)
    padded[:, :n] = x
    loss, grad = fs.cross_entropy(x, labels, reduction=reduction, return_grad=True)
    loss_s, grad_s = fs.cross_entropy(padded[:, :n], labels, reduction=reduction, return_grad=True)
    assert np.array_equal(loss, loss_s), "loss: contiguous vs strided rows"
    assert np.array_equal(grad, grad_s), "gradient: contiguous vs strided rows"
    v = x.astype(np.float64)
    keep = labels != -100
    lse = scipy.special.logsumexp(v[keep], axis=1)
    terms = lse - v[keep, labels[keep]]
    want = terms.mean() if reduction == "mean" else terms.sum()
    tol = 4 * float(np.finfo(dtype).eps)
    assert abs(float(loss) - want) <= tol * abs(want), (float(loss), want)
    # the rows between, alone: no far label (several chunks at a time throughout)
    part = slice(32, 96)
    lp = fs.cross_entropy(x[part], labels[part], reduction="sum")
    lps = fs.cross_entropy(padded[part, :n], labels[part], reduction="sum")
    assert np.array_equal(lp, lps), "loss of rows 32 to 95"
    ref = (lse - v[keep, labels[keep]])[
        (np.arange(rows)[keep] >= 32) & (np.arange(rows)[keep] < 96)
    ]
    assert abs(float(lp) - ref.sum()) <= tol * ref.sum(), (float(lp), ref.sum())


@pytest.mark.parametrize("rows", [1, 15, 16, 17, 33, 100, 5000])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_of_one_class(rng, dtype, rows):
    """One class: every counted row's loss is +0 and its gradient +0, NaN where its logit
    is not finite, 0 where its label is ignored (a NaN or inf there included); the sum or
    mean is +0, or NaN if any counted row's is. The same bits as the strided rows', in
    place and for any scalar grad_out (a negative one too: -(g * 0) + 0 is +0)."""
    x = (rng.standard_normal((rows, 1)) * 30).astype(dtype)
    labels = np.zeros(rows, np.int64)
    labels[rng.random(rows) < 0.3] = -100
    special = [np.inf, -np.inf, np.nan]
    where = rng.choice(rows, size=min(rows, 3), replace=False)
    x[where, 0] = np.array(special[: len(where)], dtype)
    padded = np.zeros((rows, 4), dtype)
    padded[:, :1] = x
    counted = labels != -100
    bad = counted & ~np.isfinite(x[:, 0].astype(np.float64))
    for ignored_specials in (False, True):
        lab = labels.copy()
        if ignored_specials:
            lab[where] = -100  # special logits, ignored: no NaN anywhere
        bad_now = bad & (lab != -100)
        for kw in ({"reduction": "mean"}, {"reduction": "sum", "grad_out": -2.5}):
            loss, grad = fs.cross_entropy(x, lab, return_grad=True, **kw)
            loss_s, grad_s = fs.cross_entropy(padded[:, :1], lab, return_grad=True, **kw)
            if bad_now.any():
                assert np.isnan(loss)
            elif kw["reduction"] == "sum" or (lab != -100).any():
                assert loss == 0, loss
                assert not np.signbit(loss)
            assert np.array_equal(loss, loss_s, equal_nan=True), "loss: contiguous vs strided"
            assert np.array_equal(np.isnan(grad[:, 0]), bad_now)
            assert np.all(grad[~bad_now] == 0)
            assert not np.signbit(grad[~bad_now]).any()
            assert np.array_equal(grad, grad_s, equal_nan=True), "gradient vs strided"
            xi = x.copy()
            loss_i = fs.cross_entropy(xi, lab, return_grad=True, inplace_grad=True, **kw)[0]
            assert np.array_equal(loss, loss_i, equal_nan=True), "loss in place"
            assert np.array_equal(grad, xi, equal_nan=True), "gradient in place"


@pytest.mark.parametrize("n", [2, 3, 8])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_special_logits_two_chunks_at_a_time(rng, dtype, n):
    """NaN, +-inf and ties in rows 64 to 71 (in a step of the register tiles with no label
    far below its maximum, which goes two or four chunks at a time): the gradient is the
    strided rows' bits (NaN where a row's loss is NaN, 0 where its label is ignored), the
    loss NaN as theirs."""
    rows = 100
    x = rng.standard_normal((rows, n)).astype(dtype)
    labels = rng.integers(0, n, rows)
    specials = {
        64: ([np.nan] + [1.0] * (n - 1), n - 1),  # NaN first, the label the maximum
        65: ([1.0] * (n - 1) + [np.nan], 0),  # NaN last
        66: ([np.inf] + [1.0] * (n - 1), 0),
        67: ([1.0] * (n - 1) + [-np.inf], 0),  # -inf not the label: exp 0
        68: ([2.0] * n, n - 1),  # all equal
        69: ([-np.inf] * n, 0),  # nothing finite
        70: ([np.nan] * n, -100),  # ignored: 0
        71: ([0.0, -0.0] + [0.0] * (n - 2), 1),  # signed zeros, tied
    }
    for r, (row, y) in specials.items():
        x[r] = np.array(row, dtype)
        labels[r] = y
    padded = np.zeros((rows, n + 3), dtype)
    padded[:, :n] = x
    for reduction in ("mean", "sum"):
        loss, grad = fs.cross_entropy(x, labels, reduction=reduction, return_grad=True)
        loss_s, grad_s = fs.cross_entropy(
            padded[:, :n], labels, reduction=reduction, return_grad=True
        )
        assert np.isnan(loss)
        assert np.isnan(loss_s)
        assert np.array_equal(grad, grad_s, equal_nan=True), "gradient: contiguous vs strided"
        assert np.array_equal(np.signbit(grad), np.signbit(grad_s)), "signs of the gradient"
        assert not np.isnan(grad[:64]).any()
        assert (grad[70] == 0).all()
    finite = [r for r in range(rows) if r not in (64, 65, 66, 69)]
    loss_f = fs.cross_entropy(x[finite], labels[finite], reduction="sum")
    assert np.array_equal(
        loss_f, fs.cross_entropy(padded[finite, :n], labels[finite], reduction="sum")
    )

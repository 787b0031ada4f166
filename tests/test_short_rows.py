"""Many short rows: the kernels transpose them into tiles (one row per lane) below a
length that depends on the op and the dtype (kSoftmaxTileLimit and the others in
cpp/src/generic/softmax_rows.hpp, kCeTileLimit in ce_rows.hpp).

Around each of those lengths, on every SIMD target: accuracy against the references,
SciPy's answers for the rows holding NaN or infinities next to ordinary rows in the
same tile, and the same bits for a row whatever its batch, its position in the batch
(its lane and tile) and whether the output is the input itself.
"""

from __future__ import annotations

import fastsoftmax as fs
import numpy as np
import pytest
from reference import check_like_scipy
from test_cross_entropy import check, random_labels, random_options

# the tile limits (48, 64, 96, 128), one past each, and lengths around whole
# blocks of 4, 8 and 16 lanes
LENGTHS = [2, 3, 7, 8, 9, 15, 16, 17, 33, 48, 49, 64, 65, 96, 97, 128, 129]
ROWS = [1, 7, 16, 17, 40]
OPS = ["softmax", "log_softmax", "logsumexp"]


def special_rows(n: int, dtype) -> dict[int, np.ndarray]:
    """Rows SciPy answers specially (or that stress the lanes), by the row index they get."""
    big = np.finfo(dtype).max / 2
    return {
        0: np.full(n, np.nan, dtype),
        3: np.full(n, -np.inf, dtype),
        5: np.full(n, 7.5, dtype),
        8: (np.linspace(-1, 1, n) * big).astype(dtype),
        11: np.r_[np.inf, np.zeros(n - 1)].astype(dtype),
        14: np.r_[np.zeros(n - 1), np.nan].astype(dtype),
        16: np.r_[-np.inf, np.arange(n - 1)].astype(dtype),
    }


def make_batch(rng: np.random.Generator, rows: int, n: int, dtype) -> np.ndarray:
    x = (rng.standard_normal((rows, n)) * 10).astype(dtype)
    for r, row in special_rows(n, dtype).items():
        if r < rows:
            x[r] = row
    return x


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", OPS)
def test_short_rows_accurate_and_like_scipy(rng, name, dtype, n, rows):
    x = make_batch(rng, rows, n, dtype)
    labels = [f"row {r} of {rows}" for r in range(rows)]
    check_like_scipy(name, getattr(fs, name)(x), x, labels, dtype, exact_zeros=False)


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", OPS)
def test_a_row_gets_the_same_bits_in_any_batch(rng, name, dtype, n):
    op = getattr(fs, name)
    x = make_batch(rng, 40, n, dtype)
    whole = op(x)
    shifted = op(x[3:])  # every row in another lane (and tile)
    assert np.array_equal(whole[3:], shifted, equal_nan=True), "batch shifted by 3 rows"
    for r in (0, 1, 5, 16, 17, 39):
        alone = op(x[r : r + 1])
        assert np.array_equal(whole[r : r + 1], alone, equal_nan=True), f"row {r} alone"
    if name != "logsumexp":
        y = x.copy()
        op(y, out=y)
        assert np.array_equal(whole, y, equal_nan=True), "in place (out is the input)"


# ---------------------------------------------------------------- cross_entropy --
# Without soft-capping (and a saved logsumexp), rows of up to 128 (float32 with avx512)
# and 96 (float64; float32 with avx2) classes go by tiles.

CE_LENGTHS = [1, 2, 10, 16, 17, 96, 97, 128, 129]  # (one class: float32 by tiles too)


# (one class apart: its gradient is only the z-loss term, far below the absolute error of
# p - t, about one ulp of 1, that the tolerance scaled by the largest gradient assumes)
@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("n", [n for n in CE_LENGTHS if n > 1])
@pytest.mark.parametrize("soft", [False, True], ids=["indices", "probabilities"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_of_short_rows_matches_the_reference(rng, dtype, soft, n, rows):
    for trial in range(4):
        kw = random_options(rng, n, dtype, soft)
        kw.pop("softcap", None)  # (soft-capped rows go one at a time)
        x = (rng.standard_normal((rows, n)) * 4).astype(dtype)
        labels = random_labels(rng, (rows, n), -1, soft, dtype, kw.get("ignore_index", -100))
        if kw["reduction"] == "none" and trial % 2:
            kw["grad_out"] = rng.standard_normal(rows)
        check(x, labels, dtype, f"trial {trial}", **kw)


@pytest.mark.parametrize("n", CE_LENGTHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_of_a_row_is_the_same_in_any_batch(rng, dtype, n):
    x = (rng.standard_normal((40, n)) * 4).astype(dtype)
    x[2] = np.nan
    x[5, min(1, n - 1)] = np.inf
    x[9] = -np.inf
    y = rng.integers(0, n, 40)
    y[7] = -100  # ignored
    kw = {"reduction": "none", "return_grad": True, "z_loss": 1e-3, "label_smoothing": 0.1}
    loss, grad = fs.cross_entropy(x, y, **kw)
    for lo in (1, 3, 17):
        l2, g2 = fs.cross_entropy(x[lo:], y[lo:], **kw)
        assert np.array_equal(loss[lo:], l2, equal_nan=True), f"losses, batch from row {lo}"
        assert np.array_equal(grad[lo:], g2, equal_nan=True), f"gradient, batch from row {lo}"
    xi = x.copy()
    li = fs.cross_entropy(xi, y, inplace_grad=True, **kw)[0]
    assert np.array_equal(loss, li, equal_nan=True), "losses, in place"
    assert np.array_equal(grad, xi, equal_nan=True), "gradient, in place"

"""NaN / inf / empty inputs: the answers must be SciPy's, on every kernel path.

Each test builds many rows of one length, each row one case (a NaN, a +inf,
a -inf, ... at the first, middle or last position, in a vector tail or at a
block boundary), runs the op on a layout that selects one of the driver's
paths (contiguous rows, columns of a transposed copy, columns of a 3-d array,
gathered rows of a reversed view) and compares with SciPy on the plain rows:
NaN, +inf, -inf and exact zeros must be where SciPy has them, and the finite
values must be accurate.
"""

from __future__ import annotations

import fastsoftmax as fs
import numpy as np
import pytest
from reference import check_like_scipy, scipy_op

LENGTHS = [1, 2, 4, 5, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 1025, 4097]
OPS = ["softmax", "log_softmax", "logsumexp"]
LAYOUTS = ["rows", "columns", "columns3d", "gather"]

INF = np.inf
NAN = np.nan


def positions(n: int) -> dict[str, int]:
    """Where to put a special value: ends, middle, vector tails and block edges."""
    pos = {"first": 0, "middle": n // 2, "last": n - 1}
    for w in (4, 8, 16):  # first lane of the partial last vector, for each width
        if n % w and n > w:
            pos[f"tail{w}"] = (n // w) * w
    for b in (64, 256, 512, 1024):  # the second block of the online passes
        if n > b:
            pos[f"block{b}"] = b
    seen: dict[int, str] = {}
    for name, p in pos.items():
        seen.setdefault(p, name)
    return {name: p for p, name in seen.items()}


def special_rows(n: int, rng: np.random.Generator, dtype) -> tuple[np.ndarray, list[str]]:
    """Rows of length n, one case each, and a label per row."""
    rows: list[np.ndarray] = []
    labels: list[str] = []

    def finite() -> np.ndarray:
        return rng.normal(0, 3, n)

    def add(label: str, row: np.ndarray) -> None:
        rows.append(row)
        labels.append(label)

    add("finite", finite())
    add("all -inf", np.full(n, -INF))
    add("all +inf", np.full(n, INF))
    add("all nan", np.full(n, NAN))
    for name, p in positions(n).items():
        for value, vname in ((NAN, "nan"), (INF, "+inf"), (-INF, "-inf")):
            r = finite()
            r[p] = value
            add(f"{vname} at {name}({p})", r)
        r = np.full(n, -INF)
        r[p] = rng.normal(0, 3)
        add(f"-inf except a finite at {name}({p})", r)
        r = np.full(n, -INF)
        r[p] = INF
        add(f"-inf except +inf at {name}({p})", r)
        if n > 1:
            r = finite()
            r[p] = NAN
            r[n - 1 - p] = INF if n - 1 - p != p else NAN
            add(f"nan at {name}({p}) and +inf at {n - 1 - p}", r)
            r = finite()
            r[p] = INF
            r[(p + 1) % n] = -INF
            add(f"+inf at {name}({p}) and -inf at {(p + 1) % n}", r)
            r = finite()
            r[p] = INF
            r[n - 1 - p] = INF
            add(f"+inf at {name}({p}) and at {n - 1 - p}", r)
    if n > 2:
        r = finite()
        r[: n // 2] = -INF
        add("first half -inf, rest finite", r)
        r = finite()
        r[n // 2 :] = -INF
        add("second half -inf, rest finite", r)
        r = finite()
        r[::3] = -INF
        add("every third -inf", r)
        r = np.full(n, -INF)
        r[n // 2 :] = INF
        add("first half -inf, second half +inf", r)
    return np.array(rows, dtype=dtype), labels


def run_layout(op, x: np.ndarray, layout: str, reduce: bool) -> np.ndarray:
    """Apply op along the rows of x (R, n) through the given layout; return (R, n) or (R,)."""
    rows, n = x.shape
    if layout == "rows":
        return op(x, axis=-1)
    if layout == "columns":  # reduction axis strided, the other contiguous
        xt = np.ascontiguousarray(x.T)
        r = op(xt, axis=0)
        return r if reduce else r.T
    if layout == "columns3d":
        half = rows // 2
        x3 = np.ascontiguousarray(x.reshape(2, half, n).transpose(0, 2, 1))  # (2, n, half)
        r = op(x3, axis=1)
        return r.reshape(rows) if reduce else r.transpose(0, 2, 1).reshape(rows, n)
    if layout == "gather":  # negative stride along the reduction axis
        r = op(x[:, ::-1], axis=-1)
        return r if reduce else r[:, ::-1]
    raise AssertionError(layout)


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", OPS)
def test_special_values_match_scipy(rng, name, dtype, layout, n):
    x, labels = special_rows(n, rng, dtype)
    if len(labels) % 2:  # columns3d splits the rows in two halves
        x = np.concatenate([x, rng.normal(0, 3, (1, n)).astype(dtype)])
        labels.append("finite (padding)")
    x.setflags(write=False)
    got = run_layout(getattr(fs, name), x, layout, reduce=name == "logsumexp")
    check_like_scipy(name, got, x, labels, dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble, np.int64])
@pytest.mark.parametrize("name", OPS)
def test_special_values_match_scipy_for_converted_dtypes(rng, name, dtype):
    n = 37
    x, labels = special_rows(n, rng, np.float64)
    if np.dtype(dtype).kind == "i":
        x = np.round(x[:1] * 10)  # integers have no special values: the finite row
        labels = labels[:1]
    x = x.astype(dtype)
    result_dtype = np.float64 if np.dtype(dtype).kind == "i" else dtype
    got = getattr(fs, name)(x)
    # SciPy on the computation dtype, then the NaN/inf pattern must survive the cast back
    work = x.astype(np.float32 if dtype == np.float16 else np.float64)
    expected = scipy_op(name, work, axis=-1)
    assert got.dtype == result_dtype
    for pattern, f in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        np.testing.assert_array_equal(f(got), f(expected), err_msg=f"{pattern} pattern, {dtype}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize(
    ("shape", "axis"), [((3, 0), -1), ((0, 3), 0), ((0, 3), -1), ((2, 0, 4), 1), ((0,), 0)]
)
def test_empty_axis_gives_an_empty_result(name, dtype, shape, axis):
    x = np.zeros(shape, dtype=dtype)
    got = getattr(fs, name)(x, axis=axis)
    assert got.shape == shape
    assert got.dtype == dtype
    out = np.empty(shape, dtype=dtype)
    assert getattr(fs, name)(x, axis=axis, out=out) is out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["softmax_backward", "log_softmax_backward"])
@pytest.mark.parametrize(("shape", "axis"), [((3, 0), -1), ((0, 3), 0), ((0, 3), -1)])
def test_backward_over_an_empty_axis_is_empty(name, dtype, shape, axis):
    g = np.zeros(shape, dtype=dtype)
    got = getattr(fs, name)(g, g.copy(), axis=axis)
    assert got.shape == shape
    assert got.dtype == dtype


# The documented table on tiny rows: (row, softmax, log_softmax, logsumexp), exact (also at
# any temperature: each row has a NaN, a maximum that is not finite, or its maximum at 0;
# test_temperature).
SMALL_TABLE = [
    ([1.0, NAN, 2.0], [NAN, NAN, NAN], [NAN, NAN, NAN], NAN),
    ([1.0, INF, 2.0], [NAN, NAN, NAN], [-INF, NAN, -INF], INF),
    ([-INF, -INF, -INF], [NAN, NAN, NAN], [NAN, NAN, NAN], -INF),
    ([INF, -INF, 0.0], [NAN, NAN, NAN], [NAN, -INF, -INF], INF),
    ([NAN, INF, 1.0], [NAN, NAN, NAN], [NAN, NAN, NAN], NAN),
    ([0.0, -INF, 0.0], [0.5, 0.0, 0.5], [-np.log(2), -INF, -np.log(2)], np.log(2)),
]
SMALL_TABLE_IDS = [
    "nan",
    "+inf",
    "all -inf",
    "+inf and -inf",
    "nan and +inf",
    "-inf with finite max",
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("row", "softmax", "log_softmax", "logsumexp"), SMALL_TABLE, ids=SMALL_TABLE_IDS
)
def test_small_table(dtype, row, softmax, log_softmax, logsumexp):
    """The table of the docs, on tiny rows with exact expected values."""
    x = np.array(row, dtype=dtype)
    np.testing.assert_array_equal(fs.softmax(x), np.array(softmax, dtype=dtype))
    np.testing.assert_array_equal(fs.log_softmax(x), np.array(log_softmax, dtype=dtype))
    np.testing.assert_array_equal(fs.logsumexp(x), np.array(logsumexp, dtype=dtype))

"""fastsoftmax.dask and the mergeable parts: dask arrays chunked along every axis, the
reduction axis split in several chunks (one element each, uneven, empty chunks),
special values in some chunks only, every cross-entropy option with the classes split,
the top-level functions' dispatch, and a real cluster (dask.distributed, worker
processes) reading Zarr from disk. Skipped without dask (the `peers` marker: CI
installs it)."""

from __future__ import annotations

import os
from typing import Any

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

da = pytest.importorskip("dask.array")
import dask
import fastsoftmax.dask as fsd

pytestmark = pytest.mark.peers

BF16 = np.dtype(ml_dtypes.bfloat16)
DEFAULT_TARGET = fs.simd_target()  # (at collection, before the simd fixture switches it)


@pytest.fixture(autouse=True)
def _synchronous() -> Any:
    """One thread per compute: the simd fixture's forced target is per process, and the
    tests stay deterministic (the threaded scheduler is measured in bench/)."""
    with dask.config.set(scheduler="synchronous"):
        yield


def data(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any, scale: float = 4.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def split_chunks(n: int) -> list[tuple[int, ...]]:
    """Ways to cut an axis of length n: one element per chunk, uneven, with empty chunks."""
    uneven = (1, n // 3, n - 1 - n // 3)
    return [(1,) * n, uneven, (0, n // 2, 0, n - n // 2, 0)]


def chunked(x: np.ndarray, axis: int, along: tuple[int, ...]) -> Any:
    chunks = [max(1, s // 2) if d != axis else along for d, s in enumerate(x.shape)]
    return da.from_array(x, chunks=tuple(chunks))


# ------------------------------------------------------- softmax family --


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, BF16])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_family_unsplit_axis_is_bitwise(rng, dtype, axis):
    x = data(rng, (6, 7, 40), dtype)
    chunks = tuple(s if d == axis else (2, s - 2) for d, s in enumerate(x.shape))
    dx = da.from_array(x, chunks=chunks)
    for name in ("softmax", "log_softmax", "logsumexp"):
        got = getattr(fs, name)(dx, axis)
        assert isinstance(got, da.Array), name
        np.testing.assert_array_equal(got.compute(), getattr(fs, name)(x, axis), err_msg=name)
    g = data(rng, x.shape, dtype, 1.0)
    y = fs.softmax(x, axis)
    for name in ("softmax_backward", "log_softmax_backward"):
        got = getattr(fs, name)(
            da.from_array(g, chunks=chunks), da.from_array(y, chunks=chunks), axis
        )
        np.testing.assert_array_equal(got.compute(), getattr(fs, name)(g, y, axis), err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, BF16])
@pytest.mark.parametrize("axis", [0, 2])
def test_family_split_axis(rng, dtype, axis):
    x = data(rng, (9, 3, 31), dtype) if axis == 2 else data(rng, (31, 3, 9), dtype)
    n = x.shape[axis]
    for along in split_chunks(n):
        dx = chunked(x, axis, along)
        lse = fsd.logsumexp(dx, axis).compute()
        want = fs.logsumexp(x, axis)
        assert lse.dtype == want.dtype
        # within 1 ulp of the one call (in its own dtype)
        assert ulp_error(lse, want.astype(np.float64), dtype).max() <= 1, along
        y = fsd.softmax(dx, axis).compute()
        ls = fsd.log_softmax(dx, axis).compute()
        assert y.dtype == ls.dtype == x.dtype
        # the README's accuracy of the in-memory functions (half precision: 1 ulp of the
        # correctly rounded value)
        if np.dtype(dtype).itemsize >= 4:
            assert_softmax_close(y, ref_softmax(x, axis), SOFTMAX_RTOL[dtype], 1e-30, str(along))
            assert_log_close(ls, ref_log_softmax(x, axis), LOG_ATOL[dtype], str(along))
        else:
            assert ulp_error(y, ref_softmax(x, axis), dtype).max() <= 1, along
            assert_log_close(ls, ref_log_softmax(x, axis), 2.0**-8, str(along))
        keep = fsd.logsumexp(dx, axis, keepdims=True).compute()
        np.testing.assert_array_equal(keep, np.expand_dims(lse, axis))


@pytest.mark.parametrize(("n", "chunk"), [(1000, 100), (32000, 8000), (777, 259)])
def test_split_float32_softmax_is_as_accurate_as_the_one_call(rng, n, chunk):
    """The split softmax's pairs are summed as softmax sums them (logsumexp_parts'
    for_softmax): within half an ulp of the one-call softmax's own error on the same
    rows (logsumexp's sums gave up to 1-3 ulp more)."""
    x = data(rng, (64, n), np.float32)
    y = fsd.softmax(da.from_array(x, chunks=(16, chunk))).compute()
    want = ref_softmax(x)
    big = want > 1e-30
    one_call = ulp_error(fs.softmax(x)[big], want[big], np.float32).max()
    assert ulp_error(y[big], want[big], np.float32).max() <= one_call + 0.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, BF16])
def test_family_temperature(rng, dtype):
    """temperature= on the family: the axis in one chunk, bitwise the in-memory call; split,
    close to it (the chunks of x / T divided in the compute dtype); a bad temperature is
    refused when the graph is built."""
    x = data(rng, (6, 40), dtype)
    t = 0.7
    one = da.from_array(x, chunks=(2, 40))
    split = da.from_array(x, chunks=(2, (13, 27)))
    g = data(rng, x.shape, dtype, 1.0)
    for name in ("softmax", "log_softmax", "logsumexp"):
        want = getattr(fs, name)(x, temperature=t)
        got = getattr(fs, name)(one, temperature=t).compute()  # (through fs.<name>)
        np.testing.assert_array_equal(got, want, err_msg=name)
        got = getattr(fsd, name)(split, temperature=t).compute()
        assert got.dtype == want.dtype, name
        np.testing.assert_allclose(
            got.astype(np.float64),
            want.astype(np.float64),
            rtol=2e-2 if dtype in (np.float16, BF16) else 2e-5,
            atol=1e-3 if dtype in (np.float16, BF16) else 1e-6,
            err_msg=name,
        )
    for name, y in (("softmax_backward", fs.softmax(x, temperature=t)),
                    ("log_softmax_backward", fs.log_softmax(x, temperature=t))):  # fmt: skip
        want = getattr(fs, name)(g, y, temperature=t)
        dg, dy = da.from_array(g, chunks=(2, 40)), da.from_array(y, chunks=(2, 40))
        np.testing.assert_array_equal(
            getattr(fsd, name)(dg, dy, temperature=t).compute(), want, err_msg=name
        )
        dg, dy = da.from_array(g, chunks=(2, (13, 27))), da.from_array(y, chunks=(2, (13, 27)))
        got = getattr(fsd, name)(dg, dy, temperature=t).compute()
        np.testing.assert_allclose(
            got.astype(np.float64), want.astype(np.float64),
            rtol=2e-2 if dtype in (np.float16, BF16) else 1e-5, atol=1e-2 if dtype in (np.float16, BF16) else 1e-6,
            err_msg=name,
        )  # fmt: skip
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature must be positive"):
            fsd.softmax(split, temperature=bad)


@pytest.mark.parametrize("mask", ["full", "(1, C)", "dask"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_family_where(rng, dtype, mask):
    """where= on the family: the axis in one chunk, bitwise the in-memory call (through the
    top-level functions); split, close to it, with exactly 0 / -inf at the excluded entries
    and on the slices with nothing included (NaN under the mask ignored)."""
    x = data(rng, (6, 40), dtype)
    w = rng.random(x.shape) < 0.6
    w[1] = False  # nothing included
    if mask == "(1, C)":
        w = w[2:3]
    wb = np.broadcast_to(w, x.shape)
    x[~wb] = np.nan
    given = da.from_array(w, chunks=(3, 15)) if mask == "dask" else w
    one = da.from_array(x, chunks=(2, 40))
    split = da.from_array(x, chunks=(2, (13, 0, 27)))
    g = data(rng, x.shape, dtype, 1.0)
    loose = {"rtol": 2e-2, "atol": 1e-3} if dtype == np.float16 else {"rtol": 2e-5, "atol": 1e-6}
    for name in ("softmax", "log_softmax", "logsumexp"):
        want = getattr(fs, name)(x, where=w)
        got = getattr(fs, name)(one, where=given)
        assert isinstance(got, da.Array), name
        np.testing.assert_array_equal(got.compute(), want, err_msg=name)
        got = getattr(fsd, name)(split, where=given).compute()
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=name)
        np.testing.assert_allclose(
            got.astype(np.float64), want.astype(np.float64), err_msg=name, **loose
        )
    for name, y in (("softmax_backward", fs.softmax(x, where=w)),
                    ("log_softmax_backward", fs.log_softmax(x, where=w))):  # fmt: skip
        want = getattr(fs, name)(g, y, where=w)
        dg, dy = da.from_array(g, chunks=(2, 40)), da.from_array(y, chunks=(2, 40))
        np.testing.assert_array_equal(
            getattr(fsd, name)(dg, dy, where=given).compute(), want, err_msg=name
        )
        dg, dy = da.from_array(g, chunks=(2, (13, 27))), da.from_array(y, chunks=(2, (13, 27)))
        got = getattr(fsd, name)(dg, dy, where=given).compute()
        assert np.all(got[~wb] == 0), name
        np.testing.assert_allclose(
            got.astype(np.float64), want.astype(np.float64), err_msg=name, **loose
        )
    with pytest.raises(TypeError, match="where must be an array of bools, got dtype int64"):
        fsd.softmax(split, where=np.ones(x.shape, np.int64))
    with pytest.raises(ValueError, match=r"where has shape \(3,\)"):
        fsd.logsumexp(split, where=np.ones(3, bool))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_split_axis(rng, dtype):
    x = data(rng, (8, 45), dtype)
    g = data(rng, x.shape, dtype, 1.0)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    for along in split_chunks(45):
        for name, y in (
            ("softmax_backward", fs.softmax(x)),
            ("log_softmax_backward", fs.log_softmax(x)),
        ):
            dg, dy = chunked(g, 1, along), chunked(y, 1, along)
            got = getattr(fsd, name)(dg, dy).compute()
            want = getattr(fs, name)(g, y)
            scale = np.abs(want).max(axis=1, keepdims=True) + np.abs(g).max()
            assert (np.abs(got - want) <= tol * scale).all(), (name, along)


def test_special_values_in_some_chunks(rng):
    x = data(rng, (6, 40), np.float32)
    x[0, 3] = np.nan  # a NaN in the first chunk only
    x[1, 30] = np.inf  # +inf in the last chunk
    x[2, 10:20] = -np.inf  # a chunk of only -inf
    x[3, :] = -np.inf
    x[4, 35] = -np.inf
    dx = da.from_array(x, chunks=(3, 10))
    special = [0, 1, 3]  # rows whose answers are NaN / inf as a whole
    ordinary = [2, 4, 5]
    refs = {"softmax": ref_softmax, "log_softmax": ref_log_softmax, "logsumexp": ref_logsumexp}
    for name, ref in refs.items():
        got = getattr(fsd, name)(dx).compute()
        np.testing.assert_array_equal(got[special], getattr(fs, name)(x)[special], err_msg=name)
        if name == "softmax":
            assert_softmax_close(got[ordinary], ref(x[ordinary]), SOFTMAX_RTOL[np.float32], 1e-30)
        else:
            assert_log_close(got[ordinary], ref(x[ordinary]), LOG_ATOL[np.float32], name)


# --------------------------------------------------------- cross-entropy --


CE_OPTIONS = [
    {},
    {"label_smoothing": 0.2},
    {"z_loss": 1e-2},
    {"softcap": 2.0},
    {"weight": "w"},
    {"weight": "w", "label_smoothing": 0.1, "z_loss": 1e-3, "ignore_index": 3},
]


def ce_case(rng: np.random.Generator, soft: bool, dtype: Any = np.float32):
    n, c = 20, 40
    x = data(rng, (n, c), dtype, 3.0)
    x[2, 5] = np.nan
    x[3, :] = -np.inf
    x[4, 7] = np.inf
    x[5, 10:20] = -np.inf
    labels = rng.integers(0, c, n)
    labels[6] = labels[7] = -100
    labels[8] = 3
    if soft:
        p = rng.random((n, c))
        labels = (p / p.sum(axis=1, keepdims=True)).astype(dtype)
    return x, labels, rng.random(c) + 0.1


def ce_kwargs(opts: dict[str, Any], w: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The options, the class weights put in; labels -100 made the ignore_index asked for."""
    if "ignore_index" in opts and labels.dtype.kind == "i":
        labels[labels == -100] = opts["ignore_index"]
    return {k: (w if isinstance(v, str) and v == "w" else v) for k, v in opts.items()}


@pytest.mark.parametrize("soft", [False, True], ids=["labels", "probs"])
@pytest.mark.parametrize("opts", CE_OPTIONS, ids=lambda o: "-".join(o) or "plain")
def test_cross_entropy_unsplit_classes(rng, soft, opts):
    x, labels, w = ce_case(rng, soft)
    kw = ce_kwargs(opts, w, labels)
    dx = da.from_array(x, chunks=(6, 40))
    for red in ("none", "sum", "mean"):
        loss = fs.cross_entropy(dx, labels, reduction=red, **kw)
        assert isinstance(loss, da.Array)
        got, want = loss.compute(), fs.cross_entropy(x, labels, reduction=red, **kw)
        assert got.dtype == want.dtype
        if red == "none":  # per example: bitwise
            np.testing.assert_array_equal(got, want)
        else:
            assert ulp_error(got, np.float64(want), np.float32) <= 1 or (
                np.isnan(got) and np.isnan(want)
            )
    check_grads(dx, x, labels, kw)


@pytest.mark.parametrize("soft", [False, True], ids=["labels", "probs"])
@pytest.mark.parametrize("opts", CE_OPTIONS, ids=lambda o: "-".join(o) or "plain")
def test_cross_entropy_split_classes(rng, soft, opts):
    x, labels, w = ce_case(rng, soft)
    kw = ce_kwargs(opts, w, labels)
    for along in [(10, 10, 20), (1,) * 40, (0, 13, 0, 27)]:
        dx = da.from_array(x, chunks=(7, along))
        for red in ("none", "sum", "mean"):
            got = fs.cross_entropy(dx, labels, reduction=red, **kw).compute()
            want = fs.cross_entropy(x, labels, reduction=red, **kw)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
            np.testing.assert_array_equal(got[want == 0], 0)  # (ignored examples)
            ok = np.isfinite(want) & (want != 0)
            rel = np.abs(got[ok] - want[ok]) / np.abs(want[ok])
            assert (rel <= 4e-7).all(), (along, red, rel.max())
        check_grads(dx, x, labels, kw)


def check_grads(dx: Any, x: np.ndarray, labels: np.ndarray, kw: dict[str, Any]) -> None:
    n = x.shape[0]
    per = np.linspace(0.5, 2.0, n)
    for red, grad_out in (("mean", None), ("sum", 3.0), ("none", per)):
        loss, grad = fs.cross_entropy(
            dx, labels, reduction=red, return_grad=True, grad_out=grad_out, **kw
        )
        _got_loss, got = dask.compute(loss, grad)
        _want_loss, want = fs.cross_entropy(
            x, labels, reduction=red, return_grad=True, grad_out=grad_out, **kw
        )
        assert got.dtype == want.dtype
        assert got.shape == want.shape
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=red)
        # against float64 logits' gradient, within the README's bound for the in-memory
        # float32 gradient (32 eps of the row's largest entry)
        exact = fs.cross_entropy(
            x.astype(np.float64),
            labels.astype(np.float64) if labels.dtype.kind == "f" else labels,
            reduction=red, return_grad=True, grad_out=grad_out, **kw,
        )[1]  # fmt: skip
        rows = ~np.isnan(want).any(axis=1)  # (the NaN rows: equal above)
        scale = np.abs(exact[rows]).max(axis=1, keepdims=True)
        err = np.abs(got[rows] - exact[rows]) / np.where(scale > 0, scale, 1)
        assert err.max() <= 32 * np.finfo(np.float32).eps, (red, err.max())


def test_cross_entropy_half_precision_split(rng):
    x, labels, _ = ce_case(rng, False, np.float16)
    dx = da.from_array(x, chunks=(10, (15, 25)))
    got = fs.cross_entropy(dx, labels, reduction="none").compute()
    want = fs.cross_entropy(x, labels, reduction="none")
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=4e-7)
    _, grad = fs.cross_entropy(dx, labels, return_grad=True)
    assert grad.dtype == np.float16


def test_cross_entropy_k_dim(rng):
    x = data(rng, (3, 12, 4, 5), np.float32)  # (N, C, d1, d2), classes on axis 1
    labels = rng.integers(0, 12, (3, 4, 5))
    for chunks in ((2, 12, 2, 5), (2, (5, 7), 2, (2, 3))):
        dx = da.from_array(x, chunks=chunks)
        loss, grad = fs.cross_entropy(dx, labels, axis=1, return_grad=True)
        want_loss, want = fs.cross_entropy(x, labels, axis=1, return_grad=True)
        np.testing.assert_allclose(loss.compute(), want_loss, rtol=4e-7)
        np.testing.assert_allclose(grad.compute(), want, atol=1e-8)


# ---------------------------------------------------------------- errors --


def test_errors_at_graph_build_time(rng):
    x = da.from_array(data(rng, (4, 10), np.float32), chunks=(2, 5))
    labels = np.zeros(4, np.int64)
    with pytest.raises(np.exceptions.AxisError):
        fs.softmax(x, axis=2)
    with pytest.raises(TypeError, match="one integer"):
        fs.logsumexp(x, axis=(0, 1))
    with pytest.raises(TypeError, match="out= is not supported"):
        fs.softmax(x, out=np.empty((4, 10), np.float32))
    with pytest.raises(ValueError, match="reduction must be"):
        fs.cross_entropy(x, labels, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        fs.cross_entropy(x, labels, label_smoothing=2.0)
    with pytest.raises(ValueError, match="integer labels must have the shape"):
        fs.cross_entropy(x, np.zeros(5, np.int64))
    with pytest.raises(ValueError, match="weight must have one entry per class"):
        fs.cross_entropy(x, labels, weight=np.ones(3))
    with pytest.raises(TypeError, match="inplace_grad"):
        fs.cross_entropy(x, labels, return_grad=True, inplace_grad=True)
    with pytest.raises(TypeError, match="complex"):
        fs.softmax(x.astype(np.complex64))
    with pytest.raises(TypeError, match="does not take dask arrays"):
        fs.cross_entropy_backward(x, labels)


@pytest.mark.parametrize("along", [10, 5], ids=["classes-whole", "classes-split"])
def test_bad_label_raises_when_computed_naming_the_chunk(rng, along):
    x = da.from_array(data(rng, (4, 10), np.float32), chunks=(2, along))
    labels = np.array([0, 1, 2, 12])
    loss = fs.cross_entropy(x, labels)  # (the values are only read when computed)
    with pytest.raises(ValueError, match=r"label 12 at position \(1,\) of the chunk at \(1, "):
        loss.compute()


def test_dask_labels_and_probabilities(rng):
    x, labels, _ = ce_case(rng, False)
    x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    dl = da.from_array(labels, chunks=7)
    got = fs.cross_entropy(da.from_array(x, chunks=(5, 16)), dl).compute()
    np.testing.assert_allclose(got, fs.cross_entropy(x, labels), rtol=4e-7)


# --------------------------------------------------- a real cluster, Zarr --


def test_distributed_cluster_reading_zarr(rng, simd, tmp_path, monkeypatch):
    """Worker processes (real scheduler, real serialization) read logits from Zarr; the
    cluster is started as the README says to, without distributed's
    MALLOC_TRIM_THRESHOLD_, and its workers are checked to have none."""
    if simd != DEFAULT_TARGET:
        pytest.skip("the worker processes run the default target: once is enough")
    distributed = pytest.importorskip("distributed")
    zarr = pytest.importorskip("zarr")
    x = data(rng, (64, 300), np.float32)
    labels = rng.integers(0, 300, 64)
    path = str(tmp_path / "logits.zarr")
    z = zarr.open_array(path, mode="w", shape=x.shape, chunks=(16, 100), dtype="f4")
    z[:] = x
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with (
        dask.config.set(
            {"scheduler": None, "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
        ),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        trims = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
        assert list(trims.values()) == [None, None]
        dx = da.from_zarr(path)
        assert dx.numblocks == (4, 3)
        lse, loss, y = client.compute(
            [fsd.logsumexp(dx), fsd.cross_entropy(dx, labels), fsd.softmax(dx.rechunk((16, 300)))],
            sync=True,
        )
    assert ulp_error(lse, fs.logsumexp(x).astype(np.float64), np.float32).max() <= 1
    np.testing.assert_allclose(loss, fs.cross_entropy(x, labels), rtol=4e-7)
    np.testing.assert_array_equal(y, fs.softmax(x))


# -------------------------------------------- found by review (2026-12-05) --


def test_two_calls_in_one_graph_keep_their_own_results(rng):
    """Every call's output keys are its own (a fixed name= made them collide)."""
    a, b = data(rng, (2, 8), np.float32), np.zeros((2, 8), np.float32)
    y = np.array([3, 5])
    for chunks in ((1, 4), (1, 8)):
        da_, db_ = da.from_array(a, chunks=chunks), da.from_array(b, chunks=chunks)
        for name in ("softmax", "log_softmax", "logsumexp"):
            got = dask.compute(getattr(fs, name)(da_), getattr(fs, name)(db_))
            np.testing.assert_array_equal(got[1], getattr(fs, name)(b), err_msg=name)
        losses = dask.compute(fs.cross_entropy(da_, y), fs.cross_entropy(db_, y))
        assert losses[1] == pytest.approx(np.log(8), rel=1e-6)
        twice = fs.softmax(fs.softmax(da_)).compute()
        np.testing.assert_allclose(twice, fs.softmax(fs.softmax(a)), rtol=1e-6)


@pytest.mark.parametrize("along", [6, 3], ids=["classes-whole", "classes-split"])
def test_edge_cases_of_the_mean_and_of_ignored_rows(along):
    x = np.arange(12, dtype=np.float32).reshape(2, 6) / 10
    w = np.ones(6)
    w[2] = 0
    dx = da.from_array(x, chunks=(2, along))
    y = np.array([2, 2])  # a total class weight of 0: NaN loss and gradient, as in memory
    for z in (0.0, 0.1):
        loss, grad = fs.cross_entropy(dx, y, weight=w, z_loss=z, return_grad=True)
        want_loss, want = fs.cross_entropy(x, y, weight=w, z_loss=z, return_grad=True)
        assert np.isnan(loss.compute())
        assert np.isnan(want_loss)
        np.testing.assert_array_equal(np.isnan(grad.compute()), np.isnan(want))
    # an ignored row of NaN: a zero gradient row, with z-loss or soft-capping
    x2 = np.array([[np.nan, 0, 1, 2, 0, 1], [0.5, 1, 0, 2, 3, 1]], np.float32)
    for kw in ({"z_loss": 1e-3}, {"softcap": 5.0}):
        g = fs.cross_entropy(da.from_array(x2, chunks=(2, along)), np.array([-100, 1]),
                             return_grad=True, **kw)[1].compute()  # fmt: skip
        np.testing.assert_array_equal(g[0], 0)
    # a NaN grad_out: a NaN gradient (not an error), as in memory
    g = fs.cross_entropy(dx, np.array([0, 1]), z_loss=0.1, return_grad=True, grad_out=np.nan)[1]
    assert np.isnan(g.compute()).all()


@pytest.mark.parametrize("along", [6, 3], ids=["classes-whole", "classes-split"])
def test_huge_logits(along):
    x = np.full((1, 6), 1e8, np.float32)
    g = fs.cross_entropy(da.from_array(x, chunks=(1, along)), np.array([0]), return_grad=True)[1]
    np.testing.assert_allclose(g.compute(), [[-5 / 6] + [1 / 6] * 5], rtol=1e-6)
    x64 = np.array([[1e200, 0.0, 1.0], [2.0, 1.0, 0.0]])  # lse**2 overflows; no z-loss
    got = fs.cross_entropy(da.from_array(x64, chunks=(1, 3)), np.array([0, 1])).compute()
    assert got == pytest.approx(fs.cross_entropy(x64, np.array([0, 1])), rel=1e-15)


def test_unknown_chunk_sizes_are_named(rng):
    x = da.from_array(data(rng, (6, 5), np.float32), chunks=(3, 5))
    keep = da.from_array(np.array([True, False] * 3), chunks=3)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        fs.cross_entropy(x[keep], da.from_array(np.zeros(6, np.int64), chunks=3)[keep])
    with pytest.raises(ValueError, match="does not broadcast"):
        fs.cross_entropy(x, np.zeros(6, np.int64), reduction="none", return_grad=True,
                         grad_out=np.ones((6, 1)))  # fmt: skip


@pytest.mark.parametrize("along", [30, 10], ids=["classes-whole", "classes-split"])
def test_cross_entropy_temperature(along):
    x = np.random.default_rng(7).standard_normal((8, 30)).astype(np.float32)
    y = np.arange(8)
    loss, g = fs.cross_entropy(
        da.from_array(x, chunks=(4, along)), y, temperature=2.0, return_grad=True
    )
    want, gwant = fs.cross_entropy(x, y, temperature=2.0, return_grad=True)
    np.testing.assert_allclose(loss.compute(), want, rtol=1e-6)
    np.testing.assert_allclose(g.compute(), gwant, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="temperature must be positive"):
        fs.cross_entropy(da.from_array(x), y, temperature=-1.0)
    # half precision: divided in float32, the gradient back in the logits' dtype
    for t in (0.3, 1e-5, 1e5):
        xh = (x * 3).astype(np.float16)
        loss, g = fs.cross_entropy(
            da.from_array(xh, chunks=(4, along)), y, temperature=t, return_grad=True
        )
        want, gwant = fs.cross_entropy(xh, y, temperature=t, return_grad=True)
        assert g.dtype == np.float16
        np.testing.assert_allclose(loss.compute(), want, rtol=1e-6)
        np.testing.assert_allclose(
            g.compute().astype(np.float64),
            gwant.astype(np.float64),
            rtol=0,
            atol=1e-3 * np.abs(gwant.astype(np.float64)).max() + 1e-12,
        )

"""fs.linear_cross_entropy against cross_entropy of the explicit logits (and PyTorch's autograd).

The reference: ``X = h @ W.T + b`` in float64, ``fs.cross_entropy(X, ...)`` with its
gradient ``G``, then ``d_hidden = G @ W``, ``d_weight = G.T @ h``, ``d_bias = G.sum(0)``.
"""

from __future__ import annotations

import itertools
import tracemalloc

import fastsoftmax as fs
import ml_dtypes
import numpy as np
import pytest
from fastsoftmax import _blas


def _problem(rng, n=29, d=7, v=13, dtype=np.float64, ignore_every=0):
    h = rng.standard_normal((n, d)).astype(dtype)
    w = (rng.standard_normal((v, d)) * 0.8).astype(dtype)
    b = rng.standard_normal(v).astype(dtype)
    y = rng.integers(0, v, n)
    y[-1] = v - 1  # a label in the last chunk of classes
    if ignore_every:
        y[::ignore_every] = -100
    return h, w, b, y


def _reference(h, w, b, y, layout="VD", grad_out=None, **kw):
    """Loss and gradients through explicit float64 logits."""
    h64, w64 = h.astype(np.float64), w.astype(np.float64)
    wvd = w64 if layout == "VD" else w64.T
    x = h64.reshape(-1, h.shape[-1]) @ wvd.T
    if b is not None:
        x = x + b.astype(np.float64)
    labels = y.reshape(-1) if y.dtype.kind in "iu" else y.reshape(x.shape)
    go = grad_out
    if go is not None and np.ndim(go):
        go = np.broadcast_to(go, y.shape[: h.ndim - 1]).reshape(-1)
    loss, g = fs.cross_entropy(x, labels, return_grad=True, grad_out=go, **kw)
    d_h = (g @ wvd).reshape(h.shape)
    d_w = g.T @ h64.reshape(-1, h.shape[-1])
    if layout == "DV":
        d_w = d_w.T
    if kw.get("reduction") == "none":
        loss = loss.reshape(y.shape[: h.ndim - 1])
    return loss, d_h, d_w, (None if b is None else g.sum(0))


def _close(got, want, rtol, atol):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=atol)


OPTIONS = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"label_smoothing": 0.15},
    {"z_loss": 1e-2},
    {"softcap": 2.5},
    {"weight": True},
    {"weight": True, "z_loss": 0.05, "label_smoothing": 0.1},
    {"weight": True, "reduction": "none", "softcap": 4.0, "z_loss": 1e-3},
    {"reduction": "sum", "label_smoothing": 1.0},
]


@pytest.mark.parametrize("layout", ["VD", "DV"])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "default")
def test_matches_explicit_logits_float64(rng, layout, with_bias, options):
    h, w, b, y = _problem(rng, ignore_every=4)
    if not with_bias:
        b = None
    kw = dict(options)
    cw = rng.random(w.shape[0]) + 0.1 if kw.pop("weight", False) else None
    red = kw.get("reduction", "mean")
    go = rng.standard_normal(h.shape[0]) if red == "none" else 0.75
    w_in = w if layout == "VD" else np.ascontiguousarray(w.T)
    want = _reference(h, w_in, b, y, layout, grad_out=go, weight=cw, **kw)
    for chunk in (1, 3, 5, 25, 1000, None):  # dividing the 22 kept tokens or not
        got = fs.linear_cross_entropy(
            h, w_in, y, bias=b, weight_layout=layout, class_weight=cw, return_grad=True,
            grad_out=go, chunk_size=chunk, **kw,
        )  # fmt: skip
        assert len(got) == (4 if with_bias else 3)
        for g, r in zip(got, want):
            _close(g, r, 1e-12, 1e-13)
        assert got[1].dtype == np.float64
        assert got[1].shape == h.shape
        assert got[2].shape == w_in.shape
        loss = fs.linear_cross_entropy(
            h, w_in, y, bias=b, weight_layout=layout, class_weight=cw, chunk_size=chunk, **kw
        )
        _close(loss, want[0], 1e-12, 1e-13)


@pytest.mark.parametrize("chunk", [1, 4, 64, None])
def test_float32_against_float64_reference(rng, chunk):
    h, w, b, y = _problem(rng, n=200, d=24, v=300, dtype=np.float32, ignore_every=7)
    cw = (rng.random(300) + 0.5).astype(np.float32)
    want = _reference(h, w, b, y, weight=cw, label_smoothing=0.1, z_loss=1e-3)
    got = fs.linear_cross_entropy(
        h, w, y, bias=b, class_weight=cw, label_smoothing=0.1, z_loss=1e-3, return_grad=True,
        chunk_size=chunk,
    )  # fmt: skip
    assert got[0].dtype == np.float32
    assert all(g.dtype == np.float32 for g in got[1:])
    for g, r in zip(got, want):
        scale = np.abs(r).max()
        _close(g, r, 2e-5, 2e-6 * scale)


def test_probability_labels(rng):
    h, w, b, _ = _problem(rng, n=31, d=6, v=11)
    t = rng.random((31, 11))
    t /= t.sum(1, keepdims=True)
    for red in ("mean", "sum", "none"):
        want = _reference(h, w, b, t, reduction=red, label_smoothing=0.2, z_loss=0.01)
        got = fs.linear_cross_entropy(
            h, w, t, bias=b, reduction=red, label_smoothing=0.2, z_loss=0.01,
            return_grad=True, chunk_size=4,
        )  # fmt: skip
        for g, r in zip(got, want):
            _close(g, r, 1e-12, 1e-13)


def test_leading_dimensions_and_per_token_grad_out(rng):
    """hidden (B, T, D), labels (B, T), grad_out broadcasting to (B, T): applied per token
    before the weight gradient sums over tokens."""
    h = rng.standard_normal((3, 5, 4))
    w = rng.standard_normal((9, 4))
    y = rng.integers(0, 9, (3, 5))
    y[1, 2] = -100
    go = rng.standard_normal((3, 1)) * np.array([[1.0], [0.0], [-2.0]])
    want = _reference(h, w, None, y, reduction="none", grad_out=go)
    got = fs.linear_cross_entropy(
        h, w, y, reduction="none", return_grad=True, grad_out=go, chunk_size=2
    )
    assert got[0].shape == (3, 5)
    assert got[1].shape == (3, 5, 4)
    for g, r in zip(got, want):
        _close(g, r, 1e-12, 1e-13)
    # the per-token factors matter: scaling the summed gradient would not give this
    assert not np.allclose(got[2], _reference(h, w, None, y, reduction="none")[2] * go.mean())


def test_strided_inputs_and_fortran_weight(rng):
    h, w, b, y = _problem(rng, n=40, d=6, v=10)
    hs = np.repeat(h, 2, axis=0)[::-2]  # negative stride, non-contiguous
    ys = np.repeat(y, 2)[::-2]
    wf = np.asfortranarray(w)
    want = _reference(hs, wf, b[::-1][::-1], ys, label_smoothing=0.05)
    got = fs.linear_cross_entropy(
        hs, wf, ys, bias=b, label_smoothing=0.05, return_grad=True, chunk_size=7
    )
    for g, r in zip(got, want):
        _close(g, r, 1e-12, 1e-13)


def test_all_tokens_ignored(rng):
    h, w, b, y = _problem(rng, n=8)
    y[:] = -100
    for red, want in (("mean", np.nan), ("sum", 0.0)):
        loss, dh, dw, db = fs.linear_cross_entropy(h, w, y, bias=b, reduction=red, return_grad=True)
        np.testing.assert_equal(loss, want)
        assert not dh.any()
        assert not dw.any()
        assert not db.any()
    loss = fs.linear_cross_entropy(h, w, y, reduction="none")
    assert loss.shape == (8,)
    assert not loss.any()


def test_zero_total_class_weight_is_nan_like_cross_entropy(rng):
    h, w, b, y = _problem(rng, n=6, v=5)
    y[:] = 2
    y[0] = -100
    cw = np.ones(5)
    cw[2] = 0
    want = _reference(h, w, b, y, weight=cw)
    got = fs.linear_cross_entropy(h, w, y, bias=b, class_weight=cw, return_grad=True)
    assert np.isnan(got[0])
    assert np.isnan(want[0])
    np.testing.assert_array_equal(np.isnan(got[1]), np.isnan(want[1]))
    assert not got[1][0].any()  # the ignored token


def test_empty_batch(rng):
    h = np.zeros((0, 3))
    w = rng.standard_normal((4, 3))
    y = np.zeros(0, np.int64)
    loss, dh, dw = fs.linear_cross_entropy(h, w, y, return_grad=True)
    assert np.isnan(loss)
    assert dh.shape == (0, 3)
    assert not dw.any()
    assert fs.linear_cross_entropy(h, w, y, reduction="sum") == 0


@pytest.mark.parametrize("half", [np.float16, ml_dtypes.bfloat16])
def test_half_precision_inputs(rng, half):
    h, w, b, y = _problem(rng, n=50, d=16, v=40)
    h, w, b = (a.astype(half) for a in (h, w, b))
    want = _reference(h, w, b, y)  # the same rounded inputs, in float64
    got = fs.linear_cross_entropy(h, w, y, bias=b, return_grad=True, chunk_size=16)
    assert got[0].dtype == np.float32
    assert [g.dtype for g in got[1:]] == [np.dtype(half)] * 3
    tol = 1e-2 if half is np.float16 else 4e-2
    for g, r in zip(got[1:], want[1:]):
        _close(g, r, tol, tol * np.abs(r).max())
    _close(got[0], want[0], 1e-5, 0)


def test_mixed_precision_computes_in_float64(rng):
    h, w, _b, y = _problem(rng)
    got = fs.linear_cross_entropy(h.astype(np.float32), w, y, return_grad=True)
    want = _reference(h.astype(np.float32), w, None, y)
    assert got[0].dtype == np.float64
    assert got[1].dtype == np.float32
    assert got[2].dtype == np.float64
    _close(got[0], want[0], 1e-12, 0)
    _close(got[2], want[2], 1e-12, 1e-13)


def test_matmul_fallback_gives_the_same_gradients(rng, monkeypatch):
    """Without NumPy's CBLAS symbols, d_weight is accumulated by np.matmul into a
    temporary: the same values."""
    h, w, b, y = _problem(rng, n=300, d=20, v=70, dtype=np.float32)
    fast = fs.linear_cross_entropy(h, w, y, bias=b, return_grad=True, chunk_size=64)
    monkeypatch.setattr(_blas, "_GEMM", {})
    monkeypatch.setattr(_blas, "_FALLBACK_BYTES", 20 * 4 * 16)  # 16 rows of c at a time
    slow = fs.linear_cross_entropy(h, w, y, bias=b, return_grad=True, chunk_size=64)
    assert _blas.gemm_source() == "matmul"
    for f, s in zip(fast, slow):
        np.testing.assert_allclose(f, s, rtol=1e-5, atol=1e-6)


def test_numpy_blas_found():
    """NumPy's wheels ship OpenBLAS with CBLAS symbols: the beta = 1 product is used."""
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    if "openblas" not in str(blas.get("name", "")):
        pytest.skip(f"NumPy's BLAS is {blas.get('name')!r}, not OpenBLAS")
    assert _blas.gemm_source() == "cblas"
    for dt in (np.float32, np.float64):
        c = np.ones((3, 2), dt)
        a = np.arange(12, dtype=dt).reshape(4, 3).T  # F-contiguous operand
        b = np.arange(8, dtype=dt).reshape(4, 2)
        _blas.add_product(c, a, b)
        np.testing.assert_array_equal(c, a @ b + 1)


def test_extra_memory_is_one_chunk(rng):
    """tracemalloc's peak beyond the inputs and the results: within 5% of what the
    unfused logits and their gradient take (2 N V float32 values)."""
    n, d, v = 2048, 32, 4096
    h = rng.standard_normal((n, d), dtype=np.float32)
    w = rng.standard_normal((v, d), dtype=np.float32)
    y = rng.integers(0, v, n)
    fs.linear_cross_entropy(h[:8], w, y[:8], return_grad=True)  # warm: first-call caches
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        result = fs.linear_cross_entropy(h, w, y, return_grad=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    extra = peak - base - result[1].nbytes - result[2].nbytes
    assert extra <= 0.05 * 2 * n * v * 4, extra


def test_bad_input(rng):
    h, w, b, y = _problem(rng, n=5, d=3, v=4)
    lce = fs.linear_cross_entropy
    with pytest.raises(ValueError, match=r"hidden has 3 features .* weight has 2 \(shape \(4, 2\)"):
        lce(h, np.ones((4, 2)), y)
    with pytest.raises(ValueError, match=r"hidden has 3 features .* weight has 4 .* layout DV"):
        lce(h, w, y, weight_layout="DV")
    with pytest.raises(ValueError, match="weight_layout must be 'VD' or 'DV', got 'vd'"):
        lce(h, w, y, weight_layout="vd")
    with pytest.raises(ValueError, match=r"bias must have one entry per class, shape \(4,\)"):
        lce(h, w, y, bias=b[:3])
    with pytest.raises(ValueError, match=r"class_weight must have one entry per class"):
        lce(h, w, y, class_weight=np.ones(5))
    with pytest.raises(ValueError, match=r"class_weight must be finite and non-negative"):
        lce(h, w, y, class_weight=np.array([1, -1, 1, 1.0]))
    bad = y.copy()
    bad[3] = 4
    with pytest.raises(ValueError, match=r"label 4 at position \(3,\) is outside \[0, 4\)"):
        lce(h, w, bad)
    with pytest.raises(ValueError, match=r"integer labels must have hidden's shape"):
        lce(h, w, y[:4])
    with pytest.raises(ValueError, match=r"probability labels must have the shape \(5, 4\)"):
        lce(h, w, np.ones((5, 3)))
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        lce(h, w, y, chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size must be an integer"):
        lce(h, w, y, chunk_size=2.0)
    with pytest.raises(ValueError, match="grad_out is only used with return_grad"):
        lce(h, w, y, grad_out=1.0)
    with pytest.raises(ValueError, match="grad_out must be a scalar for reduction='mean'"):
        lce(h, w, y, return_grad=True, grad_out=np.ones(5))
    with pytest.raises(TypeError, match="hidden has dtype int64"):
        lce(h.astype(np.int64), w, y)
    with pytest.raises(ValueError, match="weight must be 2-D"):
        lce(h, w[0], y)
    with pytest.raises(ValueError, match="reduction must be"):
        lce(h, w, y, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing must be"):
        lce(h, w, y, label_smoothing=2.0)
    with pytest.raises(ValueError, match="softcap must be"):
        lce(h, w, y, softcap=-1.0)


def test_option_combinations_against_explicit_logits(rng):
    """A sample of every option's values together, both layouts, odd chunk sizes."""
    combos = list(
        itertools.product(
            ("VD", "DV"),
            (None, 1.3),
            ("mean", "sum", "none"),
            (0.0, 0.3),
            (0.0, 0.02),
            (False, True),
        )
    )
    for i in rng.choice(len(combos), 12, replace=False):
        layout, cap, red, eps, z, weighted = combos[i]
        h, w, b, y = _problem(rng, n=23, d=5, v=9, ignore_every=3)
        w_in = w if layout == "VD" else np.ascontiguousarray(w.T)
        cw = rng.random(9) if weighted else None
        kw = {"reduction": red, "label_smoothing": eps, "z_loss": z, "softcap": cap, "weight": cw}
        want = _reference(h, w_in, b, y, layout, **kw)
        kw["class_weight"] = kw.pop("weight")
        got = fs.linear_cross_entropy(
            h, w_in, y, bias=b, weight_layout=layout, return_grad=True,
            chunk_size=int(rng.integers(1, 30)), **kw,
        )  # fmt: skip
        for g, r in zip(got, want):
            _close(g, r, 1e-12, 1e-13)


def test_unaligned_labels_and_big_endian_inputs(rng):
    h, w, b, y = _problem(rng, n=6, d=3, v=5)
    rec = np.zeros(6, [("pad", "u1"), ("y", "<i8")])
    rec["y"] = y  # an unaligned int64 view
    want = _reference(h, w, b, y)
    got = fs.linear_cross_entropy(h.astype(">f8"), w, rec["y"], bias=b, return_grad=True)
    for g, r in zip(got, want):
        _close(g, r, 1e-12, 1e-13)
    t = np.frombuffer(bytearray(6 * 5 * 8 + 1), np.float64, 30, offset=1).reshape(6, 5)
    t[...] = fs.softmax(rng.standard_normal((6, 5)))
    _close(fs.linear_cross_entropy(h, w, t), _reference(h, w, None, t.copy())[0], 1e-12, 0)

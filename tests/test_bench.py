"""The main job (``python -m fastsoftmax``): it runs, and its error columns are meaningful.

No timing is asserted (the machines are shared and noisy); the figures are in bench/RESULTS.md.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastsoftmax import bench


@pytest.fixture(params=["active"], autouse=True)
def simd(request):  # once, on the active target: the kernels themselves are tested elsewhere
    return request.param


def test_run_covers_every_op_with_small_errors():
    rows = bench.run([(8, 10), (3, 2000)], np.dtype(np.float32), rounds=1, min_time=0.0)
    assert [r["op"] for r in rows] == list(bench.OPS) * 2
    for r in rows:
        assert r["fastsoftmax_s"] > 0
        assert r["numpy_s"] > 0
        assert r["err_fastsoftmax"] < 1e-5, r


def test_numpy_cross_entropy_matches_the_reference():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 30)).astype(np.float32)
    y = rng.integers(0, 30, 50)
    g = np.empty_like(x)
    m = np.empty((50, 1), np.float32)
    loss, grad = bench.numpy_cross_entropy(x, y, g, m, np.empty_like(m))
    assert abs(loss - bench.reference_cross_entropy(x, y)) < 1e-6
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(50), y] -= 1
    np.testing.assert_allclose(grad, p / 50, atol=1e-7)


def test_main_prints_a_table(capsys):
    assert bench.main(["--quick", "--shape", "16x10"]) == 0
    out = capsys.readouterr().out
    assert "SIMD target" in out
    assert "cross_entropy" in out

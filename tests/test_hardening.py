"""Threads, references, memory and 64-bit indexing.

- several Python threads calling every function at once on shared read-only inputs get
  exactly the serial results (the GIL is released inside the kernels);
- calls leave the reference counts of their inputs as they were, and many calls leave
  the traced memory flat;
- arrays of more than 2^31 elements, and views whose byte offsets exceed 2^31, are
  indexed with 64-bit arithmetic (read-only kernels over np.zeros, whose untouched
  pages cost no memory).
"""

from __future__ import annotations

import sys
import threading
import tracemalloc

import fastsoftmax as fs
import numpy as np
import pytest


@pytest.fixture(params=["active"], autouse=True)
def simd(request):  # the SIMD targets are covered elsewhere; these run once
    return request.param


def calls(rng):
    """(name, function of no argument) for every public computation, on shared inputs."""
    x = (rng.standard_normal((64, 300)) * 3).astype(np.float32)
    x.flags.writeable = False
    k = (rng.standard_normal((4, 21, 8, 8))).astype(np.float64)
    k.flags.writeable = False
    y = rng.integers(0, 300, 64)
    yk = rng.integers(0, 21, (4, 8, 8))
    t = fs.softmax(rng.standard_normal((64, 300))).astype(np.float32)
    p = fs.softmax(x)
    lp = fs.log_softmax(x)
    return [
        ("softmax", lambda: fs.softmax(x)),
        ("softmax axis 0", lambda: fs.softmax(x, axis=0)),
        ("log_softmax", lambda: fs.log_softmax(x)),
        ("logsumexp", lambda: fs.logsumexp(x, axis=0)),
        ("softmax_backward", lambda: fs.softmax_backward(x, p)),
        ("log_softmax_backward", lambda: fs.log_softmax_backward(x, lp)),
        ("cross_entropy", lambda: fs.cross_entropy(x, y, return_grad=True, label_smoothing=0.1)),
        ("cross_entropy soft", lambda: fs.cross_entropy(x, t, reduction="none", return_grad=True)),
        ("cross_entropy K-d", lambda: fs.cross_entropy(k, yk, axis=1, return_grad=True)),
        ("cross_entropy_backward", lambda: fs.cross_entropy_backward(x, y, z_loss=0.01)),
    ]


def flat(result):
    parts = result if isinstance(result, tuple) else (result,)
    return [np.asarray(r).copy() for r in parts]


def test_threads_get_the_serial_results():
    work = calls(np.random.default_rng(0))
    expected = {name: flat(f()) for name, f in work}
    errors: list[str] = []

    def worker(seed: int) -> None:
        order = np.random.default_rng(seed).permutation(len(work))
        for _ in range(20):
            for i in order:
                name, f = work[i]
                for got, want in zip(flat(f()), expected[name]):
                    if not np.array_equal(got, want, equal_nan=True):
                        errors.append(name)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, sorted(set(errors))


def test_reference_counts_and_memory_stay_flat():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 50)).astype(np.float32)
    y = rng.integers(0, 50, 16)
    w = rng.random(50).astype(np.float32)
    before = [sys.getrefcount(a) for a in (x, y, w)]
    out = np.empty_like(x)
    for _ in range(200):  # warm up caches (numpy's, pybind11's)
        fs.softmax(x, out=out)
        fs.cross_entropy(x, y, weight=w, return_grad=True)
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    for _ in range(20000):
        fs.softmax(x, out=out)
        fs.logsumexp(x)
        fs.cross_entropy(x, y, weight=w, return_grad=True)
    now, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert now - base < 64 * 1024, now - base
    assert [sys.getrefcount(a) for a in (x, y, w)] == before
    r = fs.softmax(x)
    assert sys.getrefcount(r) == 2  # only `r` and getrefcount's argument


def test_more_than_2_to_the_31_elements():
    n = 2**31 + 48
    x = np.zeros(n, np.float32)  # untouched pages: no memory until written
    np.testing.assert_allclose(fs.logsumexp(x), np.log(n), rtol=1e-6)
    # one example of n classes, the label at the far end: loss = log(n)
    np.testing.assert_allclose(fs.cross_entropy(x, np.int64(n - 1)), np.log(n), rtol=1e-6)
    # rows starting beyond 2^31 bytes: the last of 3 rows
    rows = x[: 3 * (n // 3)].reshape(3, -1)
    np.testing.assert_allclose(fs.logsumexp(rows), np.log(n // 3), rtol=1e-6)


def test_views_with_byte_offsets_beyond_2_to_the_31():
    x = np.zeros((4, 2**29 + 16), np.float32)  # 8 GiB of zero pages
    x[3, -5:] = [1.0, 2.0, 3.0, 4.0, 5.0]  # touches one page
    v = x[:, :: -(2**20)]  # negative strides, the first element past 6 GiB
    expected = fs.logsumexp(np.ascontiguousarray(v))
    np.testing.assert_array_equal(fs.logsumexp(v), expected)
    col = x[:, -5:]  # short rows 2 GiB apart
    np.testing.assert_allclose(
        fs.logsumexp(col, axis=0), np.log(3 + np.exp([1.0, 2.0, 3.0, 4.0, 5.0])), rtol=1e-6
    )
    loss = fs.cross_entropy(col, np.array([0, 0, 0, 4]), axis=1, reduction="none")
    np.testing.assert_allclose(loss[:3], np.log(5), rtol=1e-6)

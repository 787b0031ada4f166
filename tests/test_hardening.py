"""Threads, references, memory and 64-bit indexing.

- 8 Python threads calling every function, for several seconds, on shared read-only
  inputs get exactly the serial results (the GIL is released inside the kernels);
  ``FASTSOFTMAX_TEST_THREAD_SECONDS`` (default 3) sets how long, for longer runs;
- 100,000 calls of each function (fast and general paths, ``out=``, errors raised in
  C++ and in Python) leave the process's resident memory flat: a leak of 10 bytes a
  call would show (tracemalloc cannot see C++ allocations, RSS can); and many calls
  leave the traced Python memory flat;
- calls leave the reference counts of their inputs as they were, a returned array is
  referenced by its caller only, ``out=`` and ``inplace_grad=True`` return the very
  array passed, and a raised error holds no reference to the inputs;
- arrays of more than 2^31 elements, and views whose byte offsets exceed 2^31, are
  indexed with 64-bit arithmetic (read-only kernels over np.zeros, whose untouched
  pages cost no memory).
"""

from __future__ import annotations

import gc
import itertools
import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import fastsoftmax as fs
import numpy as np
import pytest
from fastsoftmax import _core
from reference import PUBLIC_OPS

THREAD_SECONDS = float(os.environ.get("FASTSOFTMAX_TEST_THREAD_SECONDS", "3"))
THREADS = 8
LEAK_CALLS = 100_000
RSS_SLACK = 1 << 20  # 1 MiB over 100,000 calls: 10 bytes a call (malloc's least chunk: 32)


@pytest.fixture(params=["active"], autouse=True)
def simd(request):  # the SIMD targets are covered elsewhere; these run once
    return request.param


def shared_inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Read-only inputs for `calls`, shared by every thread."""
    x = (rng.standard_normal((64, 300)) * 3).astype(np.float32)
    inputs = {
        "x": x,
        "x16": x.astype(np.float16),
        "k": rng.standard_normal((4, 21, 8, 8)),
        "y": rng.integers(0, 300, 64),
        "yk": rng.integers(0, 21, (4, 8, 8)),
        "t": fs.softmax(rng.standard_normal((64, 300))).astype(np.float32),
        "w": rng.random(300).astype(np.float32),
        "p": fs.softmax(x),
        "lp": fs.log_softmax(x),
        "lse": fs.logsumexp(x),
        # several tasks each, so the calls share the thread pool (segments for "long")
        "big": (rng.standard_normal((300, 700)) * 3).astype(np.float32),
        "ybig": rng.integers(0, 700, 300),
        "long": rng.standard_normal((2, 100_000)).astype(np.float32),
    }
    for a in inputs.values():
        a.flags.writeable = False
    return inputs


def calls(i: dict[str, np.ndarray]) -> list[tuple[str, Callable[[], Any]]]:
    """(name, function of no argument) for every public function: fast and general paths,
    out=, inplace_grad. The outputs are this call's own: one list per thread."""
    x, y = i["x"], i["y"]
    out = np.empty_like(x)
    out_lse = np.empty(x.shape[1], x.dtype)
    grad = np.empty_like(x)

    parts = np.stack([i["big"][:, :350].max(1), i["big"][:, 350:].max(1)], 1), np.ones((300, 2))
    whole = fs.logsumexp_parts(i["big"], axis=0)
    rows = fs.logsumexp_parts(x)

    def ce_parts(start: int) -> fs.CrossEntropyParts:
        return fs.cross_entropy_parts(
            x[:, start : start + 150], y, class_start=start, num_classes=300, keepdims=True,
            label_smoothing=0.1,
        )  # fmt: skip

    def merged() -> fs.CrossEntropyParts:
        a, b = ce_parts(0), ce_parts(150)
        return fs.merge_cross_entropy_parts(
            fs.CrossEntropyParts(*(np.concatenate(t, axis=1) for t in zip(a, b)))
        )

    def inplace() -> tuple[Any, np.ndarray]:
        np.copyto(grad, x)
        return fs.cross_entropy(grad, y, return_grad=True, inplace_grad=True)

    return [
        ("softmax", lambda: fs.softmax(x)),
        ("softmax axis 0", lambda: fs.softmax(x, axis=0)),
        ("softmax float16", lambda: fs.softmax(i["x16"])),
        ("softmax pooled", lambda: fs.softmax(i["big"])),
        ("logsumexp segments", lambda: fs.logsumexp(i["long"])),
        ("softmax out", lambda: fs.softmax(x, out=out)),
        ("log_softmax", lambda: fs.log_softmax(x)),
        ("log_softmax axes", lambda: fs.log_softmax(i["k"], axis=(1, 3))),
        ("logsumexp axis 0 out", lambda: fs.logsumexp(x, axis=0, out=out_lse)),
        ("logsumexp keepdims", lambda: fs.logsumexp(i["k"], axis=1, keepdims=True)),
        ("softmax_backward", lambda: fs.softmax_backward(x, i["p"])),
        ("softmax_backward axis 0", lambda: fs.softmax_backward(x, i["p"], axis=0)),
        ("log_softmax_backward out", lambda: fs.log_softmax_backward(x, i["lp"], out=out)),
        ("cross_entropy", lambda: fs.cross_entropy(x, y, return_grad=True, label_smoothing=0.1)),
        (
            "cross_entropy weight softcap",
            lambda: fs.cross_entropy(x, y, weight=i["w"], softcap=5.0, return_grad=True),
        ),
        ("cross_entropy soft", lambda: fs.cross_entropy(x, i["t"], reduction="none")),
        ("cross_entropy pooled", lambda: fs.cross_entropy(i["big"], i["ybig"], return_grad=True)),
        ("cross_entropy K-d", lambda: fs.cross_entropy(i["k"], i["yk"], axis=1, return_grad=True)),
        ("cross_entropy inplace_grad", inplace),
        ("cross_entropy_backward", lambda: fs.cross_entropy_backward(x, y, z_loss=0.01)),
        (
            "cross_entropy_backward lse out",
            lambda: fs.cross_entropy_backward(x, y, lse=i["lse"], out=out),
        ),
        ("entropy", lambda: fs.entropy(x, return_grad=True, temperature=0.7)),
        ("entropy axis 0", lambda: fs.entropy(x, axis=0)),
        ("kl_div", lambda: fs.kl_div(x, x[::-1], temperature=2.0, return_grad=True)),
        ("kl_div probs", lambda: fs.kl_div(x, i["t"], target_kind="probs", reduction="none")),
        ("sample", lambda: fs.sample(x, top_k=20, top_p=0.9, seed=3, return_logprobs=True)),
        ("sample top_p", lambda: fs.sample(i["big"], top_p=0.5, min_p=0.01, seed=4)),
        ("logsumexp_parts", lambda: tuple(fs.logsumexp_parts(i["big"], axis=0))),
        ("merge_logsumexp_parts", lambda: tuple(fs.merge_logsumexp_parts(*parts))),
        ("logsumexp_from_parts", lambda: fs.logsumexp_from_parts(*parts, dtype=np.float32)),
        ("softmax_from_parts", lambda: fs.softmax_from_parts(i["big"], *whole, axis=0)),
        ("log_softmax_from_parts out", lambda: fs.log_softmax_from_parts(x, *rows, out=out)),
        ("cross_entropy_parts", lambda: tuple(ce_parts(150))),
        ("merge_cross_entropy_parts", lambda: tuple(merged())),
        (
            "cross_entropy_from_parts",
            lambda: fs.cross_entropy_from_parts(merged(), y, num_classes=300),
        ),
        (  # (products small enough for one BLAS thread: the same sums every call)
            "linear_cross_entropy",
            lambda: fs.linear_cross_entropy(
                x[:, :16], i["big"][:, :16], y, bias=i["w"], return_grad=True, chunk_size=24
            ),
        ),
        (
            "linear_cross_entropy DV none",
            lambda: fs.linear_cross_entropy(
                x[:, :16],
                i["big"][:16],
                y,
                weight_layout="DV",
                reduction="none",
                label_smoothing=0.1,
                return_grad=True,
                grad_out=i["lse"],
            ),
        ),
    ]


def flat(result: Any) -> list[np.ndarray]:
    parts = result if isinstance(result, tuple) else (result,)
    return [np.asarray(r).copy() for r in parts]


def test_threads_calling_every_function_for_seconds_get_the_serial_results():
    inputs = shared_inputs(np.random.default_rng(0))
    expected = {name: flat(f()) for name, f in calls(inputs)}
    assert {name.split()[0] for name in expected} == set(fs.__all__) - {
        "CrossEntropyParts",  # (named tuples)
        "LogsumexpParts",
        "__version__",
        "get_num_threads",
        "set_num_threads",
        "show_config",
        "simd_target",
        "simd_targets",
        "use_threads",
    }
    errors: list[str] = []
    rounds = [0] * THREADS
    start = threading.Barrier(THREADS + 1)
    deadline = [0.0]

    def worker(t: int) -> None:
        work = calls(inputs)  # this thread's own outputs
        order = np.random.default_rng(t).permutation(len(work))
        start.wait()
        try:
            while time.monotonic() < deadline[0]:
                for j in order:
                    name, f = work[j]
                    for got, want in zip(flat(f()), expected[name]):
                        if not np.array_equal(got, want, equal_nan=True):
                            errors.append(name)
                rounds[t] += 1
        except Exception as e:  # noqa: BLE001  (reported, not lost in the thread)
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    deadline[0] = time.monotonic() + THREAD_SECONDS
    start.wait()
    for th in threads:
        th.join()
    assert not errors, sorted(set(errors))
    assert min(rounds) >= 1, rounds  # every thread went through every call


def rss() -> int:
    """The resident set size of this process, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def leak_calls(name: str) -> list[Callable[[], Any]]:
    """Small calls of one public function: fast and general paths, out=, errors."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 8)).astype(np.float32)
    x16 = x.astype(np.float16)
    mis = np.frombuffer(np.zeros(4 * 8 * 4 + 1, np.uint8).data, np.float32, 32, 1)  # misaligned
    mis = mis.reshape(4, 8)
    mis[...] = x
    out = np.empty_like(x)
    y = rng.integers(0, 8, 4)
    bad = np.array([0, 1, 8, 2])  # a label out of range: raised in C++
    w = rng.random(8).astype(np.float32)
    t = fs.softmax(rng.standard_normal((4, 8))).astype(np.float32)
    lse = fs.logsumexp(x)

    def raises(f: Callable[[], Any], error: type[BaseException]) -> Callable[[], None]:
        def call() -> None:
            try:
                f()
            except error:
                return
            raise AssertionError("no error")

        return call

    if name in ("softmax", "log_softmax"):
        op = getattr(fs, name)
        return [
            lambda: op(x),
            lambda: op(x, out=out),
            lambda: op(mis),  # the binding raises Fallback, the general path runs
            lambda: op(x16, axis=(0, 1)),
            raises(lambda: op(x, out=x[:, ::-1]), ValueError),  # overlap: Fallback, then error
            raises(lambda: op(x, axis=2), ValueError),
        ]
    if name == "logsumexp":
        return [
            lambda: fs.logsumexp(x),
            lambda: fs.logsumexp(x, axis=0, out=out[0]),
            lambda: fs.logsumexp(mis, keepdims=True),
            lambda: fs.logsumexp(x16, axis=None),
            raises(lambda: fs.logsumexp(x, out=x[:, 0]), ValueError),
        ]
    if name in ("softmax_backward", "log_softmax_backward"):
        op = getattr(fs, name)
        return [
            lambda: op(x, x),
            lambda: op(x, x, axis=0, out=out),
            lambda: op(x16, mis, axis=(0, 1)),
            raises(lambda: op(x, x[:3]), ValueError),
        ]
    if name == "cross_entropy":
        grad = np.empty_like(x)

        def inplace() -> None:
            np.copyto(grad, x)
            fs.cross_entropy(grad, y, return_grad=True, inplace_grad=True)

        return [
            lambda: fs.cross_entropy(x, y),
            lambda: fs.cross_entropy(x, y, weight=w, return_grad=True, label_smoothing=0.1),
            lambda: fs.cross_entropy(x, t, reduction="none", return_grad=True, grad_out=t[:, 0]),
            lambda: fs.cross_entropy(x16, y, softcap=3.0, z_loss=0.1),
            inplace,
            raises(lambda: fs.cross_entropy(x, bad), ValueError),
            raises(lambda: fs.cross_entropy(x, bad, return_grad=True), ValueError),
        ]
    assert name == "cross_entropy_backward"
    return [
        lambda: fs.cross_entropy_backward(x, y),
        lambda: fs.cross_entropy_backward(x, y, lse=lse, out=out),
        lambda: fs.cross_entropy_backward(mis, t, reduction="sum"),
        raises(lambda: fs.cross_entropy_backward(x, bad, out=out), ValueError),
    ]


def _under_address_sanitizer() -> bool:
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS read from /proc")
@pytest.mark.skipif(
    _under_address_sanitizer(),
    reason="AddressSanitizer holds freed memory in quarantine: the RSS grows without a leak",
)
@pytest.mark.parametrize("name", PUBLIC_OPS)
def test_100000_calls_leave_the_resident_memory_flat(name):
    work = leak_calls(name)
    for f in itertools.islice(itertools.cycle(work), 5000):  # warm up numpy's caches, ...
        f()
    # CPython < 3.12 drops an interned string that nothing holds, and compacts its table of
    # them now and then (a new ~1 MiB block): NumPy's __array_interface__, which the
    # overlap checks read, interns its dict's keys on every call. Holding one such dict
    # keeps them alive, so the RSS measures fastsoftmax's memory only.
    keys = np.empty(1).__array_interface__
    # Two halves: a leak grows the RSS in both; a one-off allocation by someone else (an
    # arena of the interpreter or the allocator, as seen once in a full run) in one only.
    growth = []
    for _ in range(2):
        gc.collect()
        before = rss()
        for f in itertools.islice(itertools.cycle(work), LEAK_CALLS // 2):
            f()
        gc.collect()
        growth.append(rss() - before)
    del keys
    assert min(growth) < RSS_SLACK / 2, (
        f"{name}: the RSS grew by {growth[0] / 2**20:.2f} and {growth[1] / 2**20:.2f} MiB over "
        f"two runs of {LEAK_CALLS // 2} calls (at least {min(growth) / (LEAK_CALLS // 2):.1f} "
        "bytes a call)"
    )


def test_traced_python_memory_stays_flat():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 50)).astype(np.float32)
    y = rng.integers(0, 50, 16)
    w = rng.random(50).astype(np.float32)
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


def refcount_cases() -> list[tuple[str, Callable[..., Any], tuple[Any, ...], dict[str, Any], str]]:
    """(id, function, args, kwargs, what it returns): "new" array or scalar, "out" (the
    kwargs' out), "pair" (loss, new grad), "inplace" (loss, the logits), "raises"."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 10)).astype(np.float32)
    y = rng.integers(0, 10, 6)
    w = rng.random(10).astype(np.float32)
    p = fs.softmax(x)
    new = "new"
    cases: list[tuple[str, Callable[..., Any], tuple[Any, ...], dict[str, Any], str]] = []
    for op in (fs.softmax, fs.log_softmax):
        n = op.__name__
        cases += [
            (n, op, (x,), {}, new),
            (f"{n} general path", op, (x.astype(np.float16),), {"axis": (0, 1)}, new),
            (f"{n} int", op, (y,), {}, new),
            (f"{n} out", op, (x,), {"out": np.empty_like(x)}, "out"),
            (f"{n} out general path", op, (x,), {"axis": None, "out": np.empty_like(x)}, "out"),
            (f"{n} in place", op, (x.copy(),), {}, "in place"),
            (f"{n} bad out", op, (x,), {"out": x[:, ::-1]}, "raises"),
        ]
    cases += [
        ("logsumexp", fs.logsumexp, (x,), {}, new),
        ("logsumexp keepdims", fs.logsumexp, (x,), {"axis": 0, "keepdims": True}, new),
        ("logsumexp all axes", fs.logsumexp, (x,), {"axis": None}, new),
        ("logsumexp out", fs.logsumexp, (x,), {"out": np.empty(6, np.float32)}, "out"),
        ("logsumexp bad axis", fs.logsumexp, (x,), {"axis": 5}, "raises"),
    ]
    for op in (fs.softmax_backward, fs.log_softmax_backward):
        n = op.__name__
        cases += [
            (n, op, (x, p), {}, new),
            (f"{n} mixed dtypes", op, (x, p.astype(np.float64)), {"axis": 0}, new),
            (f"{n} out", op, (x, p), {"out": np.empty_like(x)}, "out"),
            (f"{n} bad shape", op, (x, p[:3]), {}, "raises"),
        ]
    ce = fs.cross_entropy
    cases += [
        ("cross_entropy", ce, (x, y), {"weight": w}, new),
        ("cross_entropy none", ce, (x, y), {"reduction": "none"}, new),
        ("cross_entropy return_grad", ce, (x, y), {"weight": w, "return_grad": True}, "pair"),
        ("cross_entropy soft grad", ce, (x, p), {"return_grad": True}, "pair"),
        ("cross_entropy inplace_grad", ce, (x.copy(), y), {"return_grad": True}, "inplace"),
        ("cross_entropy bad label", ce, (x, y + 10), {"weight": w}, "raises"),
        ("cross_entropy_backward", fs.cross_entropy_backward, (x, y), {"weight": w}, new),
        (
            "cross_entropy_backward out",
            fs.cross_entropy_backward,
            (x, y),
            {"lse": fs.logsumexp(x), "out": np.empty_like(x)},
            "out",
        ),
    ]
    return cases


def call_and_check(ident, func, args, kwargs, returns, alone: int) -> None:
    """One call, and the references to what it returns (its locals go on return)."""
    inputs = [a for a in (*args, *kwargs.values()) if isinstance(a, np.ndarray)]
    if returns == "raises":
        try:
            func(*args, **kwargs)
        except ValueError:
            return
        raise AssertionError(f"{ident}: no error")
    if returns == "in place":
        assert func(*args, out=args[0], **kwargs) is args[0], ident
    elif returns == "out":
        assert func(*args, **kwargs) is kwargs["out"], ident
    elif returns == "inplace":
        r = func(*args, inplace_grad=True, **kwargs)
        assert sys.getrefcount(r) == alone, ident  # the tuple: `r` only
        assert r[1] is args[0], ident
    elif returns == "pair":
        r = func(*args, **kwargs)
        assert type(r) is tuple, ident
        assert len(r) == 2, ident
        assert sys.getrefcount(r) == alone, ident
        loss, grad = r
        del r  # the tuple goes: loss and grad are held by one name each
        assert sys.getrefcount(loss) == alone, ident
        assert sys.getrefcount(grad) == alone, ident
        assert not any(np.may_share_memory(grad, a) for a in inputs), ident
    else:
        r = func(*args, **kwargs)
        assert sys.getrefcount(r) == alone, ident
        if isinstance(r, np.ndarray):
            assert not any(np.may_share_memory(r, a) for a in inputs), ident


def test_reference_counts_of_inputs_and_outputs_are_what_they_should_be():
    fresh = np.empty(3)
    alone = sys.getrefcount(fresh)  # an object held by one name only (2 before Python 3.14)
    for ident, func, args, kwargs, returns in refcount_cases():
        inputs = [a for a in (*args, *kwargs.values()) if isinstance(a, np.ndarray)]
        before = [sys.getrefcount(a) for a in inputs]
        for _ in range(3):
            call_and_check(ident, func, args, kwargs, returns, alone)
        after = [sys.getrefcount(a) for a in inputs]
        assert after == before, f"{ident}: reference counts {before} became {after}"


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


def test_the_extensions_own_shape_checks_raise_value_error_naming_both_shapes():
    """Behind the Python layer's checks, _core checks shapes itself; its messages build the
    expected shape with py::cast (pybind11/stl.h), not a TypeError 'Unregistered type'."""
    x = np.zeros((4, 5), dtype=np.float32)
    with pytest.raises(ValueError, match=r"out has shape \(3,\), expected \(4,\)"):
        _core.logsumexp(x, 1, np.zeros(3, dtype=np.float32))
    labels = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match=r"labels has shape \(3,\), expected \(4,\)"):
        _core.cross_entropy(
            x, 1, labels, None, None, None, None, None, None, "mean", None, 0.0, 0.0, 0.0, -100
        )

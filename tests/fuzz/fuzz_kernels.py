"""Fuzz target for every public function: random shapes, strides, values and options.

Each input (a byte string) becomes one call: an operation, a shape of 1 to 3 dimensions
(empty ones included; one in eight 64 times longer on its first axis, so that it is split
into tasks), an axis, a dtype, a layout (C order, Fortran order, reversed, strided), a
number of threads (1 to 3), values mixing random normals at a random scale with special values (+-inf,
NaN, +-3e38, subnormals, zeros) and, for the cross-entropy, labels and options. The
call must either raise ValueError/TypeError (invalid arguments) or return what the
plain NumPy references give, and must never change its inputs or crash the process.

    pip install atheris
    python tests/fuzz/fuzz_kernels.py tests/fuzz/corpus -max_total_time=600 -max_len=256

tests/test_fuzz_corpus.py replays the corpus without atheris (in the test suite and CI).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the references
from reference import PUBLIC_OPS as OPS  # (after the path above)

SPECIALS = np.array(
    [np.inf, -np.inf, np.nan, 3e38, -3e38, 1e-40, -1e-40, 0.0, -0.0, 1e30, -1e30, 88.0, -104.0]
)


class Bytes:
    """Reads small integers from the fuzzer's bytes (zeros once they run out)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def int(self, lo: int, hi: int) -> int:
        b = self.data[self.pos : self.pos + 2]
        self.pos += 2
        v = int.from_bytes(b.ljust(2, b"\0"), "little")
        return lo + v % (hi - lo + 1)

    def choice(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def bool(self) -> bool:
        return self.int(0, 1) == 1

    def tail_int(self, lo: int, hi: int) -> int:
        """Like int(), from the end of the data backwards: decisions added after the corpus
        was made read these, so the corpus's inputs keep their meaning."""
        self.tail = getattr(self, "tail", len(self.data))
        b = self.data[max(self.tail - 2, 0) : self.tail]
        self.tail -= 2
        v = int.from_bytes(b.ljust(2, b"\0"), "little")
        return lo + v % (hi - lo + 1)


def values(b: Bytes, shape: tuple[int, ...], rng: np.random.Generator, finite: bool) -> np.ndarray:
    x = rng.standard_normal(shape) * b.choice([1e-3, 1.0, 10.0, 300.0, 1e30])
    if x.size:
        for _ in range(b.int(0, 6)):
            v = b.choice(SPECIALS[3:] if finite else SPECIALS)
            x.flat[b.int(0, x.size - 1)] = v
    return x


def layout(b: Bytes, x: np.ndarray) -> np.ndarray:
    kind = b.int(0, 3)
    if kind == 1:
        return np.asfortranarray(x)
    if kind == 2:
        return x[(slice(None, None, -1),) * x.ndim]
    if kind == 3 and x.ndim:
        ax = b.int(0, x.ndim - 1)
        return np.repeat(x, 2, axis=ax)[(slice(None),) * ax + (slice(None, None, 2),)]
    return x


def check(data: bytes) -> None:
    """One fuzz input: build the call, run it, compare with the reference."""
    with np.errstate(all="ignore"):
        run(Bytes(data))


def run(b: Bytes) -> None:
    import fastsoftmax as fs
    from reference import scipy_op
    from test_cross_entropy import ref_cross_entropy

    op = b.choice(OPS)
    rng = np.random.default_rng(b.int(0, 65535))
    ndim = b.int(1, 3)
    shape = tuple(b.int(0, 7) if b.int(0, 7) == 7 else b.int(1, 40) for _ in range(ndim))
    axis = b.int(-ndim, ndim - 1)
    dtype = b.choice([np.float32, np.float64, np.float16])
    if b.tail_int(0, 7) == 7 and 0 < 64 * int(np.prod(shape)) <= 400_000:
        shape = (64 * shape[0], *shape[1:])  # several tasks for the threads
    threads = b.tail_int(1, 3)
    ce = op.startswith("cross_entropy")
    x = layout(b, values(b, shape, rng, finite=ce and b.bool()).astype(dtype))
    inputs = [x]
    kw: dict = {}
    if op in ("softmax_backward", "log_softmax_backward"):
        g = layout(b, values(b, shape, rng, finite=True).astype(dtype))
        y = fs.softmax(x, axis=axis) if op == "softmax_backward" else fs.log_softmax(x, axis=axis)
        inputs = [g, y]
    if ce:
        n = shape[axis]
        ex = shape[: axis % ndim] + shape[axis % ndim + 1 :]
        if b.bool():
            t = rng.random(shape) ** 3
            labels = (t / np.maximum(t.sum(axis=axis, keepdims=True), 1e-30)).astype(dtype)
        else:
            labels = rng.integers(-1, max(n, 1) + 1, ex)  # some out of range: ValueError
            if b.bool() and labels.size:
                labels = np.clip(labels, 0, max(n - 1, 0))
        kw = {"axis": axis, "reduction": b.choice(["none", "sum", "mean"])}
        if b.bool():
            kw["weight"] = rng.random(n) * b.choice([0.0, 1.0, 5.0])
        for name, opts in (
            ("label_smoothing", [0.0, 0.1, 1.0]),
            ("z_loss", [0.0, 1e-4]),
            ("softcap", [None, 2.0, 30.0]),
            ("ignore_index", [-100, 0, 1]),
        ):
            if b.bool():
                kw[name] = b.choice(opts)
        inputs = [x, labels]
        if (
            op == "cross_entropy" and b.int(0, 3) == 3
        ):  # (read last: older inputs keep their meaning)
            kw["return_grad"] = True
    copies = [a.copy() for a in inputs]
    f = getattr(fs, op)
    try:
        with fs.use_threads(threads):
            got = f(*inputs, **kw) if ce else f(*inputs, axis=axis)
    except (ValueError, TypeError):
        return  # invalid arguments (an empty class axis, a label out of range, ...)
    for a, c in zip(inputs, copies):
        assert np.array_equal(a, c, equal_nan=True), "an input was modified"
    grad = None
    if isinstance(got, tuple):
        got, grad = got
        assert grad.shape == x.shape, "gradient of the wrong shape"
    # the documented accuracy: softmax relative (outputs above the dtype's tiny values),
    # log_softmax / logsumexp / losses |err| <= tol * max(1, |value|)
    tol = {np.float16: 2e-3, np.float32: 2e-5, np.float64: 1e-12}[dtype]
    tiny = {np.float16: 6e-8, np.float32: 1e-30, np.float64: 1e-300}[dtype]
    got = np.asarray(got, np.float64)
    if x.size == 0:
        return  # (SciPy and the references refuse empty axes; ours returned)
    if not ce:
        if op.endswith("backward"):
            return check_backward(op, got, *inputs, axis, tol, tiny)
        ref = scipy_op(op, x.astype(np.float64), axis=axis).astype(dtype).astype(np.float64)
        atol = tiny if op == "softmax" else tol
        np.testing.assert_allclose(got, ref, rtol=tol, atol=atol, equal_nan=True, err_msg=op)
        return
    wide = x.astype(np.float32 if dtype == np.float16 else dtype)
    ref_kw = {k: v for k, v in kw.items() if k != "return_grad"}
    ref, ref_grad = ref_cross_entropy(wide, labels, **ref_kw)
    if op == "cross_entropy_backward":
        grad = got  # (the call returns the gradient only)
    else:
        ref = np.asarray(ref, np.float64).astype(dtype).astype(np.float64)  # in range of dtype
        fine = np.isfinite(ref)
        np.testing.assert_allclose(got[fine], ref[fine], rtol=10 * tol, atol=tol, err_msg=str(kw))
        assert not np.isfinite(got[~fine]).any(), "finite where the reference is not"
    if grad is not None and np.isfinite(x).all() and np.isfinite(ref_grad).all():
        # relative to the size of the terms the gradient is a difference of (softmax
        # times the weights and scales, the target, the z-loss term)
        w = np.asarray(kw.get("weight", np.ones(x.shape[axis])))
        if kw["reduction"] != "mean":
            s_ce = 1.0
        elif labels.dtype.kind in "iu":
            kept = labels != kw.get("ignore_index", -100)
            s_ce = 1.0 / max(float(w[labels[kept]].sum()), 1e-300)
        else:
            s_ce = 1.0 / max(labels.size // max(x.shape[axis], 1), 1)
        cap = kw.get("softcap")
        lse_bound = (cap if cap else float(np.abs(wide).max())) + np.log(x.shape[axis])
        terms = s_ce * max(float(w.max()), 1.0) * (1 + 2 * kw.get("z_loss", 0.0) * lse_bound)
        scale = max(float(np.abs(ref_grad).max()), terms)
        np.testing.assert_allclose(
            np.asarray(grad, np.float64), ref_grad, rtol=0, atol=10 * tol * scale, err_msg=str(kw)
        )


def check_backward(
    op: str, got, g: np.ndarray, y: np.ndarray, axis: int, tol: float, tiny: float
) -> None:
    """softmax_backward / log_softmax_backward against the references, each element within
    tol times the size of the terms it is computed from (plus the dtype's tiny values).

    Where the reference is not finite (infinite inputs, or float16 values that overflow),
    or the sum over the axis or g minus it overflows the working precision (float32 for
    float16; e.g. 0 * (3e38 + 3e38) is NaN in float32, 0 in float64), the
    answer is IEEE arithmetic in that precision, which a float64 reference does not
    reproduce: not compared. Results beyond the dtype's range are not compared either."""
    from reference import ref_log_softmax_backward, ref_softmax_backward

    gw, yw = g.astype(np.float64), y.astype(np.float64)
    if op == "softmax_backward":  # y * (g - sum(g * y))
        ref = ref_softmax_backward(g, y, axis=axis)
        total = np.sum(np.abs(gw * yw), axis=axis, keepdims=True)
        size = np.abs(yw) * (np.abs(gw) + total)
    else:  # g - exp(y) * sum(g)
        ref = ref_log_softmax_backward(g, y, axis=axis)
        total = np.sum(np.abs(gw), axis=axis, keepdims=True)
        size = np.abs(gw) + np.exp(yw) * total
    ref = np.asarray(ref, np.float64)
    working = np.float64 if g.dtype == np.float64 else np.float32
    if op == "log_softmax_backward":  # exp(y) below the normal range: absolute error
        tiny = tiny + 2 * float(np.finfo(working).smallest_subnormal) * total
    # the sum, or the result, out of the range of the working precision / the dtype
    in_range = (np.abs(gw) + total <= np.finfo(working).max) & (
        np.abs(ref) <= np.finfo(g.dtype).max
    )
    fine = np.isfinite(ref) & np.isfinite(size) & in_range
    err = np.abs(got - ref)
    bad = fine & ~(err <= 10 * tol * size + tiny)
    assert not bad.any(), f"{op}: {err[bad].max()} off at sizes {size[bad].max()}"


def main() -> None:
    import atheris

    with atheris.instrument_imports():
        import fastsoftmax  # noqa: F401
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

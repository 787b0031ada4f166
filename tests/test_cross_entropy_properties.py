"""Property-based tests of fastsoftmax.cross_entropy and cross_entropy_backward (hypothesis)

Random shapes (1 to 4 dimensions), class axes, dtypes, options and values, including
-inf (masked classes), large magnitudes and ignored labels, with logits, labels and
weights in views of random layouts (transposed, strided, negative steps, misaligned:
the Layout of reference.py, whose surrounding memory holds NaN or an extreme value);
the loss and gradient must match the reference of test_cross_entropy.py on every SIMD
target, the inputs (and the memory around them) must be left unchanged except the
logits' view with inplace_grad=True, which holds the gradient, and every target must
give the same answer. Each example runs on every target inside the test (on_target),
so the conftest's per-target parametrization is switched off here; the number of
examples is the hypothesis profile's (tests/conftest.py).
"""

from __future__ import annotations

import fastsoftmax as fs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import Layout, poison
from test_cross_entropy import TOL, ref_cross_entropy
from test_properties import TARGETS, layouts, on_target


@pytest.fixture(params=["every target"], autouse=True)
def simd(request):
    """Each example runs on every target inside the test (on_target), not once per test."""
    return request.param


@st.composite
def problems(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    axis = draw(st.integers(0, ndim - 1))
    n = draw(st.sampled_from([1, 2, 3, 10, 17, 70, 300]))
    shape = (*shape[:axis], n, *shape[axis + 1 :])
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1e-3, 1.0, 10.0, 1e3]))
    x = rng.standard_normal(shape) * scale
    if draw(st.booleans()):  # masked classes (never a whole slice)
        mask = rng.random(shape) < 0.2
        idx = [slice(None)] * ndim
        idx[axis] = 0
        mask[tuple(idx)] = False
        x[mask] = -np.inf
    x = x.astype(dtype)
    soft = draw(st.booleans())
    ex_shape = shape[:axis] + shape[axis + 1 :]
    kw: dict = {"axis": axis, "reduction": draw(st.sampled_from(["none", "sum", "mean"]))}
    if soft:
        t = rng.random(shape) ** 3
        labels = (t / t.sum(axis=axis, keepdims=True)).astype(dtype)
    else:
        idx = [slice(None)] * ndim
        idx[axis] = 0
        labels = np.zeros(ex_shape, np.int64)  # class 0: never a masked one
        if draw(st.booleans()):
            labels = rng.integers(0, n, ex_shape)
            finite = np.isfinite(np.take_along_axis(x, np.expand_dims(labels, axis), axis))
            labels = np.where(np.squeeze(finite, axis), labels, 0)
        if draw(st.booleans()) and labels.size:
            labels.flat[rng.integers(labels.size)] = kw.setdefault("ignore_index", -100)
    if draw(st.booleans()):
        kw["weight"] = (rng.random(n) + 0.1).astype(dtype)
    if draw(st.booleans()):
        kw["label_smoothing"] = draw(st.sampled_from([0.0, 0.1, 1.0]))
    if draw(st.booleans()):
        kw["z_loss"] = 1e-3
    if draw(st.booleans()):
        kw["softcap"] = draw(st.sampled_from([1.0, 30.0]))
    if kw.get("label_smoothing", 0) > 0 or soft:
        # smoothing or probabilities over masked classes: +inf or NaN, as in PyTorch
        x = np.where(np.isfinite(x), x, 0).astype(x.dtype)
    places = {"x": draw(layouts(x.shape)), "labels": draw(layouts(labels.shape))}
    if "weight" in kw:
        places["weight"] = draw(layouts(kw["weight"].shape))
    return Problem(x, labels, kw, places)


class Problem:
    """Logits, labels and options, and the Layout each array is placed in."""

    def __init__(self, x: np.ndarray, labels: np.ndarray, kw: dict, places: dict[str, Layout]):
        self.x, self.labels, self.kw, self.places = x, labels, kw, places

    def __repr__(self) -> str:
        return f"Problem(\n{self.x!r},\n{self.labels!r},\n{self.kw!r},\n{self.places!r})"

    def place(self) -> tuple[dict, dict]:
        """Fresh views holding the arrays: ({name: view}, {name: base})."""
        views, bases = {}, {}
        arrays = {"x": self.x, "labels": self.labels, "weight": self.kw.get("weight")}
        for name, layout in self.places.items():
            values = arrays[name]
            views[name], bases[name] = layout.place(values, poison(values.dtype))
        return views, bases

    def options(self, views: dict) -> dict:
        """The keyword arguments, with the weight's view where there is one."""
        kw = dict(self.kw)
        if "weight" in views:
            kw["weight"] = views["weight"]
        return kw

    def call(self, **options):
        views, _ = self.place()
        return views, fs.cross_entropy(
            views["x"], views["labels"], **self.options(views), **options
        )


def grad_scale(problem: Problem, ref_grad: np.ndarray) -> float:
    """The size of the terms whose difference the gradient is.

    Its error is relative to them, and a nearly exact prediction can make them far
    larger than the result.
    """
    x, labels, kw = problem.x, problem.labels, problem.kw
    if kw["reduction"] == "mean":
        w = kw.get("weight", np.ones(x.shape[kw["axis"]]))
        if labels.dtype.kind == "i":
            kept = labels != kw.get("ignore_index", -100)
            denom = float(np.sum(w[labels[kept]])) if kept.any() else 1.0
        else:
            denom = max(labels.size // x.shape[kw["axis"]], 1)
        s_ce = 1.0 / (denom or 1.0)
    else:
        s_ce = 1.0
    finite = x[np.isfinite(x)]
    lse_bound = (float(np.max(np.abs(finite), initial=0)) + np.log(x.shape[kw["axis"]])) * (
        1 if "softcap" not in kw else 0
    ) + kw.get("softcap", 0)
    terms = s_ce * float(np.max(kw.get("weight", 1.0))) * (1 + 2 * kw.get("z_loss", 0) * lse_bound)
    return max(float(np.max(np.abs(ref_grad), initial=0)), terms)


def assert_loss_close(got, ref, dtype, rtol_factor: float = 4) -> None:
    np.testing.assert_allclose(
        np.asarray(got, np.float64),
        np.asarray(ref, np.float64),
        rtol=rtol_factor * TOL[dtype],
        atol=float(np.finfo(dtype).tiny),  # losses below the dtype's range round to 0
    )  # (a label on a masked class: +inf in both)


@given(problems(), st.booleans())
def test_cross_entropy_matches_the_reference_on_every_target(problem, inplace):
    """Loss and gradient (also written into the logits: inplace_grad=True)."""
    dtype = problem.x.dtype.type
    ref_loss, ref_grad = ref_cross_entropy(problem.x, problem.labels, **problem.kw)
    scale = grad_scale(problem, ref_grad)
    for target in TARGETS:
        with on_target(target):
            views, (loss, grad) = problem.call(return_grad=True, inplace_grad=inplace)
        assert grad.shape == problem.x.shape
        assert grad.dtype == dtype
        if inplace:
            assert grad is views["x"]
        assert_loss_close(loss, ref_loss, dtype)
        np.testing.assert_allclose(
            grad, ref_grad, rtol=0, atol=4 * TOL[dtype] * scale, err_msg=f"on {target}"
        )


def unchanged(base: np.ndarray, before: np.ndarray, where: np.ndarray | None = None) -> bool:
    """Bit for bit (NaN payloads and the sign of zero too), optionally only `where`."""
    if where is not None:
        base, before = base[where], before[where]
    return base.tobytes() == before.tobytes()


@given(problems(), st.sampled_from(["loss", "loss and grad", "inplace_grad"]))
def test_inputs_are_unchanged_unless_inplace_grad(problem, mode):
    """Logits, labels and weights, and the memory around them, are bit for bit the same
    after the call; with inplace_grad=True the logits' view holds the gradient and only
    it was written."""
    options = {
        "loss": {},
        "loss and grad": {"return_grad": True},
        "inplace_grad": {"return_grad": True, "inplace_grad": True},
    }[mode]
    for target in TARGETS:
        views, bases = problem.place()
        before = {name: base.copy() for name, base in bases.items()}
        kw = problem.options(views)
        with on_target(target):
            result = fs.cross_entropy(views["x"], views["labels"], **kw, **options)
        for name, base in bases.items():
            if name == "x" and mode == "inplace_grad":
                assert result[1] is views["x"]
                assert unchanged(base, before[name], problem.places["x"].outside()), (
                    f"written outside the logits' view on {target}"
                )
            else:
                assert unchanged(base, before[name]), f"{name} was modified on {target}"


@pytest.mark.skipif(len(TARGETS) < 2, reason="this CPU runs one SIMD target only")
@given(problems())
def test_every_target_gives_the_same_answer(problem):
    """Loss and gradient within twice the reference test's tolerance of each other
    (each target is within it of the same exact value)."""
    dtype = problem.x.dtype.type
    results = {}
    for target in TARGETS:
        with on_target(target):
            results[target] = problem.call(return_grad=True)[1]
    _, ref_grad = ref_cross_entropy(problem.x, problem.labels, **problem.kw)
    scale = grad_scale(problem, ref_grad)
    first, *others = TARGETS
    loss, grad = results[first]
    for target in others:
        other_loss, other_grad = results[target]
        assert_loss_close(other_loss, loss, dtype, rtol_factor=8)
        np.testing.assert_allclose(
            other_grad, grad, rtol=0, atol=8 * TOL[dtype] * scale, err_msg=f"{target} vs {first}"
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_cross_entropy_is_shift_invariant(dtype, data):
    """Adding a constant to an example's logits changes neither its loss nor its gradient."""
    n = data.draw(st.integers(1, 200))
    rows = data.draw(st.integers(1, 5))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((rows, n)).astype(dtype)
    y = rng.integers(0, n, rows)
    shift = dtype(data.draw(st.sampled_from([-64.0, -1.0, 0.5, 32.0])))  # exact in x + shift
    for target in TARGETS:
        with on_target(target):
            loss, grad = fs.cross_entropy(x, y, reduction="none", return_grad=True)
            loss2, grad2 = fs.cross_entropy(x + shift, y, reduction="none", return_grad=True)
        rtol = 1e-4 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(loss2, loss, rtol=rtol, atol=1e-6, err_msg=f"on {target}")
        atol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(grad2, grad, atol=atol, err_msg=f"on {target}")


@given(problems(), st.sampled_from(["recomputed", "saved lse"]), st.booleans())
def test_cross_entropy_backward_matches_the_reference_on_every_target(problem, lse_mode, into):
    """cross_entropy_backward: the gradient, with the log-sum-exp recomputed or saved from
    the forward (of the soft-capped logits with softcap), into a new array or out=; the
    inputs and the memory around them are unchanged."""
    dtype = problem.x.dtype.type
    _, ref_grad = ref_cross_entropy(problem.x, problem.labels, **problem.kw)
    scale = grad_scale(problem, ref_grad)
    axis, cap = problem.kw["axis"], problem.kw.get("softcap")
    capped = problem.x if cap is None else (cap * np.tanh(problem.x / cap)).astype(dtype)
    for target in TARGETS:
        views, bases = problem.place()
        before = {name: base.copy() for name, base in bases.items()}
        kw = problem.options(views)
        atol = 4 * TOL[dtype] * scale
        if lse_mode == "saved lse":
            kw["lse"] = fs.logsumexp(capped, axis=axis)
            # the saved lse is rounded to the dtype: exp(x - lse) carries that error,
            # |lse| * eps relative (the recomputed one keeps the row's exact maximum)
            lse_max = float(np.max(np.abs(kw["lse"][np.isfinite(kw["lse"])]), initial=0))
            atol += 2 * float(np.finfo(dtype).eps) * lse_max * scale
        out = np.full(problem.x.shape, np.nan, dtype) if into else None
        with on_target(target):
            grad = fs.cross_entropy_backward(views["x"], views["labels"], **kw, out=out)
        if into:
            assert grad is out
        assert grad.shape == problem.x.shape
        assert grad.dtype == dtype
        np.testing.assert_allclose(
            grad, ref_grad, rtol=0, atol=atol, err_msg=f"{lse_mode} on {target}"
        )
        for name, base in bases.items():
            assert unchanged(base, before[name]), f"{name} was modified on {target}"

"""Cross-checks of the fused cross-entropy against PyTorch's ``F.cross_entropy`` and autograd.

The reference is always computed in float64 from the same float32/float64
logits: ``torch.nn.functional.cross_entropy`` forward and ``.backward()``
(with ``grad_out`` as the backward's gradient), and for the two options torch
does not have, a composition of torch ops: ``softcap`` is
``cap * tanh(x / cap)`` before the loss (autograd goes through it), ``z_loss``
adds ``z * logsumexp(x')**2`` per non-ignored example, divided by the number
of non-ignored examples for ``reduction="mean"``.

Skipped when torch is not installed (``pip install ".[peers]"``); run with
``pytest -m peers``.
"""

from __future__ import annotations

from typing import Any

import fastsoftmax as fs
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.peers

# (rtol, atol relative to the largest finite |expected| value)
TOL = {np.float32: (2e-5, 1e-6), np.float64: (1e-10, 1e-10)}
DTYPES = [np.float32, np.float64]
REDUCTIONS = ["none", "sum", "mean"]
LABEL_DTYPES = [np.int64, np.int32, np.int16]
# 1-D logits (C,) with 0-d labels, tiny class counts, (N, C) rows short and
# long (past 4096 float32 elements: the blocked path), and (N, C, d1[, d2])
# with the classes on axis 1, as torch has them
SHAPES = [
    (1,),
    (10,),
    (1, 1),
    (5, 1),
    (1, 2),
    (6, 2),
    (7, 10),
    (16, 17),
    (4, 1000),
    (2, 5000),
    (3, 5, 4),
    (2, 6, 3, 4),
]
dtypes = pytest.mark.parametrize("dtype", DTYPES)
reductions = pytest.mark.parametrize("reduction", REDUCTIONS)
kinds = pytest.mark.parametrize("kind", ["int", "prob"])


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """torch's small-tensor ops on one thread: several spinning threads (on a busy
    machine, or beside another run) make this file several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def class_axis(shape: tuple[int, ...]) -> int:
    """torch's class dimension: 0 for 1-D logits, else 1."""
    return 0 if len(shape) == 1 else 1


def example_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    ax = class_axis(shape)
    return shape[:ax] + shape[ax + 1 :]


def make_logits(rng: np.random.Generator, shape, dtype, scale: float = 4.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(dtype)


def make_labels(
    rng: np.random.Generator,
    shape,
    *,
    ignore_index: int = -100,
    ignored: float = 0.0,
    label_dtype=np.int64,
) -> np.ndarray:
    """Integer labels for logits of `shape`, a fraction `ignored` of them ignore_index."""
    ex = example_shape(shape)
    labels = rng.integers(0, shape[class_axis(shape)], size=ex)
    labels = np.where(rng.random(ex) < ignored, ignore_index, labels)
    return np.asarray(labels, dtype=label_dtype)


def make_probs(
    rng: np.random.Generator, shape, dtype, *, zeros: float = 0.2, normalized: bool = True
) -> np.ndarray:
    """Probabilities along the class axis, some exactly 0 (or, unnormalized, any >= 0)."""
    t = rng.random(shape)
    t[rng.random(shape) < zeros] = 0.0
    if normalized:
        t = t / np.maximum(t.sum(axis=class_axis(shape), keepdims=True), 1e-300)
    return t.astype(dtype)


def make_weight(rng: np.random.Generator, n: int, zero_at: int | None = None) -> np.ndarray:
    """Random non-negative class weights, one of them 0 (class `zero_at`, else a random one)."""
    w = rng.random(n) * 2
    w[rng.integers(n) if zero_at is None else zero_at] = 0.0
    return w


def torch_reference(
    x: np.ndarray,
    labels: np.ndarray,
    *,
    axis: int,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    grad_out: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(loss, d loss / d x) from torch autograd, in float64."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    xc = xt if softcap is None else softcap * torch.tanh(xt / softcap)
    kw: dict[str, Any] = {"reduction": reduction, "label_smoothing": label_smoothing}
    if weight is not None:
        kw["weight"] = torch.tensor(weight, dtype=torch.float64)
    if labels.dtype.kind in "iu":
        yt = torch.tensor(labels.astype(np.int64))
        kw["ignore_index"] = ignore_index
        valid = yt != ignore_index
    else:  # torch has no ignore_index for probabilities
        yt = torch.tensor(labels, dtype=torch.float64)
        valid = torch.ones(example_shape(x.shape), dtype=torch.bool)
    loss = F.cross_entropy(xc, yt, **kw)
    if z_loss:
        lse = torch.logsumexp(xc, dim=class_axis(x.shape))
        # where, not a product: the ignored examples get an exact 0 gradient
        zl = torch.where(valid, z_loss * lse**2, torch.zeros_like(lse))
        if reduction == "none":
            loss = loss + zl
        elif reduction == "sum":
            loss = loss + zl.sum()
        else:
            loss = loss + zl.sum() / valid.sum()
    if grad_out is None:
        g = torch.ones_like(loss)
    else:
        g = torch.tensor(np.broadcast_to(np.asarray(grad_out, np.float64), tuple(loss.shape)))
    loss.backward(g)
    return loss.detach().numpy(), xt.grad.numpy()


def assert_close(actual, expected, dtype, what: str, scale: float = 0.0) -> None:
    """Same shape, NaN and infinities in the same places, finite values within TOL[dtype]:
    atol relative to the largest finite |expected| value (or `scale`, if larger)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    finite = expected[np.isfinite(expected)]
    scale = max(float(np.max(np.abs(finite), initial=0.0)), scale) or 1.0
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(
        actual.astype(np.float64),
        expected,
        rtol=rtol,
        atol=atol * scale,
        equal_nan=True,
        err_msg=what,
    )


def loss_terms_scale(labels: np.ndarray, options: dict) -> float:
    """A bound on the size of an example's loss terms, times the examples summed: each
    loss carries an absolute error of a few ulps of its terms, w * t (log s) and, with
    soft-capping, w * t * x' (|x'| < cap) -- which a loss of ~0 (a certain class,
    log(1 + tiny)) cannot hide in a relative tolerance."""
    weight = options.get("weight")
    scale = max(1.0, float(np.max(weight, initial=0.0)) if weight is not None else 1.0)
    axis = class_axis(labels.shape) if labels.dtype.kind == "f" else None
    if axis is not None:
        scale *= max(1.0, float(labels.sum(axis=axis).max(initial=0.0)))
    scale *= 1.0 + (options.get("softcap") or 0.0)
    if options.get("reduction", "mean") == "sum":
        scale *= labels.size if axis is None else labels.size / labels.shape[axis]
    return scale


def gradient_terms_scale(labels: np.ndarray, options: dict, grad_out: Any) -> float:
    """A bound on the size of the terms the gradient is a difference of,
    |grad_out| * w * (softmax and target terms) / (the mean's denominator):
    with 1 or 2 classes, or smoothing 1, they can cancel down to far below
    what float32 can resolve relative to them (torch's float32 as well)."""
    g = 1.0 if grad_out is None else float(np.max(np.abs(grad_out), initial=0.0))
    weight = options.get("weight")
    w = np.ones(1) if weight is None else np.asarray(weight, np.float64)
    scale = g * max(1.0, float(w.max()))
    if labels.dtype.kind == "f":
        scale *= max(1.0, float(labels.max(initial=0.0)))
    if options.get("reduction", "mean") == "mean":
        if labels.dtype.kind == "f":
            den = labels.size / labels.shape[class_axis(labels.shape)]
        else:
            kept = labels[labels != options.get("ignore_index", -100)]
            den = float(w[kept].sum()) if weight is not None else float(kept.size)
        if den > 0:
            scale /= den
    return scale


def check(x: np.ndarray, labels: np.ndarray, what: str = "", **options):
    """fs.cross_entropy(return_grad=True) against torch; returns ours and torch's results."""
    grad_out = options.pop("grad_out", None)
    axis = options.pop("axis", class_axis(x.shape))
    dtype = x.dtype.type
    x_before = x.copy()
    loss, grad = fs.cross_entropy(
        x, labels, axis=axis, return_grad=True, grad_out=grad_out, **options
    )
    np.testing.assert_array_equal(x, x_before, err_msg=f"{what}: logits modified")
    # probabilities: torch has no ignore_index, ours must not use it
    ref_options = dict(options)
    if labels.dtype.kind == "f":
        ref_options.pop("ignore_index", None)
    ref_loss, ref_grad = torch_reference(
        x, labels, axis=class_axis(x.shape), grad_out=grad_out, **ref_options
    )
    assert np.asarray(loss).dtype == dtype, what
    assert grad.dtype == dtype, what
    loss_scale = loss_terms_scale(labels, options)
    assert_close(loss, ref_loss, dtype, f"loss {what}", loss_scale)
    terms = gradient_terms_scale(labels, options, grad_out)
    assert_close(grad, ref_grad, dtype, f"gradient {what}", terms)
    # the loss alone (the kernel's path without a gradient)
    alone = fs.cross_entropy(x, labels, axis=axis, **options)
    assert np.asarray(alone).dtype == dtype, what
    assert_close(alone, ref_loss, dtype, f"loss without gradient {what}", loss_scale)
    return (loss, grad), (ref_loss, ref_grad)


# -- each option on its own, over the shapes ------------------------------------------
# (reductions and dtypes are looped over inside the tests, named in the messages, to
# keep the number of tests, run once per SIMD target, small)


def cases(rng, shape):
    """(dtype, logits) for each dtype: the same values, rounded to float32 for float32."""
    x = make_logits(rng, shape, np.float64)
    return [(dtype, x.astype(dtype)) for dtype in DTYPES]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_integer_labels_match_torch(rng, shape):
    labels = make_labels(rng, shape, label_dtype=LABEL_DTYPES[rng.integers(3)])
    for dtype, x in cases(rng, shape):
        for reduction in REDUCTIONS:
            check(x, labels, f"{np.dtype(dtype)} {reduction}", reduction=reduction)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_probability_labels_match_torch(rng, shape):
    t = make_probs(rng, shape, np.float64)
    for dtype, x in cases(rng, shape):
        for reduction in REDUCTIONS:
            check(x, t.astype(dtype), f"{np.dtype(dtype)} {reduction}", reduction=reduction)


@pytest.mark.parametrize("ignore_index", [-100, 0, 2])
def test_ignore_index_is_not_used_with_probabilities(rng, ignore_index):
    """Probabilities are never ignored, not even those equal to ignore_index: our answer is
    torch's answer without ignore_index (torch itself refuses ignore_index >= 0 with
    probability targets; we document that it does not apply to them)."""
    shape = (7, 10)
    t = make_probs(rng, shape, np.float64)
    t[:3] = 0.0
    t[:3, max(ignore_index, 0)] = ignore_index  # entries equal to it (-100: not a probability)
    for dtype, x in cases(rng, shape):
        for reduction in REDUCTIONS:
            check(
                x,
                t.astype(dtype),
                f"{np.dtype(dtype)} {reduction}",
                reduction=reduction,
                ignore_index=ignore_index,
            )


@pytest.mark.parametrize("shape", [(16, 17), (3, 5, 4), (10,)], ids=str)
@kinds
def test_weight_matches_torch(rng, kind, shape):
    n = shape[class_axis(shape)]
    if kind == "int":
        labels = make_labels(rng, shape)
        # the zero weight on a class that is some example's label (not every one's)
        zero_at = int(labels.flat[0])
        if len(shape) == 1:  # a single example: keep its weight
            zero_at = (zero_at + 1) % n
    else:
        labels = make_probs(rng, shape, np.float64)
        zero_at = None
    weight = make_weight(rng, n, zero_at)
    for dtype, x in cases(rng, shape):
        for reduction in REDUCTIONS:
            check(
                x,
                labels if kind == "int" else labels.astype(dtype),
                f"{np.dtype(dtype)} {reduction}",
                reduction=reduction,
                weight=weight,
            )


@pytest.mark.parametrize("ignore_index", [-100, 2])
@pytest.mark.parametrize("shape", [(16, 17), (6, 2), (2, 6, 3, 4), (4, 1000)], ids=str)
def test_ignore_index_matches_torch(rng, shape, ignore_index):
    labels = make_labels(rng, shape, ignore_index=ignore_index, ignored=0.3)
    labels.flat[0] = ignore_index  # at least one ignored ...
    labels.flat[-1] = 0  # ... and one not
    ignored = labels == ignore_index
    for dtype, x in cases(rng, shape):
        for reduction in REDUCTIONS:
            what = f"{np.dtype(dtype)} {reduction}"
            (loss, grad), _ = check(x, labels, what, reduction=reduction, ignore_index=ignore_index)
            grad_rows = np.moveaxis(grad, class_axis(shape), -1)
            assert np.all(grad_rows[ignored] == 0), what
            if reduction == "none":
                assert np.all(loss[ignored] == 0), what


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@kinds
def test_label_smoothing_matches_torch(rng, kind, weighted, label_smoothing):
    shape = (16, 17)
    if kind == "int":
        labels = make_labels(rng, shape, ignored=0.2)
        labels[0] = 3  # a non-ignored label with a positive weight ...
        labels[1] = 4  # ... and one with weight 0
        weight = make_weight(rng, 17, zero_at=4)
    else:
        labels = make_probs(rng, shape, np.float64)
        weight = make_weight(rng, 17)
    for dtype, x in cases(rng, shape):
        for reduction in REDUCTIONS:
            check(
                x,
                labels if kind == "int" else labels.astype(dtype),
                f"{np.dtype(dtype)} {reduction}",
                reduction=reduction,
                label_smoothing=label_smoothing,
                weight=weight if weighted else None,
            )


@pytest.mark.parametrize("softcap", [1.0, 5.0, 30.0])
@pytest.mark.parametrize("shape", [(16, 17), (2, 5000), (3, 5, 4)], ids=str)
@kinds
def test_softcap_matches_torch_composition(rng, kind, shape, softcap):
    # logits of the cap's size: far past it, tanh saturates and its derivative
    # 1 - tanh^2 has no correct digit left in float32 (torch's float32 neither)
    x64 = make_logits(rng, shape, np.float64, scale=softcap)
    labels = make_labels(rng, shape) if kind == "int" else make_probs(rng, shape, np.float64)
    for dtype in DTYPES:
        for reduction in REDUCTIONS:
            check(
                x64.astype(dtype),
                labels if kind == "int" else labels.astype(dtype),
                f"{np.dtype(dtype)} {reduction}",
                reduction=reduction,
                softcap=softcap,
            )


@pytest.mark.parametrize("z_loss", [1e-4, 0.5])
@pytest.mark.parametrize("shape", [(16, 17), (2, 5000), (2, 6, 3, 4), (10,)], ids=str)
@kinds
def test_z_loss_matches_torch_composition(rng, kind, shape, z_loss):
    """With weights and ignored examples: the mean divides z by the non-ignored count."""
    n = shape[class_axis(shape)]
    if kind == "int":
        labels = make_labels(rng, shape, ignored=0.3)
        labels.flat[-1] = 1  # one example counts, with weight 1
        weight = make_weight(rng, n, zero_at=0)
        weight[1] = 1.0
    else:
        labels = make_probs(rng, shape, np.float64)
        weight = make_weight(rng, n)
    for dtype, x in cases(rng, shape):
        for reduction in REDUCTIONS:
            check(
                x,
                labels if kind == "int" else labels.astype(dtype),
                f"{np.dtype(dtype)} {reduction}",
                reduction=reduction,
                z_loss=z_loss,
                weight=weight,
            )


@pytest.mark.parametrize(
    ("reduction", "form"),
    [
        ("none", "scalar"),
        ("none", "array"),
        ("none", "broadcast"),
        ("sum", "scalar"),
        ("mean", "scalar"),
    ],
)
@pytest.mark.parametrize("shape", [(16, 17), (2, 6, 3, 4), (10,)], ids=str)
def test_grad_out_matches_torch_backward(rng, shape, reduction, form):
    """A scalar grad_out for every reduction; arrays (full or broadcast) for "none"."""
    ex = example_shape(shape)
    if form == "scalar":
        grad_out: Any = float(rng.standard_normal() * 3)
    elif form == "array":
        grad_out = rng.standard_normal(ex)
    else:  # varies along the last example dimension only (0-d losses: a 0-d array)
        grad_out = rng.standard_normal((1,) * (len(ex) - 1) + ex[-1:])
    labels = make_labels(rng, shape, ignored=0.2)
    t = make_probs(rng, shape, np.float64)
    for dtype, x in cases(rng, shape):
        for y in (labels, t.astype(dtype)):
            check(
                x,
                y,
                f"{np.dtype(dtype)}, {y.dtype} labels, grad_out={grad_out!r}",
                reduction=reduction,
                grad_out=grad_out,
            )


@pytest.mark.parametrize("shape", [(16, 17), (2, 5000), (3, 5, 4), (2, 6, 3, 4), (10,)], ids=str)
@kinds
def test_inplace_grad_matches_return_grad_and_torch(rng, kind, shape):
    axis = class_axis(shape)
    labels = (
        make_labels(rng, shape, ignored=0.2)
        if kind == "int"
        else make_probs(rng, shape, np.float64)
    )
    weight = make_weight(rng, shape[axis], zero_at=0)
    per_example = rng.standard_normal(example_shape(shape))
    for dtype, x in cases(rng, shape):
        for reduction in REDUCTIONS:
            what = f"{np.dtype(dtype)} {reduction}"
            options = {
                "reduction": reduction,
                "weight": weight,
                "label_smoothing": 0.1,
                "z_loss": 1e-3,
                "softcap": 6.0,
                "grad_out": 0.5 if reduction != "none" else per_example,
            }
            y = labels if kind == "int" else labels.astype(dtype)
            (loss, grad), _ = check(x, y, what, **options)
            logits = x.copy()
            loss_in, grad_in = fs.cross_entropy(
                logits, y, axis=axis, return_grad=True, inplace_grad=True, **options
            )
            assert grad_in is logits, what
            np.testing.assert_array_equal(loss_in, loss, err_msg=what)
            np.testing.assert_array_equal(logits, grad, err_msg=what)


@pytest.mark.parametrize("saved_lse", [False, True], ids=["recomputed", "saved-lse"])
@pytest.mark.parametrize("shape", [(16, 17), (2, 5000), (2, 6, 3, 4)], ids=str)
@kinds
def test_cross_entropy_backward_matches_torch(rng, kind, shape, saved_lse):
    axis = class_axis(shape)
    labels = (
        make_labels(rng, shape, ignored=0.2)
        if kind == "int"
        else make_probs(rng, shape, np.float64)
    )
    options = {
        "reduction": "mean",
        "weight": make_weight(rng, shape[axis]),
        "label_smoothing": 0.1,
        "z_loss": 1e-2,
        "softcap": 6.0,
    }
    for dtype, x in cases(rng, shape):
        y = labels if kind == "int" else labels.astype(dtype)
        _, ref_grad = torch_reference(x, y, axis=axis, grad_out=0.25, **options)
        lse = None
        if saved_lse:
            xt = torch.tensor(x, dtype=torch.float64)
            capped = options["softcap"] * torch.tanh(xt / options["softcap"])
            lse = torch.logsumexp(capped, dim=axis).numpy().astype(dtype)
        grad = fs.cross_entropy_backward(x, y, axis=axis, lse=lse, grad_out=0.25, **options)
        assert grad.dtype == dtype
        assert_close(grad, ref_grad, dtype, f"cross_entropy_backward {np.dtype(dtype)}")


# -- random combinations -----------------------------------------------------------------


def random_case(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray, dict, str]:
    """Logits, labels and options drawn at random; and a description of the draw."""
    shape = SHAPES[rng.integers(len(SHAPES))]
    dtype = DTYPES[rng.integers(2)]
    scale = float(rng.choice([1.0, 4.0, 16.0]))
    x = make_logits(rng, shape, dtype, scale)
    axis = class_axis(shape)
    n = shape[axis]
    ex = example_shape(shape)
    reduction = REDUCTIONS[rng.integers(3)]
    options: dict[str, Any] = {"reduction": reduction}
    if len(shape) == 2 and rng.random() < 0.5:
        options["axis"] = -1
    label_smoothing = [0.0, 0.1, 1.0, float(rng.random())][rng.integers(4)]
    if label_smoothing:
        options["label_smoothing"] = label_smoothing
    if rng.random() < 0.5:
        options["z_loss"] = float(rng.choice([1e-4, 1e-2, 0.5]))
    if rng.random() < 0.4:  # not far below the logits (see test_softcap_...)
        options["softcap"] = scale * float(rng.choice([0.5, 1.0, 4.0]))
    ignore_index = int(rng.choice([-100, 2, 0, -1]))
    if ignore_index != -100 or rng.random() < 0.5:
        options["ignore_index"] = ignore_index
    ignored = float(rng.choice([0.0, 0.3, 1.0])) if kind == "int" else 0.0
    if kind == "int":
        label_dtype = LABEL_DTYPES[rng.integers(len(LABEL_DTYPES))]
        labels = make_labels(
            rng, shape, ignore_index=ignore_index, ignored=ignored, label_dtype=label_dtype
        )
        label_desc = f"int labels {np.dtype(label_dtype)}, ignored fraction {ignored}"
    else:
        labels = make_probs(rng, shape, dtype, normalized=bool(rng.random() < 0.8))
        label_desc = "probabilities"
    weight_desc = "none"
    if rng.random() < 0.5:
        weight = make_weight(rng, n)
        options["weight"] = weight
        weight_desc = f"random, zeros at {np.flatnonzero(weight == 0).tolist()}"
    draw = rng.random()
    if draw < 0.3:
        options["grad_out"] = float(rng.standard_normal() * 2)
    elif draw < 0.6 and reduction == "none":
        options["grad_out"] = rng.standard_normal(ex)
    what = (
        f"shape {shape}, {np.dtype(dtype)}, logits scale {scale}, {label_desc}, "
        f"weight {weight_desc}, options "
        f"{ {k: v for k, v in options.items() if k not in ('weight', 'grad_out')} }, "
        f"grad_out {np.shape(options['grad_out']) if 'grad_out' in options else None}"
    )
    return x, labels, options, what


@pytest.mark.parametrize(("kind", "count"), [("int", 150), ("prob", 60)])
def test_random_combinations_match_torch(rng, kind, count):
    for i in range(count):
        x, labels, options, what = random_case(rng, kind)
        check(x, labels, f"random case {i}: {what}", **options)


# -- special values ------------------------------------------------------------------


def special_logits(rng: np.random.Generator, dtype, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Rows: plain, a NaN, a +inf, all -inf, -inf off the label, -inf at the label, plain."""
    x = make_logits(rng, (7, n), dtype)
    labels = make_labels(rng, (7, n))
    x[1, rng.integers(n)] = np.nan
    x[2, rng.integers(n)] = np.inf
    x[3] = -np.inf
    x[4, (labels[4] + 1 + rng.integers(n - 1)) % n] = -np.inf
    x[5, labels[5]] = -np.inf
    return x, labels


@pytest.mark.parametrize(
    ("softcap", "z_loss"), [(None, 0.0), (4.0, 0.0), (None, 0.01), (4.0, 0.01)]
)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize(
    ("n", "layout"), [(6, "rows"), (5000, "rows"), (6, "axis1")], ids=["6", "5000", "6-axis1"]
)
def test_special_values_match_torch(rng, n, layout, label_smoothing, softcap, z_loss):
    """axis1: the 7 examples as (1, n, 7) logits, the classes on axis 1 (strided rows)."""
    x64, labels = special_logits(rng, np.float64, n)
    for dtype in DTYPES:
        x, y = x64.astype(dtype), labels
        if layout == "axis1":
            x, y = np.ascontiguousarray(x.T[None]), labels[None]
        for reduction in REDUCTIONS:
            what = f"{np.dtype(dtype)} {reduction}"
            (loss, grad), _ = check(
                x,
                y,
                what,
                reduction=reduction,
                label_smoothing=label_smoothing,
                softcap=softcap,
                z_loss=z_loss,
            )
            if layout == "axis1":
                grad = grad[0].T
                loss = loss.reshape(-1) if reduction == "none" else loss
            if reduction == "none" and softcap is None:
                assert np.all(np.isnan(loss[1:4])), what
                assert np.all(np.isnan(grad[1:4])), what
                # finite unless the smoothing needs the -inf class's log-probability
                assert np.isfinite(loss[4]) == (label_smoothing == 0), what
                assert loss[5] == np.inf, what
                assert np.all(np.isfinite(grad[4:])), what
            if softcap is not None:  # soft-capping makes the infinities finite; NaN stays
                assert np.all(np.isnan(grad[1])), what
                assert np.all(np.isfinite(np.delete(grad, 1, axis=0))), what


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@dtypes
def test_probability_special_values_match_torch(rng, dtype, label_smoothing):
    """-inf under a zero probability: NaN (0 * -inf); under a positive one: inf."""
    n = 5
    x = make_logits(rng, (5, n), dtype)
    t = make_probs(rng, (5, n), dtype, zeros=0.0)
    x[0, 1] = -np.inf
    t[0] = t[0] / (1 - t[0, 1])
    t[0, 1] = 0
    x[1, 2] = -np.inf
    x[2, 3] = np.nan
    x[3, 0] = np.inf
    for reduction in REDUCTIONS:
        check(x, t, reduction, reduction=reduction, label_smoothing=label_smoothing)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("shape", [(4, 6), (10,), (2, 6, 3)], ids=str)
def test_all_ignored_mean_matches_torch(rng, shape, label_smoothing):
    """A mean over no example: NaN loss, and torch's gradient (zeros) for every logit."""
    labels = make_labels(rng, shape, ignore_index=2, ignored=1.0)
    weight = make_weight(rng, shape[class_axis(shape)])
    for dtype, x in cases(rng, shape):
        for w, z_loss in [(None, 0.0), (weight, 0.0), (None, 0.01), (weight, 0.01)]:
            what = f"{np.dtype(dtype)}, weight {w is not None}, z_loss {z_loss}"
            (loss, grad), (_, ref_grad) = check(
                x,
                labels,
                what,
                reduction="mean",
                ignore_index=2,
                label_smoothing=label_smoothing,
                weight=w,
                z_loss=z_loss,
            )
            assert np.isnan(loss), what
            np.testing.assert_array_equal(grad, ref_grad.astype(dtype), err_msg=what)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
@dtypes
def test_zero_total_weight_mean_matches_torch(rng, dtype, label_smoothing):
    shape = (4, 6)
    x = make_logits(rng, shape, dtype)
    labels = np.array([1, 1, -100, 1])
    weight = make_weight(rng, 6, zero_at=1)
    check(x, labels, reduction="mean", weight=weight, label_smoothing=label_smoothing)


@dtypes
def test_ignored_rows_with_special_values(rng, dtype):
    """An ignored example holding NaN/+inf/all -inf gives 0 loss and a zero gradient
    (as documented); torch agrees on the loss and on every other example, but its
    gradient of such an ignored row is NaN (log_softmax's backward: 0 * exp(NaN))."""
    x, _ = special_logits(rng, dtype)
    labels = make_labels(rng, x.shape)
    labels[1:4] = -100
    kept = np.r_[0, 4:7]
    for reduction in REDUCTIONS:
        loss, grad = fs.cross_entropy(x, labels, reduction=reduction, return_grad=True)
        ref_loss, ref_grad = torch_reference(x, labels, axis=1, reduction=reduction)
        assert_close(loss, ref_loss, dtype, f"loss {reduction}")
        assert_close(grad[kept], ref_grad[kept], dtype, f"gradient {reduction}")
        assert np.all(grad[1:4] == 0), reduction
        if reduction == "none":
            assert np.all(loss[1:4] == 0), reduction

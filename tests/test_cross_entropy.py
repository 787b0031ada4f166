"""fastsoftmax.cross_entropy and cross_entropy_backward against a plain NumPy reference.

The reference below is written the textbook way (log_softmax, then the
weighted sums), in float64 for float32 inputs and np.longdouble for float64
inputs; every option of the API is covered, alone and combined, on random and
adversarial data, for every layout, and the gradient is also checked against
finite differences of the loss. PyTorch cross-checks: test_cross_entropy_peers.py.
"""

from __future__ import annotations

from typing import Any

import fastsoftmax as fs
import numpy as np
import pytest
import scipy.special
from reference import widen

F32, F64 = np.float32, np.float64
dtypes = pytest.mark.parametrize("dtype", [F32, F64])
# loss: relative; gradient: absolute, relative to max |grad|
TOL = {F32: 2e-6, F64: 1e-13}


def ref_cross_entropy(
    x,
    labels,
    axis=-1,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    grad_out=None,
):
    """(loss, grad) by the formulas of the docstring, in the wide dtype."""
    xw = np.moveaxis(widen(x), axis, -1)
    wide = xw.dtype.type
    n = xw.shape[-1]
    eps = wide(label_smoothing)
    w = np.ones(n, wide) if weight is None else np.asarray(weight).astype(wide)
    with np.errstate(all="ignore"):
        if softcap is not None:
            u = np.tanh(xw / wide(softcap))
            xp = wide(softcap) * u
        else:
            xp = xw
        # log-probabilities as (x - m) - log1p(rest), rest = the sum of exp(x - m) over
        # all but one maximal entry: no cancellation even for a confident prediction
        m = np.max(xp, axis=-1, keepdims=True)
        e = np.exp(xp - m)
        np.put_along_axis(e, np.argmax(xp, axis=-1)[..., None], 0, axis=-1)
        log_s = np.log1p(np.sum(e, axis=-1, keepdims=True))
        logp = (xp - m) - log_s
        p = np.exp(logp)
        lse = (m + log_s)[..., 0]
        labels = np.asarray(labels)
        if labels.dtype.kind in "iu":
            keep = labels != ignore_index
            y = np.where(keep, labels, 0)
            wy = w[y]
            logp_y = np.take_along_axis(logp, y[..., None], axis=-1)[..., 0]
            ce = (1 - eps) * wy * -logp_y
            onehot = np.zeros_like(xp)
            np.put_along_axis(onehot, y[..., None], 1, axis=-1)
            dce = (1 - eps) * wy[..., None] * (p - onehot)
            if eps != 0:
                ce = ce + eps / n * -(w * logp).sum(-1)
                dce = dce + eps / n * (w.sum() * p - w)
            denom, count = (wy * keep).sum(), keep.sum()
        else:
            keep = np.ones(xp.shape[:-1], bool)
            tp = (1 - eps) * np.moveaxis(np.asarray(labels).astype(wide), axis, -1) + eps / n
            ce = -(w * tp * logp).sum(-1)
            dce = (w * tp).sum(-1, keepdims=True) * p - w * tp
            denom = count = keep.size
        zl = z_loss * lse**2 if z_loss else np.zeros_like(lse)
        dz = 2 * z_loss * lse[..., None] * p
        ce, zl = np.where(keep, ce, 0), np.where(keep, zl, 0)
        g = np.broadcast_to(np.asarray(1.0 if grad_out is None else grad_out), keep.shape)
        if reduction == "none":
            loss = ce + zl
            s_ce = s_z = g
        elif reduction == "sum":
            loss = ce.sum() + zl.sum()
            s_ce = s_z = g
        else:
            loss = ce.sum() / denom + (zl.sum() / count if z_loss else 0)
            s_ce, s_z = g / denom, g / count
        grad = s_ce[..., None] * dce + (s_z[..., None] * dz if z_loss else 0)
        grad = np.where(keep[..., None], grad, 0)
        if softcap is not None:
            grad = grad * (1 - u) * (1 + u)
    return loss, np.moveaxis(grad, -1, axis)


def assert_close(got, ref, dtype, what="", scale=None):
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    tol = TOL[dtype]
    if scale is None:
        np.testing.assert_allclose(got, ref, rtol=tol, atol=0, equal_nan=True, err_msg=what)
    else:
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol * scale, equal_nan=True, err_msg=what)


def check(x, labels, dtype, what="", **kw):
    """cross_entropy (loss and gradient) against the reference."""
    grad_out = kw.pop("grad_out", None)
    ref_loss, ref_grad = ref_cross_entropy(x, labels, grad_out=grad_out, **kw)
    loss, grad = fs.cross_entropy(x, labels, return_grad=True, grad_out=grad_out, **kw)
    assert grad.shape == x.shape
    assert grad.dtype == x.dtype
    assert np.asarray(loss).dtype == x.dtype
    assert_close(loss, ref_loss, dtype, f"loss {what} {kw}")
    scale = float(np.nanmax(np.abs(ref_grad), initial=0)) or 1.0
    assert_close(grad, ref_grad, dtype, f"grad {what} {kw}", scale=max(scale, 1e-30))
    # the loss alone is the same
    assert_close(fs.cross_entropy(x, labels, **kw), ref_loss, dtype, f"forward only {what}")


def random_options(rng, n, dtype, soft):
    kw = {"reduction": rng.choice(["none", "sum", "mean"])}
    if rng.random() < 0.5:
        w = rng.random(n) * 2
        if n > 1 and rng.random() < 0.3:
            w[rng.integers(n)] = 0
        kw["weight"] = w.astype(dtype)
    if rng.random() < 0.5:
        kw["label_smoothing"] = float(rng.choice([0.05, 0.3, 1.0]))
    if rng.random() < 0.3:
        kw["z_loss"] = float(rng.choice([1e-4, 0.1]))
    if rng.random() < 0.3:
        kw["softcap"] = float(rng.choice([2.0, 30.0]))
    if not soft and rng.random() < 0.5:
        kw["ignore_index"] = int(rng.integers(0, n)) if rng.random() < 0.5 else -100
    return kw


def random_labels(rng, shape, axis, soft, dtype, ignore_index=-100):
    n = shape[axis]
    if soft:
        t = rng.random(shape) ** 3
        return (t / t.sum(axis=axis, keepdims=True)).astype(dtype)
    ex = shape[:axis] + shape[axis + 1 :] if axis >= 0 else shape[:axis]
    y = rng.integers(0, n, ex)
    if y.size > 1:
        y.flat[rng.integers(y.size)] = ignore_index
    return y


SHAPES = [(1, 1), (3, 2), (7, 10), (16, 17), (33, 64), (9, 200), (4, 1000), (3, 5000), (2, 40000)]


@dtypes
@pytest.mark.parametrize("soft", [False, True], ids=["indices", "probabilities"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_random_options_match_the_reference(rng, dtype, soft, shape):
    for trial in range(6):
        kw = random_options(rng, shape[-1], dtype, soft)
        x = (rng.standard_normal(shape) * 4).astype(dtype)
        labels = random_labels(rng, shape, -1, soft, dtype, kw.get("ignore_index", -100))
        if kw["reduction"] == "none" and rng.random() < 0.5:
            kw["grad_out"] = rng.standard_normal(shape[:-1])
        elif rng.random() < 0.5:
            kw["grad_out"] = float(rng.uniform(0.5, 2))
        check(x, labels, dtype, f"trial {trial}", **kw)


def options_alone(rng: np.random.Generator, classes: int, dtype) -> list[dict[str, Any]]:
    """Each option of cross_entropy alone (and none): the weights random, one per class."""
    return [
        {},
        {"weight": rng.random(classes).astype(dtype)},
        {"label_smoothing": 0.2},
        {"label_smoothing": 1.0},
        {"z_loss": 0.01},
        {"softcap": 3.0},
        {"reduction": "sum"},
        {"reduction": "none"},
        {"grad_out": 2.5},
    ]


@dtypes
@pytest.mark.parametrize("soft", [False, True], ids=["indices", "probabilities"])
def test_every_option_alone(rng, dtype, soft):
    shape = (9, 37)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    labels = random_labels(rng, shape, -1, soft, dtype)
    for kw in options_alone(rng, shape[-1], dtype):
        check(x, labels, dtype, **kw)


@dtypes
def test_ignore_index_and_a_custom_one(rng, dtype):
    x = rng.standard_normal((12, 5)).astype(dtype)
    y = rng.integers(0, 5, 12)
    y[[1, 4, 7]] = 3
    for ignore in (3, -100, -1):
        for reduction in ("none", "sum", "mean"):
            check(x, y, dtype, ignore_index=ignore, reduction=reduction)
    loss, grad = fs.cross_entropy(x, y, ignore_index=3, reduction="none", return_grad=True)
    assert np.all(loss[[1, 4, 7]] == 0)
    assert np.all(grad[[1, 4, 7]] == 0)


def test_mean_over_no_example_is_nan_and_sum_is_zero():
    x = np.ones((3, 4), F32)
    y = np.full(3, -100)
    assert np.isnan(fs.cross_entropy(x, y))
    assert fs.cross_entropy(x, y, reduction="sum") == 0
    np.testing.assert_array_equal(fs.cross_entropy(x, y, reduction="none"), np.zeros(3))
    assert np.isnan(fs.cross_entropy(np.ones((0, 4), F32), np.zeros(0, np.int64)))
    assert fs.cross_entropy(np.ones((0, 4), F32), np.zeros(0, np.int64), reduction="sum") == 0
    assert fs.cross_entropy(np.ones((0, 4)), np.zeros(0, np.int64), reduction="none").shape == (0,)


@dtypes
def test_k_dimensional_inputs_with_axis_1(rng, dtype):
    for shape in [(4, 6, 5), (3, 7, 4, 2), (2, 20, 33)]:
        x = rng.standard_normal(shape).astype(dtype)
        y = random_labels(rng, shape, 1, False, dtype)
        t = random_labels(rng, shape, 1, True, dtype)
        for labels in (y, t):
            for reduction in ("none", "mean"):
                check(x, labels, dtype, axis=1, reduction=reduction, label_smoothing=0.1)


@dtypes
def test_every_axis_and_layout_gives_the_contiguous_answer(rng, dtype):
    base = rng.standard_normal((6, 40, 5)).astype(dtype) * 3
    for axis in range(3):
        xs = {
            "contiguous": base,
            "fortran": np.asfortranarray(base),
            "reversed": base[::-1, ::-1, ::-1],
            "strided": np.repeat(base, 2, axis=axis)[
                (slice(None),) * axis + (slice(None, None, 2),)
            ],
            "middle axis outermost": base.transpose(1, 0, 2).copy().transpose(1, 0, 2),
        }
        for soft in (False, True):
            labels = random_labels(rng, base.shape, axis, soft, dtype)
            for name, x in xs.items():
                lab = labels
                if name == "reversed":
                    lab = labels[::-1, ::-1, ::-1] if soft else labels[::-1, ::-1]
                    ref_x = base[::-1, ::-1, ::-1]
                else:
                    ref_x = base
                assert np.array_equal(x, ref_x)
                check(
                    x, lab, dtype, f"axis {axis} {name}", axis=axis, reduction="none", weight=None
                )


@dtypes
def test_one_class_and_one_example(rng, dtype):
    check(np.array([[2.5]], dtype), np.array([0]), dtype)
    check(np.array([[2.5]], dtype), np.array([[1.0]], dtype), dtype, label_smoothing=0.3)
    x = rng.standard_normal(7).astype(dtype)  # 1-d logits: one example, a 0-d label
    check(x, np.int64(3), dtype)
    check(x, np.array(3), dtype, reduction="none")
    loss = fs.cross_entropy(x, 3, reduction="none")
    assert np.shape(loss) == ()


@dtypes
def test_adversarial_logits(rng, dtype):
    big = 1e4 if dtype == F32 else 1e6
    n = 50
    rows = [
        rng.standard_normal(n) * big,  # one-hot softmax
        rng.standard_normal(n) * 1e-30,  # tiny
        np.full(n, 7.0),  # all equal
        np.full(n, -3e4),
        np.full(n, 1e30) + np.arange(n) * 1e24,  # huge, distinct
        np.where(np.arange(n) % 3 == 0, -np.inf, rng.standard_normal(n)),  # masked classes
    ]
    x = np.array(rows).astype(dtype)
    y = np.array([0, 1, 2, 3, 4, 1])  # label 1 of the last row is a finite logit
    for kw in ({}, {"reduction": "none"}, {"weight": rng.random(n).astype(dtype)}):
        check(x, y, dtype, **kw)
    # smoothing over masked classes: +inf, as PyTorch's
    loss = fs.cross_entropy(x, y, reduction="none", label_smoothing=0.1)
    assert np.all(np.isfinite(loss[:5]))
    assert loss[5] == np.inf


@dtypes
def test_nan_and_inf_rows_propagate_as_in_pytorch(dtype):
    inf, nan = np.inf, np.nan
    x = np.array(
        [
            [1.0, 2.0, 3.0],
            [nan, 1.0, 2.0],  # NaN anywhere: NaN
            [inf, 1.0, 2.0],  # +inf: NaN
            [-inf, -inf, -inf],  # only -inf: NaN
            [-inf, 1.0, 2.0],  # label at -inf: +inf loss, finite gradient
            [-inf, 1.0, 2.0],  # label elsewhere: finite
        ],
        dtype,
    )
    y = np.array([0, 1, 1, 0, 0, 1])
    loss, grad = fs.cross_entropy(x, y, reduction="none", return_grad=True)
    assert np.all(np.isfinite(loss[[0, 5]]))
    assert loss[4] == inf
    assert np.all(np.isnan(loss[1:4]))
    assert np.all(np.isnan(grad[1:4]))
    assert np.all(np.isfinite(grad[[0, 4, 5]]))
    np.testing.assert_allclose(grad[4], [-1, 1 / (1 + np.e), np.e / (1 + np.e)], rtol=1e-6)
    assert np.isnan(fs.cross_entropy(x, y))
    # ignored rows contribute nothing, whatever their logits
    y_ign = np.array([0, -100, -100, -100, -100, 1])
    loss, grad = fs.cross_entropy(x, y_ign, reduction="none", return_grad=True)
    assert np.all(loss[1:5] == 0)
    assert np.all(grad[1:5] == 0)
    assert np.isfinite(fs.cross_entropy(x, y_ign))
    # soft-capping makes infinities finite
    loss = fs.cross_entropy(x[[2, 3]], y[[2, 3]], reduction="none", softcap=5.0)
    ref, _ = ref_cross_entropy(x[[2, 3]], y[[2, 3]], reduction="none", softcap=5.0)
    np.testing.assert_allclose(loss, ref, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_dtype_rules(rng, dtype):
    x = (rng.standard_normal((5, 8)) * 3).astype(dtype)
    y = rng.integers(0, 8, 5)
    loss, grad = fs.cross_entropy(x, y, return_grad=True)
    assert np.asarray(loss).dtype == F64
    assert grad.dtype == F64
    ref_loss, ref_grad = fs.cross_entropy(x.astype(F64), y, return_grad=True)
    np.testing.assert_array_equal(loss, ref_loss)
    np.testing.assert_array_equal(grad, ref_grad)


def test_float16_rules(rng):
    """float16 logits are computed natively in float32 registers: the loss comes back
    in float32, the gradient in float16, within one float16 ulp of the float32 call's
    (test_half_precision.py holds them to the float64 reference)."""
    x = (rng.standard_normal((5, 8)) * 3).astype(np.float16)
    y = rng.integers(0, 8, 5)
    loss, grad = fs.cross_entropy(x, y, return_grad=True)
    assert np.asarray(loss).dtype == F32
    assert grad.dtype == np.float16
    ref_loss, ref_grad = fs.cross_entropy(x.astype(F32), y, return_grad=True)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=2**-10, atol=2**-24)


@pytest.mark.parametrize("label_dtype", [np.int8, np.uint8, np.int16, np.int32, np.uint64])
def test_any_integer_label_dtype(rng, label_dtype):
    x = rng.standard_normal((6, 9)).astype(F32)
    y = rng.integers(0, 9, 6)
    np.testing.assert_array_equal(
        fs.cross_entropy(x, y.astype(label_dtype), reduction="none"),
        fs.cross_entropy(x, y, reduction="none"),
    )


def test_probabilities_in_another_float_dtype_are_converted(rng):
    x = rng.standard_normal((4, 6)).astype(F32)
    t = rng.random((4, 6))
    t /= t.sum(1, keepdims=True)
    np.testing.assert_array_equal(
        fs.cross_entropy(x, t, reduction="none"),
        fs.cross_entropy(x, t.astype(F32), reduction="none"),
    )


def test_gradient_matches_finite_differences(rng):
    """Independent of the reference: d loss / d logits by central differences (float64)."""
    x = rng.standard_normal((3, 6))
    w = rng.random(6) + 0.2
    for labels in (np.array([1, 5, -100]), random_labels(rng, (3, 6), -1, True, F64)):
        kw = {
            "weight": w,
            "label_smoothing": 0.2,
            "z_loss": 0.05,
            "softcap": 2.0,
            "reduction": "mean",
        }
        _, grad = fs.cross_entropy(x, labels, return_grad=True, **kw)
        h = 1e-6
        num = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            xp, xm = x.copy(), x.copy()
            xp[i] += h
            xm[i] -= h
            num[i] = (fs.cross_entropy(xp, labels, **kw) - fs.cross_entropy(xm, labels, **kw)) / (
                2 * h
            )
        np.testing.assert_allclose(grad, num, atol=1e-8)


@dtypes
def test_grad_out_scales_the_gradient(rng, dtype):
    x = rng.standard_normal((5, 7)).astype(dtype)
    y = rng.integers(0, 7, 5)
    g = rng.standard_normal(5)
    check(x, y, dtype, reduction="none", grad_out=g)
    check(x, y, dtype, reduction="none", grad_out=g[:1])  # broadcasts
    check(x, y, dtype, reduction="mean", grad_out=-3.0)
    check(x, y, dtype, reduction="sum", grad_out=np.float32(0.5))
    with pytest.raises(ValueError, match="must be a scalar"):
        fs.cross_entropy(x, y, return_grad=True, grad_out=g)
    with pytest.raises(ValueError, match="does not broadcast"):
        fs.cross_entropy(x, y, reduction="none", return_grad=True, grad_out=g[:3])
    with pytest.raises(ValueError, match="only used with return_grad"):
        fs.cross_entropy(x, y, grad_out=1.0)


@pytest.mark.parametrize("dtype", [F32, F64, np.float16])
@pytest.mark.parametrize("layout", ["contiguous", "strided", "axis0", "long rows"])
def test_inplace_grad_writes_the_gradient_into_the_logits(rng, dtype, layout):
    shape = (3, 5000) if layout == "long rows" else (8, 30)  # long: several blocks per row
    base = (rng.standard_normal(shape) * 2).astype(dtype)
    axis = 0 if layout == "axis0" else -1
    y = rng.integers(0, base.shape[axis], base.shape[1] if axis == 0 else base.shape[0])
    if layout == "strided":
        holder = np.repeat(base, 2, axis=1)
        x = holder[:, ::2]
    else:
        x = base.copy()
    kw = {"axis": axis, "label_smoothing": 0.1, "weight": rng.random(base.shape[axis])}
    loss, grad = fs.cross_entropy(base, y, return_grad=True, **kw)
    loss2, same = fs.cross_entropy(x, y, return_grad=True, inplace_grad=True, **kw)
    assert same is x
    np.testing.assert_array_equal(x, grad)
    assert loss2 == loss
    if layout == "strided":  # the other columns are untouched
        np.testing.assert_array_equal(holder[:, 1::2], base)


class Sub(np.ndarray):
    """An ndarray subclass: np.asarray gives a view of it, not a copy."""


@pytest.mark.parametrize("dtype", [F32, F64])
def test_inplace_grad_of_a_subclass_whose_labels_share_its_memory(rng, dtype):
    """Probabilities that are the logits themselves (or share their buffer) and logits of a
    subclass: the gradient went straight into the converted view, and the binding refused
    (_core.Fallback, a ValueError) since it reads the labels while writing it."""
    p = rng.dirichlet(np.ones(5), 4).astype(dtype)
    loss, grad = fs.cross_entropy(p.copy(), p.copy(), return_grad=True)
    x = p.copy().view(Sub)
    loss2, same = fs.cross_entropy(x, x, return_grad=True, inplace_grad=True)
    assert same is x
    assert loss2 == loss
    np.testing.assert_array_equal(np.asarray(x), grad)


def test_backward_out_interleaved_with_the_logits(rng):
    """out shares the logits' buffer but no element (np.shares_memory: none); the
    binding, which compares memory spans, refused it with _core.Fallback."""
    buf = rng.standard_normal((4, 10))
    x, out = buf[:, ::2], buf[:, 1::2]
    y = np.array([0, 1, 2, 3])
    expected = fs.cross_entropy_backward(x.copy(), y)
    assert fs.cross_entropy_backward(x, y, out=out) is out
    np.testing.assert_array_equal(out, expected)


def test_odd_strides_that_address_nothing(rng):
    """A length-1 dimension's odd stride (one packed record's field: NumPy calls it aligned)
    raised _core.Fallback from the general path, for logits, labels and weights alike."""
    x = rng.standard_normal((1, 6)).astype(F32)
    w = np.ones(1, [("w", F64), ("pad", np.uint8)])["w"]  # shape (1,): weight of 1 class
    rec = np.zeros(1, [("x", F32, (6,)), ("y", np.int64), ("pad", np.uint8)])
    rec["x"] = x
    rec["y"] = 4
    assert rec["x"].flags.aligned
    assert rec["x"].strides[0] % 4 != 0
    loss, grad = fs.cross_entropy(x, np.array([4]), return_grad=True)
    loss2, grad2 = fs.cross_entropy(rec["x"], rec["y"], return_grad=True)
    assert loss2 == loss
    np.testing.assert_array_equal(grad2, grad)
    one = np.zeros((1, 1), F32)
    assert fs.cross_entropy(one, np.zeros(1, np.int64), weight=w) == 0


def test_inplace_grad_leaves_the_logits_alone_when_the_call_fails(rng):
    x = rng.standard_normal((1000, 10)).astype(F32)
    before = x.copy()
    y = rng.integers(0, 10, 1000)
    y[-1] = 10  # the last label is bad: found before any row is written
    with pytest.raises(ValueError, match=r"label 10 at position \(999,\)"):
        fs.cross_entropy(x, y, return_grad=True, inplace_grad=True)
    np.testing.assert_array_equal(x, before)
    with pytest.raises(ValueError, match="label_smoothing"):
        fs.cross_entropy(x, y, return_grad=True, inplace_grad=True, label_smoothing=2)
    np.testing.assert_array_equal(x, before)


def test_inplace_grad_refuses_what_it_cannot_write(rng):
    y = np.array([0, 1])
    ro = np.ones((2, 3), F32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fs.cross_entropy(ro, y, return_grad=True, inplace_grad=True)
    with pytest.raises(TypeError, match="floating-point"):
        fs.cross_entropy(np.ones((2, 3), np.int64), y, return_grad=True, inplace_grad=True)
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        fs.cross_entropy([[1.0, 2.0, 3.0]] * 2, y, return_grad=True, inplace_grad=True)
    with pytest.raises(ValueError, match="requires return_grad"):
        fs.cross_entropy(np.ones((2, 3)), y, inplace_grad=True)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"labels": np.array([0, 3])},
            ValueError,
            r"label 3 at position \(1,\) is outside \[0, 3\)",
        ),
        ({"labels": np.array([-1, 0])}, ValueError, r"label -1 at position \(0,\)"),
        ({"labels": np.array([0, 1, 2])}, ValueError, r"shape of logits without axis"),
        ({"labels": np.ones((2, 4))}, ValueError, r"probability labels must have the shape"),
        ({"labels": np.array(["a", "b"])}, TypeError, "labels have dtype"),
        ({"labels": np.array([True, False])}, TypeError, "labels have dtype"),
        ({"weight": np.ones(4)}, ValueError, r"one entry per class, shape \(3,\)"),
        ({"weight": np.array([1.0, -0.5, 1.0])}, ValueError, r"non-negative, got -0.5 at class 1"),
        ({"weight": np.array([1.0, np.nan, 1.0])}, ValueError, "finite and non-negative"),
        ({"reduction": "avg"}, ValueError, "reduction must be 'none', 'sum' or 'mean', got 'avg'"),
        ({"reduction": None}, ValueError, "reduction must be 'none', 'sum' or 'mean', got None"),
        ({"reduction": np.array("mean")}, ValueError, r"got array\('mean'"),
        ({"reduction": np.array(["mean", "sum"])}, ValueError, r"got array\(\['mean', 'sum'\]"),
        ({"label_smoothing": 1.5}, ValueError, r"label_smoothing must be \[0.0, 1.0\], got 1.5"),
        ({"label_smoothing": -0.1}, ValueError, "label_smoothing"),
        ({"label_smoothing": float("nan")}, ValueError, "label_smoothing"),
        ({"softcap": 0.0}, ValueError, "softcap must be a positive finite number or None, got 0.0"),
        ({"softcap": -2}, ValueError, "softcap"),
        ({"softcap": float("inf")}, ValueError, "softcap"),
        ({"z_loss": -1.0}, ValueError, "z_loss"),
        (
            {"softcap": float("nan")},
            ValueError,
            "softcap must be a positive finite number or None, got nan",
        ),
        ({"label_smoothing": "0.1"}, TypeError, "label_smoothing must be a real number, got '0.1'"),
        ({"label_smoothing": np.array("0.1")}, TypeError, "label_smoothing must be a real number"),
        ({"z_loss": b"0.1"}, TypeError, "z_loss must be a real number, got b'0.1'"),
        ({"softcap": "30"}, TypeError, "softcap must be a real number, got '30'"),
        ({"softcap": 1j}, TypeError, "softcap must be a real number, got 1j"),
        ({"label_smoothing": np.array([0.1])}, TypeError, "label_smoothing must be a real number"),
        (
            {"label_smoothing": 10**400},
            ValueError,
            r"label_smoothing must be \[0.0, 1.0\], got 1000",
        ),
        ({"z_loss": 10**400}, ValueError, "z_loss must be finite, got 1000"),
        ({"softcap": -(10**400)}, ValueError, "softcap must be a positive finite number"),
        ({"axis": 2}, np.exceptions.AxisError, "axis 2"),
        ({"axis": (0, 1)}, TypeError, "axis must be an integer"),
        ({"axis": (1,)}, TypeError, r"axis must be an integer, got \(1,\)"),
        ({"axis": None}, TypeError, "axis must be an integer, got None"),
        ({"axis": [1]}, TypeError, r"axis must be an integer, got \[1\]"),
        ({"axis": 2**70}, np.exceptions.AxisError, f"axis {2**70} is out of bounds"),
        (
            {"logits": np.ones(3, F32), "labels": np.int64(0), "axis": None},
            TypeError,
            "axis must be an integer, got None",
        ),
        ({"ignore_index": 1.5}, TypeError, "ignore_index must be an integer"),
        ({"logits": np.ones((2, 3), complex)}, TypeError, "logits has dtype complex128"),
        ({"logits": np.ones((2, 0))}, ValueError, "0 classes"),
        ({"logits": np.float32(1.0)}, ValueError, "at least one dimension"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    args = {"logits": np.ones((2, 3), F32), "labels": np.array([0, 1])}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        fs.cross_entropy(args.pop("logits"), args.pop("labels"), **args)


def test_bad_label_position_in_k_dimensional_labels(rng):
    x = rng.standard_normal((2, 4, 3, 5)).astype(F32)
    y = rng.integers(0, 4, (2, 3, 5))
    y[1, 2, 3] = 7
    with pytest.raises(ValueError, match=r"label 7 at position \(1, 2, 3\)"):
        fs.cross_entropy(x, y, axis=1)


@pytest.mark.parametrize("n", [2, 5, 1000])
@pytest.mark.parametrize("at", [0, 7, 8, 30, 36])
@pytest.mark.parametrize("bad", [-1, "n", 2**40, -(2**63), -100])
def test_bad_contiguous_label_found_where_it_is(rng, n, at, bad):
    """Contiguous labels are checked 8 at a time (count_labels), then one by one to name the
    first bad one: any position (in a vector of 8 or in the tail of 37), any value outside
    [0, n), before anything is written; -100 passes where it is the ignore_index."""
    x = rng.standard_normal((37, n)).astype(F32)
    y = rng.integers(0, n, 37)
    y[[3, 31]] = 5 if n > 5 else 0  # (the ignore_index below, where it is not -100)
    value = n if bad == "n" else int(bad)
    y[at] = value
    if at < 36:
        y[at + 1] = n + 1  # a later bad label: the first one is named
    for ignore in (-100, 5):
        xi = x.copy()
        if value == ignore:
            continue
        with pytest.raises(ValueError, match=rf"label {value} at position \({at},\)"):
            fs.cross_entropy(xi, y, ignore_index=ignore, return_grad=True, inplace_grad=True)
        np.testing.assert_array_equal(xi, x)  # nothing written
    y[at] = -100
    y[min(at + 1, 36)] = -100
    check(x, y, F32, "-100 ignored", reduction="sum")


def test_bad_label_in_a_later_run_of_contiguous_labels(rng):
    """Labels that are runs of 5 contiguous values 8 apart (a view): each run is counted
    apart (count_labels), and a bad label in the third run is named at its position."""
    x = rng.standard_normal((3, 5, 4)).astype(F32)
    base = rng.integers(0, 4, (3, 8))
    y = base[:, :5]
    assert not y.flags.c_contiguous
    y[2, 3] = 9
    y[2, 4] = -3
    xi = x.copy()
    with pytest.raises(ValueError, match=r"label 9 at position \(2, 3\)"):
        fs.cross_entropy(xi, y, return_grad=True, inplace_grad=True)
    np.testing.assert_array_equal(xi, x)
    y[2, 3:] = -100
    check(x, y, F32, "runs of labels")


@dtypes
@pytest.mark.parametrize("soft", [False, True], ids=["indices", "probabilities"])
def test_backward_from_a_saved_logsumexp(rng, dtype, soft):
    shape = (6, 300)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    labels = random_labels(rng, shape, -1, soft, dtype)
    for kw in (
        {},
        {"weight": rng.random(300), "label_smoothing": 0.2, "z_loss": 0.01},
        {"softcap": 4.0, "reduction": "none", "grad_out": rng.standard_normal(6)},
    ):
        _, ref_grad = ref_cross_entropy(x, labels, **kw)
        scale = float(np.max(np.abs(ref_grad)))
        _, grad = fs.cross_entropy(x, labels, return_grad=True, **kw)
        capped = x if "softcap" not in kw else (4.0 * np.tanh(x.astype(F64) / 4.0)).astype(dtype)
        lse = fs.logsumexp(capped)
        got = fs.cross_entropy_backward(x, labels, lse=lse, **kw)
        # the saved lse is rounded to the dtype: about |lse| ulp of error in the softmax
        tol = 50 * TOL[dtype] if dtype == F32 else 1e-12
        np.testing.assert_allclose(got, ref_grad, rtol=0, atol=tol * scale, err_msg=str(kw))
        np.testing.assert_array_equal(fs.cross_entropy_backward(x, labels, **kw), grad)
        out = np.empty_like(x)
        assert fs.cross_entropy_backward(x, labels, out=out, **kw) is out
        np.testing.assert_array_equal(out, grad)
        inplace = x.copy()
        fs.cross_entropy_backward(inplace, labels, out=inplace, **kw)
        np.testing.assert_array_equal(inplace, grad)


def test_backward_checks_its_own_arguments(rng):
    x = rng.standard_normal((3, 4)).astype(F32)
    y = np.array([0, 1, 2])
    with pytest.raises(ValueError, match=r"lse must have the per-example shape \(3,\)"):
        fs.cross_entropy_backward(x, y, lse=np.zeros(4))
    with pytest.raises(ValueError, match="out must have shape"):
        fs.cross_entropy_backward(x, y, out=np.empty((3, 4), F64))
    with pytest.raises(ValueError, match="label 9"):
        fs.cross_entropy_backward(x, np.array([0, 9, 1]))


def test_inputs_are_not_modified(rng):
    x = rng.standard_normal((5, 6)).astype(F32)
    t = random_labels(rng, (5, 6), -1, True, F32)
    w = rng.random(6).astype(F32)  # float32: the kernel reads this very array
    copies = [a.copy() for a in (x, t, w)]
    fs.cross_entropy(x, t, weight=w, return_grad=True, softcap=3.0)
    for a, c in zip((x, t, w), copies):
        np.testing.assert_array_equal(a, c)


@dtypes
def test_confident_rows_keep_their_small_loss_accurate(rng, dtype):
    """Label at the maximum with a large margin: loss = log(1 + tiny), relative accuracy kept."""
    for n in (3, 16, 100, 5000):
        x = rng.standard_normal((20, n)) - 14.0 - np.log(n)
        y = rng.integers(0, n, 20)
        x[np.arange(20), y] = rng.uniform(0, 5, 20)
        x = x.astype(dtype)
        loss = fs.cross_entropy(x, y, reduction="none")
        # log(1 + sum of the others' exp(x - x_y)), with no cancellation in the reference
        w = widen(x)
        xy = w[np.arange(20), y][:, None]
        others = np.where(np.arange(n) == y[:, None], 0, np.exp(w - xy)).sum(1)
        ref = np.log1p(others)
        assert np.all(ref < 1e-5)
        np.testing.assert_allclose(loss, ref, rtol=TOL[dtype], atol=0, err_msg=f"n={n}")


@dtypes
@pytest.mark.parametrize("n", [10, 40, 100, 1000, 5000])
def test_labels_far_below_the_maximum(dtype, n):
    """Losses of about 90 and more (exp(x_y - max) below float32's range) stay finite and right."""
    for gap in (60.0, 85.0, 95.0, 200.0):
        x = np.zeros((3, n), dtype)
        x[:, 1] = -gap  # the label's logit
        x[1, 2] = 1.5
        y = np.array([1, 1, 1])
        for kw in ({}, {"label_smoothing": 0.1}, {"z_loss": 0.01}):
            check(x, y, dtype, f"gap {gap}", reduction="none", **kw)


@dtypes
def test_gradient_may_not_overwrite_what_the_kernel_reads(rng, dtype):
    """out= or inplace_grad over the probabilities, weights or labels: computed as if apart."""
    x = (rng.standard_normal((4, 300)) * 2).astype(dtype)
    t = random_labels(rng, (4, 300), -1, True, dtype)
    expected = fs.cross_entropy_backward(x, t)
    t2 = t.copy()
    assert fs.cross_entropy_backward(x, t2, out=t2) is t2
    np.testing.assert_array_equal(t2, expected)
    # weights that are a row of the logits themselves, gradient in place
    xa = np.abs(x)
    w = xa[0]
    y = rng.integers(0, 300, 4)
    kw = {"weight": w.copy(), "label_smoothing": 0.1}
    loss, grad = fs.cross_entropy(xa, y, return_grad=True, **kw)
    loss2, same = fs.cross_entropy(
        xa, y, return_grad=True, inplace_grad=True, weight=w, label_smoothing=0.1
    )
    assert same is xa
    assert loss2 == loss
    np.testing.assert_array_equal(xa, grad)


def test_misaligned_and_strided_labels_and_weights(rng):
    x = rng.standard_normal((5, 7)).astype(F32)
    y = rng.integers(0, 7, 5)
    buf = np.zeros(5 * 8 + 1, np.uint8)
    lab = np.frombuffer(buf.data, np.int64, 5, offset=1)  # misaligned
    lab[...] = y
    rec = np.zeros(5, [("a", np.int32), ("y", np.int64)])  # a field: stride 12
    rec["y"] = y
    w = rng.random(7)
    wbuf = np.zeros(7 * 8 + 1, np.uint8)
    wm = np.frombuffer(wbuf.data, np.float64, 7, offset=1)
    wm[...] = w
    expected = fs.cross_entropy(x, y, weight=w, reduction="none")
    for labels in (lab, rec["y"]):
        np.testing.assert_array_equal(
            fs.cross_entropy(x, labels, weight=wm, reduction="none"), expected
        )


def general_path_only(monkeypatch):
    """Turn off the fast path of cross_entropy (it asks _fast_axis first)."""
    monkeypatch.setattr(fs._cross_entropy, "_fast_axis", lambda *args: -1)


def forward_cases(rng, dtype):
    """(logits, labels, kwargs) of forward calls that the fast path takes or hands on."""
    x = rng.standard_normal((6, 5, 4)).astype(dtype)
    y = rng.integers(0, 5, (6, 4))
    y[0, 0] = -100
    packed = np.zeros((6, 4), [("y", np.int64), ("pad", np.uint8)])["y"]  # stride 9
    packed[...] = y
    huge = np.array([[3e38, -3e38]], dtype)
    nan = x[:, :, 0].copy()
    nan[2, 1] = np.nan
    misaligned = one_byte_off((6, 5), dtype)
    misaligned[...] = x[:, :, 0]
    return [
        (x, y, {"axis": 1}),
        (x, y, {"axis": -2, "reduction": "sum"}),
        (x[::-1, :, ::2], y[::-1, ::2], {"axis": 1}),
        (x, packed, {"axis": 1}),
        (misaligned, y[:, 0], {}),
        (x[:, :, 0], np.full(6, 7), {"ignore_index": 7}),  # all ignored: NaN
        (x[:, :, 0], np.full(6, -100), {"reduction": "sum"}),  # 0
        (huge, np.array([1]), {}),  # beyond float32's range: +inf
        (nan, y[:, 0], {}),
    ]


@dtypes
@pytest.mark.parametrize("grad", ["none", "return_grad", "inplace_grad"])
def test_fast_path_matches_the_general_path(rng, dtype, grad, monkeypatch):
    """A call with default options goes straight to the kernel; what it returns (and which
    arrays it copies first) must not differ from the general path."""
    gkw = {"return_grad": grad != "none", "inplace_grad": grad == "inplace_grad"}

    def call(x, y, kw):
        x = x.copy() if gkw["inplace_grad"] else x  # (each call its own logits)
        out = fs.cross_entropy(x, y, **kw, **gkw)
        if gkw["inplace_grad"]:
            assert out[1] is x
        return out if gkw["return_grad"] else (out, None)

    cases = forward_cases(rng, dtype)
    with np.errstate(all="raise"):  # (no overflow warning for the +inf loss)
        fast = [call(x, y, kw) for x, y, kw in cases]
    general_path_only(monkeypatch)
    for (x, y, kw), (loss, g) in zip(cases, fast):
        with np.errstate(over="ignore"):
            want, want_g = call(x, y, kw)
        assert type(loss) is type(want)
        assert loss.dtype == x.dtype
        np.testing.assert_array_equal(loss, want)
        np.testing.assert_array_equal(g, want_g)
    assert np.isnan(fast[5][0])
    assert fast[6][0] == 0
    assert (fast[7][0] == np.inf) == (dtype == F32)


def test_inplace_grad_over_labels_in_the_logits_buffer(monkeypatch):
    """Labels whose memory is part of the logits (one buffer viewed both ways): the
    gradient must not be written over labels the kernel still reads, on either path."""
    rows = np.random.default_rng(5).standard_normal((2, 4))
    x = np.zeros((3, 4))
    x[1:] = rows
    want_loss, want_grad = fs.cross_entropy(x, np.zeros(3, np.int64), return_grad=True)

    def call():
        buf = np.zeros(12)
        logits = buf.reshape(3, 4)
        logits[1:] = rows
        labels = buf.view(np.int64)[:3]  # the first row's 0.0s: labels 0
        loss, grad = fs.cross_entropy(logits, labels, return_grad=True, inplace_grad=True)
        assert grad is logits
        return loss, grad

    for _ in range(2):
        loss, grad = call()
        assert loss == want_loss
        np.testing.assert_array_equal(grad, want_grad)
        general_path_only(monkeypatch)


def test_fast_path_is_taken(rng, monkeypatch):
    """The common call does not build the general path's _Call."""

    def refuse(*args, **kwargs):
        raise AssertionError("the general path was taken")

    x = rng.standard_normal((3, 4)).astype(F32)
    y = rng.integers(0, 4, 3)
    monkeypatch.setattr(fs._cross_entropy, "_Call", refuse)
    fs.cross_entropy(x, y)
    fs.cross_entropy(x.T.astype(F64), y, axis=0, reduction="sum", ignore_index=2)
    fs.cross_entropy(x, y, return_grad=True)
    fs.cross_entropy(x.copy(), y, return_grad=True, inplace_grad=True)
    for kw in ({"reduction": "none"}, {"return_grad": True, "grad_out": 2.0}):
        with pytest.raises(AssertionError, match="general path"):
            fs.cross_entropy(x, y, **kw)


@pytest.mark.parametrize(
    ("logits_shape", "labels", "kwargs"),
    [
        ((3, 4), [0, 4, 1], {}),  # label out of range
        ((3, 4), [[0, 1, 2]], {}),  # labels of the wrong shape
        ((3, 0), [0, 0, 0], {}),  # no classes
        ((3, 4), [0, 1, 2], {"ignore_index": 2**63}),
        ((3, 4), [0, 1, 2], {"axis": 2}),
        ((3, 4), [0, 1, 2], {"reduction": "avg"}),
    ],
)
def test_fast_path_errors_match_the_general_path(logits_shape, labels, kwargs, monkeypatch):
    x = np.zeros(logits_shape, F32)
    y = np.array(labels, np.int64)
    with pytest.raises(Exception) as fast:  # noqa: PT011 (compared below)
        fs.cross_entropy(x, y, **kwargs)
    general_path_only(monkeypatch)
    with pytest.raises(type(fast.value)) as general:
        fs.cross_entropy(x, y, **kwargs)
    assert str(fast.value) == str(general.value)


def one_byte_off(shape, dtype) -> np.ndarray:
    """Zeros of `shape` whose data pointer is one byte off the dtype's alignment."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    a = np.zeros(size + 16, np.uint8)[1:][:size].view(dtype).reshape(shape)  # ([1:1]: offset 0)
    assert a.__array_interface__["data"][0] % np.dtype(dtype).alignment
    return a


@pytest.mark.parametrize("what", ["logits", "labels", "probabilities", "grad out"])
def test_empty_unaligned_arrays(what):
    """NumPy calls every empty array aligned, even one a byte off, but the kernels check
    the pointer itself: such arrays must be copied, not raise _core.Fallback."""
    x = one_byte_off((0, 5), F32) if what == "logits" else np.zeros((0, 5), F32)
    labels = np.zeros(0, np.int64)
    if what == "labels":
        labels = one_byte_off((0,), np.int64)
    elif what == "probabilities":
        labels = one_byte_off((0, 5), F32)
    loss, grad = fs.cross_entropy(x, labels, return_grad=True, reduction="sum")
    assert loss == 0
    assert grad.shape == (0, 5)
    out = one_byte_off((0, 5), F32) if what == "grad out" else None
    assert fs.cross_entropy_backward(x, labels, out=out).shape == (0, 5)


@pytest.mark.parametrize("call", ["return_grad", "inplace_grad", "backward", "backward out"])
def test_float16_gradients_too_large_are_infinite_without_a_warning(call):
    """As for the loss ("a result too large for the dtype is +-inf"): no NumPy
    RuntimeWarning from the conversion to float16 (pytest turns one into an error)."""
    x = np.zeros((1, 2), np.float16)
    kw = {"weight": np.array([1e5, 1e5]), "reduction": "sum", "grad_out": 10.0}  # grad 5e5
    if call.startswith("backward"):
        out = np.empty_like(x) if call == "backward out" else None
        grad = fs.cross_entropy_backward(x, np.array([1]), out=out, **kw)
    else:
        _, grad = fs.cross_entropy(
            x, np.array([1]), return_grad=True, inplace_grad=call == "inplace_grad", **kw
        )
    assert grad.dtype == np.float16
    np.testing.assert_array_equal(grad, [[np.inf, -np.inf]])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"softcap": 1e-50}, "softcap 1e-50 is out of the range of float32"),
        ({"softcap": 1e39}, "out of the range of float32"),
        (
            {"weight": np.array([1.0, 1e300, 1.0])},
            r"weight has entries out of the range of float32, the first 1e\+300 at class 1",
        ),
        ({"ignore_index": 2**70}, "ignore_index must fit in int64"),
    ],
)
def test_options_out_of_the_working_range(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fs.cross_entropy(np.ones((2, 3), F32), np.array([0, 1]), **kwargs)


def test_backward_rejects_a_complex_lse():
    with pytest.raises(TypeError, match="lse must be real"):
        fs.cross_entropy_backward(np.ones((2, 3)), np.array([0, 1]), lse=np.ones(2, complex))


@dtypes
@pytest.mark.parametrize("soft", [False, True], ids=["indices", "probabilities"])
@pytest.mark.parametrize("shape", [(3, 7, 5), (2, 9, 130), (2, 40, 3, 17), (1, 3, 1000)], ids=str)
def test_k_dimensional_random_options(rng, dtype, soft, shape):
    """Classes on axis 1 (the column kernel, tiles of 64 examples; softcap: rows)."""
    for trial in range(4):
        kw = random_options(rng, shape[1], dtype, soft)
        x = (rng.standard_normal(shape) * 4).astype(dtype)
        labels = random_labels(rng, shape, 1, soft, dtype, kw.get("ignore_index", -100))
        if kw["reduction"] == "none" and rng.random() < 0.5:
            kw["grad_out"] = rng.standard_normal(shape[:1] + shape[2:])
        check(x, labels, dtype, f"trial {trial}", axis=1, **kw)
        inplace = x.copy()
        _, grad = fs.cross_entropy(x, labels, axis=1, return_grad=True, **kw)
        fs.cross_entropy(inplace, labels, axis=1, return_grad=True, inplace_grad=True, **kw)
        np.testing.assert_array_equal(inplace, grad)


@dtypes
@pytest.mark.parametrize("soft", [False, True], ids=["indices", "probabilities"])
def test_special_values_the_same_in_columns_as_in_rows(rng, dtype, soft):
    inf, nan = np.inf, np.nan
    rows = np.array(
        [
            [1.0, 2.0, 3.0, 0.5],
            [nan, 1.0, 2.0, 0.0],
            [inf, 1.0, 2.0, 0.0],
            [-inf, -inf, -inf, -inf],
            [-inf, 1.0, 2.0, 0.0],
            [-inf, 1.0, 2.0, 0.0],
            [5.0, 5.0, 5.0, 5.0],
            [1.0, nan, 2.0, 0.0],
        ],
        dtype,
    )
    labels = (
        random_labels(rng, rows.shape, -1, True, dtype)
        if soft
        else np.array([0, 1, 1, 0, 0, 1, 2, 1])
    )
    cols = np.ascontiguousarray(rows.T)[None]  # (1, C, 8): classes on axis 1
    col_labels = np.ascontiguousarray(labels.T)[None] if soft else labels[None]
    for kw in ({}, {"label_smoothing": 0.2}, {"z_loss": 0.1}, {"ignore_index": 1}):
        if soft and "ignore_index" in kw:
            continue
        loss, grad = fs.cross_entropy(rows, labels, reduction="none", return_grad=True, **kw)
        closs, cgrad = fs.cross_entropy(
            cols, col_labels, axis=1, reduction="none", return_grad=True, **kw
        )
        np.testing.assert_allclose(closs[0], loss, rtol=2e-6, equal_nan=True, err_msg=str(kw))
        np.testing.assert_allclose(cgrad[0].T, grad, rtol=2e-6, atol=1e-7, equal_nan=True)


@pytest.mark.parametrize("layout", ["rows", "columns"])
@pytest.mark.parametrize(
    ("x", "y", "kw"),
    [
        ([[2e38, -2e38]] * 3, [1, 1, 1], {"weight": [0.25, 0.25]}),
        ([[2e38, -2e38]] * 3, [1, 1, 1], {"label_smoothing": 0.5}),
        ([[2e38, -2e38]] * 3, [1, 1, 1], {"label_smoothing": 1.0}),
        (
            [[3e38, -3e38, 0.0, 1.0]] * 2,
            [0, 3],
            {"weight": [0.1, 0.0, 1.0, 0.3], "label_smoothing": 0.1},
        ),
        ([[1e20, 0.0]], [0], {"z_loss": 1e-4}),
    ],
)
def test_huge_logits_give_finite_losses_in_range(layout, x, y, kw):
    """Differences of logits beyond float32's range, losses within it (found by fuzzing)."""
    x = np.array(x, np.float32)
    y = np.array(y)
    kw = {k: np.array(v, np.float32) if isinstance(v, list) else v for k, v in kw.items()}
    ref, _ = ref_cross_entropy(x, y, reduction="none", **kw)
    if layout == "columns":
        x, axis = np.ascontiguousarray(x.T)[None], 1
        y = y[None]
    else:
        axis = -1
    w = kw.get("weight", np.ones(x.shape[axis], np.float32))
    mean = ref.sum() / w[np.ravel(y)].astype(np.float64).sum()
    for reduction, want in (("none", ref), ("sum", ref.sum()), ("mean", mean)):
        loss = fs.cross_entropy(x, y, axis=axis, reduction=reduction, **kw)
        with np.errstate(over="ignore"):
            want32 = np.float32(want) if np.ndim(want) == 0 else want.astype(np.float32)
        # finite exactly where the true value fits float32 (then within rounding)
        np.testing.assert_allclose(np.ravel(loss), np.ravel(want32), rtol=1e-6, err_msg=reduction)


@pytest.mark.parametrize("layout", ["rows", "columns"])
@pytest.mark.parametrize("n", [10, 100, 1000])
# (not subnormal weights with smoothing: its linear sums, scaled by 2**-64 against
# overflow, underflow then, on every path)
@pytest.mark.parametrize(("w", "smoothing"), [(1e38, 0.0), (1e38, 0.1), (1e-39, 0.0), (1e-44, 0.0)])
def test_extreme_uniform_weights_give_the_unweighted_mean(rng, layout, n, smoothing, w):
    """float32 weights at the ends of the range, all equal: the weighted mean is the plain
    mean, and the gradient the plain gradient. The column kernels formed w[y] * loss and
    1 / sum(w) in float32 (inf, or a subnormal's few bits) where the rows use double."""
    x = rng.standard_normal((16, n)).astype(F32)
    y = rng.integers(0, n, 16)
    weight = np.full(n, w, F32)
    if layout == "columns":
        x, y = np.ascontiguousarray(x.T)[None], y[None]
    axis = 1 if layout == "columns" else -1
    kw = {"axis": axis, "label_smoothing": smoothing}
    loss, grad = fs.cross_entropy(x, y, return_grad=True, **kw)
    wloss, wgrad = fs.cross_entropy(x, y, return_grad=True, weight=weight, **kw)
    np.testing.assert_allclose(wloss, loss, rtol=1e-6)
    np.testing.assert_allclose(wgrad, grad, rtol=1e-5, atol=1e-6 * np.abs(grad).max())


@pytest.mark.parametrize("layout", ["rows", "columns"])
@pytest.mark.parametrize("n", [10, 100])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_gradient_scales_beyond_float32_with_small_weights(rng, layout, n, smoothing):
    """grad_out of 1e39 (beyond float32) times weights of 1e-10: a finite gradient."""
    x = rng.standard_normal((2, n)).astype(F32)
    y = np.array([1, 2])
    weight = np.full(n, 1e-10, F32)
    scale = np.array([1e39, 1.0])
    kw = {"weight": weight, "label_smoothing": smoothing, "grad_out": scale}
    _, want = ref_cross_entropy(x, y, reduction="none", **kw)
    if layout == "columns":
        x, y = np.ascontiguousarray(x.T)[None], y[None]
        kw["grad_out"] = scale[None]
    axis = 1 if layout == "columns" else -1
    _, grad = fs.cross_entropy(x, y, axis=axis, reduction="none", return_grad=True, **kw)
    if layout == "columns":
        grad = grad[0].T
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


@dtypes
@pytest.mark.parametrize("n", [2, 10, 100, 1000])
@pytest.mark.parametrize("how", ["rows", "saved lse", "classes on axis 1", "soft-capped"])
def test_confident_rows_keep_the_labels_gradient_accurate(rng, dtype, n, how):
    """Label at the maximum: d loss / d x[y] = p - 1 = -(sum of the others) / s, a small
    number that p - 1 formed in the dtype would get wrong by about one ulp of 1."""
    rows = 24
    x = rng.standard_normal((rows, n)) - 12.0 - np.log(n)
    y = rng.integers(0, n, rows)
    x[np.arange(rows), y] = rng.uniform(0, 3, rows)
    x = x.astype(dtype)
    w = widen(x)
    if how == "soft-capped":
        w = 40.0 * np.tanh(w / 40.0)
    others = np.where(np.arange(n) == y[:, None], 0, np.exp(w - w[np.arange(rows), y][:, None]))
    o = others.sum(1)
    ref = -o / (1 + o)  # p - 1 at the label, reduction="sum"
    if how == "soft-capped":
        ref = ref * (1 - np.tanh(widen(x)[np.arange(rows), y] / 40.0) ** 2)
    if how == "rows":
        _, g = fs.cross_entropy(x, y, reduction="sum", return_grad=True)
    elif how == "soft-capped":
        _, g = fs.cross_entropy(x, y, reduction="sum", softcap=40.0, return_grad=True)
    elif how == "saved lse":
        g = fs.cross_entropy_backward(
            x, y, lse=fs.logsumexp(widen(x)).astype(dtype), reduction="sum"
        )
    else:  # (N, C, 1): the classes strided, the column kernel
        _, g3 = fs.cross_entropy(
            x[:, :, None], y[:, None], axis=1, reduction="sum", return_grad=True
        )
        g = g3[:, :, 0]
    got = g[np.arange(rows), y]
    rtol, atol = {np.float32: 2e-6, np.float64: 1e-13}[dtype], 0.0
    eps = float(np.finfo(dtype).eps)
    if how == "soft-capped":  # the capped logits are rounded to the dtype: up to 40 * eps each
        rtol = 200 * eps
    if how == "saved lse":  # p = exp(x[y] - lse) is no closer than the saved lse's rounding
        rtol, atol = 0.0, 4 * eps * (1 + float(np.abs(fs.logsumexp(x)).max()))
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol, err_msg=f"{how}, n={n}")


@pytest.mark.parametrize("kind", ["labels", "probs", "softcap"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((7, 3), -1),
        ((33, 10), -1),
        ((5, 1000), -1),
        ((4, 5, 6), 1),
        ((3, 200, 7), 1),
        ((2, 9000), 0),
    ],
)
def test_forward_writes_each_examples_logsumexp(rng, shape, axis, dtype, kind):
    """The forward pass's per-example lse (for a backward that reads the logits once, as
    fastsoftmax.torch saves it), on every path: rows, short rows, tiles, columns; 0 for
    an ignored example, NaN where the loss is NaN."""
    from fastsoftmax._cross_entropy import _Call

    x = (rng.standard_normal(shape) * 3).astype(dtype)
    ax = axis % len(shape)
    examples = shape[:ax] + shape[ax + 1 :]
    labels = rng.integers(0, shape[ax], size=examples)
    labels.flat[0] = -100
    np.moveaxis(x, ax, -1)[(*np.unravel_index(1, examples), 0)] = np.nan  # example 1: NaN
    softcap = 5.0 if kind == "softcap" else None
    target = labels
    if kind == "probs":
        target = rng.random(shape).astype(dtype)
    call = _Call(x, target, axis, None, -100, "mean", 0.0, 0.0, softcap)
    lse = np.empty(examples)
    call.run(None, None, None, lse)
    xc = x.astype(np.float64)
    if softcap:
        xc = softcap * np.tanh(xc / softcap)
    want = scipy.special.logsumexp(np.moveaxis(xc, ax, -1), axis=-1)
    if kind != "probs":
        want.flat[0] = 0.0
    assert np.array_equal(np.isnan(lse), np.isnan(want))
    eps = np.finfo(np.float32 if dtype == np.float16 else dtype).eps
    ok = ~np.isnan(want)
    assert np.all(np.abs(lse[ok] - want[ok]) <= 4 * eps * np.maximum(1.0, np.abs(want[ok])))

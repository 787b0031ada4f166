"""fastsoftmax.torch: the custom operators against PyTorch's own functions, their
gradients (gradcheck in float64), opcheck, torch.compile, half precision, errors."""

from __future__ import annotations

import contextlib
import itertools
import types

import pytest

torch = pytest.importorskip("torch")
fst = pytest.importorskip("fastsoftmax.torch")
F = torch.nn.functional

pytestmark = pytest.mark.peers


@pytest.fixture(autouse=True)
def simd() -> str:
    """conftest's per-target fixture, overridden: these tests run once, on the best target
    (the kernels' own tests run on every one; these test the binding to PyTorch)."""
    return "default"


class _PassThrough(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        return func(*args, **(kwargs or {}))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _reference_ce(x, t, weight, ignore_index, reduction, smoothing, z_loss, softcap):  # type: ignore[no-untyped-def]
    """PyTorch's cross-entropy of the soft-capped logits plus the z-loss term, in float64."""
    x = x.double()
    if softcap is not None:
        x = softcap * torch.tanh(x / softcap)
    ce = F.cross_entropy(
        x, t, weight=weight, ignore_index=ignore_index, reduction=reduction,
        label_smoothing=smoothing,
    )  # fmt: skip
    if not z_loss:
        return ce
    lse = torch.logsumexp(x, dim=1 if x.dim() > 1 else 0)
    kept = torch.ones_like(lse, dtype=torch.bool) if t.is_floating_point() else t != ignore_index
    z = z_loss * torch.where(kept, lse, 0.0) ** 2
    if reduction == "none":
        return ce + z
    if reduction == "sum":
        return ce + z.sum()
    return ce + z.sum() / kept.sum()


def _case(shape, probs, seed):  # type: ignore[no-untyped-def]
    g = _gen(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * 3
    axis = 1 if len(shape) > 1 else 0
    classes = shape[axis]
    if probs:
        t = torch.softmax(torch.randn(*shape, generator=g, dtype=torch.float64), axis)
    else:
        t = torch.randint(0, classes, shape[:axis] + shape[axis + 1 :], generator=g)
        if t.numel() > 1:
            t.view(-1)[0] = -100
    return x, t, torch.rand(classes, generator=g, dtype=torch.float64) + 0.5


SHAPES = [(7,), (6, 5), (4, 5, 3), (3, 4, 2, 2)]
OPTIONS = list(
    itertools.product([False, True], ["mean", "sum", "none"], [0.0, 0.15], [0.0, 0.01], [None, 4.0])
)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("probs", [False, True])
@pytest.mark.parametrize(("weighted", "reduction", "smoothing", "z_loss", "softcap"), OPTIONS)
def test_cross_entropy_matches_pytorch(
    shape, probs, weighted, reduction, smoothing, z_loss, softcap
):  # type: ignore[no-untyped-def]
    x, t, w = _case(shape, probs, seed=len(shape))
    weight = w if weighted else None
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    ours = fst.cross_entropy(
        x1, t, weight, reduction=reduction, label_smoothing=smoothing, z_loss=z_loss,
        softcap=softcap,
    )  # fmt: skip
    ref = _reference_ce(x2, t, weight, -100, reduction, smoothing, z_loss, softcap)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    # a per-example upstream gradient for reduction="none" (the classic bug of fused kernels)
    up = torch.randn(ours.shape, generator=_gen(1), dtype=torch.float64)
    (g1,) = torch.autograd.grad(ours, x1, up)
    (g2,) = torch.autograd.grad(ref, x2, up)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("weighted", "reduction", "smoothing", "z_loss", "softcap"), OPTIONS)
def test_cross_entropy_gradcheck(weighted, reduction, smoothing, z_loss, softcap):  # type: ignore[no-untyped-def]
    for shape, probs in [((5, 4), False), ((3, 4, 2), False), ((5, 4), True)]:
        x, t, w = _case(shape, probs, seed=3)
        x.requires_grad_()
        if probs:
            t.requires_grad_()  # the probabilities' own gradient too

        def f(a, b, w=w if weighted else None):  # type: ignore[no-untyped-def]
            return fst.cross_entropy(
                a, b, w, reduction=reduction, label_smoothing=smoothing, z_loss=z_loss,
                softcap=softcap,
            )  # fmt: skip

        assert torch.autograd.gradcheck(f, (x, t))


@pytest.mark.parametrize("inplace", [False, True])
def test_cross_entropy_inplace_backward(inplace):  # type: ignore[no-untyped-def]
    x, t, _ = _case((8, 6), False, seed=4)
    logits = (x * 1.0).requires_grad_()  # a leaf
    h = logits * 2  # the non-leaf whose storage receives the gradient
    loss = fst.cross_entropy(h, t, reduction="none", inplace_backward=inplace)
    up = torch.arange(8, dtype=torch.float64)
    loss.backward(up)
    ref = x * 2
    ref.requires_grad_()
    F.cross_entropy(ref, t, reduction="none").backward(up)
    torch.testing.assert_close(logits.grad, 2 * ref.grad)
    if inplace:  # the gradient went through h's own storage
        torch.testing.assert_close(h.detach(), ref.grad)
    else:
        torch.testing.assert_close(h.detach(), x * 2)


def test_cross_entropy_inplace_backward_refuses_logits_another_op_saved():  # type: ignore[no-untyped-def]
    x, t, _ = _case((4, 5), False, seed=5)
    x.requires_grad_()
    h = x * 1.5
    squares = (h * h).sum()  # mul saved h, and runs after the cross-entropy's backward
    total = fst.cross_entropy(h, t, inplace_backward=True) + squares
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        total.backward()


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_family_matches_pytorch_and_gradchecks(name, dim):  # type: ignore[no-untyped-def]
    x = torch.randn(5, 7, generator=_gen(6), dtype=torch.float64)
    ours, ref = getattr(fst, name), getattr(torch, name)
    xs = [x, x.t(), x[:, ::2], torch.tensor(0.5, dtype=torch.float64)]
    for a in xs:
        d = dim if a.dim() else 0
        a1 = a.detach().requires_grad_()  # (the view itself: strided, transposed)
        torch.testing.assert_close(ours(a1, d), ref(a, d))
        assert torch.autograd.gradcheck(lambda v, d=d: ours(v, d), (a1,))
        assert torch.autograd.gradgradcheck(lambda v, d=d: ours(v, d), (a1,))


@pytest.mark.parametrize(
    ("dim", "keepdim"), [(1, False), ((0, 2), True), ([2, 0], False), (-1, True)]
)
def test_logsumexp_matches_pytorch_and_gradchecks(dim, keepdim):  # type: ignore[no-untyped-def]
    x = torch.randn(3, 4, 5, generator=_gen(7), dtype=torch.float64) * 10
    x1 = x.clone().requires_grad_()
    torch.testing.assert_close(fst.logsumexp(x1, dim, keepdim), torch.logsumexp(x, dim, keepdim))
    assert torch.autograd.gradcheck(lambda v: fst.logsumexp(v, dim, keepdim), (x1,))
    assert torch.autograd.gradgradcheck(lambda v: fst.logsumexp(v, dim, keepdim), (x1,))


@pytest.mark.parametrize(("weighted", "reduction", "smoothing", "z_loss", "softcap"), OPTIONS)
def test_cross_entropy_gradgradcheck(weighted, reduction, smoothing, z_loss, softcap):  # type: ignore[no-untyped-def]
    for shape, probs in [((4, 3), False), ((2, 3, 2), False), ((3,), False), ((4, 3), True)]:
        x, t, w = _case(shape, probs, seed=16)
        x.requires_grad_()
        if probs:
            t.requires_grad_()

        def f(a, b, w=w if weighted else None):  # type: ignore[no-untyped-def]
            return fst.cross_entropy(
                a, b, w, reduction=reduction, label_smoothing=smoothing, z_loss=z_loss,
                softcap=softcap,
            )  # fmt: skip

        assert torch.autograd.gradgradcheck(f, (x, t))


def test_cross_entropy_inplace_backward_has_no_second_derivative():  # type: ignore[no-untyped-def]
    x, t, _ = _case((4, 5), False, seed=8)
    x.requires_grad_()
    for mode in (None, _PassThrough()):  # (the eager path, the operators)
        h = x * 1.0
        with mode or contextlib.nullcontext():
            loss = fst.cross_entropy(h, t, inplace_backward=True)
        with pytest.raises(RuntimeError, match="cannot be differentiated again"):
            torch.autograd.grad(loss, x, create_graph=True)


def _opcheck_cases():  # type: ignore[no-untyped-def]
    x, t, w = _case((6, 5), False, seed=9)
    p = torch.softmax(x, 1)
    x4 = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    t4 = torch.randint(0, 5, (2, 3))
    xr = x.clone().requires_grad_()
    ops = torch.ops.fastsoftmax
    _, lse = ops.cross_entropy(x, t, None, -100, "none", 0.0, 0.0, None, False)
    yield ops.softmax.default, (xr, 1)
    yield ops.log_softmax.default, (xr, 0)
    yield ops.softmax_backward.default, (torch.randn_like(x), torch.softmax(x, 1), 1)
    yield ops.log_softmax_backward.default, (torch.randn_like(x), torch.log_softmax(x, 1), 1)
    yield ops.logsumexp.default, (xr, [0, 1], True)
    for args in [
        (xr, t, None, -100, "mean", 0.0, 0.0, None, False),
        (xr, t, w, -100, "none", 0.1, 0.01, 3.0, True),
        (xr, p, None, -100, "sum", 0.0, 0.0, None, False),
        (x4, t4, None, -100, "mean", 0.0, 0.0, None, False),
    ]:
        yield ops.cross_entropy.default, args
    back = (x, t, lse, None, -100, "none", 0.0, 0.0, None)
    yield ops.cross_entropy_backward.default, (torch.ones(6, dtype=torch.float64), *back)
    yield (
        ops.cross_entropy_backward_.default,
        (x.clone(), torch.ones(6, dtype=torch.float64), *back[1:]),
    )


@pytest.mark.parametrize(("op", "args"), list(_opcheck_cases()))
def test_opcheck(op, args):  # type: ignore[no-untyped-def]
    torch.library.opcheck(op, args)


# (Dynamo itself reads .grad of the non-leaf logits while it traces)
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_torch_compile_fullgraph_training_step():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 40, dtype=torch.float64)
    h = torch.randn(32, 16, dtype=torch.float64)
    t = torch.randint(0, 40, (32,))
    t[3] = -100

    def step(loss_fn):  # type: ignore[no-untyped-def]
        lin.zero_grad()
        loss = loss_fn(lin(h), t)
        loss.backward()
        return loss.detach(), lin.weight.grad.clone()

    for inplace in (False, True):

        def ours(a, b, inplace=inplace):  # type: ignore[no-untyped-def]
            return fst.cross_entropy(a, b, label_smoothing=0.1, z_loss=1e-3, inplace_backward=inplace) + (
                fst.logsumexp(a, 1).mean() + fst.softmax(a, 1)[:, 0].sum() + fst.log_softmax(a, 1)[:, 1].sum()
            )  # fmt: skip

        compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")
        l1, g1 = step(compiled)
        l2, g2 = step(ours)
        torch.testing.assert_close(l1, l2)
        torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_half_precision_against_float64(dtype):  # type: ignore[no-untyped-def]
    x64, t, _ = _case((16, 50), False, seed=10)
    x = x64.to(dtype)
    xd = x.double()  # the rounded inputs, exactly
    eps = torch.finfo(dtype).eps
    for name in ("softmax", "log_softmax"):
        got = getattr(fst, name)(x, 1)
        assert got.dtype == dtype
        want = getattr(torch, name)(xd, 1)
        tol = eps * want.abs().clamp_min(1e-3 if name == "softmax" else 1.0)
        assert ((got.double() - want).abs() <= tol).all(), name
    lse = fst.logsumexp(x, 1)
    assert lse.dtype == dtype
    want = torch.logsumexp(xd, 1)
    assert ((lse.double() - want).abs() <= eps * want.abs()).all()
    xr = x.clone().requires_grad_()
    loss = fst.cross_entropy(xr, t)
    assert loss.dtype == dtype
    xdr = xd.clone().requires_grad_()
    ref = F.cross_entropy(xdr, t)
    assert abs(loss.double() - ref) <= eps * abs(ref)
    loss.backward()
    ref.backward()
    assert xr.grad.dtype == dtype
    scale = xdr.grad.abs().amax(1, keepdim=True)
    # (README, Accuracy: within 3 eps of the row's largest entry)
    assert ((xr.grad.double() - xdr.grad).abs() <= 3 * eps * scale).all()


def test_cross_entropy_module_matches_pytorch():  # type: ignore[no-untyped-def]
    x, t, w = _case((6, 5, 2), False, seed=11)
    t[t == -100] = 2
    ours = fst.CrossEntropyLoss(weight=w, ignore_index=2, reduction="sum", label_smoothing=0.2)
    ref = torch.nn.CrossEntropyLoss(weight=w, ignore_index=2, reduction="sum", label_smoothing=0.2)
    torch.testing.assert_close(ours(x, t), ref(x, t))
    assert "label_smoothing=0.2" in repr(ours)
    assert ours.state_dict()["weight"] is not None
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        fst.CrossEntropyLoss(reduction="avg")


def test_errors_match_pytorch_and_name_the_value():  # type: ignore[no-untyped-def]
    x = torch.randn(4, 5)
    with pytest.raises(IndexError, match="label 7 at position"):
        fst.cross_entropy(x, torch.tensor([1, 2, 3, 7]))
    with pytest.raises(IndexError, match="label -5"):
        fst.cross_entropy(x, torch.tensor([1, 2, 3, -5]))
    with pytest.raises(ValueError, match=r"shape of input without dim 1, \(4,\), got \(3,\)"):
        fst.cross_entropy(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="avg is not a valid value"):
        fst.cross_entropy(x, torch.tensor([1, 2, 3, 0]), reduction="avg")
    with pytest.raises(TypeError, match=r"dtype torch\.int64"):
        fst.softmax(torch.arange(4), 0)
    with pytest.raises(IndexError, match="Dimension out of range"):
        fst.softmax(x, 2)
    cuda = types.SimpleNamespace(device=torch.device("cuda", 0), dtype=torch.float32, is_cpu=False)
    with pytest.raises(TypeError, match="on device cuda:0; fastsoftmax computes on the CPU only"):
        fst._check_tensor(cuda, "input")


def test_threads_give_the_same_values():  # type: ignore[no-untyped-def]
    import fastsoftmax

    x, t, _ = _case((256, 300), False, seed=12)
    with fastsoftmax.use_threads(1):
        one = fst.cross_entropy(x, t, reduction="none")
    with fastsoftmax.use_threads(2):
        two = fst.cross_entropy(x, t, reduction="none")
    assert torch.equal(one, two)


def test_functorch_transforms_raise_pytorchs_error():  # type: ignore[no-untyped-def]
    # PyTorch 2.13 does not run custom operators with register_autograd under torch.func
    x, t, _ = _case((4, 5), False, seed=13)
    with pytest.raises(RuntimeError, match="functorch transforms"):
        torch.func.grad(lambda a: fst.cross_entropy(a, t))(x)


def test_no_mode_or_subclass_takes_the_eager_path():  # type: ignore[no-untyped-def]
    x = torch.randn(3, 4)
    assert fst._eager(x, None)
    with torch.overrides.TorchFunctionMode():
        assert not fst._eager(x)

    class Sub(torch.Tensor):
        pass

    assert not fst._eager(x.as_subclass(Sub))


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_eager_path_and_operators_agree_bitwise(reduction, inplace):  # type: ignore[no-untyped-def]
    x, t, w = _case((6, 9), False, seed=14)
    up = torch.rand(6 if reduction == "none" else (), generator=_gen(2), dtype=torch.float64)
    v = torch.rand(6, 9, generator=_gen(3), dtype=torch.float64)
    options = [{}, {"weight": w, "label_smoothing": 0.1, "z_loss": 0.01, "softcap": 5.0}]
    results = []
    for mode in (None, _PassThrough()):  # (with a mode active: the operators)
        for kw in options:
            a = (x * 1.0).requires_grad_()
            h = a * 1.0
            with mode or contextlib.nullcontext():
                assert fst._eager(h) == (mode is None)
                loss = fst.cross_entropy(h, t, reduction=reduction, inplace_backward=inplace, **kw)
                y = fst.softmax(a, 1) + fst.log_softmax(a, 0) + fst.logsumexp(a, 1, True)
            ((loss * up).sum() + (y * v).sum()).backward()
            results.append((loss.detach(), a.grad, y.detach()))
    half = len(results) // 2
    for eager, ops in zip(results[:half], results[half:]):
        for one, other in zip(eager, ops):
            assert torch.equal(one, other)


def test_eager_path_refuses_logits_changed_after_the_forward():  # type: ignore[no-untyped-def]
    x, t, _ = _case((4, 5), False, seed=15)
    x.requires_grad_()
    h = x * 1.0
    loss = fst.cross_entropy(h, t)
    with torch.no_grad():
        h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_second_derivative_of_an_all_ignored_mean_is_zero():  # type: ignore[no-untyped-def]
    for shape in [(3, 4), (4,)]:
        x = torch.randn(*shape, generator=_gen(17), dtype=torch.float64, requires_grad=True)
        t = torch.full(shape[:-1], -100)
        (g,) = torch.autograd.grad(fst.cross_entropy(x, t, z_loss=0.1), x, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), x)
        assert torch.equal(h, torch.zeros_like(x))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_other_integer_targets_with_ignored_ones(dtype):  # type: ignore[no-untyped-def]
    """Labels of any integer dtype, compared with ignore_index as int64 (no wrap-around:
    -100 is not uint8's 156), to the second derivative."""
    x = torch.randn(3, 200, generator=_gen(18), dtype=torch.float64, requires_grad=True)
    t = torch.tensor([156, 3, 7], dtype=dtype)
    ref = x.detach().clone().requires_grad_()
    (g1,) = torch.autograd.grad(fst.cross_entropy(x, t), x, create_graph=True)
    (g2,) = torch.autograd.grad(F.cross_entropy(ref, t.long()), ref, create_graph=True)
    torch.testing.assert_close(g1, g2)
    (h1,) = torch.autograd.grad(g1.pow(2).sum(), x)
    (h2,) = torch.autograd.grad(g2.pow(2).sum(), ref)
    torch.testing.assert_close(h1, h2)


def test_half_precision_weights():  # type: ignore[no-untyped-def]
    x = torch.randn(4, 5, generator=_gen(19)).bfloat16()
    t = torch.tensor([0, 1, 2, 3])
    w = torch.rand(5, generator=_gen(20)).bfloat16()
    want = F.cross_entropy(x.double(), t, w.double())
    assert abs(fst.cross_entropy(x, t, w).double() - want) <= 2**-7 * abs(want)
    assert fst.CrossEntropyLoss(weight=w.float()).bfloat16()(x, t).dtype == torch.bfloat16


def test_inplace_backward_refuses_what_pytorch_refuses_in_place():  # type: ignore[no-untyped-def]
    a = torch.randn(5, 4, generator=_gen(21), dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 1, 2])
    with pytest.raises(RuntimeError, match="elements do not share memory"):
        fst.cross_entropy((a * 1.0)[0:1].expand(3, 4), t, inplace_backward=True)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        fst.cross_entropy(a[:3], t, inplace_backward=True)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        fst.cross_entropy(a, torch.tensor([0, 1, 2, 3, 0]), inplace_backward=True)
    fst.cross_entropy((a * 1.0).t()[:, :3].t(), t, inplace_backward=True)  # (strided: fine)


def test_weight_that_requires_grad_is_refused_as_in_pytorch():  # type: ignore[no-untyped-def]
    x = torch.randn(4, 5, requires_grad=True)
    w = torch.rand(5, requires_grad=True)
    t = torch.tensor([0, 1, 2, 3])
    for f in (F.cross_entropy, fst.cross_entropy):
        with pytest.raises(
            RuntimeError, match="not differentiable with respect to argument 'weight'"
        ):
            f(x, t, w).backward()


def test_positional_arguments_are_pytorchs():  # type: ignore[no-untyped-def]
    x, t, w = _case((6, 5), False, seed=22)
    t[t == -100] = 1
    # (input, target, weight, size_average, ignore_index, reduce, reduction, label_smoothing)
    args = (w, None, 1, None, "sum", 0.1)
    torch.testing.assert_close(fst.cross_entropy(x, t, *args), F.cross_entropy(x, t, *args))
    with pytest.warns(UserWarning, match="deprecated"):
        legacy = fst.cross_entropy(x, t, None, None, -100, False)
    torch.testing.assert_close(legacy, F.cross_entropy(x, t, reduction="none"))
    ours = fst.CrossEntropyLoss(w, None, 1, None, "sum", 0.1)
    torch.testing.assert_close(
        ours(x, t), torch.nn.CrossEntropyLoss(w, None, 1, None, "sum", 0.1)(x, t)
    )


def test_zero_dim_softmax_checks_dim():  # type: ignore[no-untyped-def]
    for f in (fst.softmax, fst.log_softmax):
        with pytest.raises(IndexError, match="Dimension out of range"):
            f(torch.tensor(2.0), 5)
        assert f(torch.tensor(2.0), -1).shape == ()

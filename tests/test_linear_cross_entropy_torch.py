"""fastsoftmax.torch.linear_cross_entropy against PyTorch's autograd of
F.cross_entropy(F.linear(h, W, b), y, ...), opcheck and torch.compile."""

from __future__ import annotations

import itertools

import pytest

torch = pytest.importorskip("torch")
fst = pytest.importorskip("fastsoftmax.torch")
F = torch.nn.functional

pytestmark = pytest.mark.peers


@pytest.fixture(autouse=True)
def simd() -> str:
    """These tests run once, on the best target (the kernels' tests run on every one)."""
    return "default"


def _case(seed, n=19, d=6, v=11, dtype=torch.float64, bias=True, ignore=True):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, dtype=dtype)
    w = torch.randn(v, d, generator=g, dtype=dtype) * 0.7
    b = torch.randn(v, generator=g, dtype=dtype) if bias else None
    y = torch.randint(0, v, (n,), generator=g)
    y[-1] = v - 1
    if ignore:
        y[::4] = -100
    return h, w, b, y


def _reference(h, w, b, y, z_loss=0.0, softcap=None, **kw):  # type: ignore[no-untyped-def]
    """PyTorch's loss of the (soft-capped) logits, plus the z-loss term."""
    x = F.linear(h, w, b)
    if softcap is not None:
        x = softcap * torch.tanh(x / softcap)
    loss = F.cross_entropy(x, y, **kw)
    if z_loss:
        keep = y != kw.get("ignore_index", -100)
        z = torch.logsumexp(x, -1) ** 2 * keep
        red = kw.get("reduction", "mean")
        loss = loss + z_loss * (
            z if red == "none" else z.sum() / (keep.sum() if red == "mean" else 1)
        )
    return loss


@pytest.mark.parametrize(
    ("reduction", "smoothing", "weighted", "bias"),
    list(itertools.product(("mean", "sum", "none"), (0.0, 0.2), (False, True), (False, True))),
)
def test_against_pytorch_autograd_float64(reduction, smoothing, weighted, bias):  # type: ignore[no-untyped-def]
    h, w, b, y = _case(hash((reduction, smoothing, weighted, bias)) % 1000, bias=bias)
    cw = torch.rand(w.shape[0], dtype=torch.float64) + 0.2 if weighted else None
    kw = {"weight": cw, "reduction": reduction, "label_smoothing": smoothing}
    params = [t.requires_grad_() for t in (h, w, b) if t is not None]
    loss = fst.linear_cross_entropy(h, w, y, linear_bias=b, chunk_size=4, **kw)
    want = _reference(h, w, b, y, **kw)
    torch.testing.assert_close(loss, want, rtol=1e-12, atol=1e-13)
    up = torch.randn_like(want) if reduction == "none" else torch.tensor(0.6, dtype=torch.float64)
    got_g = torch.autograd.grad(loss, params, up)
    want_g = torch.autograd.grad(want, params, up)
    for a, e in zip(got_g, want_g):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_z_loss_and_softcap(reduction):  # type: ignore[no-untyped-def]
    h, w, b, y = _case(3)
    params = [t.requires_grad_() for t in (h, w, b)]
    kw = {"reduction": reduction, "z_loss": 0.01, "softcap": 3.0}
    loss = fst.linear_cross_entropy(h, w, y, linear_bias=b, **kw)
    want = _reference(h, w, b, y, **kw)
    torch.testing.assert_close(loss, want, rtol=1e-12, atol=1e-13)
    for a, e in zip(
        torch.autograd.grad(loss.sum(), params), torch.autograd.grad(want.sum(), params)
    ):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-13)


def test_float32_and_bfloat16_training_step():  # type: ignore[no-untyped-def]
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2)):
        h, w, b, y = _case(5, n=64, d=16, v=50, dtype=dtype)
        params = [t.requires_grad_() for t in (h, w, b)]
        loss = fst.linear_cross_entropy(h, w, y, linear_bias=b)
        assert loss.dtype == dtype
        loss.backward()
        ref = [t.detach().double().requires_grad_() for t in (h, w, b)]
        _reference(*ref, y).backward()
        for p, r in zip(params, ref):
            assert p.grad.dtype == dtype
            torch.testing.assert_close(
                p.grad.double(), r.grad, rtol=tol, atol=tol * r.grad.abs().max()
            )


def test_no_grad_and_probability_targets():  # type: ignore[no-untyped-def]
    h, w, b, _ = _case(7)
    t = torch.softmax(torch.randn(h.shape[0], w.shape[0], dtype=torch.float64), -1)
    with torch.no_grad():
        loss = fst.linear_cross_entropy(h, w, t, linear_bias=b)
    torch.testing.assert_close(loss, F.cross_entropy(F.linear(h, w, b), t), rtol=1e-12, atol=0)


def test_opcheck():  # type: ignore[no-untyped-def]
    h, w, b, y = _case(11)
    cw = torch.rand(w.shape[0], dtype=torch.float64)
    for red, with_grad, go in (
        ("mean", True, None),
        ("sum", False, None),
        ("none", True, torch.rand(19, dtype=torch.float64)),
    ):
        args = (h, w, y, b, cw, go, -100, red, 0.1, 0.01, None, 5, with_grad)
        torch.library.opcheck(torch.ops.fastsoftmax.linear_cross_entropy.default, args)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_compile_fullgraph(reduction):  # type: ignore[no-untyped-def]
    h, w, b, y = _case(13, dtype=torch.float32)

    def step(h, w, b, y):  # type: ignore[no-untyped-def]
        return fst.linear_cross_entropy(h, w, y, linear_bias=b, reduction=reduction).sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    grads = []
    for fn in (step, compiled):
        params = [t.detach().clone().requires_grad_() for t in (h, w, b)]
        fn(*params, y).backward()
        grads.append([p.grad for p in params])
    for a, e in zip(*grads):
        torch.testing.assert_close(a, e, rtol=1e-6, atol=1e-6)


def test_errors():  # type: ignore[no-untyped-def]
    h, w, _, y = _case(17)
    bad = y.clone()
    bad[1] = 11
    with pytest.raises(IndexError, match=r"label 11 at position \(1,\)"):
        fst.linear_cross_entropy(h, w, bad)
    with pytest.raises(ValueError, match="do not make a linear layer"):
        fst.linear_cross_entropy(h, w[:, :3], y)
    with pytest.raises(RuntimeError, match="not differentiable with respect to argument 'weight'"):
        fst.linear_cross_entropy(
            h, w, y, weight=torch.ones(11, dtype=torch.float64, requires_grad=True)
        )
    h.requires_grad_()
    loss = fst.linear_cross_entropy(h, w, y)
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad(loss, h, create_graph=True)


def test_top_level_function_takes_and_returns_tensors():  # type: ignore[no-untyped-def]
    import fastsoftmax as fs

    h, w, b, y = _case(19, dtype=torch.float32)
    loss, dh, dw, db = fs.linear_cross_entropy(h, w, y, bias=b, return_grad=True)
    assert all(isinstance(t, torch.Tensor) for t in (loss, dh, dw, db))
    params = [t.clone().requires_grad_() for t in (h, w, b)]
    want = F.cross_entropy(F.linear(*params), y)
    want.backward()
    torch.testing.assert_close(loss, want)
    for got, p in zip((dh, dw, db), params):
        torch.testing.assert_close(got, p.grad)


def test_half_precision_backward_scaled_before_rounding():  # type: ignore[no-untyped-def]
    """A loss scale (8192) on float16: the gradients are scaled in float32 before they are
    rounded (computed for 1 and rounded first, small entries would flush to 0); bfloat16
    with reduction="none" takes its per-token incoming gradient."""
    g = torch.Generator().manual_seed(23)
    h = (torch.randn(512, 16, generator=g) * 2e-5).half().requires_grad_()
    w = torch.randn(50, 16, generator=g).half().requires_grad_()
    y = torch.randint(0, 50, (512,), generator=g)
    fst.linear_cross_entropy(h, w, y).backward(torch.tensor(8192.0, dtype=torch.float16))
    ref = [t.detach().double().requires_grad_() for t in (h, w)]
    (F.cross_entropy(F.linear(*ref), y) * 8192).backward()
    for p, r in zip((h, w), ref):
        torch.testing.assert_close(
            p.grad.double(), r.grad, rtol=2e-3, atol=1e-3 * r.grad.abs().max()
        )
    hb = h.detach().bfloat16().requires_grad_()
    loss = fst.linear_cross_entropy(hb, w.detach().bfloat16(), y, reduction="none")
    loss.backward(torch.ones_like(loss))
    assert hb.grad.dtype == torch.bfloat16
    assert hb.grad.abs().sum() > 0


def test_pytorch_conventions():  # type: ignore[no-untyped-def]
    h, w, _b, y = _case(29)
    torch.testing.assert_close(
        fst.linear_cross_entropy(h, w, y, ignore_index=None),
        F.linear_cross_entropy(h, w, y, ignore_index=None),
    )
    with pytest.raises(ValueError, match=r"^weight must have one entry per class"):
        fst.linear_cross_entropy(h, w, y, weight=torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^linear_bias must have one entry per class"):
        fst.linear_cross_entropy(h, w, y, linear_bias=torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"integer target must have input's shape"):
        fst.linear_cross_entropy(h, w, y[:3])
    t = torch.softmax(torch.randn(h.shape[0], w.shape[0], dtype=torch.float64), -1)
    with pytest.raises(RuntimeError, match="probability targets"):
        fst.linear_cross_entropy(h, w, t.requires_grad_())

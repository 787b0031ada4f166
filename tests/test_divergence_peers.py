"""fastsoftmax.entropy and kl_div against PyTorch (F.kl_div, torch.special.entr), and torch
tensors in and out. Skipped without torch."""

from __future__ import annotations

import warnings

import fastsoftmax as fs
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.peers


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("reduction", ["batchmean", "sum", "mean"])
def test_kl_div_matches_torch_distillation(
    rng: np.random.Generator, temperature: float, reduction: str
):
    s = torch.from_numpy(rng.standard_normal((16, 300)))
    t = torch.from_numpy(rng.standard_normal((16, 300)))
    s.requires_grad_(True)
    with warnings.catch_warnings():  # ('mean' warns that its meaning will change)
        warnings.simplefilter("ignore", UserWarning)
        want = F.kl_div(
            F.log_softmax(s / temperature, 1),
            F.log_softmax(t / temperature, 1),
            reduction=reduction,
            log_target=True,
        )
    want.backward()
    got, grad = fs.kl_div(
        s.detach().numpy(),
        t.numpy(),
        temperature=temperature,
        reduction=reduction,
        return_grad=True,
    )
    np.testing.assert_allclose(got, want.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, s.grad.numpy(), rtol=0, atol=1e-15)


@pytest.mark.parametrize("kind", ["probs", "log_probs"])
def test_kl_div_probability_targets_match_torch(rng: np.random.Generator, kind: str):
    s = torch.from_numpy(rng.standard_normal((8, 100)))
    lt = F.log_softmax(torch.from_numpy(rng.standard_normal((8, 100))), 1)
    lt[0, :10] = -torch.inf  # zero-probability classes add 0 (xlogy in PyTorch)
    target = lt.exp() if kind == "probs" else lt
    want = F.kl_div(F.log_softmax(s, 1), target, reduction="sum", log_target=kind == "log_probs")
    got = fs.kl_div(s.numpy(), target.numpy(), target_kind=kind, reduction="sum")
    if kind == "log_probs":  # PyTorch: exp(-inf) * (-inf - x) is NaN, ours 0 (the rule)
        assert torch.isnan(want)
        want = F.kl_div(F.log_softmax(s, 1), lt.exp(), reduction="sum")
    np.testing.assert_allclose(got, want.item(), rtol=1e-12)


def test_entropy_matches_torch_entr(rng: np.random.Generator):
    x = torch.from_numpy(rng.standard_normal((10, 500)) * 3)
    x.requires_grad_(True)
    want = torch.special.entr(torch.softmax(x / 1.5, 1)).sum(1)
    want.sum().backward()
    got, grad = fs.entropy(x.detach().numpy(), temperature=1.5, return_grad=True)
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(grad, x.grad.numpy(), rtol=0, atol=1e-14)


def test_torch_tensors_in_give_torch_tensors_out(rng: np.random.Generator):
    x = torch.from_numpy(rng.standard_normal((4, 50)).astype(np.float32)).requires_grad_(True)
    h, g = fs.entropy(x, return_grad=True)
    assert isinstance(h, torch.Tensor)
    assert isinstance(g, torch.Tensor)
    assert h.dtype == torch.float32
    assert g.shape == x.shape
    kl = fs.kl_div(x, x.detach() * 0.5, reduction="none")
    assert isinstance(kl, torch.Tensor)
    assert kl.shape == (4,)
    xb = x.detach().to(torch.bfloat16)
    h = fs.entropy(xb)
    assert isinstance(h, torch.Tensor)
    assert h.dtype == torch.float32

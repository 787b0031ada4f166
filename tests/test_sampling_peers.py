"""fastsoftmax.sample's filtered distribution against transformers' warper chain written
with PyTorch operations (as transformers writes it: topk, sort, softmax, cumsum, scatter).
Skipped without torch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastsoftmax._sampling import _filtered_probs

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.peers


def torch_chain(scores: Any, temperature: float, top_k: Any, top_p: Any, min_p: Any) -> Any:
    inf = float("inf")
    scores = scores / temperature
    if top_k is not None:
        kth = torch.topk(scores, min(top_k, scores.size(-1)))[0][..., -1, None]
        scores = scores.masked_fill(scores < kth, -inf)
    if top_p is not None:
        sorted_logits, sorted_indices = torch.sort(scores, descending=False, stable=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - top_p)
        remove[..., -1:] = 0
        scores = scores.masked_fill(remove.scatter(1, sorted_indices, remove), -inf)
    if min_p is not None:
        probs = torch.softmax(scores, dim=-1)
        remove = probs < min_p * probs.amax(dim=-1, keepdim=True)
        scores = scores.masked_fill(remove, -inf)
    return torch.softmax(scores, dim=-1)


@pytest.mark.parametrize(
    "settings",
    [
        (1.0, 50, 0.9, None),
        (0.7, None, 0.9, None),
        (1.0, None, None, 0.1),
        (1.3, 20, 0.5, 0.05),
    ],
)
def test_filtered_distribution_matches_the_torch_chain(
    rng: np.random.Generator, settings: tuple[Any, ...]
):
    x = rng.standard_normal((8, 5000)) * 3
    x[:, ::7] = np.round(x[:, ::7])  # ties, broken by PyTorch's stable sort
    want = torch_chain(torch.from_numpy(x), *settings).numpy()
    t, k, p, mp = settings
    got = _filtered_probs(x, temperature=t, top_k=k, top_p=p, min_p=mp)
    np.testing.assert_array_equal(got > 0, want > 0)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)

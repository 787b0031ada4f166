"""fastsoftmax.sample: the filtered distribution against a NumPy re-implementation of Hugging
Face transformers' warper chain (exact support, float64 probabilities), the draws by
chi-square tests with fixed seeds, Philox against NumPy's, determinism, bad input."""

from __future__ import annotations

import doctest
from typing import Any

import fastsoftmax as fs
import ml_dtypes
import numpy as np
import pytest
from fastsoftmax import _core, _sampling
from fastsoftmax._sampling import _filtered_probs
from scipy import stats


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - np.max(z))
    return e / np.sum(e)


def hf_chain(
    x: np.ndarray,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
) -> np.ndarray:
    """TemperatureLogitsWarper -> TopK -> TopP -> MinP (min_tokens_to_keep=1) on one row,
    as transformers writes them (sort-based), in float64; TopP's ascending sort stable
    (PyTorch's CPU sort is): among ties the lower index comes first, and goes first."""
    z = np.asarray(x, np.float64) / temperature
    if top_k is not None:
        k = min(top_k, z.size)
        z = np.where(z < np.sort(z)[-k], -np.inf, z)
    if top_p is not None:
        order = np.lexsort((np.arange(z.size), z))  # ascending z, ties: index ascending
        cum = np.cumsum(softmax(z[order]))
        remove = cum <= 1 - top_p
        remove[-1] = False
        z = z.copy()
        z[order[remove]] = -np.inf
    if min_p is not None:
        p = softmax(z)
        remove = p < min_p * np.max(p)
        remove[np.argmax(z)] = False
        z = np.where(remove, -np.inf, z)
    return softmax(z)


SETTINGS = [
    {},
    {"temperature": 0.7},
    {"top_k": 50},
    {"top_k": 1},
    {"top_p": 0.9},
    {"top_p": 0.3, "temperature": 1.3},
    {"top_k": 50, "top_p": 0.9},
    {"min_p": 0.05},
    {"top_k": 40, "top_p": 0.95, "min_p": 0.1, "temperature": 0.8},
    {"top_p": 1.0, "min_p": 0.0},
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: repr(s))
@pytest.mark.parametrize("n", [1, 5, 300, 32000])
def test_filtered_distribution_is_the_chains(rng: np.random.Generator, settings: Any, n: int):
    x = (rng.standard_normal((3, n)) * 3).astype(np.float32)
    got = _filtered_probs(x, **settings)
    for r in range(3):
        want = hf_chain(x[r], **settings)
        np.testing.assert_array_equal(got[r] > 0, want > 0)
        np.testing.assert_allclose(got[r], want, rtol=1e-12, atol=1e-300)


def test_ties_are_kept_by_top_k_and_ordered_by_index_in_top_p():
    x = np.array([[1.0, 3.0, 2.0, 3.0, 2.0, 2.0, 0.0]])
    # top_k=3: the 3rd largest is 2.0, and every 2.0 is kept
    np.testing.assert_array_equal(_filtered_probs(x, top_k=3)[0] > 0, x[0] >= 2)
    np.testing.assert_array_equal(_filtered_probs(x, top_k=2)[0] > 0, x[0] == 3)
    # equal logits: top-p drops the lower index first (a stable ascending sort's order)
    y = np.zeros((1, 4))
    np.testing.assert_array_equal(_filtered_probs(y, top_p=0.3)[0], [0, 0, 0.5, 0.5])
    np.testing.assert_array_equal(_filtered_probs(y, top_p=0.25)[0], [0, 0, 0, 1])
    np.testing.assert_array_equal(_filtered_probs([[2.0, 2.0, 1.0]], top_p=0.4)[0], [0, 1, 0])
    for p in (0.25, 0.3, 0.6):
        np.testing.assert_array_equal(_filtered_probs(y, top_p=p)[0], hf_chain(y[0], top_p=p))


def test_minus_inf_is_never_drawn_and_min_p_one_keeps_the_maximum():
    x = np.array([[-np.inf, 0.0, -np.inf, 1.0, 1.0]])
    assert _filtered_probs(x)[0, 0] == 0
    assert _filtered_probs(x)[0, 2] == 0
    np.testing.assert_array_equal(_filtered_probs(x, min_p=1.0)[0], [0, 0, 0, 0.5, 0.5])
    rows = np.repeat(x, 2000, axis=0)
    assert set(fs.sample(rows, seed=3).tolist()) == {1, 3, 4}


@pytest.mark.parametrize("settings", SETTINGS[:9], ids=lambda s: repr(s))
def test_draws_follow_the_filtered_distribution(settings: Any):
    """Chi-square over 40000 rows of the same logits (each row its own counter); fixed
    seed, so the test is deterministic."""
    x = (np.random.default_rng(11).standard_normal(12) * 1.5).astype(np.float32)
    probs = _filtered_probs(x[None], **settings)[0]
    tokens = fs.sample(np.broadcast_to(x, (40000, 12)), seed=2024, **settings)
    counts = np.bincount(tokens, minlength=12)
    assert np.all(counts[probs == 0] == 0)
    keep = probs > 0
    if keep.sum() > 1:
        result = stats.chisquare(counts[keep], probs[keep] * counts.sum())
        assert result.pvalue > 1e-4


def test_top_k_of_the_vocabulary_or_more_keeps_every_token():
    x = np.random.default_rng(2).standard_normal((3, 30))
    for k in (30, 31, 10**30):
        np.testing.assert_array_equal(_filtered_probs(x, top_k=k), _filtered_probs(x))


def test_logprobs_are_the_chosen_tokens_under_the_filtered_distribution(
    rng: np.random.Generator,
):
    x = rng.standard_normal((50, 200))
    tokens, lp = fs.sample(x, top_k=20, top_p=0.8, temperature=0.9, seed=1, return_logprobs=True)
    probs = _filtered_probs(x, top_k=20, top_p=0.8, temperature=0.9)
    np.testing.assert_allclose(lp, np.log(probs[np.arange(50), tokens]), rtol=1e-12)
    assert lp.dtype == np.float64
    assert tokens.dtype == np.int64
    _, lp32 = fs.sample(x.astype(np.float32), seed=1, return_logprobs=True)
    assert lp32.dtype == np.float32


def test_draws_depend_on_seed_and_row_only(rng: np.random.Generator):
    x = rng.standard_normal((300, 1000)).astype(np.float32)
    with fs.use_threads(1):
        one = fs.sample(x, top_p=0.95, seed=5)
    with fs.use_threads(2):
        two = fs.sample(x, top_p=0.95, seed=5)
    np.testing.assert_array_equal(one, two)
    # a row's draw does not depend on the rows around it
    np.testing.assert_array_equal(fs.sample(x[:100], top_p=0.95, seed=5), one[:100])
    assert np.any(fs.sample(x, top_p=0.95, seed=6) != one)
    fresh = fs.sample(x, seed=None)
    assert fresh.shape == (300,)
    assert np.all((fresh >= 0) & (fresh < 1000))


def test_a_batch_split_into_calls_draws_as_one_call(rng: np.random.Generator):
    """first_row: the parts of a batch, each with its offset, draw the tokens of one call over
    the whole batch (also for a 3-d batch, rows counted in C order); log probabilities too."""
    x = rng.standard_normal((4, 30, 500)).astype(np.float32)
    whole, lp = fs.sample(x, top_k=50, top_p=0.9, seed=11, return_logprobs=True)
    flat = x.reshape(120, 500)
    parts = [(0, 7), (7, 64), (64, 120)]
    got = np.concatenate(
        [fs.sample(flat[i:j], top_k=50, top_p=0.9, seed=11, first_row=i) for i, j in parts]
    )
    np.testing.assert_array_equal(got, whole.reshape(-1))
    t, lpart = fs.sample(
        flat[64:], top_k=50, top_p=0.9, seed=11, first_row=64, return_logprobs=True
    )
    np.testing.assert_array_equal(lpart, lp.reshape(-1)[64:])
    assert np.any(fs.sample(flat[64:], top_k=50, top_p=0.9, seed=11) != t)  # (offset 0 differs)
    for bad in (-1, 2**64, 1.5, "3"):
        with pytest.raises((ValueError, TypeError), match="first_row"):
            fs.sample(flat, seed=1, first_row=bad)


def test_uniforms_are_numpys_philox():
    """Philox4x64-10 as NumPy's Philox bit generator runs it (it adds 1 to the counter
    before its first block)."""
    g = np.random.default_rng(9)
    for _ in range(20):
        key = g.integers(0, 2**64, 2, dtype=np.uint64)  # (a list would go through float)
        ctr = [int(v) for v in g.integers(0, 2**63, 4, dtype=np.uint64)]
        want = np.random.Philox(key=key, counter=ctr).random_raw(4)
        got = _core.philox4x64([ctr[0] + 1, *ctr[1:]], [int(v) for v in key])
        assert list(got) == [int(v) for v in want]


def test_shapes_and_dtypes(rng: np.random.Generator):
    x = rng.standard_normal((2, 3, 40))
    t = fs.sample(x, seed=0)
    assert t.shape == (2, 3)
    assert t.dtype == np.int64
    assert fs.sample(x[0, 0], seed=0).shape == ()
    np.testing.assert_array_equal(
        fs.sample(x[::-1, :, ::2], seed=0), fs.sample(x[::-1, :, ::2].copy(), seed=0)
    )
    assert fs.sample(np.zeros((0, 5)), seed=0).shape == (0,)
    for dt in (np.float16, ml_dtypes.bfloat16, np.int32):
        xs = x.astype(dt)
        tokens, lp = fs.sample(xs, seed=4, return_logprobs=True)
        np.testing.assert_array_equal(tokens, fs.sample(xs.astype(np.float32), seed=4))
        assert lp.dtype == (np.float64 if dt == np.int32 else np.float32)


def test_bad_input_raises_and_names_the_value():
    x = np.zeros((3, 4), np.float32)
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"logits row 1 has no distribution to sample: a NaN"):
        fs.sample(bad)
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match=r"row 1 .* a \+inf in logits / temperature"):
        fs.sample(bad)
    bad[1] = -np.inf
    with pytest.raises(ValueError, match=r"row 1 .* only -inf"):
        fs.sample(bad)
    with pytest.raises(ValueError, match="no classes"):
        fs.sample(np.zeros((2, 0)))
    with pytest.raises(ValueError, match="at least one dimension"):
        fs.sample(np.float32(1))
    for kw, exc, msg in [
        ({"temperature": 0}, ValueError, "temperature must be positive"),
        ({"top_k": 0}, ValueError, "top_k must be >= 1, got 0"),
        ({"top_k": 2.5}, TypeError, "top_k must be an integer or None, got 2.5"),
        ({"top_k": True}, TypeError, "top_k must be an integer"),
        ({"top_p": 0.0}, ValueError, r"top_p must be in \(0, 1\], got 0.0"),
        ({"top_p": 1.5}, ValueError, r"top_p must be in \(0, 1\], got 1.5"),
        ({"top_p": "0.5"}, TypeError, "top_p must be a real number"),
        ({"min_p": -0.1}, ValueError, r"min_p must be in \[0, 1\], got -0.1"),
        ({"seed": -1}, ValueError, r"seed must be in \[0, 2\*\*64\), got -1"),
        ({"seed": 2**64}, ValueError, "seed must be in"),
        ({"seed": 1.5}, TypeError, "seed must be an integer or None, got 1.5"),
    ]:
        with pytest.raises(exc, match=msg):
            fs.sample(x, **kw)


def test_docstring_examples_run():
    result = doctest.testmod(_sampling, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 4
    assert result.failed == 0

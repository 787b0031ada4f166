"""Sampling one token per row of logits (temperature, top-k, top-p, min-p), fused; the work
is in ``_core`` (cpp/src/sampling.cpp)."""

from __future__ import annotations

import math
from typing import Any, SupportsIndex

import numpy as np
import numpy.typing as npt

from . import _core
from ._api import _cast, _prepare, _real, _temperature
from ._cross_entropy import _index_or_none, _loss_dtype
from ._interop import accepts_arrays

_SEEDS = 2**64


def _top_k(value: Any) -> int:
    """top_k as an int, 0 for None."""
    k = _index_or_none(value, "top_k")
    if k is None:
        return 0
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {value!r}")
    return k


def _fraction(value: Any, name: str, low_open: bool) -> float:
    """value in (0, 1] (low_open) or [0, 1]; TypeError / ValueError naming it."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number or None, got {value!r}")
    v = _real(value, name)
    if not (0 < v <= 1 if low_open else 0 <= v <= 1):
        raise ValueError(f"{name} must be in {'(0, 1]' if low_open else '[0, 1]'}, got {value!r}")
    return v


def _seed(value: Any) -> int:
    s = _index_or_none(value, "seed")
    if s is None:
        return int(np.random.default_rng().integers(_SEEDS, dtype=np.uint64))
    if not 0 <= s < _SEEDS:
        raise ValueError(f"seed must be in [0, 2**64), got {value!r}")
    return s


def _run(
    logits: npt.ArrayLike,
    temperature: Any,
    top_k: Any,
    top_p: Any,
    min_p: Any,
    seed: Any,
    want_logprobs: bool,
    want_probs: bool,
    first_row: Any = 0,
) -> tuple[tuple[int, ...], np.ndarray, np.ndarray | None, np.ndarray | None, np.dtype]:
    t = _temperature(temperature)
    k = _top_k(top_k)
    p = 1.0 if top_p is None else _fraction(top_p, "top_p", True)
    mp = 0.0 if min_p is None else _fraction(min_p, "min_p", False)
    s = _seed(seed)
    a, result = _prepare(logits, "logits")
    if a.ndim == 0:
        raise ValueError("logits must have at least one dimension (the classes, last)")
    batch, n = a.shape[:-1], a.shape[-1]
    if n == 0:
        raise ValueError("logits have no classes (the last axis has length 0)")
    if k >= n:
        k = 0  # (every token)
    rows = np.ascontiguousarray(a.reshape(math.prod(batch), n))  # (half precision as it is)
    r0 = _index_or_none(first_row, "first_row")
    if r0 is None or not 0 <= r0 <= _SEEDS - max(1, rows.shape[0]):
        raise ValueError(
            f"first_row must be an integer in [0, 2**64 - rows) ({rows.shape[0]} rows), "
            f"got {first_row!r}"
        )
    tokens, logprobs, probs = _core.sample(rows, t, k, p, mp, s, want_logprobs, want_probs, r0)
    return batch, tokens, logprobs, probs, _loss_dtype(result)


@accepts_arrays("logits")
def sample(
    logits: npt.ArrayLike,
    *,
    temperature: float = 1.0,
    top_k: SupportsIndex | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    seed: SupportsIndex | None = None,
    first_row: SupportsIndex = 0,
    return_logprobs: bool = False,
) -> Any:
    r"""Draw one token (class index) per row of logits, after temperature, top-k, top-p and
    min-p filtering.

    The distribution is exactly the one of Hugging Face transformers' chain
    ``TemperatureLogitsWarper -> TopKLogitsWarper -> TopPLogitsWarper -> MinPLogitsWarper``
    (``min_tokens_to_keep=1``) followed by ``softmax`` and ``torch.multinomial``:

    1. :math:`z = x / T`;
    2. ``top_k``: keep :math:`z_i \ge` the ``top_k``-th largest ``z`` (ties with it kept);
    3. ``top_p``: order the kept tokens by ``z`` descending, ties by index descending (as
       TopP's stable ascending sort leaves them), and keep each token whose preceding
       probability mass is :math:`< p` (the smallest prefix whose mass reaches ``top_p``);
    4. ``min_p``: keep :math:`p_i \ge \mathrm{min\_p} \cdot \max_j p_j`;
    5. draw from the softmax of the kept tokens' ``z``.

    It is computed by selection, without sorting the vocabulary or forming a probability
    array (cpp/src/sampling.cpp). The uniform of row ``r`` is Philox4x64-10 (the design of
    NumPy's ``Philox``) of counter ``(first_row + r, 0, 0, 0)`` and key ``(seed, 0)``: the
    draws do not depend on the number of threads, nor on how a batch is split into calls.

    Parameters
    ----------
    logits : array_like
        ``(..., V)``: the classes on the last axis. Any real dtype (half precision is read
        as float32).
    temperature : float, default 1.0
        ``T > 0``, finite.
    top_k : int, optional
        ``>= 1``; None or ``>= V`` keeps every token.
    top_p : float, optional
        In ``(0, 1]``; None or 1 keeps every token.
    min_p : float, optional
        In ``[0, 1]``; None or 0 keeps every token.
    seed : int, optional
        In ``[0, 2**64)``. None draws a fresh seed from ``numpy.random.default_rng()``.
        A given seed gives the same uniform to row ``r`` on every call: in a generation
        loop, pass a different seed at each step (``seed + step``, say).
    first_row : int, default 0
        The index of the first row in a larger batch: a batch split into calls (across
        processes, say) draws the same tokens as one call when each part passes its offset
        (``fs.sample(x[i:j], seed=s, first_row=i)`` is ``fs.sample(x, seed=s)[i:j]``; rows
        are counted in C order of ``logits.shape[:-1]``).
    return_logprobs : bool, default False
        Also return each chosen token's log probability under the filtered distribution.

    Returns
    -------
    ndarray of int64, or (ndarray, ndarray)
        ``logits.shape[:-1]``; the log probabilities in ``logits``' dtype (float32 for
        float16 and bfloat16).

    Raises
    ------
    ValueError
        A row with a NaN, a ``+inf`` or only ``-inf`` (it has no distribution; the message
        names the row), an argument out of range. Nothing is drawn then.

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> logits = np.array([[0.0, 3.0, 1.0, 2.9], [5.0, 0.0, 0.0, 0.0]], np.float32)
    >>> fs.sample(logits, top_k=1).tolist()  # greedy
    [1, 0]
    >>> tokens, lp = fs.sample(logits, top_p=0.5, seed=7, return_logprobs=True)
    >>> tokens.tolist(), [round(float(v), 4) for v in lp]
    ([3, 0], [-0.7444, 0.0])
    """
    batch, tokens, logprobs, _, vt = _run(
        logits, temperature, top_k, top_p, min_p, seed, bool(return_logprobs), False, first_row
    )
    out = tokens.reshape(batch)
    if not return_logprobs:
        return out
    assert logprobs is not None
    return out, _cast(logprobs, vt).reshape(batch)


def _filtered_probs(
    logits: npt.ArrayLike,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
) -> np.ndarray:
    """The distribution :func:`sample` draws from, as float64 probabilities (for tests)."""
    batch, _, _, probs, _ = _run(logits, temperature, top_k, top_p, min_p, 0, False, True)
    assert probs is not None
    return probs.reshape(*batch, -1)

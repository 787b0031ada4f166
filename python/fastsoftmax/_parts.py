"""Mergeable parts of logsumexp, softmax and log_softmax: an array split along its
reduction axis (Dask's chunks, shards of a vocabulary) is reduced part by part and the
parts' ``(max, sum of exp(x - max))`` pairs merged exactly; the work is in ``_core``."""

from __future__ import annotations

import math
from typing import Any, NamedTuple, SupportsIndex

import numpy as np
import numpy.typing as npt

from . import _core
from ._api import _BF16, _F64, _axis_index, _cast, _check_out, _check_overlap, _prepare
from ._interop import accepts_arrays


class LogsumexpParts(NamedTuple):
    """Per slice, the maximum and the sum of ``exp(x - max)`` (float64 arrays).

    ``logsumexp = max + log(sumexp)``. A slice with a NaN is ``(nan, nan)``; with a
    ``+inf`` (and no NaN) ``(inf, 1)``; with only ``-inf`` entries, or none,
    ``(-inf, 0)``; else ``max`` is the slice's largest value and ``sumexp >= 1``.

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> x = np.array([[0.0, 0.0], [np.nan, 1.0], [1.0, np.inf], [-np.inf, -np.inf]])
    >>> parts = fs.logsumexp_parts(x)
    >>> parts.max, parts.sumexp
    (array([  0.,  nan,  inf, -inf]), array([ 2., nan,  1.,  0.]))
    """

    max: np.ndarray
    sumexp: np.ndarray


def _one_axis(axis: Any, ndim: int) -> int:
    if isinstance(axis, tuple) or axis is None:
        raise TypeError(f"axis must be one integer here, got {axis!r}")
    return _axis_index(axis, ndim, axis)


@accepts_arrays("x")
def logsumexp_parts(
    x: npt.ArrayLike,
    axis: SupportsIndex = -1,
    *,
    keepdims: bool = False,
    for_softmax: bool = False,
) -> LogsumexpParts:
    r"""The mergeable parts of :func:`logsumexp`: each slice's maximum and sum of exponentials.

    .. math:: m = \max_j x_j, \qquad s = \sum_j e^{x_j - m}, \qquad
              \mathrm{logsumexp}(x) = m + \log s

    from one read of ``x`` (the sum accumulated in float64). The pairs of the parts
    of a slice (``x`` split along ``axis``) merge exactly with
    :func:`merge_logsumexp_parts`, so that a logsumexp, softmax or log_softmax over
    the whole slice can be computed part by part (``fastsoftmax.dask`` does so).

    Parameters
    ----------
    x : array_like
        Dtype rules are those of :func:`softmax`.
    axis : int, default -1
        The axis to reduce (one axis).
    keepdims : bool, default False
        Keep ``axis`` with length 1.
    for_softmax : bool, default False
        Sum the exponentials as :func:`softmax` sums them, for pairs that
        :func:`softmax_from_parts` will use. By default they are summed as
        :func:`logsumexp` sums them: float32 exponentials added in short runs, then in
        float64. A run that holds the maximum's ``exp(0) = 1`` rounds the small terms
        it adds, a relative error of up to about 1e-7 in ``s``: nothing in a logsumexp,
        but one or two ulp more in softmax's outputs (split float32 softmax at
        (64, 32000) in 4 parts, AVX-512: up to 3.3 ulp from the exact value, against
        2.2 ulp with ``for_softmax=True`` and 2.2 for the one-call softmax). With it each
        pair of float32 vectors goes straight into float64, through a scratch row of
        exponentials. For float64 and half-precision ``x`` it changes nothing (their runs
        are summed in float64 already).

    Returns
    -------
    LogsumexpParts
        ``(max, sumexp)``, float64 arrays of ``x``'s shape without ``axis``. The
        special slices are described in :class:`LogsumexpParts`; they merge into the
        answers :func:`logsumexp` gives for the whole slice (NaN, ``+inf``, ``-inf``).

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> x = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    >>> a = fs.logsumexp_parts(x[:, :2], keepdims=True)
    >>> b = fs.logsumexp_parts(x[:, 2:], keepdims=True)
    >>> m, s = fs.merge_logsumexp_parts(np.concatenate([a.max, b.max], axis=-1),
    ...                                 np.concatenate([a.sumexp, b.sumexp], axis=-1))
    >>> fs.logsumexp_from_parts(m, s, dtype=np.float32), fs.logsumexp(x)
    (array([4.44019], dtype=float32), array([4.44019], dtype=float32))
    """
    a, _ = _prepare(x, "x")
    ax = _one_axis(axis, a.ndim)
    m, s = _core.logsumexp_parts(a, ax, bool(for_softmax))
    if keepdims:
        m, s = np.expand_dims(m, ax), np.expand_dims(s, ax)
    return LogsumexpParts(m, s)


def merge_logsumexp_parts(
    max: npt.ArrayLike,
    sumexp: npt.ArrayLike,
    axis: SupportsIndex = -1,
    *,
    keepdims: bool = False,
) -> LogsumexpParts:
    r"""Merge ``(max, sumexp)`` pairs of the parts of slices, stacked along ``axis``.

    .. math:: M = \max_k m_k, \qquad S = \sum_k s_k\, e^{m_k - M}

    in float64, exactly as the kernels merge the segments of a long row: a logsumexp
    from merged parts is within 1 ulp of the one computed in one call. A part with a
    NaN makes the merged pair ``(nan, nan)``; otherwise a part with ``+inf`` makes it
    ``(inf, s)`` (``s`` > 0), and parts of only ``-inf`` (``(-inf, 0)``) add nothing.

    Parameters
    ----------
    max, sumexp : array_like
        The parts' pairs (from :func:`logsumexp_parts`), of one shape or broadcasting
        to one, the parts along ``axis``.
    axis : int, default -1
        The axis the parts are stacked along.
    keepdims : bool, default False
        Keep ``axis`` with length 1.

    Returns
    -------
    LogsumexpParts
        The merged pairs (float64); no parts at all merge into ``(-inf, 0)``.

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> m, s = fs.merge_logsumexp_parts([[2.0, 4.0]], [[1.0, 1.0]])  # two parts of a slice
    >>> m, s  # 4 and 1 + exp(2 - 4)
    (array([4.]), array([1.13533528]))
    """
    m, s = np.broadcast_arrays(np.asarray(max, dtype=_F64), np.asarray(sumexp, dtype=_F64))
    ax = _one_axis(axis, m.ndim)
    with np.errstate(invalid="ignore", over="ignore"):
        top = np.max(m, axis=ax, keepdims=True, initial=-np.inf)  # (NaN propagates)
        finite_top = np.isfinite(top)
        shift = np.where(finite_top, top, 0.0)
        terms = np.where(m > -np.inf, s * np.exp(m - shift), 0.0)  # (a NaN part: NaN)
        total = np.sum(terms, axis=ax, keepdims=True)
        # +inf: the +inf parts' sums (NaN parts have made top NaN already)
        inf_total = np.sum(np.where(m == np.inf, s, 0.0), axis=ax, keepdims=True)
        total = np.where(top == np.inf, inf_total, total)
        total = np.where(top == -np.inf, 0.0, total)
        total = np.where(np.isnan(top), np.nan, total)
    if not keepdims:
        top, total = np.squeeze(top, axis=ax), np.squeeze(total, axis=ax)
    return LogsumexpParts(top, total)


def logsumexp_from_parts(
    max: npt.ArrayLike,
    sumexp: npt.ArrayLike,
    *,
    dtype: npt.DTypeLike = np.float64,
) -> np.ndarray:
    r"""``max + log(sumexp)`` of merged pairs, rounded once to ``dtype``.

    Gives what :func:`logsumexp` gives for the whole slices: NaN for ``(nan, nan)``,
    ``+inf`` for ``(inf, s)``, ``-inf`` for ``(-inf, 0)``.

    Parameters
    ----------
    max, sumexp : array_like
        Pairs from :func:`merge_logsumexp_parts` (or :func:`logsumexp_parts`).
    dtype : dtype, default float64
        The result's dtype (a floating-point one: float32 for float32 logits, say).

    Returns
    -------
    ndarray
        The pairs' shape, in ``dtype``.

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> fs.logsumexp_from_parts([0.0, 1.0, -np.inf], [2.0, np.e, 0.0])
    array([0.69314718, 2.        ,       -inf])
    """
    m, s = np.asarray(max, dtype=_F64), np.asarray(sumexp, dtype=_F64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(np.isfinite(m), m + np.log(s), m)
    return _cast(np.asarray(r), np.dtype(dtype))


def _from_parts(
    kernel: Any,
    x: npt.ArrayLike,
    max: npt.ArrayLike,
    sumexp: npt.ArrayLike,
    axis: SupportsIndex,
    out: np.ndarray | None,
) -> np.ndarray:
    a, result = _prepare(x, "x")
    ax = _one_axis(axis, a.ndim)
    reduced = a.shape[:ax] + a.shape[ax + 1 :]
    pairs = []
    for value, name in ((max, "max"), (sumexp, "sumexp")):
        v = np.asarray(value, dtype=_F64)
        if v.ndim == a.ndim and v.shape[ax] == 1:  # (keepdims)
            v = np.squeeze(v, axis=ax)
        try:
            v = np.broadcast_to(v, reduced)
        except ValueError:
            raise ValueError(
                f"{name} has shape {np.shape(value)}, which does not broadcast to {reduced} "
                f"(x's shape without axis {ax})"
            ) from None
        pairs.append(v)
    if out is not None:
        _check_overlap(out, x, a)
        _check_out(out, a.shape, result)
    target = out if out is not None and out.dtype == a.dtype else None
    try:
        r = kernel(a, ax, pairs[0], pairs[1], target)
    except _core.Fallback:  # misaligned, or out overlapping the pairs: through copies
        r = kernel(np.array(a), ax, np.array(pairs[0]), np.array(pairs[1]), None)
        if target is not None:
            np.copyto(target, r)
            r = target
    if out is not None:
        if r is not out:
            np.copyto(out, r, casting="unsafe")
        return out
    return r if r.dtype == result else _cast(r, result)


@accepts_arrays("x", "max", "sumexp", out="out")
def softmax_from_parts(
    x: npt.ArrayLike,
    max: npt.ArrayLike,
    sumexp: npt.ArrayLike,
    axis: SupportsIndex = -1,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""Softmax of a part of each slice, given the whole slices' merged pairs.

    .. math:: y_i = e^{x_i - M} / S

    with ``(M, S)`` from :func:`merge_logsumexp_parts` over all the parts of each
    slice (``x`` being one of them). Each result is rounded once, as :func:`softmax`
    rounds it: with pairs from ``logsumexp_parts(..., for_softmax=True)`` the parts of a
    slice put together are as accurate as the softmax of the whole slice, though not
    bitwise its result (which itself differs by a few ulp between layouts of the same
    data); a special pair gives :func:`softmax`'s answer for the whole slice (all NaN).

    Parameters
    ----------
    x : array_like
        A part of the slices (dtype rules of :func:`softmax`); every value at most
        the slice's ``M``.
    max, sumexp : array_like
        The merged pairs, float64, of ``x``'s shape without ``axis`` (or with it of
        length 1), or broadcasting to it.
    axis : int, default -1
    out : ndarray, optional
        Same shape as ``x`` and its result dtype; may be ``x`` itself.

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> x = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    >>> m, s = fs.logsumexp_parts(x)
    >>> fs.softmax_from_parts(x[:, 2:], m, s)
    array([[0.23688282, 0.6439143 ]], dtype=float32)
    """
    return _from_parts(_core.softmax_from_parts, x, max, sumexp, axis, out)


@accepts_arrays("x", "max", "sumexp", out="out")
def log_softmax_from_parts(
    x: npt.ArrayLike,
    max: npt.ArrayLike,
    sumexp: npt.ArrayLike,
    axis: SupportsIndex = -1,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""log_softmax of a part of each slice, given the whole slices' merged pairs.

    .. math:: y_i = (x_i - M) - \log S

    in that order, as :func:`log_softmax` computes it; a special pair gives
    :func:`log_softmax`'s answer for the whole slice (NaN, or for a maximum of
    ``+inf``: NaN at the ``+inf`` entries and ``-inf`` elsewhere). Parameters are
    those of :func:`softmax_from_parts`.

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> x = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    >>> m, s = fs.logsumexp_parts(x)
    >>> fs.log_softmax_from_parts(x[:, 2:], m, s)
    array([[-1.4401897, -0.4401897]], dtype=float32)
    """
    return _from_parts(_core.log_softmax_from_parts, x, max, sumexp, axis, out)


# ------------------------------------------------------------ cross-entropy --


class CrossEntropyParts(NamedTuple):
    r"""Per example, the mergeable terms of :func:`cross_entropy` over a part of its classes
    (float64 arrays of one shape): with :math:`x'` the (soft-capped) logits of the part,

    * ``max``, ``sumexp``: their :class:`LogsumexpParts` pair;
    * ``ref``: ``max`` where it is finite, else 0 (``lin`` is taken from it);
    * ``lin``: :math:`\sum_c c_c\,(\mathrm{ref} - x'_c)`, with :math:`c_c = w_c`
      (integer labels with label smoothing; 0 without) or :math:`w_c t'_c`
      (probabilities, :math:`t' = (1-\varepsilon)\,t + \varepsilon/C`);
    * ``coef``: :math:`\sum_c c_c`;
    * ``label``: the label's :math:`x'_y` where the label is one of the part's classes,
      else 0; ``found``: 1 there, else 0.

    Relative to each part's own maximum, ``lin`` adds no cancellation when parts merge.

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> x = np.log([[0.4, 0.3, 0.2, 0.1]])  # one example, 4 classes, label 1
    >>> part = fs.cross_entropy_parts(x[:, :2], np.array([1]), num_classes=4)  # classes 0, 1
    >>> part.max, part.sumexp, part.label, part.found  # log 0.4, 1 + 0.3 / 0.4, log 0.3, 1
    (array([-0.91629073]), array([1.75]), array([-1.2039728]), array([1.]))
    """

    max: np.ndarray
    sumexp: np.ndarray
    ref: np.ndarray
    lin: np.ndarray
    coef: np.ndarray
    label: np.ndarray
    found: np.ndarray


class _CeOptions(NamedTuple):
    """The checked options of a cross-entropy by parts (the in-memory function's checks)."""

    weight: np.ndarray | None  # (C,), float64
    ignore_index: int
    reduction: str
    smoothing: float
    z_loss: float
    softcap: float | None
    result: np.dtype  # the logits' result dtype
    loss_dtype: np.dtype


def _ce_options(
    n_classes: int,
    dtype: np.dtype,
    probs: bool,
    weight: Any,
    ignore_index: Any,
    reduction: Any,
    label_smoothing: Any,
    z_loss: Any,
    softcap: Any,
) -> _CeOptions:
    """fastsoftmax.cross_entropy's own checks of every option (its messages), on a
    one-example stand-in with n_classes classes of logits of `dtype`."""
    from ._cross_entropy import _Call

    stand_in = np.zeros((1, n_classes), dtype)
    call = _Call(
        stand_in,
        np.zeros((1, n_classes)) if probs else np.zeros((1,), np.int64),
        1, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
    )  # fmt: skip
    w = None if call.weight is None else call.weight.astype(_F64)
    return _CeOptions(
        w, call.ignore_index, call.reduction, call.smoothing, call.z_loss,
        call.softcap if softcap is not None else None, call.result, call.loss_dtype,
    )  # fmt: skip


def check_labels(labels: np.ndarray, n: int, ignore: int, where: str) -> None:
    """ValueError naming the first label outside [0, n) that is not `ignore`."""
    bad = (labels != ignore) & ((labels < 0) | (labels >= n))
    if bad.any():
        pos = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
        raise ValueError(
            f"label {labels[pos]} at position {pos}{where} is outside [0, {n}) "
            f"and is not ignore_index ({ignore})"
        )


def softcapped(x: np.ndarray, cap: float | None) -> np.ndarray:
    """cap * tanh(x / cap) in float64 (x itself without a cap)."""
    return x if cap is None else cap * np.tanh(x.astype(_F64) / cap)


def ce_parts(
    x: np.ndarray,
    labels: np.ndarray,
    probs: bool,
    ax: int,
    start: int,
    n_classes: int,
    o: _CeOptions,
    where: str = "",
) -> CrossEntropyParts:
    """The parts of x (classes start .. start + x.shape[ax] of n_classes), keepdims;
    labels: integer classes of the example shape, or the part's probabilities."""
    k = x.shape[ax]
    xc = softcapped(x, o.softcap)
    m, s = logsumexp_parts(xc, ax, keepdims=True)
    zeros = np.zeros(m.shape)
    ref = np.where(np.isfinite(m), m, 0.0)
    lin, coef, label, found = zeros, zeros, zeros, zeros
    shape1 = [1] * x.ndim
    shape1[ax] = k
    wk = np.ones(shape1) if o.weight is None else o.weight[start : start + k].reshape(shape1)
    eps = o.smoothing
    # (float64 copies of the whole part only for the sums that need every class)
    x64 = xc.astype(_F64, copy=False) if probs or eps > 0 else xc
    with np.errstate(invalid="ignore", over="ignore"):
        if probs:
            c = wk * (labels.astype(_F64) * (1.0 - eps) + eps / n_classes)
            coef = np.sum(c, axis=ax, keepdims=True)
            lin = np.sum(c * (ref - x64), axis=ax, keepdims=True)
        else:
            check_labels(labels, n_classes, o.ignore_index, where)
            if eps > 0:
                coef = zeros + np.sum(wk)
                lin = np.sum(wk * (ref - x64), axis=ax, keepdims=True)
            inside = np.expand_dims((labels >= start) & (labels < start + k), ax)
            if k:  # (a part of no classes holds no label)
                local = np.where(inside, np.expand_dims(labels, ax) - start, 0)
                picked = np.take_along_axis(x64, local, axis=ax).astype(_F64)
                label = np.where(inside, picked, 0.0)
                found = inside.astype(_F64)
    return CrossEntropyParts(m, s, ref, lin, coef, label, found)


def merge_ce_parts(p: CrossEntropyParts, ax: int, keepdims: bool) -> CrossEntropyParts:
    m, s = merge_logsumexp_parts(p.max, p.sumexp, ax, keepdims=True)
    ref = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        # each part's lin moved to the new reference: sum c (ref - x) = lin + coef (ref - r)
        shift = np.where(p.coef != 0, p.coef * (ref - p.ref), 0.0)
        lin = np.sum(p.lin + shift, axis=ax, keepdims=True)
    r = CrossEntropyParts(
        m, s, ref, lin, *(np.sum(a, axis=ax, keepdims=True) for a in (p.coef, p.label, p.found))
    )
    return r if keepdims else CrossEntropyParts(*(np.squeeze(a, axis=ax) for a in r))


def ce_example_terms(
    p: CrossEntropyParts, labels: np.ndarray | None, n_classes: int, o: _CeOptions
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(loss, lse, share of the mean's denominator, kept) per example, from merged parts;
    labels: the integer labels (shaped as the parts), or None for probabilities."""
    m, s = p.max, p.sumexp
    eps, z = o.smoothing, o.z_loss
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        # as the kernel: an example with a NaN, a +inf, or only -inf is NaN
        special = ~np.isfinite(m) | np.isnan(s)
        log_s = np.log1p(s - 1.0)  # (s >= 1: accurate near 0, when one class dominates)
        lse = np.where(special, np.nan, m + log_s)
        # sum c (lse - x) = lin + coef log s (ref = m where m is finite)
        spread = p.lin + p.coef * log_s
        if labels is None:
            total = spread
            share = kept = np.ones(m.shape)
        else:
            kept_b = labels != o.ignore_index
            safe = np.where(kept_b, labels, 0)
            wy = np.ones(m.shape) if o.weight is None else o.weight[safe]
            total = (1.0 - eps) * wy * ((m - p.label) + log_s)
            if eps > 0:
                total = total + eps / n_classes * spread
            share = np.where(kept_b, wy, 0.0)
            kept = kept_b.astype(_F64)
        if z:
            total = total + z * lse * lse
        total = np.where(special, np.nan, total)
        if labels is not None:
            total = np.where(kept_b, total, 0.0)
            lse = np.where(kept_b, lse, 0.0)
    return total, lse, share, kept


def reduce_ce(
    total: float, z_sum: float, share: float, kept: float, reduction: str, dtype: np.dtype
) -> Any:
    """The reduced loss from the examples' sums (z_sum: of z * lse**2), as the kernel
    reduces: mean = cross-entropy / sum of shares + z-loss / examples kept."""
    from ._cross_entropy import _scalar_loss

    if reduction == "mean":  # (0 / 0: NaN, as the kernel's)
        with np.errstate(invalid="ignore", divide="ignore"):
            # (a total weight of 0 leaves a cross-entropy sum of 0, NaN over 0, whatever
            # the rounding of total - z_sum)
            ce = np.float64(total - z_sum) / np.float64(share) if kept and share else math.nan
            total = float(ce + (np.float64(z_sum) / np.float64(kept) if z_sum else 0.0))
    return _scalar_loss(total, dtype)


@accepts_arrays("logits", "labels", "weight")
def cross_entropy_parts(
    logits: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    axis: SupportsIndex = -1,
    class_start: int = 0,
    num_classes: int | None = None,
    weight: npt.ArrayLike | None = None,
    ignore_index: SupportsIndex = -100,
    label_smoothing: float = 0.0,
    softcap: float | None = None,
    keepdims: bool = False,
) -> CrossEntropyParts:
    r"""The mergeable terms of :func:`cross_entropy` over a part of the classes.

    For logits split along the class axis (shards of a vocabulary, Dask chunks): each
    part's :class:`CrossEntropyParts`, merged exactly by :func:`merge_cross_entropy_parts`
    and finished by :func:`cross_entropy_from_parts`, give the loss of the whole logits.

    Parameters
    ----------
    logits : array_like
        Classes ``class_start`` to ``class_start + logits.shape[axis]`` of
        ``num_classes`` (dtype rules of :func:`cross_entropy`).
    labels : array_like
        Integer class indices of the whole range (the logits' shape without ``axis``),
        or this part's probabilities (the logits' shape).
    axis : int, default -1
    class_start : int, default 0
    num_classes : int, optional
        The number of classes of the whole logits (default: this part's).
    weight : array_like, optional
        The ``num_classes`` class weights of the whole logits.
    ignore_index, label_smoothing, softcap
        As in :func:`cross_entropy` (``z_loss`` and ``reduction`` go to
        :func:`cross_entropy_from_parts`).
    keepdims : bool, default False

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> x = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 5.0, 1.0]], dtype=np.float32)
    >>> y = np.array([3, 0])
    >>> a = fs.cross_entropy_parts(x[:, :2], y, num_classes=4, keepdims=True)
    >>> b = fs.cross_entropy_parts(x[:, 2:], y, class_start=2, num_classes=4, keepdims=True)
    >>> merged = fs.merge_cross_entropy_parts(
    ...     fs.CrossEntropyParts(*(np.concatenate(t, axis=-1) for t in zip(a, b))))
    >>> fs.cross_entropy_from_parts(merged, y, num_classes=4), fs.cross_entropy(x, y)
    (np.float32(2.7357433), np.float32(2.7357433))
    """
    x, _ = _prepare(logits, "logits")
    ax = _one_axis(axis, x.ndim)
    k = x.shape[ax]
    n = k if num_classes is None else int(num_classes)
    start = int(class_start)
    if not (start >= 0 and start + k <= n):
        raise ValueError(
            f"classes {start} to {start + k} of the part are not within num_classes ({n})"
        )
    lab = np.asarray(labels)
    probs = lab.dtype.kind == "f" or lab.dtype == _BF16
    want = x.shape if probs else x.shape[:ax] + x.shape[ax + 1 :]
    if lab.dtype.kind not in "iuf" and not probs:
        raise TypeError(
            f"labels have dtype {lab.dtype}; expected integer class indices "
            "or floating-point probabilities"
        )
    if lab.shape != want:
        raise ValueError(
            f"{'probability' if probs else 'integer'} labels must have shape {want}, "
            f"got {lab.shape}"
        )
    o = _ce_options(n, x.dtype, probs, weight, ignore_index, "none", label_smoothing, 0.0, softcap)
    p = ce_parts(x, lab, probs, ax, start, n, o)
    return p if keepdims else CrossEntropyParts(*(np.squeeze(a, axis=ax) for a in p))


def merge_cross_entropy_parts(
    parts: CrossEntropyParts, axis: SupportsIndex = -1, *, keepdims: bool = False
) -> CrossEntropyParts:
    """Merge :class:`CrossEntropyParts` stacked along ``axis`` (exactly, in float64: the
    logsumexp pairs as :func:`merge_logsumexp_parts` merges them, the weighted sums moved
    to the merged maximum, the label's logit from the part that holds it).

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> x, y = np.log([[0.4, 0.3, 0.2, 0.1]]), np.array([1])
    >>> a = fs.cross_entropy_parts(x[:, :2], y, num_classes=4, keepdims=True)
    >>> b = fs.cross_entropy_parts(x[:, 2:], y, class_start=2, num_classes=4, keepdims=True)
    >>> stacked = fs.CrossEntropyParts(*(np.concatenate(f, axis=-1) for f in zip(a, b)))
    >>> merged = fs.merge_cross_entropy_parts(stacked)
    >>> merged.max, merged.sumexp, merged.label  # log 0.4, 1 / 0.4, log 0.3
    (array([-0.91629073]), array([2.5]), array([-1.2039728]))
    """
    p = CrossEntropyParts(*(np.asarray(a, dtype=_F64) for a in parts))
    ax = _one_axis(axis, p.max.ndim)
    return merge_ce_parts(p, ax, keepdims)


@accepts_arrays("labels", "weight")
def cross_entropy_from_parts(
    parts: CrossEntropyParts,
    labels: npt.ArrayLike | None = None,
    *,
    num_classes: int,
    weight: npt.ArrayLike | None = None,
    ignore_index: SupportsIndex = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    dtype: npt.DTypeLike = np.float32,
) -> Any:
    """The loss of :func:`cross_entropy` from the merged parts of whole examples.

    ``labels``: the integer labels (shaped as the parts), or None for probabilities;
    ``weight``, ``ignore_index`` and ``label_smoothing`` as given to
    :func:`cross_entropy_parts`; ``reduction`` and ``z_loss`` as in
    :func:`cross_entropy`; ``dtype``: the loss's (float32 for float32, float16 and
    bfloat16 logits). Within a few float32 ulp of :func:`cross_entropy`'s loss.

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> x, y = np.log([[0.4, 0.3, 0.2, 0.1]]), np.array([1])
    >>> a = fs.cross_entropy_parts(x[:, :2], y, num_classes=4, keepdims=True)
    >>> b = fs.cross_entropy_parts(x[:, 2:], y, class_start=2, num_classes=4, keepdims=True)
    >>> merged = fs.merge_cross_entropy_parts(
    ...     fs.CrossEntropyParts(*(np.concatenate(f, axis=-1) for f in zip(a, b))))
    >>> loss = fs.cross_entropy_from_parts(merged, y, num_classes=4)  # -log 0.3
    >>> loss.dtype, round(float(loss), 6), round(float(fs.cross_entropy(x, y)), 6)
    (dtype('float32'), 1.203973, 1.203973)
    """
    p = CrossEntropyParts(*(np.asarray(a, dtype=_F64) for a in parts))
    lab = None if labels is None else np.asarray(labels)
    o = _ce_options(
        int(num_classes), np.dtype(dtype), lab is None, weight, ignore_index, reduction,
        label_smoothing, z_loss, None,
    )  # fmt: skip
    if lab is not None:
        if lab.dtype.kind not in "iu":
            raise TypeError(f"labels must be integer class indices or None, got {lab.dtype}")
        if lab.shape != p.max.shape:
            raise ValueError(f"labels have shape {lab.shape}, the parts {p.max.shape}")
        check_labels(lab, int(num_classes), o.ignore_index, "")
    total, lse, share, kept = ce_example_terms(p, lab, int(num_classes), o)
    if o.reduction == "none":
        return _cast(total, np.dtype(dtype))
    z_sum = o.z_loss * float(np.sum(lse * lse)) if o.z_loss else 0.0
    return reduce_ce(
        float(np.sum(total)), z_sum, float(np.sum(share)), float(np.sum(kept)),
        o.reduction, np.dtype(dtype),
    )  # fmt: skip

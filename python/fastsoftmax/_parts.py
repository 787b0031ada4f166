"""Mergeable parts of logsumexp, softmax and log_softmax: an array split along its
reduction axis (Dask's chunks, shards of a vocabulary) is reduced part by part and the
parts' ``(max, sum of exp(x - max))`` pairs merged exactly; the work is in ``_core``."""

from __future__ import annotations

from typing import Any, NamedTuple, SupportsIndex

import numpy as np
import numpy.typing as npt

from . import _core
from ._api import _F64, _axis_index, _cast, _check_out, _check_overlap, _prepare
from ._interop import accepts_arrays


class LogsumexpParts(NamedTuple):
    """Per slice, the maximum and the sum of ``exp(x - max)`` (float64 arrays).

    ``logsumexp = max + log(sumexp)``. A slice with a NaN is ``(nan, nan)``; with a
    ``+inf`` (and no NaN) ``(inf, 1)``; with only ``-inf`` entries, or none,
    ``(-inf, 0)``; else ``max`` is the slice's largest value and ``sumexp >= 1``.
    """

    max: np.ndarray
    sumexp: np.ndarray


def _one_axis(axis: Any, ndim: int) -> int:
    if isinstance(axis, tuple) or axis is None:
        raise TypeError(f"axis must be one integer here, got {axis!r}")
    return _axis_index(axis, ndim, axis)


@accepts_arrays("x")
def logsumexp_parts(
    x: npt.ArrayLike, axis: SupportsIndex = -1, *, keepdims: bool = False
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
    m, s = _core.logsumexp_parts(a, ax)
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
    rounds it, so the parts of a slice put together are within 1 ulp of the softmax
    of the whole slice; a special pair gives :func:`softmax`'s answer for the whole
    slice (all NaN).

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

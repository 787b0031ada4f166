"""The entropy and the KL divergence of a softmax, with their gradients; the work is in
``_core`` (one row kernel each, cpp/src/generic/divergence_rows.hpp)."""

from __future__ import annotations

import math
from typing import Any, Literal, SupportsIndex

import numpy as np
import numpy.typing as npt

from . import _core
from ._api import _axis_index, _cast, _check_scale, _prepare, _temperature, _where
from ._cross_entropy import _loss_dtype
from ._interop import accepts_arrays

TargetKind = Literal["logits", "probs", "log_probs"]
KlReduction = Literal["batchmean", "mean", "sum", "none"]
_TARGET_KINDS = ("logits", "probs", "log_probs")
_KL_REDUCTIONS = ("batchmean", "mean", "sum", "none")


def _line_values(
    x: np.ndarray, axis: int, run: Any
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, ...]]:
    """run(axis) -> (values, grad), or NaN values and an empty-axis gradient of zeros."""
    reduced = x.shape[:axis] + x.shape[axis + 1 :]
    if x.shape[axis] == 0:  # (no distribution: NaN, as the kernels give for an empty row)
        return np.full(reduced, np.nan), np.zeros(x.shape, x.dtype), reduced
    values, grad = run(axis)
    return values, grad, reduced


@accepts_arrays("logits")
def entropy(
    logits: npt.ArrayLike,
    axis: SupportsIndex = -1,
    *,
    temperature: float = 1.0,
    where: npt.ArrayLike | None = None,
    return_grad: bool = False,
) -> Any:
    r"""Shannon entropy of ``softmax(logits / temperature)`` along an axis.

    .. math::
        H = -\sum_j p_j \log p_j = \log s + \frac{1}{s}\sum_j e^{z_j - m}(m - z_j),
        \quad p = \mathrm{softmax}(z),\ z = x / T,\ m = \max_j z_j,\ s = \sum_j e^{z_j - m}

    The right-hand form is what is computed: both terms are sums of non-negative
    values, so the entropy keeps its relative accuracy for peaked rows (``H`` down to
    1e-12 and below), and no probability array is formed (the logits are read twice,
    three times with the gradient).

    Parameters
    ----------
    logits : array_like
        Logits, any real dtype (float16 and bfloat16 are computed in float32; integers
        and bools as float64), any strides.
    axis : int, default -1
        The class axis.
    temperature : float, default 1.0
        ``T > 0``, finite: the entropy of ``softmax(logits / T)``, without a scaled copy.
    where : array_like of bool, optional
        Which classes take part, as in :func:`softmax` (it broadcasts to ``logits``'
        shape): the entropy of the softmax over the included classes only. A slice with
        nothing included has entropy 0 (no term) and a zero gradient, never NaN; the
        gradient is 0 at the excluded classes, and a NaN or inf there has no effect.
        (The logits are copied once, with ``-inf`` at the excluded classes.)
    return_grad : bool, default False
        Also return the gradient of each slice's entropy with respect to its logits
        (the gradient of ``entropy(...).sum()``):
        :math:`\partial H / \partial x_j = -p_j (\log p_j + H) / T`.

    Returns
    -------
    ndarray or (ndarray, ndarray)
        The entropy of every slice: ``logits``' shape without ``axis``, in ``logits``'
        dtype (float32 for float16 and bfloat16 logits); with ``return_grad``, also the
        gradient in ``logits``' shape and dtype.

    Notes
    -----
    A slice with a NaN, a ``+inf`` or only ``-inf`` has no softmax (NaN, as in
    :func:`softmax`): its entropy and gradient are NaN. ``-inf`` entries beside finite
    ones have probability 0 and add 0. An empty axis gives NaN. ``logits / T`` is computed
    in the compute type (float32 for float32 and half-precision logits), where a value
    that overflows counts as ``+inf``; ``1 / T`` must be a normal number of it
    (ValueError). A torch tensor or a JAX array in gives the same type out; a tensor that requires grad is read as data (use
    ``fastsoftmax.torch`` for autograd).

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> fs.entropy(np.zeros((2, 4), np.float32))  # uniform over 4: log 4
    array([1.3862944, 1.3862944], dtype=float32)
    >>> h, g = fs.entropy(np.array([0.0, 1.0, 2.0]), temperature=2.0, return_grad=True)
    >>> round(float(h), 6)
    1.020191
    >>> fs.entropy(np.array([[0.0, 0.0, 7.0], [1.0, 2.0, 3.0]]), where=[[True, True, False], [False] * 3])
    array([0.69314718, 0.        ])
    """
    t = _temperature(temperature)
    a, result = _prepare(logits, "logits")
    _check_scale(t, a.dtype, temperature)
    ax = _axis_index(axis, a.ndim, axis)
    w = _where(where, a.shape)
    if w is not None:
        a = np.where(w, a, np.array(-np.inf, a.dtype))
    values, grad, _reduced = _line_values(
        a, ax, lambda ax: _core.entropy(a, ax, t, bool(return_grad), 1.0)
    )
    if w is not None:  # (a slice with nothing included: no term; excluded classes: 0)
        empty = ~np.any(w, axis=ax)
        values[empty] = 0
        if grad is not None:
            grad[~w | np.expand_dims(empty, ax)] = 0
    h = _cast(values, _loss_dtype(result))
    if not return_grad:
        return h
    assert grad is not None
    return h, grad if grad.dtype == result else _cast(grad, result)


@accepts_arrays("logits", "target")
def kl_div(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    axis: SupportsIndex = -1,
    target_kind: TargetKind = "logits",
    temperature: float = 1.0,
    reduction: KlReduction = "batchmean",
    return_grad: bool = False,
) -> Any:
    r"""KL divergence ``KL(target || softmax(logits / temperature))`` along an axis.

    .. math::
        \mathrm{KL}(t \,\|\, p) = \sum_j t_j (\log t_j - \log p_j),
        \quad p = \mathrm{softmax}(x / T)

    with the target ``t`` given as ``target_kind``: ``"logits"`` (``t = softmax(y /
    T)``, the same temperature: distillation's soft targets), ``"probs"`` or
    ``"log_probs"`` (taken as given, not renormalized, as PyTorch does).
    Zero-probability target classes add 0.

    The sum is computed term by term as a sum of non-negative terms (see
    cpp/src/generic/divergence_rows.hpp), in float64 for float32 inputs, so it keeps
    its relative accuracy when the two distributions nearly agree: a relative error
    below 1e-5 at ``KL ~ 1e-8``, where ``cross_entropy(x, t) - entropy(t)`` loses
    every digit. The gradient with respect to ``logits`` comes from the same pass:
    :math:`\partial\,\mathrm{KL} / \partial x_j = (p_j \sum_k t_k - t_j) / T`.

    Parameters
    ----------
    logits : array_like
        The student's logits, any real dtype (as :func:`entropy`), any strides.
    target : array_like
        Broadcastable to ``logits``' shape; converted to ``logits``' dtype.
    axis : int, default -1
        The class axis.
    target_kind : {"logits", "probs", "log_probs"}, default "logits"
    temperature : float, default 1.0
        ``T > 0``, finite. Applies to ``logits`` and, for ``target_kind="logits"``, to
        ``target``. The ``T**2`` factor of distillation is not applied: multiply by it.
    reduction : {"batchmean", "mean", "sum", "none"}, default "batchmean"
        Over the slices' divergences: ``"batchmean"`` their mean, ``"sum"`` their sum,
        ``"none"`` each (``logits``' shape without ``axis``), ``"mean"`` the sum over
        every element (``sum / logits.size``, PyTorch's ``"mean"``).
    return_grad : bool, default False
        Also return the gradient of the returned value (of its sum for ``"none"``)
        with respect to ``logits``, in ``logits``' shape and dtype.

    Returns
    -------
    numpy scalar, ndarray, or a tuple with the gradient
        In ``logits``' dtype (float32 for float16 and bfloat16 logits).

    Notes
    -----
    With PyTorch, for 2-d ``(N, C)`` logits::

        fs.kl_div(s, t, temperature=T) * T**2
        == F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1),
                    reduction="batchmean", log_target=True) * T**2

    ``"batchmean"`` here divides by the number of slices (PyTorch by ``input.size(0)``,
    the same for 2-d inputs); ``"none"`` gives one value per slice (PyTorch one per
    element). ``target_kind="probs"`` is PyTorch's ``log_target=False``.

    A slice whose softmax is NaN (a NaN, a ``+inf`` or only ``-inf`` in the logits, or
    in logits targets) or whose target has a NaN, a negative or an infinite
    probability gives NaN; a target class of positive probability where ``p = 0``
    gives ``+inf`` (and a finite gradient). An empty axis gives NaN. The temperature's
    range and overflow are as in :func:`entropy`.

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> s = np.array([[1.0, 2.0, 3.0]], np.float32)
    >>> float(fs.kl_div(s, s))
    0.0
    >>> kl, g = fs.kl_div(s, np.array([[3.0, 2.0, 1.0]], np.float32), return_grad=True)
    >>> round(float(kl), 5), g.shape
    (1.15042, (1, 3))
    """
    t = _temperature(temperature)
    kind: object = target_kind  # (a str only: `in` would compare an array element-wise)
    red: object = reduction
    if not isinstance(kind, str) or kind not in _TARGET_KINDS:
        raise ValueError(
            f"target_kind must be 'logits', 'probs' or 'log_probs', got {target_kind!r}"
        )
    if not isinstance(red, str) or red not in _KL_REDUCTIONS:
        raise ValueError(
            f"reduction must be 'batchmean', 'mean', 'sum' or 'none', got {reduction!r}"
        )
    a, result = _prepare(logits, "logits")
    _check_scale(t, a.dtype, temperature)
    b, _ = _prepare(target, "target")
    if b.dtype != a.dtype:
        b = b.astype(a.dtype)
    if b.shape != a.shape:
        try:
            b = np.broadcast_to(b, a.shape)
        except ValueError:
            raise ValueError(
                f"target of shape {b.shape} does not broadcast to logits' shape {a.shape}"
            ) from None
    ax = _axis_index(axis, a.ndim, axis)
    lines = math.prod(a.shape[:ax] + a.shape[ax + 1 :])
    scale = {
        "batchmean": 1.0 / lines if lines else 1.0,
        "mean": 1.0 / a.size if a.size else 1.0,
        "sum": 1.0,
        "none": 1.0,
    }[reduction]
    values, grad, _ = _line_values(
        a, ax, lambda ax: _core.kl_div(a, b, ax, target_kind, t, bool(return_grad), scale)
    )
    vt = _loss_dtype(result)
    if reduction == "none":
        value: Any = _cast(values, vt)
    else:
        total = float(np.sum(values))
        if reduction == "batchmean":
            total = total / lines if lines else math.nan
        elif reduction == "mean":
            total = total / a.size if a.size else math.nan
        value = _cast(np.asarray(total), vt)[()]
    if not return_grad:
        return value
    assert grad is not None
    return value, grad if grad.dtype == result else _cast(grad, result)

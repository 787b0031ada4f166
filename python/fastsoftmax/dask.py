"""The softmax family and the cross-entropy over Dask arrays, lazily, chunk by chunk.

``import fastsoftmax.dask as fsd`` (needs ``dask[array]``: ``pip install
"fastsoftmax[dask]"``). Each function takes a :class:`dask.array.Array` chunked along
any axes and returns a lazy dask array (a 0-d one for a reduced loss); the top-level
functions of :mod:`fastsoftmax` given a dask array come here too.

What each reads:

* chunks along the other axes only: every chunk's own call of the in-memory function
  (one read; bitwise the in-memory result);
* the reduction axis split in several chunks: ``logsumexp`` is one
  :func:`dask.array.reduction` over the chunks' ``(max, sum of exp(x - max))`` pairs
  (:func:`fastsoftmax.logsumexp_parts`, merged exactly: one read, within 1 ulp of the
  in-memory result); ``softmax`` and ``log_softmax`` are that reduction plus one pass
  over the chunks given the merged pairs (two reads); the backward functions a sum
  and one pass; ``cross_entropy`` one reduction over each chunk's per-example terms
  (the pair, the label's logit, the sums that smoothing and probabilities need), and
  with ``return_grad`` one more pass for the gradient.

Nothing is computed until the result is (``.compute()``, ``dask.compute``, a
``Client``), on whatever scheduler is active: the threaded one, processes, or a
``dask.distributed`` cluster of several machines (the code is the same; only the
``Client`` changes).
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from typing import Any, SupportsIndex

import dask.array as da
import numpy as np
import numpy.typing as npt

from . import _api, _core, _cross_entropy, _parts

__all__ = [
    "cross_entropy",
    "log_softmax",
    "log_softmax_backward",
    "logsumexp",
    "softmax",
    "softmax_backward",
]

_F64 = np.dtype(np.float64)
_PAIR = np.dtype([("max", "f8"), ("sumexp", "f8")])


def _as_dask(a: Any, name: str) -> da.Array:
    if isinstance(a, da.Array):
        return a
    return da.asarray(np.asarray(a))


def _result_dtype(dtype: np.dtype) -> np.dtype:
    """The in-memory functions' result dtype for inputs of `dtype` (TypeError as theirs)."""
    return _api._prepare(np.empty((1,), dtype), "x")[1]


def _one_axis(axis: Any, ndim: int) -> int:
    if isinstance(axis, tuple) or axis is None:
        raise TypeError(
            f"axis must be one integer for dask arrays, got {axis!r} "
            "(merge the axes with reshape first)"
        )
    return _api._axis_index(axis, ndim, axis)


def _no_out(out: Any) -> None:
    if out is not None:
        raise TypeError("out= is not supported for dask arrays (they are immutable)")


def _meta(ndim: int, dtype: np.dtype) -> np.ndarray:
    return np.empty((0,) * ndim, dtype)


# ---------------------------------------------------------------- pairs --


def _pair_chunk(
    x: np.ndarray, axis: tuple[int, ...], keepdims: bool, for_softmax: bool = False, **_: Any
) -> np.ndarray:
    (ax,) = axis
    m, s = _parts.logsumexp_parts(x, ax, keepdims=True, for_softmax=for_softmax)
    return _pack(m, s)


def _pack(m: np.ndarray, s: np.ndarray) -> np.ndarray:
    r = np.empty(m.shape, _PAIR)
    r["max"], r["sumexp"] = m, s
    return r


def _pair_combine(p: np.ndarray, axis: tuple[int, ...], keepdims: bool, **_: Any) -> np.ndarray:
    (ax,) = axis
    m, s = _parts.merge_logsumexp_parts(p["max"], p["sumexp"], ax, keepdims=keepdims)
    return _pack(m, s)


def _pairs(x: da.Array, ax: int, for_softmax: bool = False) -> da.Array:
    """The merged (max, sumexp) pairs of x's slices along ax (length 1 there), lazily;
    for_softmax: the sums taken as softmax takes them (logsumexp_parts)."""
    return da.reduction(
        x,
        functools.partial(_pair_chunk, for_softmax=for_softmax),
        _pair_combine,
        combine=_pair_combine,
        axis=ax,
        keepdims=True,
        dtype=_PAIR,
        concatenate=True,
        meta=_meta(x.ndim, _PAIR),
        name="fastsoftmax-softmax-parts" if for_softmax else "fastsoftmax-logsumexp-parts",
    )


# ------------------------------------------------------- softmax family --


def logsumexp(
    x: Any,
    axis: SupportsIndex = -1,
    *,
    keepdims: bool = False,
    temperature: float = 1.0,
    where: Any = None,
    out: Any = None,
) -> Any:
    """:func:`fastsoftmax.logsumexp` of a dask array along one axis, lazily.

    One read: chunks along ``axis`` are reduced to ``(max, sumexp)`` pairs, merged
    exactly (within 1 ulp of the in-memory result; bitwise when ``axis`` is one chunk).
    ``temperature``: as in the in-memory function; with ``axis`` split in several
    chunks, the pairs are those of ``x / temperature`` divided in the compute dtype.
    ``where``: a bool mask (dask or NumPy) that broadcasts to ``x``, as in the
    in-memory function; split, the pairs are those of ``x`` with ``-inf`` at the
    excluded entries.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastsoftmax as fs, fastsoftmax.dask as fsd
    >>> p = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    >>> x = da.from_array(np.log(p), chunks=(1, 2))  # the class axis in two chunks
    >>> lse = fsd.logsumexp(x)  # lazy: nothing is read yet
    >>> isinstance(lse, da.Array), lse.compute()  # log 10, log 4
    (True, array([2.30258509, 1.38629436]))
    >>> fs.logsumexp(x).compute()  # the top-level function hands dask arrays here
    array([2.30258509, 1.38629436])
    """
    _no_out(out)
    x = _as_dask(x, "x")
    result = _result_dtype(x.dtype)
    ax = _one_axis(axis, x.ndim)
    t = _family_temperature(temperature, result)
    w = _mask(where, x)
    meta = _meta(x.ndim if keepdims else x.ndim - 1, result)
    if x.numblocks[ax] == 1:
        return da.map_blocks(
            _masked_block,
            x,
            *([] if w is None else [w]),
            op=_api.logsumexp,
            masked=w is not None,
            axis=ax,
            keepdims=keepdims,
            temperature=t,
            drop_axis=[] if keepdims else [ax],
            chunks=None if not keepdims else _with(x.chunks, ax, (1,)),
            dtype=result,
            meta=meta,
            token="fastsoftmax-logsumexp",
        )
    pairs = _pairs(_divided(_excluded_as(x, w, -np.inf), t, result), ax)
    r = da.map_blocks(_lse_of_pairs, pairs, result, dtype=result, meta=_meta(x.ndim, result))
    return r if keepdims else r.squeeze(axis=ax)


def _mask(where: Any, x: da.Array) -> da.Array | None:
    """where= as a bool dask array broadcast to x's shape and chunks (None for None); the
    in-memory functions' TypeError / ValueError when it is not bool or does not
    broadcast."""
    if where is None:
        return None
    w = where if isinstance(where, da.Array) else np.asarray(where)
    # the in-memory checks (and messages), on a zero-stride stand-in of a dask mask
    _api._where(np.broadcast_to(np.zeros((), w.dtype), w.shape), x.shape)
    return da.broadcast_to(_as_dask(w, "where"), x.shape).rechunk(x.chunks)


def _masked_block(*blocks: np.ndarray, op: Callable[..., Any], masked: bool, **kw: Any) -> Any:
    """op of one block of its inputs, the last block the mask's when `masked`."""
    if masked:
        return op(*blocks[:-1], where=blocks[-1], **kw)
    return op(*blocks, **kw)


def _excluded_as(x: da.Array, w: da.Array | None, value: float) -> da.Array:
    """x with `value` at the entries where w is False (x itself without a mask)."""
    return x if w is None else da.where(w, x, np.array(value, x.dtype))


def _family_temperature(temperature: Any, result: np.dtype) -> float:
    """temperature checked as the in-memory functions check it (for the result dtype)."""
    t = _api._temperature(temperature)
    if t != 1.0:
        _api._check_scale(t, result, temperature)
    return t


def _divided(x: da.Array, t: float, result: np.dtype) -> da.Array:
    """x / t in the compute dtype of `result` (x itself at t = 1), for the split-axis paths."""
    if t == 1.0:
        return x
    ct = _api._compute_dtype(np.dtype(result)) if _api._native(np.dtype(result)) else _F64
    return x.astype(ct) / ct.type(t)


def _with(chunks: tuple[tuple[int, ...], ...], ax: int, c: tuple[int, ...]) -> Any:
    return (*chunks[:ax], c, *chunks[ax + 1 :])


def _lse_of_pairs(p: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return _parts.logsumexp_from_parts(p["max"], p["sumexp"], dtype=dtype)


def _unary(name: str, kernel: Callable[..., Any], by_parts: Callable[..., Any], result: str) -> Any:
    def f(
        x: Any,
        axis: SupportsIndex = -1,
        *,
        temperature: float = 1.0,
        where: Any = None,
        out: Any = None,
    ) -> Any:
        _no_out(out)
        x = _as_dask(x, "x")
        result = _result_dtype(x.dtype)
        ax = _one_axis(axis, x.ndim)
        t = _family_temperature(temperature, result)
        w = _mask(where, x)
        meta = _meta(x.ndim, result)
        if x.numblocks[ax] == 1:
            return da.map_blocks(
                _masked_block, x, *([] if w is None else [w]), op=kernel,
                masked=w is not None, axis=ax, temperature=t, dtype=result, meta=meta,
                token=f"fastsoftmax-{name}",
            )  # fmt: skip
        xt = _divided(_excluded_as(x, w, -np.inf), t, result)
        # (float32 only: for the other dtypes the sums are the same either way, and
        # logsumexp's pairs of the same x then share their keys with these)
        pairs = _pairs(xt, ax, for_softmax=name == "softmax" and xt.dtype == np.float32)
        r = da.map_blocks(
            _block_from_pairs, xt, pairs, by_parts, ax, result, dtype=result, meta=meta,
            token=f"fastsoftmax-{name}-from-parts",
        )  # fmt: skip
        # (the excluded entries, and the slices with nothing included: 0 or -inf)
        fill = 0.0 if name == "softmax" else -np.inf
        return r if w is None else da.where(w, r, np.array(fill, result))

    f.__name__ = f.__qualname__ = name
    f.__doc__ = f""":func:`fastsoftmax.{name}` of a dask array along one axis, lazily.

        ``axis`` in one chunk: each chunk's own {name} (bitwise the in-memory result).
        Split in several: the slices' ``(max, sumexp)`` pairs merged from the chunks
        (a first read), then each chunk's part of the result from them
        (:func:`fastsoftmax.{name}_from_parts`, a second read), as accurate as the
        in-memory function but not bitwise its result (which itself differs by a few
        ulp between layouts of the same data). ``temperature``: as in the in-memory
        function; split, the chunks of ``x / temperature`` divided in the compute
        dtype. ``where``: a bool
        mask (dask or NumPy) that broadcasts to ``x``, as in the in-memory function.

        Examples
        --------
        >>> import numpy as np, dask.array as da, fastsoftmax.dask as fsd
        >>> p = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
        >>> x = da.from_array(np.log(p), chunks=(1, 2))  # the class axis in two chunks
        >>> fsd.{name}(x).compute()
        {result}
        """
    return f


def _block_from_pairs(
    x: np.ndarray, p: np.ndarray, by_parts: Callable[..., np.ndarray], ax: int, result: np.dtype
) -> np.ndarray:
    r = by_parts(x, p["max"], p["sumexp"], ax)
    return r if r.dtype == result else _api._cast(r, result)


# (the last argument: the docstring example's output, its second line indented as the
# docstring's body)
softmax = _unary(
    "softmax", _api.softmax, _parts.softmax_from_parts,
    """array([[0.1 , 0.2 , 0.3 , 0.4 ],
               [0.25, 0.25, 0.25, 0.25]])""",
)  # fmt: skip
log_softmax = _unary(
    "log_softmax", _api.log_softmax, _parts.log_softmax_from_parts,
    """array([[-2.30258509, -1.60943791, -1.2039728 , -0.91629073],
               [-1.38629436, -1.38629436, -1.38629436, -1.38629436]])""",
)  # fmt: skip


def _backward(name: str, kernel: Callable[..., Any], dot: bool, result: str) -> Any:
    def f(
        grad: Any,
        y: Any,
        axis: SupportsIndex = -1,
        *,
        temperature: float = 1.0,
        where: Any = None,
        out: Any = None,
    ) -> Any:
        _no_out(out)
        g, yy = _as_dask(grad, "grad"), _as_dask(y, "y")
        if g.shape != yy.shape:
            raise ValueError(f"grad and y must have the same shape, got {g.shape} and {yy.shape}")
        work = np.result_type(_result_dtype(g.dtype), _result_dtype(yy.dtype))
        ax = _one_axis(axis, g.ndim)
        t = _family_temperature(temperature, work)
        yy = yy.rechunk(g.chunks)
        w = _mask(where, g)
        meta = _meta(g.ndim, work)
        if g.numblocks[ax] == 1:
            return da.map_blocks(
                _masked_block, g, yy, *([] if w is None else [w]), op=kernel,
                masked=w is not None, axis=ax, temperature=t, dtype=work, meta=meta,
                token=f"fastsoftmax-{name}",
            )  # fmt: skip
        g = _excluded_as(g, w, 0.0)
        yy = _excluded_as(yy, w, 0.0 if dot else -np.inf)
        # the slices' sum(g * y) (softmax) or sum(g) (log_softmax), in float64
        terms = g.astype(_F64) * yy.astype(_F64) if dot else g.astype(_F64)
        s = terms.sum(axis=ax, keepdims=True)
        r = da.map_blocks(
            _backward_block, g, yy, s, dot, work, t, dtype=work, meta=meta,
            token=f"fastsoftmax-{name}-from-sums",
        )  # fmt: skip
        return r if w is None else da.where(w, r, np.array(0, work))

    f.__name__ = f.__qualname__ = name
    forward = name.removesuffix("_backward")  # (the function that made y)
    f.__doc__ = f""":func:`fastsoftmax.{name}` of dask arrays along one axis, lazily.

        ``axis`` in one chunk: each chunk's own {name} (bitwise the in-memory
        result). Split in several: the slices' sums (float64) merged from the chunks,
        then each chunk's part of the gradient from them, in float64, rounded once.
        ``temperature``: the one ``y`` was computed at; the gradient is ``1 / temperature``
        times the formula's. ``where``: the mask ``y`` was computed with.

        Examples
        --------
        >>> import numpy as np, dask.array as da, fastsoftmax.dask as fsd
        >>> p = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
        >>> x = da.from_array(np.log(p), chunks=(1, 2))  # the class axis in two chunks
        >>> y = fsd.{forward}(x)
        >>> grad = da.from_array(np.array([[1.0, 0.0, 0.0, 0.0]] * 2), chunks=(1, 2))
        >>> fsd.{name}(grad, y).compute()
        {result}
        """
    return f


def _backward_block(
    g: np.ndarray, y: np.ndarray, s: np.ndarray, dot: bool, work: np.dtype, t: float
) -> np.ndarray:
    g64, y64 = g.astype(_F64), y.astype(_F64)
    # the kernels round the sum to their compute type first
    s = s.astype(_api._compute_dtype(np.dtype(work))).astype(_F64)
    with np.errstate(invalid="ignore", over="ignore"):
        r = y64 * (g64 - s) if dot else g64 - np.exp(y64) * s
    if t != 1.0:
        r /= t
    return _api._cast(r, work)


# (the last argument: as for softmax above)
softmax_backward = _backward(
    "softmax_backward", _api.softmax_backward, True,
    """array([[ 0.09  , -0.02  , -0.03  , -0.04  ],
               [ 0.1875, -0.0625, -0.0625, -0.0625]])""",
)  # fmt: skip
log_softmax_backward = _backward(
    "log_softmax_backward", _api.log_softmax_backward, False,
    """array([[ 0.9 , -0.2 , -0.3 , -0.4 ],
               [ 0.75, -0.25, -0.25, -0.25]])""",
)  # fmt: skip


# --------------------------------------------------------- cross-entropy --


def cross_entropy(
    logits: Any,
    labels: Any,
    *,
    axis: SupportsIndex = -1,
    weight: npt.ArrayLike | None = None,
    ignore_index: SupportsIndex = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    temperature: float = 1.0,
    return_grad: bool = False,
    grad_out: Any = None,
    inplace_grad: bool = False,
) -> Any:
    """:func:`fastsoftmax.cross_entropy` of dask arrays, lazily: every option.

    The loss is a lazy dask array (0-d for ``reduction="sum"`` or ``"mean"``);
    ``return_grad=True`` also gives a lazy gradient. ``labels`` (integer classes, or
    probabilities with the logits' shape) may be a dask array or an in-memory one;
    ``weight`` is in memory.

    The class axis in one chunk: each chunk's own fused kernel call (the per-example
    losses bitwise the in-memory ones; a sum or mean of them within 1 ulp). Split in
    several: each chunk's per-example terms (its ``(max, sumexp)`` pair, the label's
    logit, the weighted sums that smoothing and probabilities need) merged exactly in
    float64, then the loss from them; the gradient is one more pass over the chunks.
    Labels out of range raise ValueError when computed, naming the chunk. A
    ``temperature`` divides each chunk in the compute dtype (float32 for half precision)
    before the kernels see it.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastsoftmax.dask as fsd
    >>> p = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    >>> x = da.from_array(np.log(p), chunks=(1, 2))  # the class axis in two chunks
    >>> labels = np.array([3, 0])
    >>> fsd.cross_entropy(x, labels, reduction="none").compute()  # -log 0.4, -log 0.25
    array([0.91629073, 1.38629436])
    >>> loss, grad = fsd.cross_entropy(x, labels, return_grad=True)  # both lazy
    >>> round(float(loss.compute()), 6)
    1.151293
    >>> grad.compute()  # (softmax - one-hot) / 2
    array([[ 0.05 ,  0.1  ,  0.15 , -0.3  ],
           [-0.375,  0.125,  0.125,  0.125]])
    """
    if inplace_grad:
        raise TypeError("inplace_grad=True is not supported for dask arrays (they are immutable)")
    if grad_out is not None and not return_grad:
        raise ValueError("grad_out is only used with return_grad=True")
    x = _as_dask(logits, "logits")
    t = _api._temperature(temperature)
    dtype = np.dtype(x.dtype)
    if t != 1:  # each chunk divided in the compute dtype (float32 for half precision)
        _api._check_scale(t, dtype, temperature)
        compute = _api._compute_dtype(dtype) if dtype.kind in "fV" else np.dtype(np.float64)
        x = x.astype(compute) / np.asarray(t, compute)
    plan = _CePlan(
        x, labels, axis, weight, ignore_index, reduction, label_smoothing, z_loss, softcap
    )
    terms = plan.terms()
    loss = plan.loss(terms)
    if not return_grad:
        return loss
    grad = plan.grad(terms, grad_out)
    if t == 1:
        return loss, grad
    # (the gradient with respect to the logits: 1 / t, in the logits' result dtype)
    return loss, (grad / np.asarray(t, grad.dtype)).astype(_result_dtype(dtype))


# Per-example terms of the cross-entropy, each a float64 field:
#   total  - the example's loss (cross-entropy + z-loss; 0 when ignored)
#   lse    - its logsumexp (of the soft-capped logits)
#   weight - its share of the mean's denominator (w_y; 1 for probabilities; 0 ignored)
#   kept   - 1, or 0 for an ignored example
#   coef   - probabilities: sum_c w_c t'_c (the gradient's factor of p; split classes)
#   max, logs - lse = max + logs, kept apart for the gradient of split classes
_TERMS = np.dtype(
    [
        ("total", "f8"),
        ("lse", "f8"),
        ("weight", "f8"),
        ("kept", "f8"),
        ("coef", "f8"),
        ("max", "f8"),
        ("logs", "f8"),
    ]
)

# The parts of one chunk of the class axis (an example's classes split in several):
#   max, sumexp - the logsumexp pair;
#   ref         - where `lin` is taken from (the part's max when finite, else 0);
#   lin         - sum over the part of c_k * (ref - x'_k), c_k = w_k (smoothing) or
#                 w_k * t'_k (probabilities);
#   coef        - sum over the part of those c_k;
#   label       - the label's soft-capped logit, where the label is in the part;
#   found       - 1 where it is.
_CE_PARTS = np.dtype(
    [
        ("max", "f8"),
        ("sumexp", "f8"),
        ("ref", "f8"),
        ("lin", "f8"),
        ("coef", "f8"),
        ("label", "f8"),
        ("found", "f8"),
    ]
)


class _CePlan:
    """The checked arguments of one dask cross-entropy, and the graphs built from them."""

    def __init__(
        self,
        x: da.Array,
        labels: Any,
        axis: SupportsIndex,
        weight: npt.ArrayLike | None,
        ignore_index: SupportsIndex,
        reduction: str,
        label_smoothing: float,
        z_loss: float,
        softcap: float | None,
    ) -> None:
        if x.ndim == 0:
            raise ValueError("logits must have at least one dimension (the classes)")
        try:
            index = operator.index(axis)
        except TypeError:
            raise TypeError(f"axis must be an integer, got {axis!r}") from None
        self.ax = ax = _api._axis_index(index, x.ndim, axis)
        if x.shape[ax] == 0:
            raise ValueError(f"logits have 0 classes along axis {ax} (shape {x.shape})")
        for a, what in ((x, "logits"), (labels, "labels")):
            if isinstance(a, da.Array) and any(math.isnan(c) for c in a.shape):
                raise ValueError(
                    f"{what} have unknown chunk sizes (shape {a.shape}); call "
                    "compute_chunk_sizes() on them first"
                )
        lab = labels if isinstance(labels, da.Array) else da.asarray(np.asarray(labels))
        self.probs = lab.dtype.kind == "f" or lab.dtype == _api._BF16
        if not self.probs and lab.dtype.kind not in "iu":
            raise TypeError(
                f"labels have dtype {lab.dtype}; expected integer class indices "
                "or floating-point probabilities"
            )
        example_shape = x.shape[:ax] + x.shape[ax + 1 :]
        if self.probs and lab.shape != x.shape:
            raise ValueError(
                f"probability labels must have the shape of logits, {x.shape}, got {lab.shape}"
            )
        if not self.probs and lab.shape != example_shape:
            raise ValueError(
                f"integer labels must have the shape of logits without axis {ax}, "
                f"{example_shape}, got {lab.shape}"
            )
        # The in-memory checks of every option (the same messages); the arrays' values
        # are checked when computed.
        o = _parts._ce_options(
            x.shape[ax], x.dtype, self.probs, weight, ignore_index, reduction,
            label_smoothing, z_loss, softcap,
        )  # fmt: skip
        self.options = o
        self.x = x
        self.reduction, self.z = o.reduction, o.z_loss
        self.result, self.loss_dtype = o.result, o.loss_dtype
        self.n_classes = x.shape[ax]
        work = _api._prepare(np.empty((1,), x.dtype), "logits")[0].dtype
        if self.probs:
            self.labels = lab.astype(work).rechunk(x.chunks)
        else:
            self.labels = lab.rechunk(x.chunks[:ax] + x.chunks[ax + 1 :])
        self.split = x.numblocks[ax] > 1

    # -- the per-example terms --

    def _kwargs(self) -> dict[str, Any]:
        o = self.options
        return {
            "axis": self.ax,
            "options": o,
            "weight": o.weight,
            "ignore_index": o.ignore_index,
            "label_smoothing": o.smoothing,
            "z_loss": o.z_loss,
            "softcap": o.softcap,
        }

    def _labels_per_block(self) -> da.Array:
        """Labels as blocks aligned with the logits' (integer labels: with the class
        axis put back, of length 1, so that blockwise pairs them up)."""
        if self.probs:
            return self.labels
        return da.expand_dims(self.labels, self.ax)

    def terms(self) -> da.Array:
        """Per-example _TERMS (the class axis kept, of length 1)."""
        lab = self._labels_per_block()
        meta = _meta(self.x.ndim, _TERMS)
        if not self.split:
            return da.map_blocks(
                _terms_block, self.x, lab, self.probs, self._kwargs(),
                dtype=_TERMS, meta=meta, chunks=_with(self.x.chunks, self.ax, (1,)),
                token="fastsoftmax-cross-entropy-terms",
            )  # fmt: skip
        parts = da.map_blocks(
            _ce_parts_block, self.x, lab, self.probs, self._kwargs(), self.n_classes,
            self._class_starts(),
            dtype=_CE_PARTS, meta=_meta(self.x.ndim, _CE_PARTS),
            chunks=_with(self.x.chunks, self.ax, (1,) * self.x.numblocks[self.ax]),
            token="fastsoftmax-cross-entropy-parts",
        )  # fmt: skip
        merged = da.reduction(
            parts, _identity_chunk, _ce_parts_combine, combine=_ce_parts_combine,
            axis=self.ax, keepdims=True, dtype=_CE_PARTS, concatenate=True,
            meta=_meta(self.x.ndim, _CE_PARTS), name="fastsoftmax-cross-entropy-merge",
        )  # fmt: skip
        if self.probs:  # (what the probabilities add is in the parts already)
            return merged.map_blocks(
                _terms_from_parts, None, True, self._kwargs(), self.n_classes,
                dtype=_TERMS, meta=meta, token="fastsoftmax-cross-entropy-terms-from-parts",
            )  # fmt: skip
        return da.map_blocks(
            _terms_from_parts, merged, lab, self.probs, self._kwargs(), self.n_classes,
            dtype=_TERMS, meta=meta, token="fastsoftmax-cross-entropy-terms-from-parts",
        )  # fmt: skip

    def _class_starts(self) -> da.Array:
        """Each chunk's first class, as an array of one value per chunk of the class axis
        (so that blockwise hands every chunk its own)."""
        starts = _class_starts(self.x.chunks[self.ax])
        ones = ((1,),) * self.x.ndim
        return (
            da.from_array(starts, chunks=1)
            .reshape(_with((1,) * self.x.ndim, self.ax, (-1,)))
            .rechunk(_with(ones, self.ax, (1,) * len(starts)))
        )

    def _sums(self, terms: da.Array) -> da.Array:
        """The examples' _SUMS (one reduction: the loss's mean and the gradient's
        scales share its keys, so computing both runs it once)."""
        t = terms.squeeze(axis=self.ax)
        return da.reduction(
            t, _sums_chunk, _sums_combine, combine=_sums_combine, axis=tuple(range(t.ndim)),
            keepdims=False, dtype=_SUMS, concatenate=True, meta=np.empty((), _SUMS),
            name="fastsoftmax-cross-entropy-sum",
        )  # fmt: skip

    def loss(self, terms: da.Array) -> da.Array:
        t = terms.squeeze(axis=self.ax)
        if self.reduction == "none":
            return t.map_blocks(_field_as, "total", self.loss_dtype, dtype=self.loss_dtype)
        return da.map_blocks(
            _reduce_sums, self._sums(terms), self.reduction, self.z, self.loss_dtype,
            dtype=self.loss_dtype,
        )  # fmt: skip

    # -- the gradient --

    def grad(self, terms: da.Array, grad_out: Any) -> da.Array:
        """d loss / d logits, lazily: per example a scale for the cross-entropy part
        and one for the z-loss part, then each chunk's gradient."""
        t = terms  # (class axis of length 1)
        if grad_out is None:
            g = 1.0
            per = None
        else:
            ga = grad_out if isinstance(grad_out, da.Array) else np.asarray(grad_out)
            if ga.dtype.kind not in "fiub":
                raise TypeError(f"grad_out must be real numbers, got dtype {ga.dtype}")
            if ga.ndim == 0:
                g, per = float(np.asarray(ga)), None
            elif self.reduction != "none":
                raise ValueError(
                    f"grad_out must be a scalar for reduction={self.reduction!r}, "
                    f"got shape {ga.shape}"
                )
            else:
                example_shape = t.shape[: self.ax] + t.shape[self.ax + 1 :]
                try:
                    if np.broadcast_shapes(ga.shape, example_shape) != example_shape:
                        raise ValueError
                except ValueError:
                    raise ValueError(
                        f"grad_out of shape {ga.shape} does not broadcast to the "
                        f"per-example losses' shape {example_shape}"
                    ) from None
                g, per = 1.0, da.broadcast_to(da.asarray(ga), example_shape)
        if self.reduction == "mean":
            scales = da.map_blocks(
                _mean_scales, self._sums(t), g, dtype=_F64, chunks=(2,), new_axis=0
            )
        else:
            scales = da.from_array(np.array([g, g]), chunks=2)
        if per is None:
            per_b = da.ones(t.shape, _F64, chunks=t.chunks)
        else:
            per_b = da.expand_dims(per.astype(_F64), self.ax).rechunk(t.chunks)
        lab = self._labels_per_block()
        work = _api._prepare(np.empty((1,), self.x.dtype), "logits")[0].dtype
        return da.map_blocks(
            _grad_block, self.x, lab, t, per_b, scales, self.probs, self._kwargs(),
            self.n_classes, self.reduction, work, self.result,
            self._class_starts(),
            dtype=self.result, meta=_meta(self.x.ndim, self.result),
            token="fastsoftmax-cross-entropy-grad",
        )  # fmt: skip


def _class_starts(chunks: tuple[int, ...]) -> np.ndarray:
    return np.cumsum((0, *chunks[:-1])).astype(np.int64)


def _identity_chunk(p: np.ndarray, axis: Any, keepdims: bool, **_: Any) -> np.ndarray:
    return p


def _field_as(t: np.ndarray, field: str, dtype: np.dtype) -> np.ndarray:
    with np.errstate(over="ignore"):
        return t[field].astype(dtype)


def _block_name(block_info: Any) -> str:
    if block_info and 0 in block_info:
        return f" of the chunk at {tuple(block_info[0]['chunk-location'])}"
    return ""


def _terms_block(
    x: np.ndarray,
    lab: np.ndarray,
    probs: bool,
    kw: dict[str, Any],
    block_info: Any = None,
) -> np.ndarray:
    """The per-example terms of a chunk holding whole examples: one fused kernel call."""
    ax = kw["axis"]
    labels = lab if probs else np.squeeze(lab, axis=ax)
    if not probs:
        _parts.check_labels(labels, x.shape[ax], kw["ignore_index"], _block_name(block_info))
    call = _cross_entropy._Call(
        x, labels, ax, kw["weight"], kw["ignore_index"], "none", kw["label_smoothing"],
        kw["z_loss"], kw["softcap"],
    )  # fmt: skip
    example_shape = call.example_shape
    rows = np.empty(example_shape, np.float64)
    lse = np.empty(example_shape, np.float64)
    _core.cross_entropy(
        call.x, call.axis, call.labels, call.target, None, None, None, rows, lse, "none",
        call.weight, call.smoothing, call.z_loss, call.softcap, call.ignore_index,
    )  # fmt: skip
    out = np.zeros(example_shape, _TERMS)
    out["total"], out["lse"], out["max"] = rows, lse, lse  # (logs 0)
    if probs:
        out["weight"] = out["kept"] = 1.0
    else:
        kept = labels != kw["ignore_index"]
        w = kw["weight"]
        out["weight"] = np.where(kept, 1.0 if w is None else w[np.where(kept, labels, 0)], 0.0)
        out["kept"] = kept
    return np.expand_dims(out, ax)


def _pack_ce(p: _parts.CrossEntropyParts) -> np.ndarray:
    out = np.empty(p.max.shape, _CE_PARTS)
    for name, a in zip(p._fields, p):
        out[name] = a
    return out


def _unpack_ce(a: np.ndarray) -> _parts.CrossEntropyParts:
    return _parts.CrossEntropyParts(*(a[name] for name in _parts.CrossEntropyParts._fields))


def _ce_parts_block(
    x: np.ndarray,
    lab: np.ndarray,
    probs: bool,
    kw: dict[str, Any],
    n_classes: int,
    start: np.ndarray,
    block_info: Any = None,
) -> np.ndarray:
    """The CrossEntropyParts of a chunk holding some classes of each example."""
    ax = kw["axis"]
    labels = lab if probs else np.squeeze(lab, axis=ax)
    p = _parts.ce_parts(
        x, labels, probs, ax, int(start.reshape(-1)[0]), n_classes, kw["options"],
        _block_name(block_info),
    )  # fmt: skip
    return _pack_ce(p)


def _ce_parts_combine(p: np.ndarray, axis: tuple[int, ...], keepdims: bool, **_: Any) -> np.ndarray:
    (ax,) = axis
    return _pack_ce(_parts.merge_ce_parts(_unpack_ce(p), ax, keepdims))


def _terms_from_parts(
    p: np.ndarray, lab: np.ndarray | None, probs: bool, kw: dict[str, Any], n_classes: int
) -> np.ndarray:
    """The per-example _TERMS from the merged parts of whole examples."""
    parts = _unpack_ce(p)
    total, lse, share, kept = _parts.ce_example_terms(parts, lab, n_classes, kw["options"])
    out = np.zeros(p.shape, _TERMS)
    out["total"], out["lse"], out["weight"], out["kept"] = total, lse, share, kept
    out["coef"] = parts.coef
    out["max"] = parts.max
    with np.errstate(invalid="ignore", divide="ignore"):
        out["logs"] = np.log1p(parts.sumexp - 1.0)
    return out


_SUMS = np.dtype([("total", "f8"), ("z", "f8"), ("weight", "f8"), ("kept", "f8")])


def _sums_chunk(t: np.ndarray, axis: Any, keepdims: bool, **_: Any) -> np.ndarray:
    out = np.zeros((1,) * t.ndim, _SUMS)
    out["total"] = np.sum(t["total"])
    with np.errstate(over="ignore"):  # (used only with a z-loss, where inf is the answer)
        out["z"] = np.sum(t["lse"] * t["lse"])
    out["weight"] = np.sum(t["weight"])
    out["kept"] = np.sum(t["kept"])
    return out if keepdims else out.reshape(())


def _sums_combine(s: np.ndarray, axis: Any, keepdims: bool, **_: Any) -> np.ndarray:
    out = np.zeros((1,) * s.ndim, _SUMS)
    for f in _SUMS.names or ():
        out[f] = np.sum(s[f])
    return out if keepdims else out.reshape(())


def _reduce_sums(s: np.ndarray, reduction: str, z: float, dtype: np.dtype) -> np.ndarray:
    return np.asarray(
        _parts.reduce_ce(
            float(s["total"]),
            z * float(s["z"]) if z else 0.0,  # (lse**2 may overflow: no z-loss, no sum)
            float(s["weight"]),
            float(s["kept"]),
            reduction,
            dtype,
        )
    )


def _mean_scales(s: np.ndarray, g: float) -> np.ndarray:
    """(cross-entropy part, z-loss part) factors of a mean's gradient."""
    with np.errstate(divide="ignore", invalid="ignore"):  # (a total weight of 0: NaN)
        return np.float64(g) / np.array([s["weight"], s["kept"]], dtype=_F64).reshape(2)


def _grad_block(
    x: np.ndarray,
    lab: np.ndarray,
    t: np.ndarray,
    per: np.ndarray,
    scales: np.ndarray,
    probs: bool,
    kw: dict[str, Any],
    n_classes: int,
    reduction: str,
    work: np.dtype,
    result: np.dtype,
    start: np.ndarray,
) -> np.ndarray:
    """A chunk's gradient given the examples' lse (t) and the scales."""
    ax = kw["axis"]
    c0 = int(start.reshape(-1)[0])
    k = x.shape[ax]
    eps, z, cap = kw["label_smoothing"], kw["z_loss"], kw["softcap"]
    finite = bool(np.isfinite(scales).all()) and scales[0] != 0.0
    if k == n_classes and (z == 0.0 or reduction != "mean" or finite):
        # whole examples: the fused kernel, as in memory, scaled per example (a mean's
        # z-loss part, scaled by 1 / examples instead, through the z factor)
        labels = lab if probs else np.squeeze(lab, axis=ax)
        z_eff = z * scales[1] / scales[0] if z and reduction == "mean" else z
        call = _cross_entropy._Call(
            x, labels, ax, kw["weight"], kw["ignore_index"], "none", eps, z_eff, cap
        )
        grad = np.empty(call.x.shape, call.x.dtype)
        call.run(grad, np.squeeze(per, axis=ax) * scales[0])
        return grad if grad.dtype == result else _api._cast(grad, result)
    xc = _parts.softcapped(x, cap).astype(_F64)
    lse = t["lse"]
    shape1 = [1] * x.ndim
    shape1[ax] = k
    w = kw["weight"]
    wk = np.ones(shape1) if w is None else w[c0 : c0 + k].reshape(shape1)
    s_ce, s_z = per * scales[0], per * scales[1]
    with np.errstate(invalid="ignore", over="ignore"):
        # (x - max) - log(sum): exact where it matters even for huge logits
        p = np.where(np.isnan(lse), np.nan, np.exp((xc - t["max"]) - t["logs"]))
        if probs:
            tt = lab.astype(_F64) * (1.0 - eps) + eps / n_classes
            g = s_ce * (t["coef"] * p - wk * tt)
        else:
            labels = np.squeeze(lab, axis=ax)
            safe = np.expand_dims(np.where(labels != kw["ignore_index"], labels, 0), ax)
            wy = 1.0 if w is None else w[safe]
            onehot = np.arange(c0, c0 + k).reshape(shape1) == safe
            wall = float(n_classes) if w is None else float(np.sum(w))
            g = s_ce * ((1.0 - eps) * wy * (p - onehot) + eps / n_classes * (wall * p - wk))
        if z:
            g = g + s_z * 2.0 * z * lse * p
        if cap is not None:
            g = g * (1.0 - (xc / cap) ** 2)
        if not probs:  # ignored examples: 0, whatever their logits
            g = np.where(np.expand_dims(labels != kw["ignore_index"], ax), g, 0.0)
    return _api._cast(g, result)

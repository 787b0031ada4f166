"""The fused linear cross-entropy: a classifier head's loss and gradients, chunk by chunk.

A chunk of tokens at a time: its logits from NumPy's matrix product (its BLAS),
its loss terms and gradient from the fused cross-entropy kernel, in place, and
the gradient consumed by the next products -- ``d_hidden[chunk] = g @ W`` and
``d_weight += g.T @ h[chunk]`` (accumulated by BLAS's gemm with beta = 1, see
``_blas``). Only one chunk of logits is ever held.
"""

from __future__ import annotations

import math
from typing import Any, SupportsIndex

import numpy as np
import numpy.typing as npt

from . import _core
from ._api import _BF16, _F16, _F32, _F64, _require
from ._blas import add_product
from ._cross_entropy import _I64, _Call, _index_or_none, _loss_dtype, _scalar_loss
from ._interop import accepts_arrays
from ._parts import check_labels

_LAYOUTS = ("VD", "DV")
# the default chunk: 9% of the tokens (its logits are then 4.5% of the unfused logits and
# gradient, 2 N V values: the rest of the 5% is for the smaller buffers), but at least 64
# (smaller products run slower; the bound is for large N), and no more than fit 256 MiB
_CHUNK_SHARE = 0.09
_CHUNK_MIN_ROWS = 64
_CHUNK_MAX_BYTES = 256 << 20


def _float_array(a: npt.ArrayLike, name: str) -> np.ndarray:
    x = np.asarray(a)
    if x.dtype.kind == "f" and not x.dtype.isnative:  # (big-endian: native order, a copy)
        x = x.astype(x.dtype.newbyteorder("="))
    if not (x.dtype in (_F16, _BF16, _F32, _F64)):
        raise TypeError(
            f"{name} has dtype {x.dtype}; expected float32, float64, float16 or bfloat16"
        )
    return x


def default_chunk_size(tokens: int, classes: int, itemsize: int) -> int:
    """The number of tokens per chunk when ``chunk_size=None``: 9% of the tokens, but at
    least 64, and no more than fit 256 MiB of logits (at least 1)."""
    most = max(1, _CHUNK_MAX_BYTES // max(1, classes * itemsize))
    return min(most, max(_CHUNK_MIN_ROWS, int(tokens * _CHUNK_SHARE)))


def _class_weight_error(e: Exception) -> Exception:
    """cross_entropy's messages name its ``weight``; here that is ``class_weight``."""
    msg = str(e)
    if msg.startswith("weight "):
        return type(e)("class_" + msg)
    return e


def _integer_labels(
    lab: np.ndarray, n_classes: int, ignore_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """(labels as flat aligned int64, as the kernel reads them; which are ignore_index),
    after cross_entropy's check of their range."""
    check_labels(lab, n_classes, ignore_index, "")
    y = _require(lab.reshape(-1), _I64, ["A"])
    return y, y == ignore_index


@accepts_arrays("hidden", "weight", "labels", "bias", "class_weight", "grad_out")
def linear_cross_entropy(
    hidden: npt.ArrayLike,
    weight: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    bias: npt.ArrayLike | None = None,
    weight_layout: str = "VD",
    class_weight: npt.ArrayLike | None = None,
    ignore_index: SupportsIndex = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_grad: bool = False,
    grad_out: npt.ArrayLike | None = None,
    chunk_size: SupportsIndex | None = None,
) -> Any:
    r"""Cross-entropy of a linear layer's outputs, without holding its logits.

    The result is exactly :func:`cross_entropy` of the logits
    :math:`X = H W^\top + b` (``weight_layout="VD"``, :math:`W` of shape ``(V, D)``
    as :class:`torch.nn.Linear` stores it) or :math:`X = H W + b`
    (``weight_layout="DV"``), with every option of :func:`cross_entropy`
    (class weights, ``ignore_index``, the reductions, label smoothing, z-loss,
    soft-capping); the gradients are those of that loss with respect to
    ``hidden``, ``weight`` and ``bias``.

    The logits are made a chunk of tokens at a time by NumPy's matrix product;
    the fused kernel turns each chunk into its loss terms and, in place, its
    gradient :math:`G`, which the next products consume:
    :math:`\partial H_{\mathrm{chunk}} = G W` and
    :math:`\partial W \mathrel{+}= G^\top H_{\mathrm{chunk}}` (gemm with
    :math:`\beta = 1` from NumPy's own BLAS), :math:`\partial b \mathrel{+}=
    \sum_{\mathrm{rows}} G`. Tokens whose label is ``ignore_index`` are dropped
    before any product. A chunk holds whole rows of ``V`` logits: the gradient
    of a row needs its full logsumexp before any of it is consumed, so chunking
    the vocabulary as well would cost a second product for the logits.

    Parameters
    ----------
    hidden : array_like, shape (..., D)
        The layer's inputs (flattened to ``(N, D)``).
    weight : array_like, shape (V, D), or (D, V) with ``weight_layout="DV"``
    labels : array_like
        Integer class indices of shape ``hidden.shape[:-1]``, or probabilities
        of shape ``hidden.shape[:-1] + (V,)``.
    bias : array_like, shape (V,), optional
    weight_layout : {"VD", "DV"}, default "VD"
    class_weight, ignore_index, reduction, label_smoothing, z_loss, softcap
        As ``weight``, ``ignore_index``, ... of :func:`cross_entropy`.
    return_grad : bool, default False
        Also return the gradients: ``(loss, d_hidden, d_weight)``, and
        ``d_bias`` after them when ``bias`` is given.
    grad_out : float or array_like, optional
        The gradient of the objective with respect to the returned loss (a
        scalar; for ``reduction="none"`` an array broadcasting to the
        per-token losses, applied to each token before the weight gradient sums
        over tokens). Only with ``return_grad``.
    chunk_size : int, optional
        Tokens per chunk. Default: 9% of the (non-ignored) tokens, at least 64,
        at most as many as fit 256 MiB of logits: a chunk of logits is then 4.5%
        of the unfused logits and gradient (``2 N V`` values) from ``N = 712``
        tokens up. Larger chunks run the products a little faster.

    Returns
    -------
    loss : numpy.floating or numpy.ndarray
        As :func:`cross_entropy` returns it (float32 for float16 / bfloat16
        inputs).
    d_hidden, d_weight, d_bias : numpy.ndarray
        With ``return_grad``: in the dtypes and shapes of ``hidden``,
        ``weight`` and ``bias``.

    Notes
    -----
    float32 and float64 are computed in their own dtype (float64 when any of
    ``hidden``, ``weight``, ``bias`` is float64); float16 and bfloat16 in
    float32, with ``weight`` converted to float32 once (a copy of its size) and
    the gradients accumulated in float32 before they are rounded to the
    inputs' dtypes. Memory besides the inputs and results: one chunk of
    logits, a chunk of hidden rows, and ``V`` float64 values for the bias
    gradient. fastsoftmax's threads and the BLAS's threads take turns, never
    running at once.

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> rng = np.random.default_rng(0)
    >>> h = rng.standard_normal((6, 4), dtype=np.float32)
    >>> W = rng.standard_normal((10, 4), dtype=np.float32)
    >>> y = np.array([1, 0, 9, -100, 3, 3])
    >>> loss, dh, dW = fs.linear_cross_entropy(h, W, y, return_grad=True)
    >>> bool(np.isclose(loss, fs.cross_entropy(h @ W.T, y), rtol=1e-6))
    True
    >>> dh.shape, dW.shape, float(abs(dh[3]).max())  # the ignored token: no gradient
    ((6, 4), (10, 4), 0.0)
    """
    return _compute(
        hidden, weight, labels, bias, weight_layout, class_weight, ignore_index, reduction,
        label_smoothing, z_loss, softcap, return_grad, grad_out, chunk_size, False,
    )  # fmt: skip


def _compute(
    hidden: npt.ArrayLike,
    weight: npt.ArrayLike,
    labels: npt.ArrayLike,
    bias: npt.ArrayLike | None,
    weight_layout: str,
    class_weight: npt.ArrayLike | None,
    ignore_index: SupportsIndex,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    return_grad: bool,
    grad_out: npt.ArrayLike | None,
    chunk_size: SupportsIndex | None,
    compute_dtype_grads: bool,
) -> Any:
    """linear_cross_entropy; with compute_dtype_grads, the gradients in the compute dtype
    (float32 for float16 / bfloat16 inputs: fastsoftmax.torch scales them before they are
    rounded)."""
    # -- options
    layout: object = weight_layout  # (a str only: `in` would compare an array element-wise)
    if not isinstance(layout, str) or layout not in _LAYOUTS:
        raise ValueError(f"weight_layout must be 'VD' or 'DV', got {weight_layout!r}")
    if grad_out is not None and not return_grad:
        raise ValueError("grad_out is only used with return_grad=True")
    chunk = _index_or_none(chunk_size, "chunk_size")
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk}")

    # -- arrays and shapes
    h = _float_array(hidden, "hidden")
    w = _float_array(weight, "weight")
    b = None if bias is None else _float_array(bias, "bias")
    if h.ndim < 1:
        raise ValueError("hidden must have at least one dimension (the features), got a scalar")
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-D ({weight_layout}), got shape {w.shape}")
    vd = weight_layout == "VD"
    n_classes, dim = w.shape if vd else w.shape[::-1]
    if dim != h.shape[-1]:
        raise ValueError(
            f"hidden has {h.shape[-1]} features (shape {h.shape}) but weight has {dim} "
            f"(shape {w.shape}, layout {weight_layout})"
        )
    if n_classes == 0:
        raise ValueError(f"weight has 0 classes (shape {w.shape}, layout {weight_layout})")
    if b is not None and b.shape != (n_classes,):
        raise ValueError(f"bias must have one entry per class, shape ({n_classes},), got {b.shape}")
    inputs = [a.dtype for a in (h, w, b) if a is not None]
    ct = _F64 if _F64 in inputs else _F32
    example_shape = h.shape[:-1]
    n = math.prod(example_shape)

    lab = np.asarray(labels)
    soft = lab.dtype.kind == "f" or lab.dtype == _BF16
    if soft and lab.shape != (*example_shape, n_classes):
        raise ValueError(
            f"probability labels must have the shape {(*example_shape, n_classes)} "
            f"(hidden's without its features, then the {n_classes} classes), got {lab.shape}"
        )
    if not soft and lab.dtype.kind in "iu" and lab.shape != example_shape:
        raise ValueError(
            f"integer labels must have hidden's shape without its features, {example_shape}, "
            f"got {lab.shape}"
        )
    # the options, the class weights and the labels' dtype, checked by cross_entropy's own
    # rules on an empty chunk
    try:
        call = _Call(
            np.empty((0, n_classes), ct),
            np.empty((0, n_classes), ct) if soft else lab.reshape(-1)[:0],
            -1, class_weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
        )  # fmt: skip
    except (TypeError, ValueError) as e:
        raise _class_weight_error(e) from None
    call.example_shape = example_shape
    scalar, per_example = call.grad_scale(grad_out) if return_grad else (1.0, None)

    # -- the tokens that count, and the mean's denominators
    if soft:
        target = lab.reshape(n, n_classes)
        y = None
        keep = None
        count = denom = float(n)
    else:
        y, ignored = _integer_labels(lab, n_classes, call.ignore_index)
        keep = None if not ignored.any() else np.flatnonzero(~ignored)
        count = float(n if keep is None else keep.size)
        if call.weight is None:
            denom = count
        else:
            kept = y if keep is None else y[keep]
            denom = float(call.weight.astype(np.float64)[kept].sum())

    # -- the kernel's per-token factors and z-loss: the reduction applied to each token
    # ("mean" divides the cross-entropy part by the total weight and the z-loss part by the
    # number of tokens: a sum of z_loss * denom / count per token, then / denom)
    red = call.reduction
    z = call.z_loss
    factor = scalar
    if red == "mean":
        if denom == 0:
            factor = math.nan  # PyTorch's 0/0: a NaN loss and gradient
        else:
            factor = scalar / denom
            z = call.z_loss * denom / count

    # -- working arrays
    m = n if keep is None else keep.size
    rows = default_chunk_size(m, n_classes, ct.itemsize) if chunk is None else chunk
    rows = max(1, min(rows, m))
    h2 = h.reshape(n, dim)
    wc = w if w.dtype == ct else w.astype(ct)
    bc = None if b is None else (b if b.dtype == ct else b.astype(ct))
    logits_buf = np.empty((rows, n_classes), ct)
    direct_h = keep is None and h2.dtype == ct and h2.flags.c_contiguous
    h_buf = None if direct_h else np.empty((rows, dim), ct)
    losses = np.zeros(n, np.float64) if red == "none" else None
    total = 0.0
    d_h = d_w = d_b = None
    dh_buf = None
    if return_grad:
        # (every row of d_hidden is written unless tokens are ignored; d_weight is written
        # by the first chunk's product and accumulated into by the others)
        d_h = np.empty((n, dim), ct) if keep is None else np.zeros((n, dim), ct)
        d_w = np.zeros(w.shape, ct) if m == 0 else np.empty(w.shape, ct)
        d_b = None if b is None else np.zeros(n_classes, np.float64)
        if keep is not None:
            dh_buf = np.empty((rows, dim), ct)
    per_all = None
    if return_grad and per_example is not None:
        per_all = per_example.reshape(n)

    for start in range(0, m, rows):
        stop = min(m, start + rows)
        k = stop - start
        idx = None if keep is None else keep[start:stop]
        # the chunk's hidden rows, contiguous and in the compute dtype
        if direct_h:
            hc = h2[start:stop]
        else:
            assert h_buf is not None
            hc = h_buf[:k]
            if idx is None:
                hc[...] = h2[start:stop]
            elif h2.dtype == ct:
                np.take(h2, idx, axis=0, out=hc)
            else:
                hc[...] = h2[idx]
        x = logits_buf[:k]
        np.matmul(hc, wc.T if vd else wc, out=x)
        if bc is not None:
            x += bc
        # the loss terms, and the gradient in place of the logits
        yc = None if y is None else (y[start:stop] if idx is None else y[idx])
        tc = None if y is not None else _require(target[start:stop], ct, ["C", "A"])
        pc = None
        if per_all is not None:
            pc = np.ascontiguousarray(per_all[start:stop] if idx is None else per_all[idx])
        elif return_grad:
            pc = np.full(k, factor, np.float64)
        loss_rows = np.empty(k, np.float64)
        _core.cross_entropy(
            x, 1, yc, tc, None, x if return_grad else None, pc,
            loss_rows, None, "none", call.weight, call.smoothing, z, call.softcap,
            call.ignore_index,
        )  # fmt: skip
        if losses is not None:
            if idx is None:
                losses[start:stop] = loss_rows
            else:
                losses[idx] = loss_rows
        else:
            total += float(loss_rows.sum())
        if not return_grad:
            continue
        # the gradient consumed: d_hidden rows, d_weight and d_bias accumulated
        assert d_h is not None
        assert d_w is not None
        if idx is None:
            np.matmul(x, wc if vd else wc.T, out=d_h[start:stop])
        else:
            assert dh_buf is not None
            np.matmul(x, wc if vd else wc.T, out=dh_buf[:k])
            d_h[idx] = dh_buf[:k]
        a, b_ = (x.T, hc) if vd else (hc.T, x)
        if start == 0:
            np.matmul(a, b_, out=d_w)
        else:
            add_product(d_w, a, b_)
        if d_b is not None:
            d_b += x.sum(axis=0)

    # -- results
    loss_dtype = _loss_dtype(ct)
    loss: Any
    if losses is not None:
        with np.errstate(over="ignore"):
            loss = losses.astype(loss_dtype).reshape(example_shape)
    elif red == "mean":
        loss = _scalar_loss(math.nan if denom == 0 else total / denom, loss_dtype)
    else:
        loss = _scalar_loss(total, loss_dtype)
    if not return_grad:
        return loss
    assert d_h is not None
    assert d_w is not None

    # (fastsoftmax.torch takes them in the compute dtype, to scale them before rounding)
    def result(g: np.ndarray, a: np.ndarray) -> np.ndarray:
        return g.astype(ct if compute_dtype_grads else a.dtype, copy=False)

    grads = [result(d_h.reshape(h.shape), h), result(d_w, w)]
    if b is not None:
        assert d_b is not None
        grads.append(result(d_b, b))
    return (loss, *grads)

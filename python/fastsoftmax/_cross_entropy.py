"""The fused softmax cross-entropy: argument checking; the work is in ``_core``."""

from __future__ import annotations

import math
import operator
from typing import Any, Literal, SupportsIndex, Union, overload

import numpy as np
import numpy.typing as npt

from . import _core
from ._api import (
    _BF16,
    _aligned,
    _axis_index,
    _cast,
    _check_scale,
    _compute_dtype,
    _copy_into,
    _fast_axis,
    _prepare,
    _real,
    _require,
    _same_elements,
    _temperature,
)
from ._interop import accepts_arrays

Reduction = Literal["none", "sum", "mean"]
_REDUCTIONS = ("none", "sum", "mean")
_LossLike = Union[np.ndarray, np.floating]


_I64: np.dtype[Any] = np.dtype(np.int64)
# the largest finite value of each result dtype: a loss beyond it becomes +inf
_MAX = {np.dtype(t): float(np.finfo(t).max) for t in (np.float16, np.float32, np.float64)}


def _loss_dtype(result: np.dtype) -> np.dtype:
    """The loss's dtype for logits of result dtype `result`: their compute dtype, float32
    for float16 and bfloat16 logits (PyTorch returns their own dtype; a loss with 8 or 11
    significant bits would lose the small differences between steps that people
    compare), else the logits' own."""
    return _compute_dtype(result)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _scalar_loss(total: float, dtype: np.dtype) -> np.floating:
    """The reduced loss in the result dtype (beyond its range: +inf, without a warning)."""
    loss: np.floating
    if abs(total) <= _MAX.get(dtype, math.inf):
        loss = dtype.type(total)
    else:
        with np.errstate(over="ignore"):
            loss = dtype.type(total)
    return loss


def _index_or_none(value: Any, name: str) -> int | None:
    """value as a Python int (None stays None); TypeError naming it for a bool or anything
    that is not an integer."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer or None, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer or None, got {value!r}") from None


def _check_float_option(value: Any, name: str, low: float, high: float = math.inf) -> float:
    v = _real(value, name)
    if not low <= v <= high:
        bounds = f"[{low}, {high}]" if high != math.inf else f">= {low}"
        raise ValueError(f"{name} must be {bounds}, got {value!r}")
    return v


class _Call:
    """The checked, converted arguments of one cross-entropy call."""

    def __init__(
        self,
        logits: npt.ArrayLike,
        labels: npt.ArrayLike,
        axis: SupportsIndex,
        weight: npt.ArrayLike | None,
        ignore_index: SupportsIndex,
        reduction: object,
        label_smoothing: float,
        z_loss: float,
        softcap: float | None,
        temperature: float = 1.0,
    ) -> None:
        # (a str only: `in` would compare an array element-wise)
        if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
        self.reduction = reduction
        self.smoothing = _check_float_option(label_smoothing, "label_smoothing", 0.0, 1.0)
        self.z_loss = _check_float_option(z_loss, "z_loss", 0.0)
        if math.isinf(self.z_loss):
            raise ValueError(f"z_loss must be finite, got {z_loss!r}")
        self.softcap = 0.0
        if softcap is not None:
            self.softcap = _real(softcap, "softcap")
            if not (0 < self.softcap < math.inf):
                raise ValueError(
                    f"softcap must be a positive finite number or None, got {softcap!r}"
                )
        try:
            self.ignore_index = operator.index(ignore_index)
        except TypeError:
            raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}") from None
        if not -(2**63) <= self.ignore_index < 2**63:
            raise ValueError(f"ignore_index must fit in int64, got {ignore_index!r}")

        self.temperature = _temperature(temperature)
        self.x, self.result = _prepare(logits, "logits")
        _check_scale(self.temperature, self.x.dtype, temperature)
        self.loss_dtype = _loss_dtype(self.result)
        if self.x.ndim == 0:
            raise ValueError("logits must have at least one dimension (the classes)")
        work = self.x.dtype
        # class weights, the saved lse and the cap are in the compute dtype
        # (float32 for half-precision logits)
        self.compute = compute = _compute_dtype(work)
        if softcap is not None and not (
            float(np.finfo(compute).tiny) <= self.softcap <= float(np.finfo(compute).max)
        ):
            raise ValueError(f"softcap {softcap!r} is out of the range of {compute}")
        try:  # one class axis: not None nor a tuple, even where they would name one axis
            index = operator.index(axis)
        except TypeError:
            raise TypeError(f"axis must be an integer, got {axis!r}") from None
        self.axis = ax = _axis_index(index, self.x.ndim, axis)
        shape = self.x.shape
        self.n_classes = shape[ax]
        if self.n_classes == 0:
            raise ValueError(f"logits have 0 classes along axis {ax} (shape {shape})")
        self.example_shape = shape[:ax] + shape[ax + 1 :]

        lab = np.asarray(labels)
        self.labels: np.ndarray | None = None
        self.target: np.ndarray | None = None
        if lab.dtype.kind in "iu":
            if lab.shape != self.example_shape:
                raise ValueError(
                    f"integer labels must have the shape of logits without axis {ax}, "
                    f"{self.example_shape}, got {lab.shape}"
                )
            if lab.dtype == np.uint64 and lab.size and lab.max() > np.iinfo(np.int64).max:
                big = tuple(int(i) for i in np.unravel_index(int(np.argmax(lab)), lab.shape))
                raise ValueError(
                    f"label {lab.max()} at position {big} is outside [0, {self.n_classes}) "
                    f"and is not ignore_index ({self.ignore_index})"
                )
            self.labels = lab if lab.dtype is _I64 and _aligned(lab) else _require(lab, _I64, "A")
        elif lab.dtype.kind == "f" or lab.dtype == _BF16:
            if lab.shape != shape:
                raise ValueError(
                    f"probability labels must have the shape of logits, {shape}, got {lab.shape}"
                )
            self.target = _require(lab, work, "A")
        else:
            raise TypeError(
                f"labels have dtype {lab.dtype}; expected integer class indices "
                "or floating-point probabilities"
            )

        self.weight: np.ndarray | None = None
        if weight is not None:
            w = np.asarray(weight)
            if w.dtype.kind not in "fiu" and w.dtype != _BF16:
                raise TypeError(f"weight must be real numbers, got dtype {w.dtype}")
            if w.shape != (self.n_classes,):
                raise ValueError(
                    f"weight must have one entry per class, shape ({self.n_classes},), "
                    f"got {w.shape}"
                )
            bad = np.flatnonzero(~(w >= 0) | ~np.isfinite(w))
            if bad.size:
                raise ValueError(
                    f"weight must be finite and non-negative, got {w[bad[0]].item()!r} at class {bad[0]}"
                )
            with np.errstate(over="ignore"):
                self.weight = _require(w, compute, ["C", "A"])
            over = np.flatnonzero(~np.isfinite(self.weight))
            if over.size:
                raise ValueError(
                    f"weight has entries out of the range of {compute}, "
                    f"the first {w[over[0]].item()!r} at class {over[0]}"
                )

    def grad_scale(self, grad_out: Any) -> tuple[float, np.ndarray | None]:
        """(scalar factor, per-example factors or None) of the gradient."""
        if grad_out is None:
            return 1.0, None
        g = np.asarray(grad_out)
        if g.dtype.kind not in "fiub":
            raise TypeError(f"grad_out must be real numbers, got dtype {g.dtype}")
        if g.ndim == 0:
            return float(g), None
        if self.reduction != "none":
            raise ValueError(
                f"grad_out must be a scalar for reduction={self.reduction!r}, got shape {g.shape}"
            )
        try:
            per = np.broadcast_to(g, self.example_shape)
        except ValueError:
            raise ValueError(
                f"grad_out of shape {g.shape} does not broadcast to the per-example "
                f"losses' shape {self.example_shape}"
            ) from None
        return 1.0, np.ascontiguousarray(per, dtype=np.float64)

    def reads_from(self, grad: np.ndarray) -> bool:
        """Whether grad may share memory with what the kernel reads besides the logits."""
        return any(
            a is not None and np.may_share_memory(a, grad)
            for a in (self.labels, self.target, self.weight)
        )

    def run(
        self,
        grad: np.ndarray | None,
        grad_out: Any = None,
        lse: np.ndarray | None = None,
        lse_out: np.ndarray | None = None,
    ) -> tuple[_LossLike, np.ndarray | None]:
        """The kernel: the loss (reduced, or per example), the gradient into grad
        (when given; from the saved ``lse`` when given), and each example's
        logsumexp into ``lse_out`` (float64 of the per-example shape, C order;
        0 for ignored examples, NaN where the loss is NaN) when given."""
        scalar, per = self.grad_scale(grad_out) if grad is not None else (1.0, None)
        # (from a saved lse the kernel writes no loss but an ignored row's 0: the
        # rest must not be left to np.empty's garbage, whose cast to the loss
        # dtype could warn "invalid value" where it held a signaling NaN)
        alloc = np.empty if lse is None else np.zeros
        rows = alloc(self.example_shape, np.float64) if self.reduction == "none" else None
        if per is None and scalar != 1.0:
            per = np.full(self.example_shape, scalar, np.float64)
        total = _core.cross_entropy(
            self.x,
            self.axis,
            self.labels,
            self.target,
            lse,
            grad,
            per,
            rows,
            lse_out,
            self.reduction,
            self.weight,
            self.smoothing,
            self.z_loss,
            self.softcap,
            self.ignore_index,
            self.temperature,
        )
        if rows is None:
            return _scalar_loss(total, self.loss_dtype), grad
        with np.errstate(over="ignore"):  # a loss beyond the dtype's range is +inf
            return rows.astype(self.loss_dtype), grad


@overload
def cross_entropy(
    logits: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    axis: SupportsIndex = ...,
    weight: npt.ArrayLike | None = ...,
    ignore_index: SupportsIndex = ...,
    reduction: Reduction = ...,
    label_smoothing: float = ...,
    z_loss: float = ...,
    softcap: float | None = ...,
    temperature: float = ...,
    return_grad: Literal[False] = ...,
    grad_out: npt.ArrayLike | None = ...,
    inplace_grad: Literal[False] = ...,
) -> Any: ...
@overload
def cross_entropy(
    logits: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    axis: SupportsIndex = ...,
    weight: npt.ArrayLike | None = ...,
    ignore_index: SupportsIndex = ...,
    reduction: Reduction = ...,
    label_smoothing: float = ...,
    z_loss: float = ...,
    softcap: float | None = ...,
    temperature: float = ...,
    return_grad: Literal[True],
    grad_out: npt.ArrayLike | None = ...,
    inplace_grad: bool = ...,
) -> tuple[Any, np.ndarray]: ...
@overload
def cross_entropy(
    logits: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    axis: SupportsIndex = ...,
    weight: npt.ArrayLike | None = ...,
    ignore_index: SupportsIndex = ...,
    reduction: Reduction = ...,
    label_smoothing: float = ...,
    z_loss: float = ...,
    softcap: float | None = ...,
    temperature: float = ...,
    return_grad: bool = ...,
    grad_out: npt.ArrayLike | None = ...,
    inplace_grad: bool = ...,
) -> Any: ...
@accepts_arrays("logits", "labels", "weight", "grad_out", inplace=("logits", "inplace_grad"))
def cross_entropy(
    logits: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    axis: SupportsIndex = -1,
    weight: npt.ArrayLike | None = None,
    ignore_index: SupportsIndex = -100,
    # Callers see a Reduction (the overloads); a str here: mypy takes `type(reduction) is str`
    # of a Literal for never true, and would skip the fast path below as unreachable.
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    temperature: float = 1.0,
    return_grad: bool = False,
    grad_out: npt.ArrayLike | None = None,
    inplace_grad: bool = False,
) -> Any:
    r"""Softmax cross-entropy from logits, with its gradient computed in the same pass.

    For each example (a slice ``x`` of ``logits`` along ``axis``, with ``C``
    classes, divided by ``temperature`` first), with
    :math:`x' = \mathrm{softcap}\cdot\tanh(x / \mathrm{softcap})`
    when ``softcap`` is set (else :math:`x' = x`),
    :math:`\mathrm{lse} = \log\sum_c e^{x'_c}`, class weights :math:`w`
    (all 1 without ``weight``) and :math:`\varepsilon` = ``label_smoothing``:

    * integer label :math:`y`:

      .. math:: \ell = (1-\varepsilon)\, w_y (\mathrm{lse} - x'_y)
                + \frac{\varepsilon}{C} \sum_c w_c (\mathrm{lse} - x'_c)
                + \zeta\,\mathrm{lse}^2

    * probabilities :math:`t` (soft labels), :math:`t' = (1-\varepsilon)\,t + \varepsilon / C`:

      .. math:: \ell = \sum_c w_c\, t'_c (\mathrm{lse} - x'_c) + \zeta\,\mathrm{lse}^2

    where :math:`\zeta` = ``z_loss``. The cross-entropy part is exactly
    :func:`torch.nn.functional.cross_entropy` with the same ``weight``,
    ``ignore_index``, ``reduction`` and ``label_smoothing``; the z-loss term is
    PaLM's auxiliary loss (Liger-Kernel's ``lse_square_scale``), and ``softcap``
    is Gemma 2's logit soft-capping, the gradient flowing through it.

    Reductions: ``"none"`` returns the per-example losses (``labels``' shape for
    integer labels, ``logits``' shape without ``axis`` for probabilities;
    ignored examples give 0); ``"sum"`` their sum; ``"mean"`` divides the
    cross-entropy part by :math:`\sum_i w_{y_i}` over the non-ignored examples
    (PyTorch's weighted mean; the number of examples for probabilities) and the
    z-loss part by the number of non-ignored examples. A mean over no example
    is NaN.

    Parameters
    ----------
    logits : array_like
        Unnormalized scores. float32, float64, float16 and bfloat16
        (``ml_dtypes.bfloat16``) are read and written natively (the
        half-precision ones computed in float32 registers); longdouble and
        integers are computed in float64.
    labels : array_like
        Either integer class indices (any integer dtype) with the shape of
        ``logits`` without ``axis`` -- ``(N,)`` for ``(N, C)`` logits,
        ``(N, d1, ..., dk)`` for ``(N, C, d1, ..., dk)`` with ``axis=1`` -- or
        floating-point probabilities with the shape of ``logits`` (converted
        to the logits' dtype, as PyTorch requires them to be).
    axis : int, default -1
        The class axis.
    weight : array_like, optional
        ``C`` finite, non-negative class weights (within the range of the
        logits' computation dtype: float32 for float16 and bfloat16 logits,
        whose weights are not rounded to 8 or 11 bits).
    ignore_index : int, default -100
        Integer labels equal to it contribute no loss and a zero gradient (and
        do not count in the mean). Not used with probabilities.
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing : float in [0, 1], default 0
    z_loss : float >= 0, finite, default 0
    softcap : float > 0, finite, optional
        (Within the range of the logits' computation dtype.)
    temperature : float > 0, finite, default 1.0
        The loss of ``logits / temperature`` (before ``softcap``), read as the
        kernels load the logits: no scaled copy. The gradient is with respect to
        ``logits`` (it carries the factor ``1 / temperature``). ``1 / temperature``
        must be a normal number of the computation dtype, and a logit whose
        ``logit / temperature`` overflows that dtype counts as ``+inf`` (a NaN
        loss, as for that call on pre-divided logits).
    return_grad : bool, default False
        Also return :math:`\partial\,\mathrm{loss} / \partial\,\mathrm{logits}`,
        computed in the same pass as the loss.
    grad_out : float or array_like, optional
        The gradient of the final objective with respect to the returned loss
        (default 1): a scalar, or for ``reduction="none"`` an array that
        broadcasts to the per-example losses. Only with ``return_grad``.
    inplace_grad : bool, default False
        Write the gradient into ``logits`` (which must then be a writeable
        floating-point ndarray or torch tensor) instead of a new array: no
        second array of the logits' size is allocated. Requires
        ``return_grad=True``. The logits are left untouched when the call raises.

    Returns
    -------
    loss : numpy scalar or ndarray
        In the logits' result dtype, but float32 for float16 and bfloat16
        logits (PyTorch returns their own dtype; a loss of 8 or 11 significant
        bits would hide the changes between training steps).
    grad : ndarray
        With ``return_grad=True``: the gradient, shaped like ``logits``
        (``logits`` itself with ``inplace_grad=True``).

    Raises
    ------
    ValueError
        A label outside ``[0, C)`` that is not ``ignore_index`` (the message
        names the label and its position), labels or weights of the wrong
        shape, negative or non-finite weights, an unknown ``reduction``,
        ``label_smoothing`` outside [0, 1], a negative ``z_loss``, a
        non-positive ``softcap``, ``inplace_grad`` on a read-only array.
    TypeError
        Labels that are neither integers nor floats, ``inplace_grad`` on a
        non-ndarray or non-floating-point array, an ``axis`` that is not one
        integer, ``label_smoothing``, ``z_loss`` or ``softcap`` that are not
        real numbers (strings included).

    Notes
    -----
    NaN and infinities propagate as in PyTorch: an example whose logits hold a
    NaN, a ``+inf``, or only ``-inf`` has a NaN loss and gradient; a ``-inf``
    logit (a masked class) is fine unless its label, the smoothing term or a
    non-zero probability needs its log-probability (then the loss is ``+inf``;
    a zero probability on it gives NaN, as ``0 * -inf`` does in PyTorch).
    With ``softcap``, infinite logits become finite.
    The GIL is released while the kernel runs.

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> logits = np.log([[0.7, 0.2, 0.1], [0.25, 0.5, 0.25]])  # softmax: these probabilities
    >>> labels = np.array([0, 1])
    >>> fs.cross_entropy(logits, labels, reduction="none")  # -log 0.7, -log 0.5
    array([0.35667494, 0.69314718])
    >>> loss, grad = fs.cross_entropy(logits, labels, return_grad=True)  # the mean
    >>> round(float(loss), 6)
    0.524911
    >>> grad  # (softmax - one-hot) / 2 examples
    array([[-0.15 ,  0.1  ,  0.05 ],
           [ 0.125, -0.25 ,  0.125]])
    >>> round(float(fs.cross_entropy(logits, np.array([0, -100]), reduction="sum")), 6)
    0.356675
    >>> soft = np.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])  # probabilities as labels
    >>> fs.cross_entropy(logits, soft, reduction="none")  # -(log 0.7 + log 0.2) / 2, -log 0.5
    array([0.98305643, 0.69314718])
    """
    if inplace_grad:
        if not return_grad:
            raise ValueError("inplace_grad=True requires return_grad=True")
        if not isinstance(logits, np.ndarray):
            raise TypeError(
                f"inplace_grad=True needs logits to be a numpy.ndarray, got {type(logits).__name__}"
            )
        if logits.dtype.kind != "f" and logits.dtype != _BF16:
            raise TypeError(
                f"inplace_grad=True needs floating-point logits, got dtype {logits.dtype}"
            )
        if not logits.flags.writeable:
            raise ValueError("inplace_grad=True needs writeable logits; these are read-only")
    if grad_out is not None and not return_grad:
        raise ValueError("grad_out is only used with return_grad=True")
    if (  # the common call, kept cheap: the binding checks the rest
        grad_out is None
        and type(logits) is np.ndarray
        and type(labels) is np.ndarray
        and labels.dtype is _I64
        and weight is None
        and softcap is None
        and type(temperature) is float
        # (1 / temperature then a normal number of every compute dtype; the general
        # path checks the rest of the range)
        and 1e-30 <= temperature <= 1e30
        and type(reduction) is str
        and reduction in ("mean", "sum")
        and type(label_smoothing) is float
        and label_smoothing == 0.0
        and type(z_loss) is float
        and z_loss == 0.0
        and type(ignore_index) is int
        and _INT64_MIN <= ignore_index <= _INT64_MAX
        and (ax := _fast_axis(logits, axis, None)) >= 0
        and logits.shape[ax] > 0
        and labels.shape == logits.shape[:ax] + logits.shape[ax + 1 :]
    ):
        grad = None
        if return_grad:
            grad = logits if inplace_grad else np.empty(logits.shape, logits.dtype)
        try:
            total = _core.cross_entropy(
                logits, ax, labels, None, None, grad, None, None, None, reduction, None,
                0.0, 0.0, 0.0, ignore_index, temperature,
            )  # fmt: skip
        except _core.Fallback:  # unaligned logits or labels (the general path copies them),
            pass  # or labels that share memory with the gradient
        else:
            scalar = _scalar_loss(total, _loss_dtype(logits.dtype))
            return (scalar, grad) if return_grad else scalar
    call = _Call(
        logits,
        labels,
        axis,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        z_loss,
        softcap,
        temperature,
    )
    if not return_grad:
        return call.run(None)[0]
    x = call.x
    if inplace_grad:
        assert isinstance(logits, np.ndarray)
        if x is logits and not call.reads_from(x):
            loss, _ = call.run(x, grad_out)
            return loss, logits
        # computed in another dtype, logits misaligned, or labels / weights
        # that share memory with the logits: the gradient goes to a private
        # array first (x itself when it is a copy; not when it is a view of
        # the logits, as np.asarray of a subclass is), then into logits
        private = x is not logits and not np.may_share_memory(x, logits)
        grad = x if private else np.empty(x.shape, x.dtype)
        loss, _ = call.run(grad, grad_out)
        _copy_into(logits, grad)
        return loss, logits
    grad = np.empty(x.shape, x.dtype)
    loss, _ = call.run(grad, grad_out)
    return loss, grad if grad.dtype == call.result else _cast(grad, call.result)


@accepts_arrays("logits", "labels", "lse", "weight", "grad_out", out="out")
def cross_entropy_backward(
    logits: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    axis: SupportsIndex = -1,
    lse: npt.ArrayLike | None = None,
    weight: npt.ArrayLike | None = None,
    ignore_index: SupportsIndex = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    temperature: float = 1.0,
    grad_out: npt.ArrayLike | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""The gradient of :func:`cross_entropy` with respect to the logits, on its own.

    For users who keep the forward and the backward apart. With ``lse``, the
    log-sum-exp of each example saved from the forward pass
    (``fastsoftmax.logsumexp(logits / temperature, axis)``, of the soft-capped
    logits when ``softcap`` is set), the logits are read once:

    .. math:: \frac{\partial \ell}{\partial x'_c} = a\, e^{x'_c - \mathrm{lse}}
              - \frac{\varepsilon}{C} w_c - (1-\varepsilon)\, w_y [c = y],
              \quad a = (1-\varepsilon) w_y + \frac{\varepsilon}{C}\sum_c w_c
              + 2\zeta\,\mathrm{lse}

    for integer labels (:math:`a\,e^{x'_c-\mathrm{lse}} - w_c t'_c`, with
    :math:`a = \sum_c w_c t'_c + 2\zeta\,\mathrm{lse}`, for probabilities),
    scaled by the reduction and ``grad_out``, times
    :math:`1 - \tanh^2(x_c/\mathrm{softcap})` with soft-capping, and times
    ``1 / temperature`` (``x`` there being ``logits / temperature``). Without
    ``lse`` it is recomputed (one more read of the logits, and slightly more
    accurate: the softmax is then formed from the row's exact maximum).

    Parameters are those of :func:`cross_entropy` but for ``return_grad`` and
    ``inplace_grad`` (the gradient is what it returns; ``out=logits`` writes it
    in place), plus ``lse`` (the per-example shape) and ``out`` (an array of the
    logits' shape and result dtype to write the gradient into).

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> logits = np.log([[0.7, 0.2, 0.1], [0.25, 0.5, 0.25]])
    >>> labels = np.array([0, 1])
    >>> lse = fs.logsumexp(logits)  # saved by the forward pass
    >>> fs.cross_entropy_backward(logits, labels, lse=lse, reduction="sum")  # softmax - one-hot
    array([[-0.3 ,  0.2 ,  0.1 ],
           [ 0.25, -0.5 ,  0.25]])
    """
    call = _Call(
        logits,
        labels,
        axis,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        z_loss,
        softcap,
        temperature,
    )
    x = call.x
    saved = None
    if lse is not None:
        saved = np.asarray(lse)
        if saved.dtype.kind not in "fiu":
            raise TypeError(f"lse must be real numbers, got dtype {saved.dtype}")
        if saved.shape != call.example_shape:
            raise ValueError(
                f"lse must have the per-example shape {call.example_shape}, got {saved.shape}"
            )
        saved = _require(saved, call.compute, "A")
    if out is None:
        grad = np.empty(x.shape, x.dtype)
    else:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
        if out.shape != x.shape or out.dtype != call.result:
            raise ValueError(
                f"out must have shape {x.shape} and dtype {call.result}, "
                f"got {out.shape} and {out.dtype}"
            )
        if not out.flags.writeable:
            raise ValueError("out is read-only")
        direct = (
            out.dtype == x.dtype
            and _aligned(out)
            and not call.reads_from(out)
            and not (saved is not None and np.may_share_memory(saved, out))
        )
        # in place, or apart: the binding tells apart by the memory spans (so an
        # out interleaved with the logits goes through a private array)
        if direct and (_same_elements(out, x) or not np.may_share_memory(out, x)):
            grad = out
        else:
            grad = np.empty(x.shape, x.dtype)
    call.run(grad, grad_out, saved)
    if out is not None:
        if grad is not out:
            _copy_into(out, grad)
        return out
    return grad if grad.dtype == call.result else _cast(grad, call.result)

r"""PyTorch operators with autograd: fastsoftmax's kernels inside a training loop.

``import fastsoftmax.torch`` needs PyTorch (the package itself does not). The
functions take and return CPU tensors, with PyTorch's own signatures and
conventions (``dim``, ``keepdim``, the class dimension 1 of K-dimensional
inputs, ``ignore_index=-100``, ``reduction="mean"``), and each is a
``torch.library`` custom operator (``torch.ops.fastsoftmax.*``) with a fake
(meta) implementation and an autograd formula: they work in eager mode and
under ``torch.compile(fullgraph=True)`` without graph breaks, and pass
``torch.library.opcheck``. (``torch.func`` transforms: PyTorch 2.13 does not run
custom operators with autograd formulas under them, and says so.)

=====================================  =======================================
function                               backward
=====================================  =======================================
``softmax(input, dim)``                ``softmax_backward`` (saves the output)
``log_softmax(input, dim)``            ``log_softmax_backward`` (the output)
``logsumexp(input, dim, keepdim)``     ``exp(input - result) * grad``
``cross_entropy(input, target, ...)``  one fused pass over the logits, from the
                                       logits and each example's logsumexp
                                       saved by the forward pass
``CrossEntropyLoss(...)``              (the module of ``cross_entropy``)
``linear_cross_entropy(...)``          the gradients computed by the forward
                                       pass, scaled (``reduction="none"``:
                                       computed again, per token)
=====================================  =======================================

Dtypes: float32, float64, float16 and bfloat16 (the half-precision ones read
and written natively, computed in float32). Results have the input's dtype, as
PyTorch's do. A tensor on another device (CUDA, say) raises a TypeError naming
the device: nothing is copied to the CPU behind your back.

Threads: the kernels run on fastsoftmax's own thread pool
(:func:`fastsoftmax.set_num_threads`, :func:`fastsoftmax.use_threads`), not on
PyTorch's intra-op pool (``torch.set_num_threads``), which keeps running
PyTorch's operators (the matrix products of a model). The two pools take turns
within a step: set both to the number of cores. The GIL is released while a
kernel runs.

Second derivatives: the backward functions have autograd formulas of their
own (made of PyTorch's operators, or of the backward functions themselves), so
``create_graph=True`` and every further order work, as in PyTorch; but for the
cross-entropy with ``inplace_backward=True``, whose gradient overwrites the
logits (a RuntimeError says so).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Sequence
from typing import Any

import ml_dtypes
import numpy as np
import torch
from torch import Tensor

from . import _api, _core, _cross_entropy, _interop

__all__ = [
    "CrossEntropyLoss",
    "cross_entropy",
    "linear_cross_entropy",
    "log_softmax",
    "logsumexp",
    "softmax",
]

_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_NUMPY_DTYPES = {
    torch.float32: np.dtype(np.float32),
    torch.float64: np.dtype(np.float64),
    torch.float16: np.dtype(np.float16),
    torch.bfloat16: np.dtype(ml_dtypes.bfloat16),
}
_REDUCTIONS = ("none", "mean", "sum")


# ---------------------------------------------------------------------------------------
# checks shared by the real and the fake implementations


def _check_tensor(t: Tensor, name: str, *, floating: bool = True) -> None:
    """t on the CPU (or the meta device, for shape propagation), and of a kernel dtype."""
    if not t.is_cpu and t.device.type != "meta":
        raise TypeError(
            f"fastsoftmax.torch: {name} is on device {t.device}; fastsoftmax computes on "
            f"the CPU only: move it with .cpu() (or use PyTorch's own function on {t.device})"
        )
    if floating and t.dtype not in _FLOATS:
        raise TypeError(
            f"fastsoftmax.torch: {name} has dtype {t.dtype}; expected float32, float64, "
            "float16 or bfloat16"
        )


def _dim(dim: Any, ndim: int) -> int:
    """dim in [0, max(ndim, 1)), as PyTorch wraps it (a 0-d tensor has dims -1 and 0)."""
    try:
        d = operator.index(dim)
    except TypeError:
        raise TypeError(f"dim must be an integer, got {dim!r}") from None
    top = max(ndim, 1)
    if not -top <= d < top:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-top}, {top - 1}], but got {d})"
        )
    return d % top


def _numpy(t: Tensor, name: str, *, written: bool = False) -> np.ndarray:
    """A CPU tensor as a NumPy view of its memory (bfloat16 as ml_dtypes.bfloat16)."""
    return _interop._torch_to_numpy(t.detach() if t.requires_grad else t, name, written)


def _tensor(a: Any) -> Tensor:
    """A fresh NumPy result as a tensor over its memory."""
    r = np.asarray(a)
    if not r.flags.c_contiguous:  # (np.ascontiguousarray would make a 0-d array 1-d)
        r = r.copy(order="C")
    return _interop._to_torch(r)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------
# softmax, log_softmax and their backward functions


def _unary(fn: Any, x: Tensor, dim: int) -> Tensor:
    """fn (fastsoftmax's softmax or log_softmax) over dim, a 0-d tensor as one element."""
    a = _numpy(x, "input")
    d = _dim(dim, a.ndim)
    if a.ndim == 0:
        return _tensor(fn(a.reshape(1), axis=0).reshape(()))
    return _tensor(fn(a, axis=d))


def _binary(fn: Any, grad: Tensor, output: Tensor, dim: int) -> Tensor:
    """fn (a backward function of fastsoftmax) of grad and output over dim."""
    _check_tensor(grad, "grad")
    g, y = _numpy(grad, "grad"), _numpy(output, "output")
    d = _dim(dim, y.ndim)
    if y.ndim == 0:
        return _tensor(fn(g.reshape(1), y.reshape(1), axis=0).reshape(()))
    return _tensor(fn(g, y, axis=d))


def _softmax_impl(input: Tensor, dim: int) -> Tensor:
    _check_tensor(input, "input")
    return _unary(_api.softmax, input, dim)


def _log_softmax_impl(input: Tensor, dim: int) -> Tensor:
    _check_tensor(input, "input")
    return _unary(_api.log_softmax, input, dim)


def _softmax_backward_impl(grad: Tensor, output: Tensor, dim: int) -> Tensor:
    _check_tensor(output, "output")
    return _binary(_api.softmax_backward, grad.to(output.dtype), output, dim)


def _log_softmax_backward_impl(grad: Tensor, output: Tensor, dim: int) -> Tensor:
    _check_tensor(output, "output")
    return _binary(_api.log_softmax_backward, grad.to(output.dtype), output, dim)


def _op(name: str, impl: Any, mutates: Sequence[str] = ()) -> Any:
    """The custom operator fastsoftmax::name, implemented by impl (for every device: the
    implementation names a device other than the CPU in its error)."""
    return torch.library.custom_op(f"fastsoftmax::{name}", impl, mutates_args=tuple(mutates))


_softmax = _op("softmax", _softmax_impl)
_log_softmax = _op("log_softmax", _log_softmax_impl)
_softmax_backward = _op("softmax_backward", _softmax_backward_impl)
_log_softmax_backward = _op("log_softmax_backward", _log_softmax_backward_impl)


def _fake_like(input: Tensor, dim: int) -> Tensor:
    _check_tensor(input, "input")
    _dim(dim, input.dim())
    return input.new_empty(input.shape)  # (C-contiguous, as the real results are)


def _fake_backward(grad: Tensor, output: Tensor, dim: int) -> Tensor:
    _check_tensor(grad, "grad")
    if grad.shape != output.shape:
        raise ValueError(f"grad has shape {tuple(grad.shape)}, output {tuple(output.shape)}")
    return _fake_like(output, dim)


for _custom in (_softmax, _log_softmax):
    _custom.register_fake(_fake_like)
for _custom in (_softmax_backward, _log_softmax_backward):
    _custom.register_fake(_fake_backward)


def _call(ctx: Any, op: Any, *args: Any) -> Any:
    """op(*args) from a backward formula: the implementation itself when the formula runs
    in the eager path (below) and no graph of the backward is being recorded, else the
    operator (which torch.compile traces, and autograd differentiates again)."""
    if getattr(ctx, "eager", False) and not torch.is_grad_enabled():
        return _IMPLS[op](*args)
    return op(*args)


def _save_output(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    ctx.dim = inputs[1]
    ctx.save_for_backward(output)


def _softmax_grad(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
    (output,) = ctx.saved_tensors
    return _call(ctx, _softmax_backward, grad, output, ctx.dim), None


def _log_softmax_grad(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
    (output,) = ctx.saved_tensors
    return _call(ctx, _log_softmax_backward, grad, output, ctx.dim), None


_softmax.register_autograd(_softmax_grad, setup_context=_save_output)
_log_softmax.register_autograd(_log_softmax_grad, setup_context=_save_output)


# Second derivatives: the backward functions' own formulas, from PyTorch's operators and
# the backward functions themselves (so every order is differentiable).
def _save_backward(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    grad, y, ctx.dim = inputs
    ctx.save_for_backward(grad, y)


def _softmax_backward_grad(ctx: Any, h: Tensor) -> tuple[Tensor, Tensor, None]:
    r"""z = y (g - \sum g y): dz.h/dg = y (h - \sum h y); dz.h/dy = h (g - \sum g y) - g \sum h y."""
    g, y = ctx.saved_tensors
    d = ctx.dim if y.dim() else None
    grad_g = torch.ops.fastsoftmax.softmax_backward(h, y, ctx.dim)
    gy = (g * y).sum(d, keepdim=True) if d is not None else g * y
    hy = (h * y).sum(d, keepdim=True) if d is not None else h * y
    return grad_g, h * (g - gy) - g * hy, None


def _log_softmax_backward_grad(ctx: Any, h: Tensor) -> tuple[Tensor, Tensor, None]:
    r"""z = g - e^y \sum g: dz.h/dg = h - \sum h e^y; dz.h/dy = -h e^y \sum g."""
    g, y = ctx.saved_tensors
    d = ctx.dim if y.dim() else None
    p = torch.exp(y)
    hp = (h * p).sum(d, keepdim=True) if d is not None else h * p
    gs = g.sum(d, keepdim=True) if d is not None else g
    return h - hp, -(h * p) * gs, None


_softmax_backward.register_autograd(_softmax_backward_grad, setup_context=_save_backward)
_log_softmax_backward.register_autograd(_log_softmax_backward_grad, setup_context=_save_backward)


def softmax(input: Tensor, dim: int, *, dtype: torch.dtype | None = None) -> Tensor:
    r"""Softmax of ``input`` along ``dim``, as :func:`torch.softmax`, with autograd.

    .. math:: \mathrm{softmax}(x)_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}},
              \quad m = \max_j x_j

    ``dtype``: the input is cast to it first (as PyTorch's ``dtype=`` does).
    The backward pass is fastsoftmax's ``softmax_backward`` on the saved output,
    :math:`y \odot (g - \sum g \odot y)`.

    Examples
    --------
    >>> import torch, fastsoftmax.torch as fst
    >>> x = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    >>> fst.softmax(x, dim=1)
    tensor([[0.0900, 0.2447, 0.6652]], grad_fn=<_SoftmaxFunctionBackward>)
    """
    if dtype is not None:
        input = input.to(dtype)
    if _eager(input):
        return _apply[0](input, dim)  # type: ignore[no-any-return]
    return _softmax(input, dim)  # type: ignore[no-any-return]


def log_softmax(input: Tensor, dim: int, *, dtype: torch.dtype | None = None) -> Tensor:
    r"""Log-softmax of ``input`` along ``dim``, as :func:`torch.log_softmax`, with autograd.

    .. math:: \mathrm{log\_softmax}(x)_i = (x_i - m) - \log\sum_j e^{x_j - m}

    The backward pass is fastsoftmax's ``log_softmax_backward`` on the saved
    output, :math:`g - e^{y} \sum g`.

    Examples
    --------
    >>> import torch, fastsoftmax.torch as fst
    >>> fst.log_softmax(torch.tensor([0.0, 0.0]), dim=0)
    tensor([-0.6931, -0.6931])
    """
    if dtype is not None:
        input = input.to(dtype)
    if _eager(input):
        return _apply[1](input, dim)  # type: ignore[no-any-return]
    return _log_softmax(input, dim)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------
# logsumexp


def _dims(dim: Sequence[int], ndim: int) -> tuple[int, ...]:
    """The reduced dims, in [0, ndim), sorted; all of them for an empty list."""
    if not dim:
        return tuple(range(ndim))
    dims = sorted(_dim(d, ndim) for d in dim)
    if len(set(dims)) != len(dims):
        raise RuntimeError(f"dim {list(dim)} appears multiple times in the list of dims")
    return tuple(dims) if ndim else ()


def _logsumexp_impl(input: Tensor, dim: list[int], keepdim: bool) -> Tensor:
    _check_tensor(input, "input")
    a = _numpy(input, "input")
    dims = _dims(dim, a.ndim)
    if a.ndim == 0:
        return input.clone()
    r = _api.logsumexp(a, axis=dims, keepdims=keepdim)
    return _tensor(np.asarray(r))


_logsumexp = _op("logsumexp", _logsumexp_impl)


@_logsumexp.register_fake
def _(input: Tensor, dim: list[int], keepdim: bool) -> Tensor:
    _check_tensor(input, "input")
    dims = _dims(dim, input.dim())
    shape = [1 if i in dims else s for i, s in enumerate(input.shape)]
    if not keepdim:
        shape = [s for i, s in enumerate(input.shape) if i not in dims]
    return input.new_empty(shape)


def _save_logsumexp(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    input, dim, keepdim = inputs
    ctx.dims = _dims(dim, input.dim())
    ctx.keepdim = keepdim
    ctx.save_for_backward(input, output)


def _logsumexp_grad(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
    input, result = ctx.saved_tensors
    if not ctx.keepdim:
        for d in ctx.dims:  # (sorted: each unsqueeze lands where its dim was)
            grad, result = grad.unsqueeze(d), result.unsqueeze(d)
    # as PyTorch's own formula: grad * exp(input - result)
    return grad * torch.exp(input - result), None, None


_logsumexp.register_autograd(_logsumexp_grad, setup_context=_save_logsumexp)


def logsumexp(input: Tensor, dim: int | Sequence[int], keepdim: bool = False) -> Tensor:
    r"""``log(sum(exp(input)))`` along ``dim`` (one or several), as :func:`torch.logsumexp`.

    .. math:: \mathrm{lse}(x) = m + \log\sum_j e^{x_j - m}, \quad m = \max_j x_j

    computed without overflow, with autograd (the gradient is
    ``exp(input - result)`` times the incoming one, differentiable again).
    An empty ``dim`` list reduces every dimension.

    Examples
    --------
    >>> import torch, fastsoftmax.torch as fst
    >>> fst.logsumexp(torch.tensor([[1000.0, 1000.0]]), dim=1)
    tensor([1000.6932])
    """
    dims = [dim] if isinstance(dim, int) or not isinstance(dim, Sequence) else list(dim)
    args = (input, [operator.index(d) for d in dims], bool(keepdim))
    if _eager(input):
        return _apply[2](*args)  # type: ignore[no-any-return]
    return _logsumexp(*args)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------
# cross_entropy


def _ce_axis(input: Tensor) -> int:
    """The class dimension: 1, or 0 for a 1-d input (one example)."""
    if input.dim() == 0:
        raise ValueError("cross_entropy: input must have at least one dimension (the classes)")
    return 1 if input.dim() >= 2 else 0


def _ce_check(
    input: Tensor, target: Tensor, weight: Tensor | None, reduction: str
) -> tuple[int, tuple[int, ...], bool]:
    """(class dim, per-example shape, probabilities?) after PyTorch's shape checks."""
    _check_tensor(input, "input")
    _check_tensor(target, "target", floating=False)
    if weight is not None:
        _check_tensor(weight, "weight", floating=False)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    axis = _ce_axis(input)
    shape = tuple(input.shape)
    examples = shape[:axis] + shape[axis + 1 :]
    probs = target.is_floating_point()
    if probs:
        if tuple(target.shape) != shape:
            raise ValueError(
                f"probability targets must have the shape of input, {shape}, "
                f"got {tuple(target.shape)}"
            )
    elif target.dtype.is_complex or target.dtype is torch.bool:
        raise RuntimeError(f"expected target dtype to be an integer type, but got {target.dtype}")
    elif tuple(target.shape) != examples:
        raise ValueError(
            f"class-index targets must have the shape of input without dim {axis}, "
            f"{examples}, got {tuple(target.shape)}"
        )
    return axis, examples, probs


def _lse_dtype(dtype: torch.dtype) -> torch.dtype:
    """The saved logsumexp's dtype: the kernels' compute dtype."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _options(
    weight: Tensor | None, ignore_index: int, reduction: str, label_smoothing: float,
    z_loss: float, softcap: float | None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "weight": None if weight is None else _numpy(weight, "weight"),
        "ignore_index": ignore_index,
        "reduction": reduction,
        "label_smoothing": label_smoothing,
        "z_loss": z_loss,
        "softcap": softcap,
    }


def _label_error(e: ValueError) -> Exception:
    """A target out of range is an IndexError, as PyTorch raises it."""
    return IndexError(str(e)) if str(e).startswith("label ") else e


def _ce_kernel(
    checked: tuple[int, tuple[int, ...], bool],
    x: np.ndarray,
    labels: np.ndarray,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    *,
    grad: np.ndarray | None = None,
    scale: Any = None,
    saved: np.ndarray | None = None,
    lse_out: np.ndarray | None = None,
) -> Any:
    """fastsoftmax's kernel on the NumPy views of tensors that passed _ce_check (its
    result: ``checked``): the loss (a float or a float64 array), and what
    fastsoftmax.cross_entropy's private _Call.run writes (the gradient into ``grad``,
    times ``scale`` (see _scale), from the ``saved`` lse when given; each example's lse
    into ``lse_out``). The common call (class indices in int64; no class weights, no
    soft-capping) goes to the binding directly: _Call's checks cost more than the kernel
    at (64, 1000)."""
    axis, examples, _ = checked
    try:
        if (
            weight is None
            and softcap is None
            and labels.dtype == np.int64
            and 0.0 <= label_smoothing <= 1.0
            and 0.0 <= z_loss < math.inf
            and -(2**63) <= ignore_index < 2**63
        ):
            per = scale
            if type(scale) is float:
                per = None if scale == 1.0 else np.full(examples, scale)
            rows = np.empty(examples) if reduction == "none" else None
            try:
                total = _core.cross_entropy(
                    x, axis, labels, None, saved, grad, per, rows, lse_out, reduction, None,
                    label_smoothing, z_loss, 0.0, ignore_index,
                )  # fmt: skip
            except _core.Fallback:  # (unaligned, or labels sharing memory with grad)
                pass
            else:
                return total if rows is None else rows
        call = _cross_entropy._Call(
            x,
            labels,
            axis,
            None if weight is None else _numpy(weight, "weight"),
            ignore_index,
            reduction,
            label_smoothing,
            z_loss,
            softcap,
        )
        return call.run(grad, scale, saved, lse_out)[0]
    except ValueError as e:
        raise _label_error(e) from None


def _scale(grad_loss: Tensor) -> Any:
    """The loss's incoming gradient for _ce_kernel: a float, or float64 per example."""
    if grad_loss.dim():
        return np.ascontiguousarray(_numpy(grad_loss, "grad"), dtype=np.float64)
    return grad_loss.item()


def _as_tensor(a: Any, dtype: torch.dtype) -> Tensor:
    """A NumPy result (a float, a NumPy scalar or array) as a tensor of dtype."""
    r = np.asarray(a, dtype=_NUMPY_DTYPES[dtype])
    return _interop._to_torch(r)  # type: ignore[no-any-return]


def _ce_forward(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
) -> tuple[Tensor, np.ndarray, tuple[Any, ...]]:
    """(the loss tensor, each example's lse in the compute dtype, (checked, x, labels))."""
    checked = _ce_check(input, target, weight, reduction)
    x, labels = _numpy(input, "input"), _numpy(target, "target")
    lse = np.empty(checked[1])
    loss = _ce_kernel(
        checked, x, labels, weight, ignore_index, reduction, label_smoothing, z_loss,
        softcap, lse_out=lse,
    )  # fmt: skip
    if input.dtype in (torch.float16, torch.bfloat16):  # (in float32 first, as fastsoftmax's)
        loss = np.asarray(loss, dtype=np.float32)
    with np.errstate(over="ignore"):  # (a loss beyond the dtype's range is +inf)
        loss_t = _as_tensor(loss, input.dtype)
    return loss_t, lse.astype(_NUMPY_DTYPES[_lse_dtype(input.dtype)]), (checked, x, labels)


def _cross_entropy_impl(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    inplace_backward: bool,
) -> tuple[Tensor, Tensor]:
    loss, lse, _ = _ce_forward(
        input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap
    )
    return loss, torch.from_numpy(lse)


_cross_entropy_op = _op("cross_entropy", _cross_entropy_impl)


@_cross_entropy_op.register_fake
def _(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    inplace_backward: bool,
) -> tuple[Tensor, Tensor]:
    _, examples, _ = _ce_check(input, target, weight, reduction)
    loss = input.new_empty(examples if reduction == "none" else ())
    return loss, input.new_empty(examples, dtype=_lse_dtype(input.dtype))


def _cross_entropy_backward_impl(
    grad_loss: Tensor,
    input: Tensor,
    target: Tensor,
    lse: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
) -> Tensor:
    checked = _ce_check(input, target, weight, reduction)
    _check_tensor(lse, "lse")
    grad = np.empty(tuple(input.shape), _NUMPY_DTYPES[input.dtype])
    _ce_kernel(
        checked, _numpy(input, "input"), _numpy(target, "target"), weight, ignore_index,
        reduction, label_smoothing, z_loss, softcap, grad=grad, scale=_scale(grad_loss),
        saved=_numpy(lse, "lse"),
    )  # fmt: skip
    return _interop._to_torch(grad)  # type: ignore[no-any-return]


_cross_entropy_backward_op = _op("cross_entropy_backward", _cross_entropy_backward_impl)


@_cross_entropy_backward_op.register_fake
def _(
    grad_loss: Tensor,
    input: Tensor,
    target: Tensor,
    lse: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
) -> Tensor:
    _ce_check(input, target, weight, reduction)
    return input.new_empty(input.shape)


def _cross_entropy_backward_inplace_impl(
    input: Tensor,
    grad_loss: Tensor,
    target: Tensor,
    lse: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
) -> None:
    checked = _ce_check(input, target, weight, reduction)
    _check_tensor(lse, "lse")
    x = _numpy(input, "input", written=True)
    _ce_kernel(
        checked, x, _numpy(target, "target"), weight, ignore_index, reduction,
        label_smoothing, z_loss, softcap, grad=x, scale=_scale(grad_loss),
        saved=_numpy(lse, "lse"),
    )  # fmt: skip


_cross_entropy_backward_inplace_op = _op(
    "cross_entropy_backward_", _cross_entropy_backward_inplace_impl, mutates=("input",)
)


@_cross_entropy_backward_inplace_op.register_fake
def _(
    input: Tensor,
    grad_loss: Tensor,
    target: Tensor,
    lse: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
) -> None:
    _ce_check(input, target, weight, reduction)


def _save_cross_entropy(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    input, target, weight, *options = inputs
    ctx.options = options  # ignore_index ... inplace_backward
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(input, target, weight, output[1])


def _target_grad(
    grad_loss: Tensor, input: Tensor, lse: Tensor, weight: Tensor | None, options: list[Any]
) -> Tensor:
    r"""d loss / d t for probability targets: :math:`(1-\varepsilon) w_c (\mathrm{lse} - x'_c)`
    times the loss's incoming gradient and the reduction's factor (made of PyTorch's
    operators, so differentiable again)."""
    _, reduction, label_smoothing, _, softcap, _ = options
    axis = _ce_axis(input)
    x = input.to(lse.dtype)
    if softcap is not None:
        x = softcap * torch.tanh(x / softcap)
    if torch.is_grad_enabled():  # (create_graph: the lse as a function of the logits)
        lse = torch.logsumexp(x, axis)
    g = grad_loss.to(lse.dtype)
    if reduction == "mean":
        g = g / max(1, math.prod(lse.shape))
    if g.dim():
        g = g.unsqueeze(axis)
    d = (lse.unsqueeze(axis) - x) * ((1.0 - label_smoothing) * g)
    if weight is not None:
        shape = [1] * input.dim()
        shape[axis] = -1
        d = d * weight.to(lse.dtype).reshape(shape)
    result: Tensor = d.to(input.dtype)
    return result


def _no_second_derivative_inplace(inplace: bool) -> None:
    if inplace and torch.is_grad_enabled():
        raise RuntimeError(
            "fastsoftmax.torch.cross_entropy: inplace_backward=True writes the gradient into "
            "the logits' storage, which cannot be differentiated again; pass "
            "inplace_backward=False for create_graph=True"
        )


def _cross_entropy_grad(ctx: Any, grad_loss: Tensor, _grad_lse: Any) -> tuple[Any, ...]:
    input, target, weight, lse = ctx.saved_tensors
    ignore_index, reduction, label_smoothing, z_loss, softcap, inplace = ctx.options
    _no_second_derivative_inplace(inplace and ctx.needs_input_grad[0])
    grad_target = None
    if ctx.needs_input_grad[1] and target.is_floating_point():
        grad_target = _target_grad(grad_loss, input, lse, weight, ctx.options)
    grad_input = None
    if ctx.needs_input_grad[0]:
        args = (target, lse, weight, ignore_index, reduction, label_smoothing, z_loss, softcap)
        if inplace:
            _cross_entropy_backward_inplace_op(input, grad_loss, *args)
            grad_input = input
        else:
            grad_input = _cross_entropy_backward_op(grad_loss, input, *args)
    return grad_input, grad_target, None, None, None, None, None, None, None


_cross_entropy_op.register_autograd(_cross_entropy_grad, setup_context=_save_cross_entropy)


# The second derivative: the backward operator's own formula, from PyTorch's operators
# (so every further order is differentiable too). With x' the (soft-capped) logits,
# p = softmax(x'), per example a = s_ce * g * (sum of w_c t'_c, or (1-eps) w_y + eps/C W)
# and z = s_z * g * 2 zeta, the gradient is G' = (a + z lse) p - b (b: the targets' part)
# and G = G' * cap'(x). For an upstream V (u = V cap' with respect to x'):
#   d<V, G>/dx'   = p * ((a + z lse) (u - <u, p>) + z <u, p>)
#   d<V, G>/dx    = that * cap' + V G' cap''        (cap'' = -2 tanh(x/s) cap' / s)
#   d<V, G>/dt_j  = s_ce g (1 - eps) w_j (<u, p> - u_j)   (probabilities)
#   d<V, G>/dg    = <V, G / g>                      (G is linear in the incoming g)


def _reciprocal(t: Tensor) -> Tensor:
    """1 / t, and 0 where t is 0."""
    return torch.where(t != 0, 1.0 / torch.where(t != 0, t, 1.0), 0.0)


def _save_cross_entropy_backward(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    grad_loss, input, target, _lse, weight, *options = inputs
    ctx.options = options  # ignore_index, reduction, label_smoothing, z_loss, softcap
    ctx.save_for_backward(grad_loss, input, target, weight)


def _cross_entropy_backward_grad(ctx: Any, v: Tensor) -> tuple[Any, ...]:
    grad_loss, input, target, weight = ctx.saved_tensors
    ignore_index, reduction, smoothing, z_loss, softcap = ctx.options
    axis = _ce_axis(input)
    n = input.shape[axis]
    dt = _lse_dtype(input.dtype)
    x, v = input.to(dt), v.to(dt)
    if softcap is not None:
        th = torch.tanh(x / softcap)
        x = softcap * th
        cap1 = 1 - th * th
    lse = torch.logsumexp(x, axis, keepdim=True)
    p = torch.exp(x - lse)
    lse = lse.squeeze(axis)
    class_shape = [1] * input.dim()
    class_shape[axis] = n
    w = None if weight is None else weight.to(dt).reshape(class_shape)
    total_weight = float(n) if weight is None else weight.to(dt).sum()
    if target.is_floating_point():
        t = (1 - smoothing) * target.to(dt) + smoothing / n
        wt = t if w is None else w * t
        a = wt.sum(axis)
        kept = torch.ones_like(a)
        b = wt  # the targets' part of G' (before the scales below)
        s_ce = s_z = 1.0 / max(1, a.numel()) if reduction == "mean" else 1.0
    else:
        labels = target.to(torch.int64)  # (as the kernel reads them: no wrap-around)
        kept = (labels != ignore_index).to(dt)
        y = torch.where(labels != ignore_index, labels, 0)
        wy = kept if weight is None else weight.to(dt)[y] * kept
        a = (1 - smoothing) * wy + (smoothing / n) * total_weight * kept
        one_hot = torch.nn.functional.one_hot(y, n).to(dt)
        if input.dim() > 1:
            one_hot = one_hot.movedim(-1, axis)
        wc = torch.ones(class_shape, dtype=dt) if w is None else w
        b = (smoothing / n) * wc + (1 - smoothing) * wy.unsqueeze(axis) * one_hot
        s_ce, s_z = 1.0, 1.0
        if reduction == "mean":  # (nothing kept: a NaN loss, whose gradients are 0)
            s_ce, s_z = _reciprocal(wy.sum()), _reciprocal(kept.sum())
    # the gradient for an incoming gradient of 1 (G is linear in it), per example
    z1 = s_z * 2 * z_loss * kept
    coef = ((s_ce * a + z1 * lse) * kept).unsqueeze(axis)
    unit = coef * p - s_ce * b * kept.unsqueeze(axis)  # dG'/dg, with respect to x'
    g = grad_loss.to(dt)
    g = g.unsqueeze(axis) if g.dim() else g
    u = v * cap1 if softcap is not None else v
    up = (u * p).sum(axis, keepdim=True)
    d_x = g * p * (coef * (u - up) + z1.unsqueeze(axis) * up)
    if softcap is not None:
        d_x = d_x * cap1 + v * g * unit * (-2 * th * cap1 / softcap)
    d_target = None
    if ctx.needs_input_grad[2] and target.is_floating_point():
        wj = 1.0 if w is None else w
        d_target = ((s_ce * (1 - smoothing)) * g * wj * (up - u)).to(target.dtype)
    d_grad_loss = None
    if ctx.needs_input_grad[0]:
        d_grad_loss = (u * unit).sum(axis)  # <V, dG/dg> per example
        if grad_loss.dim() == 0:
            d_grad_loss = d_grad_loss.sum()
        d_grad_loss = d_grad_loss.to(grad_loss.dtype)
    return d_grad_loss, d_x.to(input.dtype), d_target, None, None, None, None, None, None, None


_cross_entropy_backward_op.register_autograd(
    _cross_entropy_backward_grad, setup_context=_save_cross_entropy_backward
)


# ---------------------------------------------------------------------------------------
# the eager path
#
# A call through a custom operator costs about 40 us of PyTorch's Python machinery
# (the dispatcher's boxed calls, argument defaults, the generated autograd.Function), a
# backward as much again: more than the whole F.cross_entropy + backward() at (64, 1000).
# An eager call of plain tensors, with no mode active, goes through an autograd.Function
# made of the operators' own implementations, setup_context and backward formulas instead:
# the same values, the same errors. torch.compile, functorch transforms, tensor subclasses
# and modes (FakeTensor, FlopCounter, TorchFunctionMode) see the operators.

_IMPLS: dict[Any, Any] = {
    _softmax_backward: _softmax_backward_impl,
    _log_softmax_backward: _log_softmax_backward_impl,
}
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _eager(*tensors: Tensor | None) -> bool:
    """Whether a call of these tensors may take the eager path."""
    return (
        not torch.compiler.is_compiling()
        and all(t is None or type(t) in _PLAIN for t in tensors)
        and not torch._C._is_torch_function_mode_enabled()
        and torch._C._len_torch_dispatch_stack() == 0
        and torch._C._functorch.peek_interpreter_stack() is None
    )


def _eager_function(name: str, impl: Any, setup: Any, backward: Any) -> Any:
    """An autograd.Function computing impl, with the operator's setup and formula."""

    def forward(ctx: Any, *inputs: Any) -> Any:
        output = impl(*inputs)
        ctx.eager = True
        setup(ctx, inputs, output)
        return output

    body = {"forward": staticmethod(forward), "backward": staticmethod(backward)}
    return type(name, (torch.autograd.Function,), body)


_SoftmaxFunction = _eager_function("_SoftmaxFunction", _softmax_impl, _save_output, _softmax_grad)
_LogSoftmaxFunction = _eager_function(
    "_LogSoftmaxFunction", _log_softmax_impl, _save_output, _log_softmax_grad
)
_LogsumexpFunction = _eager_function(
    "_LogsumexpFunction", _logsumexp_impl, _save_logsumexp, _logsumexp_grad
)


class _CrossEntropyFunction(torch.autograd.Function):
    """The cross-entropy's eager path: its backward runs the kernel on NumPy views of the
    saved tensors directly (everything saved goes through save_for_backward, so that
    checkpointing and saved-tensor hooks see it, and autograd raises if the logits were
    modified in place in between)."""

    @staticmethod
    def forward(ctx: Any, *inputs: Any) -> Tensor:
        input, target, weight, *options = inputs
        loss, lse, arrays = _ce_forward(input, target, weight, *options[:-1])
        ctx.checked = arrays[0]
        ctx.options = options  # ignore_index ... inplace_backward
        ctx.save_for_backward(input, target, weight, torch.from_numpy(lse))
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Any, ...]:
        input, target, weight, lse = ctx.saved_tensors
        ignore_index, reduction, label_smoothing, z_loss, softcap, inplace = ctx.options
        grad_target = None
        if ctx.needs_input_grad[1] and target.is_floating_point():
            grad_target = _target_grad(grad_loss, input, lse, weight, ctx.options)
        grad_input = None
        if ctx.needs_input_grad[0]:
            options = (ignore_index, reduction, label_smoothing, z_loss, softcap)
            if torch.is_grad_enabled():  # (create_graph: through the operators)
                _no_second_derivative_inplace(inplace)
                args = (target, lse, weight, *options)
                if inplace:
                    _cross_entropy_backward_inplace_op(input, grad_loss, *args)
                    grad_input = input
                else:
                    grad_input = _cross_entropy_backward_op(grad_loss, input, *args)
            else:
                x = _numpy(input, "input", written=inplace)
                if inplace:
                    grad = x
                    grad_input = input
                else:
                    grad = np.empty(x.shape, x.dtype)
                _ce_kernel(
                    ctx.checked, x, _numpy(target, "target"), weight, *options, grad=grad,
                    scale=_scale(grad_loss), saved=_numpy(lse, "lse"),
                )  # fmt: skip
                if inplace:
                    torch.autograd.graph.increment_version(input)
                else:
                    grad_input = _interop._to_torch(grad)
        return grad_input, grad_target, None, None, None, None, None, None, None


def _apply_of(cls: Any) -> Any:
    """cls.apply without autograd.Function.apply's Python prologue, which unwraps
    functorch's dead wrappers (_eager has ruled functorch out): 2 us of a 10 us call.
    PyTorch's own apply where its C base class has none."""
    base = vars(torch._C._FunctionBase).get("apply")
    return cls.apply if base is None else base.__get__(None, cls)


_apply = [
    _apply_of(f)
    for f in (_SoftmaxFunction, _LogSoftmaxFunction, _LogsumexpFunction, _CrossEntropyFunction)
]


def _legacy_reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """PyTorch's deprecated size_average / reduce, as PyTorch turns them into a reduction."""
    if size_average is None and reduce is None:
        return reduction
    return torch.nn._reduction.legacy_get_string(size_average, reduce)  # type: ignore[no-any-return]


def _non_overlapping(t: Tensor) -> bool:
    """Whether no two elements of t share memory (checked by the strides, conservatively)."""
    extent = 1
    for stride, size in sorted((abs(st), sz) for st, sz in zip(t.stride(), t.shape) if sz > 1):
        if stride < extent:
            return False
        extent = stride * (size - 1) + extent
    return True


def _check_inplace_backward(input: Tensor) -> None:
    """What PyTorch refuses for an in-place write, refused before the forward pass."""
    base = input._base if input._is_view() and input._base is not None else input
    if input.requires_grad and (input.is_leaf or (base.is_leaf and base.requires_grad)):
        raise RuntimeError(
            "fastsoftmax.torch.cross_entropy: inplace_backward=True would overwrite a leaf "
            "tensor that requires grad (or a view of one) with the gradient, as PyTorch "
            "refuses for in-place operations; pass the output of an operation (the model's "
            "logits), or inplace_backward=False"
        )
    if not _non_overlapping(input):
        raise RuntimeError(
            "fastsoftmax.torch.cross_entropy: inplace_backward=True needs logits whose "
            "elements do not share memory (this one is expanded or overlapping): clone() it "
            "first, or pass inplace_backward=False"
        )


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
    inplace_backward: bool = False,
) -> Tensor:
    r"""Softmax cross-entropy, as :func:`torch.nn.functional.cross_entropy`, fused.

    ``input`` is ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)`` (classes on
    dim 1); ``target`` holds class indices (an integer tensor of ``input``'s
    shape without the class dim) or probabilities (``input``'s shape). With
    :math:`x' = \mathrm{softcap}\cdot\tanh(x/\mathrm{softcap})` (or :math:`x`)
    and :math:`\mathrm{lse} = \log\sum_c e^{x'_c}`, an example's loss is

    .. math:: \ell = (1-\varepsilon)\, w_y (\mathrm{lse} - x'_y)
              + \frac{\varepsilon}{C} \sum_c w_c (\mathrm{lse} - x'_c)
              + \zeta\,\mathrm{lse}^2

    for a class index :math:`y` (:math:`\varepsilon` = ``label_smoothing``,
    :math:`\zeta` = ``z_loss``), exactly PyTorch's loss when ``z_loss`` is 0 and
    ``softcap`` None (see :func:`fastsoftmax.cross_entropy` for probabilities and
    the reductions). The forward pass reads the logits once and saves them with
    each example's lse; the backward pass is one fused pass over them.

    Parameters
    ----------
    input, target, weight, size_average, ignore_index, reduce, reduction, label_smoothing
        As :func:`torch.nn.functional.cross_entropy`, positions included
        (``size_average`` and ``reduce`` deprecated there too; a target out of
        range is an IndexError naming it). ``target`` may be any integer dtype;
        ``weight`` gets no gradient (as in PyTorch: one that requires grad is a
        RuntimeError).
    z_loss : float >= 0, default 0
        PaLM's auxiliary loss :math:`\zeta\,\mathrm{lse}^2`.
    softcap : float > 0, optional
        Gemma 2's logit soft-capping, the gradient flowing through it.
    inplace_backward : bool, default False
        Write the gradient into ``input``'s storage in the backward pass
        (declared as a mutation of ``input``), so that no second tensor of the
        logits' size is allocated; as Liger-Kernel does on GPUs. Only for
        logits nothing else needs after the loss (autograd raises if another
        operator saved them for its own backward). As PyTorch's in-place
        operations, it refuses (RuntimeError) a leaf that requires grad, a
        view of one, and logits whose elements share memory (expanded).

    Returns
    -------
    Tensor
        The loss in ``input``'s dtype (computed in float32 for float16 and
        bfloat16, then rounded): 0-d, or per example for ``reduction="none"``.

    Examples
    --------
    >>> import torch, fastsoftmax.torch as fst
    >>> logits = torch.tensor([[2.0, 0.5, -1.0]], requires_grad=True)
    >>> loss = fst.cross_entropy(logits, torch.tensor([0]))
    >>> loss.backward()
    >>> logits.grad
    tensor([[-0.2144,  0.1753,  0.0391]])
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if weight is not None and weight.requires_grad and torch.is_grad_enabled():
        raise RuntimeError(  # (PyTorch's own words)
            "The function 'cross_entropy' is not differentiable with respect to argument "
            "'weight'. This input cannot have requires_grad True."
        )
    if inplace_backward and torch.is_grad_enabled() and not torch.compiler.is_compiling():
        _check_inplace_backward(input)  # (a compiled graph copies what it cannot write)
    args = (
        input,
        target,
        weight,
        ignore_index,
        reduction,
        float(label_smoothing),
        float(z_loss),
        None if softcap is None else float(softcap),
        bool(inplace_backward),
    )
    if _eager(input, target, weight):
        return _apply[3](*args)  # type: ignore[no-any-return]
    return _cross_entropy_op(*args)[0]  # type: ignore[no-any-return]


class CrossEntropyLoss(torch.nn.Module):
    """:class:`torch.nn.CrossEntropyLoss` on fastsoftmax's fused kernels, plus
    ``z_loss``, ``softcap`` and ``inplace_backward`` (see :func:`cross_entropy`).

    Examples
    --------
    >>> import torch, fastsoftmax.torch as fst
    >>> loss_fn = fst.CrossEntropyLoss(label_smoothing=0.1, z_loss=1e-4)
    >>> loss_fn(torch.zeros(2, 4), torch.tensor([1, 3]))
    tensor(1.3865)
    """

    __constants__ = ("ignore_index", "reduction", "label_smoothing", "z_loss", "softcap")

    def __init__(
        self,
        weight: Tensor | None = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        z_loss: float = 0.0,
        softcap: float | None = None,
        inplace_backward: bool = False,
    ) -> None:
        super().__init__()
        reduction = _legacy_reduction(size_average, reduce, reduction)
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{reduction} is not a valid value for reduction")
        self.register_buffer("weight", weight)
        self.weight: Tensor | None
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.inplace_backward = inplace_backward

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return cross_entropy(
            input,
            target,
            self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            z_loss=self.z_loss,
            softcap=self.softcap,
            inplace_backward=self.inplace_backward,
        )

    def extra_repr(self) -> str:
        extra = [f"reduction={self.reduction!r}"]
        if self.ignore_index != -100:
            extra.append(f"ignore_index={self.ignore_index}")
        extra += [
            f"{n}={getattr(self, n)}" for n in ("label_smoothing", "z_loss") if getattr(self, n)
        ]
        if self.softcap is not None:
            extra.append(f"softcap={self.softcap}")
        if self.inplace_backward:
            extra.append("inplace_backward=True")
        return ", ".join(extra)


# ---------------------------------------------------------------------------------------
# the fused linear cross-entropy


def _lce_shapes(
    input: Tensor, weight: Tensor, bias: Tensor | None, reduction: str
) -> tuple[int, ...]:
    """The per-token shape, after the checks the fake implementation can make."""
    _check_tensor(input, "input")
    _check_tensor(weight, "linear_weight")
    if bias is not None:
        _check_tensor(bias, "linear_bias")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if input.dim() < 1 or weight.dim() != 2 or weight.shape[1] != input.shape[-1]:
        raise ValueError(
            f"linear_cross_entropy: input {tuple(input.shape)} and linear_weight "
            f"{tuple(weight.shape)} do not make a linear layer (weight (classes, features))"
        )
    return tuple(input.shape[:-1])


def _lce_impl(
    input: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None,
    class_weight: Tensor | None,
    grad_out: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    chunk_size: int | None,
    with_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(loss, d_input, d_weight, d_bias): the gradients empty without with_grad, d_bias
    empty without a bias."""
    _lce_shapes(input, weight, bias, reduction)
    _check_tensor(target, "target", floating=False)
    from . import _linear

    if grad_out is not None and grad_out.dtype in (torch.float16, torch.bfloat16):
        grad_out = grad_out.float()
    try:
        out = _linear._compute(
            _numpy(input, "input"), _numpy(weight, "linear_weight"), _numpy(target, "target"),
            None if bias is None else _numpy(bias, "linear_bias"),
            "VD", None if class_weight is None else _numpy(class_weight, "weight"),
            ignore_index, reduction, label_smoothing, z_loss, softcap, with_grad,
            None if grad_out is None else _numpy(grad_out, "grad_out"), chunk_size,
            with_grad and grad_out is None,
        )  # fmt: skip
    except (TypeError, ValueError) as e:
        raise _lce_error(e) from None
    empty = input.new_empty(0)
    if not with_grad:
        return _tensor(out).to(input.dtype), empty, empty.clone(), empty.clone()
    loss, d_input, d_weight, *d_bias = out
    return (
        _tensor(loss).to(input.dtype),
        _tensor(d_input),
        _tensor(d_weight),
        _tensor(d_bias[0]) if d_bias else empty,
    )


# fastsoftmax.linear_cross_entropy's argument names, as fastsoftmax.torch's signature
# (PyTorch's) calls them, in the order they are replaced
_LCE_NAMES = (
    (r"\bweight\b", "linear_weight"),
    (r"\bclass_weight\b", "weight"),
    (r"\bbias\b", "linear_bias"),
    (r"\bhidden\b", "input"),
    (r"\blabels\b", "target"),
)


def _lce_error(e: Exception) -> Exception:
    """The error in fastsoftmax.torch's argument names; a target out of range an
    IndexError, as PyTorch raises it."""
    msg = str(e)
    for pattern, name in _LCE_NAMES:
        msg = re.sub(pattern, name, msg)
    if msg.startswith("label "):
        return IndexError(msg)
    return type(e)(msg)


def _grad_dtype(*tensors: Tensor | None) -> torch.dtype:
    """The dtype of the gradients the forward pass computes: the compute dtype."""
    return (
        torch.float64
        if any(t is not None and t.dtype == torch.float64 for t in tensors)
        else torch.float32
    )


_lce_op = _op("linear_cross_entropy", _lce_impl)


@_lce_op.register_fake
def _(
    input: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None,
    class_weight: Tensor | None,
    grad_out: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    chunk_size: int | None,
    with_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    tokens = _lce_shapes(input, weight, bias, reduction)
    loss = input.new_empty(tokens if reduction == "none" else ())
    if not with_grad:
        return loss, input.new_empty(0), input.new_empty(0), input.new_empty(0)
    if grad_out is None:  # (the forward pass's gradients, in the compute dtype)
        dt = _grad_dtype(input, weight, bias)
        return (
            loss,
            input.new_empty(input.shape, dtype=dt),
            weight.new_empty(weight.shape, dtype=dt),
            input.new_empty(0) if bias is None else bias.new_empty(bias.shape, dtype=dt),
        )
    return (
        loss,
        input.new_empty(input.shape),
        weight.new_empty(weight.shape),
        input.new_empty(0) if bias is None else bias.new_empty(bias.shape),
    )


def _save_lce(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    input, weight, target, bias, class_weight, _, *options = inputs
    ctx.options = options  # ignore_index ... chunk_size, with_grad
    ctx.has_bias = bias is not None
    ctx.dtypes = (input.dtype, weight.dtype, None if bias is None else bias.dtype)
    ctx.mark_non_differentiable(*output[1:])
    if options[1] == "none":  # the gradient needs each token's incoming gradient: recomputed
        ctx.save_for_backward(input, weight, target, bias, class_weight)
    else:  # computed by the forward pass for an incoming gradient of 1
        ctx.save_for_backward(*output[1:])


def _lce_grad(ctx: Any, grad_loss: Tensor, *_: Any) -> tuple[Any, ...]:
    if torch.is_grad_enabled():
        raise RuntimeError(
            "fastsoftmax.torch.linear_cross_entropy has no second derivative "
            "(create_graph=True): its gradients are computed by the fused kernel"
        )
    ignore_index, reduction, label_smoothing, z_loss, softcap, chunk_size, with_grad = ctx.options
    if reduction == "none":
        input, weight, target, bias, class_weight = ctx.saved_tensors
        _, d_input, d_weight, d_bias = _lce_op(
            input, weight, target, bias, class_weight, grad_loss, ignore_index, reduction,
            label_smoothing, z_loss, softcap, chunk_size, True,
        )  # fmt: skip
    else:
        if not with_grad:
            raise RuntimeError(
                "fastsoftmax.torch.linear_cross_entropy: the forward pass ran without "
                "gradients (no input required grad, or grad mode was off)"
            )
        d_input, d_weight, d_bias = (  # (scaled in the compute dtype, then rounded)
            (g * grad_loss.to(g.dtype)).to(dt) if dt is not None else g
            for g, dt in zip(ctx.saved_tensors, ctx.dtypes)
        )
    return (
        d_input, d_weight, None, d_bias if ctx.has_bias else None,
        None, None, None, None, None, None, None, None, None,
    )  # fmt: skip


_lce_op.register_autograd(_lce_grad, setup_context=_save_lce)


def linear_cross_entropy(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    *,
    linear_bias: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int | None = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    r"""``cross_entropy(linear(input, linear_weight, linear_bias), target, ...)`` without
    the logits: :func:`fastsoftmax.linear_cross_entropy` as an operator with autograd.

    The signature is :func:`torch.nn.functional.linear_cross_entropy`'s (PyTorch
    2.13) plus ``z_loss``, ``softcap`` and ``chunk_size`` (tokens per chunk; its
    ``options`` has no counterpart: chunking is always on). ``input`` is
    ``(..., D)``, ``linear_weight`` ``(V, D)`` (:class:`torch.nn.Linear`'s
    layout), ``target`` class indices of shape ``input.shape[:-1]`` or
    probabilities of shape ``input.shape[:-1] + (V,)``; ``weight`` is the class
    weights (no gradient, as in PyTorch).

    For ``reduction="mean"`` and ``"sum"`` the forward pass computes the
    gradients with respect to ``input``, ``linear_weight`` and ``linear_bias``
    together with the loss (when one of them requires grad), and the backward
    pass scales them by the incoming gradient. For ``"none"`` the backward pass
    runs the fused computation again with each token's incoming gradient (the
    matrix products of the logits are made twice). For float16 and bfloat16 the
    forward pass keeps the gradients in float32 until the backward pass has scaled
    them (a loss scale does not flush them to zero). No second derivative, and no
    gradient with respect to probability targets (a RuntimeError asks to detach
    them). ``ignore_index=None`` is PyTorch's spelling of -100.

    Examples
    --------
    >>> import torch, fastsoftmax.torch as fst
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> h = torch.randn(8, 4, requires_grad=True)
    >>> head = torch.nn.Linear(4, 10)
    >>> y = torch.randint(0, 10, (8,))
    >>> loss = fst.linear_cross_entropy(h, head.weight, y, linear_bias=head.bias)
    >>> loss.backward()
    >>> ref = torch.nn.functional.cross_entropy(head(h), y)
    >>> bool(torch.allclose(loss, ref))
    True
    """
    if weight is not None and weight.requires_grad and torch.is_grad_enabled():
        raise RuntimeError(  # (PyTorch's own words)
            "The function 'linear_cross_entropy' is not differentiable with respect to "
            "argument 'weight'. This input cannot have requires_grad True."
        )
    if ignore_index is None:  # (PyTorch's default: -100)
        ignore_index = -100
    if target.is_floating_point() and target.requires_grad and torch.is_grad_enabled():
        raise RuntimeError(
            "fastsoftmax.torch.linear_cross_entropy does not differentiate with respect to "
            "probability targets; detach them (or use cross_entropy of the logits)"
        )
    with_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (input, linear_weight, linear_bias)
    )
    return _lce_op(  # type: ignore[no-any-return]
        input, linear_weight, target, linear_bias, weight, None, ignore_index, reduction,
        float(label_smoothing), float(z_loss), None if softcap is None else float(softcap),
        chunk_size, with_grad and reduction != "none",
    )[0]  # fmt: skip

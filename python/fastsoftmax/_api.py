"""The NumPy-style API: argument checking, dtypes and axes; the work is in ``_core``."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any, SupportsIndex, Union

import ml_dtypes
import numpy as np
import numpy.typing as npt
from numpy.exceptions import AxisError

from . import _core
from ._interop import accepts_arrays

AxisLike = Union[SupportsIndex, "tuple[SupportsIndex, ...]", None]

_F32: np.dtype[Any] = np.dtype(np.float32)
_F64: np.dtype[Any] = np.dtype(np.float64)
_F16: np.dtype[Any] = np.dtype(np.float16)
_BF16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)  # (kind "V": not found by kind)


def _native(dt: np.dtype) -> bool:
    """Whether the kernels take dtype dt as it is (float32, float64, float16, bfloat16)."""
    return dt is _F32 or dt is _F64 or dt is _F16 or dt is _BF16


def _compute_dtype(dt: np.dtype) -> np.dtype:
    """The dtype the kernels compute a native dtype in: float32 for the half-precision ones."""
    return _F32 if dt is _F16 or dt is _BF16 else dt


def _prepare(x: npt.ArrayLike, name: str) -> tuple[np.ndarray, np.dtype]:
    """Return (array to compute on, dtype of the result).

    float32, float64, float16 and bfloat16 (ml_dtypes) are stored natively (the
    half-precision ones computed in float32 registers); longdouble is computed
    in float64 and returned in its own dtype; integers and bools are computed
    and returned as float64 (as scipy.special.logsumexp does). Anything else
    (complex, float8, ...) is a TypeError naming the dtype.
    """
    if type(x) is np.ndarray:
        dt = x.dtype
        if _native(dt) and _aligned(x):
            return x, dt
    else:
        x = np.asarray(x)
        dt = x.dtype
    kind = dt.kind
    work: np.dtype[Any]
    result: np.dtype[Any]
    if dt == _BF16:
        work = result = _BF16
    elif kind == "f" and issubclass(dt.type, np.floating):  # (not float8_e5m2: kind "f")
        result = np.dtype(dt.type)  # float16 / 32 / 64 / longdouble, native order, canonical
        work = result if _native(result) else _F64  # (longdouble)
    elif kind in "iub":
        work = result = _F64
    else:
        raise TypeError(
            f"{name} has dtype {dt}, which fastsoftmax does not support; "
            "expected float32, float64, float16, bfloat16, longdouble, integer or bool"
        )
    try:
        return _require(x, work, "A"), result
    except ValueError as e:  # ("array is too big": a zero-stride view of 2^62 int8, say)
        raise ValueError(
            f"{name} of shape {x.shape} and dtype {dt} is too large to convert to {work}: {e}"
        ) from None


def _real(value: Any, name: str) -> float:
    """value as a float (an int beyond float's range: +-inf); TypeError naming it unless it
    is a real number (strings, which float() would parse, included)."""
    if type(value) is float:  # (the defaults: the common case, kept cheap)
        return value
    if isinstance(value, (str, bytes)) or (
        isinstance(value, (np.ndarray, np.generic))
        and (value.ndim != 0 or value.dtype.kind not in "biuf")
    ):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None


def _temperature(value: Any) -> float:
    """temperature as a float; TypeError unless a real number, ValueError unless > 0, finite."""
    if type(value) is float and 0.0 < value < math.inf:  # (the default: kept cheap)
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"temperature must be a real number, got {value!r}")
    t = _real(value, "temperature")
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"temperature must be positive and finite, got {value!r}")
    return t


def _check_scale(t: float, work: np.dtype, given: Any) -> None:
    """1 / t must be a normal number of the compute type (the kernels scale by it)."""
    ct = _compute_dtype(work)
    fi = np.finfo(ct)
    if not float(fi.tiny) <= 1 / t <= float(fi.max):
        raise ValueError(
            f"temperature must be between {1 / float(fi.max):.3g} and {1 / float(fi.tiny):.3g} "
            f"for {ct} logits (1 / temperature is a normal {ct} number), got {given!r}"
        )


def _where(where: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """where= as a bool array broadcast to `shape` (a view: a (1, C) or (N, 1) mask is not
    expanded to `shape`); None for None. TypeError unless bool, ValueError unless it
    broadcasts to `shape` (as NumPy's and JAX's where=)."""
    if where is None:
        return None
    w = np.asarray(where)
    if w.dtype != np.bool_:
        raise TypeError(f"where must be an array of bools, got dtype {w.dtype}")
    try:
        return np.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(
            f"where has shape {w.shape}, which does not broadcast to the input's shape {shape}"
        ) from None


def _check_where_overlap(out: np.ndarray, w: np.ndarray | None) -> None:
    """out must not share memory with the mask (read while out is written)."""
    if w is not None and np.may_share_memory(w, out) and _shares_memory(w, out):
        raise ValueError("out overlaps where; pass a mask that does not share out's memory")


def _aligned(a: np.ndarray) -> bool:
    """Whether a's data is aligned to its element size, as the kernels require.

    NumPy's ``aligned`` flag is True for every empty array, even one a byte off
    (np.require does not copy it), but the kernels check the pointer itself.
    """
    return bool(a.flags.aligned) and (
        a.size > 0 or a.__array_interface__["data"][0] % a.dtype.alignment == 0
    )


def _require(a: npt.ArrayLike, dtype: np.dtype, requirements: Any) -> np.ndarray:
    """np.require, and an aligned copy of an empty array that NumPy calls aligned but is not."""
    r = np.require(a, dtype=dtype, requirements=requirements)
    return r if _aligned(r) else r.copy()


def _cast(r: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """r in a narrower result dtype; a value too large for it is +-inf, without a warning."""
    with np.errstate(over="ignore"):
        return r.astype(dtype)


def _copy_into(out: np.ndarray, r: np.ndarray) -> None:
    with np.errstate(over="ignore"):  # as _cast
        np.copyto(out, r, casting="unsafe")


def _normalize_axis(axis: AxisLike, ndim: int) -> int | tuple[int, ...]:
    """An int axis in [0, ndim), or a sorted tuple of several; numpy's AxisError if bad.

    Every message names the axis as passed (NumPy's own helpers raise OverflowError
    for an int beyond C long, and name neither a bad entry of a tuple nor a repeat).
    """
    if axis is None:
        return tuple(range(ndim)) if ndim != 1 else 0
    if isinstance(axis, tuple):
        axes = tuple(sorted(_axis_index(a, ndim, axis) for a in axis))
        if len(set(axes)) != len(axes):
            raise ValueError(f"repeated axis in axis {axis!r}")
        return axes[0] if len(axes) == 1 else axes
    return _axis_index(axis, ndim, axis)


def _axis_index(a: Any, ndim: int, axis: Any) -> int:
    """One entry `a` of `axis`, in [0, ndim); TypeError or AxisError naming it."""
    try:
        index = operator.index(a)
    except TypeError:
        raise TypeError(
            f"axis must be an integer, a tuple of integers or None, got {axis!r}"
        ) from None
    if not -ndim <= index < ndim:
        raise AxisError(index, ndim)
    return index % ndim


def _check_out(out: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, expected {shape}")
    if out.dtype != dtype:
        raise ValueError(f"out has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    return out


def _same_elements(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether a and b are the same elements in the same order (in place): the same data
    pointer, shape and strides, but for the strides of length-1 dimensions (unused)."""
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.shape == b.shape
        and all(n == 1 or s == t for n, s, t in zip(a.shape, a.strides, b.strides))
    )


def _check_overlap(out: np.ndarray, *inputs: Any) -> None:
    """Refuse an out that overlaps an input partially.

    The same memory (in place) is fine; a partial overlap would make the result
    depend on the order of the work. Callers pass the inputs as given and as
    converted (np.asarray of a memoryview, say, is a view of the same memory).
    """
    for a in inputs:
        if (
            isinstance(a, np.ndarray)
            and np.may_share_memory(a, out)
            and not _same_elements(a, out)
            and _shares_memory(a, out)
        ):
            raise ValueError(
                "out overlaps an input partially; pass the input itself (in place) "
                "or an array that does not overlap it"
            )


def _shares_memory(a: np.ndarray, b: np.ndarray) -> bool:
    """np.shares_memory, bounded: when proving no overlap is too hard, assume overlap."""
    try:
        return bool(np.shares_memory(a, b, max_work=100_000))  # type: ignore[arg-type]  # (stubs: -1 or 0)
    except np.exceptions.TooHardError:
        return True


def _direct_out(out: np.ndarray, work: np.dtype) -> bool:
    """Whether the kernel can write into out directly (else: a temporary, then a copy)."""
    return out.dtype == work and _aligned(out)


def _flatten_axes(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Move `axes` to the end and merge them into one (a copy when needed)."""
    keep = [d for d in range(a.ndim) if d not in axes]
    t = a.transpose([*keep, *axes])
    return t.reshape((*t.shape[: len(keep)], math.prod(a.shape[d] for d in axes)))


def _unflatten_axes(r: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    keep = [d for d in range(len(shape)) if d not in axes]
    perm = [*keep, *axes]
    t = r.reshape([shape[d] for d in perm])
    return t.transpose(np.argsort(perm))


def _fast_axis(x: np.ndarray, axis: Any, out: Any) -> int:
    """The non-negative axis when (x, axis, out) may go straight to the kernel, else -1.

    That is the common case, kept cheap: x (an ndarray: callers check its exact
    type first) has a native dtype (float32, float64, float16, bfloat16), axis an in-range int, and out is None or an
    array of x's shape and dtype. The binding checks the rest (alignment, overlap)
    and raises _core.Fallback when the general path must take over.
    """
    dt = x.dtype
    if not (_native(dt) and type(axis) is int):
        return -1
    ndim = x.ndim
    if not -ndim <= axis < ndim:
        return -1
    if out is None or (type(out) is np.ndarray and out.dtype is dt and out.shape == x.shape):
        return axis % ndim
    return -1


def _backward(
    kernel: Callable[..., np.ndarray],
    grad: npt.ArrayLike,
    y: npt.ArrayLike,
    axis: AxisLike,
    out: np.ndarray | None,
    temperature: Any,
    where: Any,
) -> np.ndarray:
    """The backward ops: straight to the kernel in the common case (as the forward ops:
    ndarrays of one float dtype and shape, an int axis; the binding checks y's dtype and
    shape), else through _elementwise."""
    t = _temperature(temperature)
    if (
        type(grad) is np.ndarray
        and type(y) is np.ndarray
        and (ax := _fast_axis(grad, axis, out)) >= 0
    ):
        if t != 1.0:
            _check_scale(t, grad.dtype, temperature)
        w = None if where is None else _where(where, grad.shape)
        try:
            return kernel(grad, y, ax, out, False, t, w)
        except _core.Fallback:
            pass
    return _elementwise(kernel, (grad, y), ("grad", "y"), axis, out, t, temperature, where)


def _elementwise(
    kernel: Callable[..., np.ndarray],
    inputs: tuple[npt.ArrayLike, ...],
    names: tuple[str, ...],
    axis: AxisLike,
    out: np.ndarray | None,
    t: float = 1.0,
    temperature: Any = 1.0,
    where: Any = None,
) -> np.ndarray:
    """Shared body of the ops whose result has the shape of their input(s); t: the
    temperature as checked by _temperature (`temperature` as given, for messages); where:
    the mask as given."""
    prepared = [_prepare(x, n) for x, n in zip(inputs, names)]
    arrays = [p[0] for p in prepared]
    if len(arrays) == 1:
        work, result = arrays[0].dtype, prepared[0][1]
    else:
        if arrays[0].shape != arrays[1].shape:
            raise ValueError(
                f"{names[0]} and {names[1]} must have the same shape, "
                f"got {arrays[0].shape} and {arrays[1].shape}"
            )
        work = np.result_type(*arrays)
        result = np.result_type(*(p[1] for p in prepared))
        arrays = [a.astype(work, copy=False) for a in arrays]
    shape = arrays[0].shape
    ax = _normalize_axis(axis, len(shape))
    if t != 1.0:
        _check_scale(t, work, temperature)
    w = _where(where, shape)

    if out is not None:
        _check_overlap(out, *inputs, *arrays)
        _check_where_overlap(out, w)
        _check_out(out, shape, result)
    if isinstance(ax, tuple):  # several axes: merge them into one
        flat = [_flatten_axes(a, ax) for a in arrays]
        fw = None if w is None else _flatten_axes(w, ax)
        r = _unflatten_axes(kernel(*flat, len(flat[0].shape) - 1, None, False, t, fw), shape, ax)
        if out is None:
            with np.errstate(over="ignore"):  # as _cast
                return np.asarray(r, dtype=result, order="C")  # (ascontiguousarray: 0-d 1-d)
        _copy_into(out, r)
        return out

    if out is None:
        r = kernel(*arrays, ax, None, False, t, w)
        return r if result == work else _cast(r, result)
    if _direct_out(out, work):  # (_check_overlap has proven that out overlaps no input)
        return kernel(*arrays, ax, out, True, t, w)
    _copy_into(out, kernel(*arrays, ax, None, False, t, w))
    return out


def _unary(
    kernel: Callable[..., np.ndarray],
    x: npt.ArrayLike,
    axis: AxisLike,
    out: np.ndarray | None,
    temperature: Any,
    where: Any,
) -> np.ndarray:
    """softmax and log_softmax: straight to the kernel in the common case (an ndarray of a
    native dtype, an int axis; the binding checks the rest), else through _elementwise."""
    t = _temperature(temperature)
    if type(x) is np.ndarray and (ax := _fast_axis(x, axis, out)) >= 0:
        if t != 1.0:
            _check_scale(t, x.dtype, temperature)
        w = None if where is None else _where(where, x.shape)
        try:
            return kernel(x, ax, out, False, t, w)
        except _core.Fallback:
            pass
    return _elementwise(kernel, (x,), ("x",), axis, out, t, temperature, where)


@accepts_arrays("x", out="out")
def softmax(
    x: npt.ArrayLike,
    axis: AxisLike = -1,
    *,
    temperature: float = 1.0,
    where: npt.ArrayLike | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""Softmax along an axis, at a temperature T (default 1).

    .. math:: \mathrm{softmax}(x / T)_i = \frac{e^{(x_i - m) / T}}{\sum_j e^{(x_j - m) / T}},
              \quad m = \max_j x_j

    Parameters
    ----------
    x : array_like
        Logits. float32, float64, float16 and bfloat16 (``ml_dtypes.bfloat16``)
        are read and written natively, the half-precision ones computed in
        float32 registers (each result within 1 ulp of the correctly rounded
        one); longdouble is computed in float64; each is returned in its own
        dtype. Integers and bools are computed and returned as float64.
        Complex, float8, object and string inputs raise TypeError.
    axis : int, tuple of ints or None, default -1
        The axis (or axes, merged) to normalize over; None means all axes.
        Negative values count from the end; a bad axis raises
        :class:`numpy.exceptions.AxisError`.
    temperature : float, default 1.0
        ``T`` in the formula: the result is that of ``x / T``, computed from the
        exact differences ``x - m`` (never from rounded quotients ``x / T``), with
        no extra pass over ``x`` and no temporary array. Positive and finite,
        with ``1 / T`` a normal number of the compute dtype (float32 for the
        half-precision inputs); otherwise ValueError (TypeError for a non-number).
    where : array_like of bool, optional
        Which entries take part (JAX's ``where=``): it broadcasts to ``x``'s
        shape (a ``(1, C)`` or ``(N, 1)`` mask is not expanded to that shape,
        but for a tuple ``axis``), and
        the entries where it is False are left out of their slice: the result is
        0 there, and the slice's other entries are the softmax of the included
        ones. A slice with nothing included is all 0, never NaN; a NaN or inf
        at an excluded entry has no effect. TypeError unless its dtype is bool,
        ValueError unless it broadcasts.
    out : ndarray, optional
        Where to write the result: same shape as ``x`` and the result dtype
        (ValueError otherwise). May be ``x`` itself (in place); must not
        overlap ``x`` partially.

    Returns
    -------
    ndarray
        Same shape as ``x``; each slice along ``axis`` sums to 1.

    Notes
    -----
    Edge cases follow :func:`scipy.special.softmax`: a slice containing a NaN,
    a ``+inf`` or only ``-inf`` becomes all NaN. An empty axis gives an empty
    result (SciPy raises). The input is never modified unless it is ``out``.
    The GIL is released while the kernel runs.

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> fs.softmax(np.array([0.0, np.log(3.0)]))
    array([0.25, 0.75])
    >>> fs.softmax(np.array([0.0, np.log(3.0)]), temperature=0.5)  # sharper: 1:9
    array([0.1, 0.9])
    >>> fs.softmax(np.array([[0.0, 5.0, 0.0], [1.0, 2.0, 3.0]]), where=[True, False, True])
    array([[0.5       , 0.        , 0.5       ],
           [0.11920292, 0.        , 0.88079708]])
    """
    return _unary(_core.softmax, x, axis, out, temperature, where)


@accepts_arrays("x", out="out")
def log_softmax(
    x: npt.ArrayLike,
    axis: AxisLike = -1,
    *,
    temperature: float = 1.0,
    where: npt.ArrayLike | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""Logarithm of the softmax along an axis, at a temperature T (default 1).

    .. math:: \mathrm{log\_softmax}(x / T)_i = \frac{x_i - m}{T}
              - \log \sum_j e^{(x_j - m) / T}, \quad m = \max_j x_j

    computed in that order (never as ``log(softmax(x))`` nor ``x - logsumexp(x)``),
    so large logits lose no accuracy.

    Parameters and dtype rules are those of :func:`softmax` (``temperature``
    and ``where`` included: the result is ``-inf`` at the excluded entries,
    and a slice with nothing included is all ``-inf``).

    Notes
    -----
    Edge cases follow :func:`scipy.special.log_softmax`: a slice containing a
    NaN, or only ``-inf``, becomes all NaN; a slice whose maximum is ``+inf``
    gives NaN at the ``+inf`` entries and ``-inf`` elsewhere.

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> fs.log_softmax(np.array([1.0, 1.0]), temperature=2.0)
    array([-0.69314718, -0.69314718])
    >>> fs.log_softmax(np.array([1.0, np.nan, 1.0]), where=[True, False, True])
    array([-0.69314718,        -inf, -0.69314718])
    """
    return _unary(_core.log_softmax, x, axis, out, temperature, where)


@accepts_arrays("grad", "y", out="out")
def softmax_backward(
    grad: npt.ArrayLike,
    y: npt.ArrayLike,
    axis: AxisLike = -1,
    *,
    temperature: float = 1.0,
    where: npt.ArrayLike | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""Vector-Jacobian product of softmax: the gradient with respect to its input.

    Given ``y = softmax(x, axis, temperature=T)`` and ``grad`` = dL/dy, returns dL/dx:

    .. math:: \frac{\partial L}{\partial x_i} = \frac{1}{T}\, y_i \Big(g_i - \sum_j g_j y_j\Big)

    Parameters
    ----------
    grad, y : array_like
        Same shape. The computation dtype is the common type of the two (after
        the dtype rules of :func:`softmax`).
    axis : int, tuple of ints or None, default -1
        The axis ``y`` was normalized over.
    temperature : float, default 1.0
        The temperature ``y`` was computed at (as in :func:`softmax`): the
        gradient is with respect to ``x``, not ``x / T``.
    where : array_like of bool, optional
        The mask ``y`` was computed with (as in :func:`softmax`): the sum runs
        over the included entries only, and the gradient is exactly 0 (or
        -0.0) at the excluded ones and on slices with nothing included, whatever
        ``grad`` and ``y`` hold there (NaN included).
    out : ndarray, optional
        Same shape and result dtype; may be ``grad`` or ``y`` itself.

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> y = fs.softmax(np.array([0.0, 0.0]), temperature=2.0)
    >>> fs.softmax_backward(np.array([1.0, 0.0]), y, temperature=2.0)
    array([ 0.125, -0.125])
    >>> w = [True, True, False]
    >>> y = fs.softmax(np.zeros(3), where=w)
    >>> fs.softmax_backward(np.array([1.0, 0.0, np.nan]), y, where=w)  # (0 may be -0.0)
    array([ 0.25, -0.25,  0.  ])
    """
    return _backward(_core.softmax_backward, grad, y, axis, out, temperature, where)


@accepts_arrays("grad", "y", out="out")
def log_softmax_backward(
    grad: npt.ArrayLike,
    y: npt.ArrayLike,
    axis: AxisLike = -1,
    *,
    temperature: float = 1.0,
    where: npt.ArrayLike | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""Vector-Jacobian product of log_softmax: the gradient with respect to its input.

    Given ``y = log_softmax(x, axis, temperature=T)`` and ``grad`` = dL/dy, returns dL/dx:

    .. math:: \frac{\partial L}{\partial x_i} = \frac{1}{T} \Big(g_i - e^{y_i} \sum_j g_j\Big)

    Parameters are those of :func:`softmax_backward` (``where`` included).

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> y = fs.log_softmax(np.array([0.0, 0.0]))
    >>> fs.log_softmax_backward(np.array([1.0, 0.0]), y)
    array([ 0.5, -0.5])
    """
    return _backward(_core.log_softmax_backward, grad, y, axis, out, temperature, where)


@accepts_arrays("x", out="out")
def logsumexp(
    x: npt.ArrayLike,
    axis: AxisLike = -1,
    *,
    keepdims: bool = False,
    temperature: float = 1.0,
    where: npt.ArrayLike | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""Logarithm of the sum of exponentials along an axis, without overflow, at a
    temperature T (default 1).

    .. math:: \mathrm{logsumexp}(x / T) = \frac{m}{T} + \log \sum_j e^{(x_j - m) / T},
              \quad m = \max_j x_j

    The row is read once (a running maximum and a running sum).

    Parameters
    ----------
    x : array_like
        Dtype rules are those of :func:`softmax`.
    axis : int, tuple of ints or None, default -1
        The axis or axes to reduce; None reduces all of them.
    keepdims : bool, default False
        Keep the reduced axes with length 1, so the result broadcasts against ``x``.
    temperature : float, default 1.0
        ``T`` in the formula: the result is that of ``x / T``, computed from the
        exact differences ``x - m`` (never from rounded quotients ``x / T``), with
        no extra pass over ``x`` and no temporary array. Positive and finite,
        with ``1 / T`` a normal number of the compute dtype (float32 for the
        half-precision inputs); otherwise ValueError (TypeError for a non-number).
    where : array_like of bool, optional
        As in :func:`softmax` (it broadcasts to ``x``'s shape): the sum runs over
        the included entries only; a slice with nothing included gives ``-inf``.
    out : ndarray, optional
        Shape of the result (with or without the reduced axes, per ``keepdims``)
        and the result dtype.

    Returns
    -------
    ndarray
        ``x``'s shape without ``axis`` (a 0-d array when every axis is reduced).

    Notes
    -----
    Edge cases follow :func:`scipy.special.logsumexp`: NaN anywhere gives NaN,
    else a ``+inf`` gives ``+inf``, only ``-inf`` entries give ``-inf``, and an
    empty axis gives ``-inf``.

    Examples
    --------
    >>> import numpy as np, fastsoftmax as fs
    >>> fs.logsumexp(np.array([0.0, 0.0]), temperature=0.5)
    array(0.69314718)
    >>> fs.logsumexp(np.array([[0.0, 0.0, 9.0], [1.0, 2.0, 3.0]]), where=[[True, True, False], [False] * 3])
    array([0.69314718,       -inf])
    """
    t = _temperature(temperature)
    if (
        not keepdims
        and type(x) is np.ndarray
        and (fast := _fast_axis(x, axis, None)) >= 0
        and (
            out is None
            or (
                type(out) is np.ndarray
                and out.dtype is x.dtype
                and out.shape == x.shape[:fast] + x.shape[fast + 1 :]
            )
        )
    ):
        if t != 1.0:
            _check_scale(t, x.dtype, temperature)
        w = None if where is None else _where(where, x.shape)
        try:
            return _core.logsumexp(x, fast, out, False, t, w)
        except _core.Fallback:
            pass
    a, result = _prepare(x, "x")
    if t != 1.0:
        _check_scale(t, a.dtype, temperature)
    w = _where(where, a.shape)
    if out is not None:
        _check_overlap(out, x, a)
        _check_where_overlap(out, w)
    shape = a.shape
    ax = _normalize_axis(axis, a.ndim)
    axes = ax if isinstance(ax, tuple) else (ax,)
    kept = tuple(1 if d in axes else s for d, s in enumerate(shape))
    reduced = tuple(s for d, s in enumerate(shape) if d not in axes)
    if isinstance(ax, tuple):
        a = _flatten_axes(a, ax)
        w = None if w is None else _flatten_axes(w, ax)
        ax = a.ndim - 1
    if out is not None:
        _check_out(out, kept if keepdims else reduced, result)
    if out is not None and _direct_out(out, a.dtype):
        _core.logsumexp(a, ax, np.squeeze(out, axis=axes) if keepdims else out, True, t, w)
        return out
    r = _core.logsumexp(a, ax, None, False, t, w)
    if out is not None:
        _copy_into(out, r.reshape(out.shape))
        return out
    if result != a.dtype:
        r = _cast(r, result)
    return r.reshape(kept) if keepdims else r

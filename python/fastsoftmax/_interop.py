"""Arrays of other frameworks in and out: PyTorch tensors, JAX arrays, anything with DLPack.

The public functions take NumPy arrays; :func:`accepts_arrays` wraps them so that
an argument that is a framework array is read as a zero-copy NumPy view
(:func:`to_numpy`) and the result comes back in the caller's array type
(:func:`wrap_result`). NumPy calls go straight through: the wrapper checks the
exact types of the array arguments first.

torch and jax are never imported here: an object is a torch tensor only if
``torch`` is already in ``sys.modules`` (it must be, for such an object to exist)
and it is an instance of ``torch.Tensor``; likewise for ``jax.Array``.

bfloat16 (and any other dtype that ``np.from_dlpack`` cannot represent) is read
from the DLPack capsule itself (:func:`from_dlpack`, ctypes over
``DLManagedTensor`` / ``DLManagedTensorVersioned``), as an ``ml_dtypes.bfloat16``
array over the producer's memory.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import inspect
import linecache
import sys
import textwrap
import types
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

_ND = np.ndarray

# ---------------------------------------------------------------------------------------
# DLPack, read with ctypes (dlpack.h, ABI version 1.x; the unversioned struct of 0.x)

_DL_CPU = 1
# DLDeviceType, for messages
_DEVICE_NAMES = {
    1: "cpu", 2: "cuda", 3: "cuda_host", 4: "opencl", 7: "vulkan", 8: "metal", 9: "vpi",
    10: "rocm", 11: "rocm_host", 12: "ext_dev", 13: "cuda_managed", 14: "oneapi",
    15: "webgpu", 16: "hexagon", 17: "maia", 18: "trn",
}  # fmt: skip
# DLDataTypeCode
_DL_INT, _DL_UINT, _DL_FLOAT, _DL_BFLOAT, _DL_COMPLEX, _DL_BOOL = 0, 1, 2, 4, 5, 6
_DL_CODE_NAMES = {
    0: "int", 1: "uint", 2: "float", 3: "opaque_handle", 4: "bfloat", 5: "complex",
    6: "bool", 7: "float8_e3m4", 8: "float8_e4m3", 9: "float8_e4m3b11fnuz",
    10: "float8_e4m3fn", 11: "float8_e4m3fnuz", 12: "float8_e5m2", 13: "float8_e5m2fnuz",
    14: "float8_e8m0fnu", 15: "float6_e2m3fn", 16: "float6_e3m2fn", 17: "float4_e2m1fn",
}  # fmt: skip
_DL_READ_ONLY = 1  # DLPACK_FLAG_BITMASK_READ_ONLY
# the highest DLPack version whose structs this module reads (every 1.x has the same layout)
_DL_MAX_VERSION = (1, 1)

_VERSIONED = b"dltensor_versioned"
_LEGACY = b"dltensor"
# The consumer renames a capsule it has taken over, so that the capsule's destructor
# leaves the tensor to the consumer's deleter call. (Module constants: a capsule keeps
# the pointer to its name, not a copy.)
_USED_VERSIONED = ctypes.c_char_p(b"used_dltensor_versioned")
_USED_LEGACY = ctypes.c_char_p(b"used_dltensor")


class _DLDevice(ctypes.Structure):
    _fields_ = (("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32))


class _DLDataType(ctypes.Structure):
    _fields_ = (("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16))


class _DLTensor(ctypes.Structure):
    _fields_ = (
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    )


class _DLManagedTensor(ctypes.Structure):
    _fields_ = (
        ("dl_tensor", _DLTensor),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
    )


class _DLPackVersion(ctypes.Structure):
    _fields_ = (("major", ctypes.c_uint32), ("minor", ctypes.c_uint32))


class _DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = (
        ("version", _DLPackVersion),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", _DLTensor),
    )


# void (*deleter)(DLManagedTensor*): called without the GIL (a ctypes CFUNCTYPE releases
# it), as DLPack's Python specification allows; producers that need it take it.
_Deleter = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

# Private prototypes of the capsule API (the GIL held), so that the shared function objects
# of ctypes.pythonapi, whose argtypes other code may set, are left alone.
_capsule_is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_IsValid", ctypes.pythonapi)
)
_capsule_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi)
)
_capsule_set_name = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_SetName", ctypes.pythonapi)
)


def _dlpack_numpy_dtype(code: int, bits: int, lanes: int) -> np.dtype[Any] | None:
    """The NumPy dtype of a DLPack dtype, or None where fastsoftmax has none."""
    if lanes != 1:
        return None
    if code == _DL_BFLOAT and bits == 16:
        import ml_dtypes  # (a dependency; imported when first needed)

        bfloat16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bfloat16
    kind = {_DL_INT: "i", _DL_UINT: "u", _DL_FLOAT: "f", _DL_COMPLEX: "c", _DL_BOOL: "b"}
    if code not in kind or bits % 8 or not bits:
        return None
    try:
        return np.dtype(f"{kind[code]}{bits // 8}")
    except TypeError:  # (float128: no such NumPy dtype on most platforms)
        return None


def _dlpack_dtype_name(code: int, bits: int, lanes: int) -> str:
    name = _DL_CODE_NAMES.get(code, f"code {code} ")
    if not (7 <= code <= 17):  # (the float8/6/4 names include the width)
        name += str(bits)
    return name if lanes == 1 else f"{name}x{lanes}"


def _device_name(a: Any, device: tuple[Any, ...]) -> str:
    """A readable name of a's device: its own ``.device`` where it has one, else DLPack's."""
    kind, index = int(device[0]), int(device[1])
    name = f"{_DEVICE_NAMES.get(kind, f'device type {kind}')}:{index}"
    try:
        dev = a.device
    except Exception:  # noqa: BLE001  (a sharded JAX array, say: DLPack's name then)
        return name
    return name if dev is None or callable(dev) else str(dev)


def _device_error(name: str, a: Any, device: tuple[Any, ...], hint: str) -> TypeError:
    return TypeError(
        f"{name} is on device {_device_name(a, device)}; fastsoftmax computes on the CPU "
        f"only: {hint}"
    )


class _DLPackOwner:
    """Owns one DLPack tensor taken from a capsule; its producer's deleter is called
    exactly once, when this object dies (the NumPy views of it hold it as their base)."""

    __slots__ = ("__array_interface__", "_deleter", "_managed")

    def __init__(self, interface: dict[str, Any], managed: int, deleter: int | None) -> None:
        self.__array_interface__ = interface
        self._managed = managed
        self._deleter = deleter

    def __del__(self) -> None:
        deleter, self._deleter = self._deleter, None
        if deleter:
            _Deleter(deleter)(self._managed)


def _dlpack_capsule(a: Any) -> Any:
    """a's DLPack capsule: versioned where the producer gives one."""
    try:
        return a.__dlpack__(max_version=_DL_MAX_VERSION)
    except TypeError:  # a producer from before DLPack 1.0: no max_version
        return a.__dlpack__()


def from_dlpack(a: Any, name: str = "array") -> np.ndarray:
    """A NumPy array over the memory of ``a`` (an object with ``__dlpack__``, or a DLPack
    capsule), without a copy, for every dtype the kernels may see, bfloat16 included
    (as ``ml_dtypes.bfloat16``, which ``np.from_dlpack`` cannot represent).

    The shape, the strides (DLPack counts them in elements; none means C order) and the
    byte offset are the tensor's; the array is read-only where a versioned capsule says
    READ_ONLY, and for an unversioned capsule (as ``np.from_dlpack`` does: nothing says
    that the producer lets it be written). The producer's deleter runs once, when the
    last NumPy view of the memory dies. Raises TypeError naming the dtype or the device
    that it cannot read, before taking the tensor over (the capsule then frees it).
    """
    capsule = a if type(a).__name__ == "PyCapsule" else _dlpack_capsule(a)
    if _capsule_is_valid(capsule, _VERSIONED):
        versioned = True
        managed = _capsule_pointer(capsule, _VERSIONED)
        mv = _DLManagedTensorVersioned.from_address(managed)
        if mv.version.major != 1:
            raise BufferError(
                f"{name}: DLPack version {mv.version.major}.{mv.version.minor} is not "
                "supported (1.x is)"
            )
        tensor, deleter, read_only = mv.dl_tensor, mv.deleter, bool(mv.flags & _DL_READ_ONLY)
    elif _capsule_is_valid(capsule, _LEGACY):
        versioned = False
        managed = _capsule_pointer(capsule, _LEGACY)
        ml = _DLManagedTensor.from_address(managed)
        tensor, deleter, read_only = ml.dl_tensor, ml.deleter, True
    else:
        raise TypeError(f"{name}: not a DLPack capsule, or one that was already used")

    device = (tensor.device.device_type, tensor.device.device_id)
    if device[0] != _DL_CPU:
        raise _device_error(name, a, device, "move it to the CPU first")
    code, bits, lanes = tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes
    dtype = _dlpack_numpy_dtype(code, bits, lanes)
    if dtype is None:
        raise TypeError(
            f"{name} has dtype {_dlpack_dtype_name(code, bits, lanes)}, which fastsoftmax "
            "does not support; expected a real floating-point (float16, bfloat16, float32, "
            "float64), integer or bool array"
        )
    ndim = tensor.ndim
    shape = tuple(tensor.shape[i] for i in range(ndim))
    strides = (
        tuple(tensor.strides[i] * dtype.itemsize for i in range(ndim))
        if tensor.strides and ndim
        else None
    )
    data = (tensor.data or 0) + tensor.byte_offset
    # ml_dtypes' bfloat16 has no typestr of its own ('<V2'): its bits as uint16, then a view
    raw = np.dtype(f"u{dtype.itemsize}") if dtype.kind == "V" else dtype
    interface = {
        "version": 3,
        "shape": shape,
        "typestr": raw.str,
        "data": (data, read_only),
        "strides": strides,
    }

    # Take the tensor over: from here on the deleter is ours to call, once.
    _capsule_set_name(capsule, _USED_VERSIONED if versioned else _USED_LEGACY)
    owner = _DLPackOwner(interface, managed, deleter)
    if not data and 0 in shape:  # (an empty tensor may have no memory at all)
        del owner  # (the deleter runs now)
        return np.empty(shape, dtype)
    arr = np.asarray(owner)
    return arr if raw is dtype else arr.view(dtype)


# ---------------------------------------------------------------------------------------
# framework arrays -> NumPy views

# The exact types found to be torch tensors or JAX arrays (the frameworks' classes and
# their subclasses: a small set), so that later calls classify them by one look-up.
_KNOWN: dict[type, str] = {}
_torch_bfloat16: Any = None  # torch.bfloat16, once a torch tensor has been seen


def framework(a: Any) -> str | None:
    """ "torch", "jax" or "dlpack" (another DLPack producer) for a framework array, else None
    (NumPy arrays and their subclasses, NumPy scalars, lists, Python numbers, None)."""
    global _torch_bfloat16
    kind = _KNOWN.get(type(a))
    if kind is not None:
        return kind
    if isinstance(a, (np.ndarray, np.generic)) or not hasattr(type(a), "__dlpack__"):
        return None
    torch = sys.modules.get("torch")  # (imported, if a is a tensor)
    if torch is not None and isinstance(a, torch.Tensor):
        _torch_bfloat16 = torch.bfloat16
        _KNOWN[type(a)] = "torch"
        return "torch"
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(a, jax.Array):
        _KNOWN[type(a)] = "jax"
        return "jax"
    return "dlpack"


def _torch_to_numpy(t: Any, name: str, written: bool) -> np.ndarray:
    """A torch CPU tensor as a NumPy view of its memory, by ``Tensor.numpy()`` (zero-copy,
    and faster than ``np.from_dlpack``); the common case first."""
    # Tensor.numpy() refuses (it never copies) a tensor on another device, one that
    # requires grad, a dtype NumPy has not: the checked path then says what to do.
    if t.dtype is not _torch_bfloat16:
        try:
            return t.numpy()  # type: ignore[no-any-return]
        except (TypeError, RuntimeError):
            pass
    return _torch_to_numpy_checked(t, name, written)


def _torch_to_numpy_checked(t: Any, name: str, written: bool) -> np.ndarray:
    """_torch_to_numpy but for the common case: the errors, requires_grad, bfloat16 (its
    bits as int16, then a view as ml_dtypes.bfloat16), lazy negations."""
    torch = sys.modules["torch"]
    if not t.is_cpu:
        raise TypeError(
            f"{name} is on device {t.device}; fastsoftmax computes on the CPU only: "
            "move it with .cpu()"
        )
    if t.requires_grad:
        if written:
            raise ValueError(
                f"{name} requires grad; fastsoftmax's functions have no autograd, and writing "
                f"into it would bypass autograd: pass {name}.detach() to write into its "
                "memory anyway"
            )
        t = t.detach()  # (the same memory: read as data)
    try:
        if t.dtype is torch.bfloat16:
            import ml_dtypes  # (a dependency; imported when first needed)

            return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)  # type: ignore[no-any-return]
        return t.numpy()  # type: ignore[no-any-return]
    except TypeError:  # a dtype NumPy has not (float8, complex32, ...), or not strided
        if t.layout is not torch.strided:
            raise TypeError(
                f"{name} is a {t.layout} tensor; fastsoftmax takes dense (strided) tensors: "
                "convert it with .to_dense()"
            ) from None
        raise TypeError(
            f"{name} has dtype {t.dtype}, which fastsoftmax does not support; expected a "
            "real floating-point (float16, bfloat16, float32, float64), integer or bool tensor"
        ) from None
    except RuntimeError:  # a lazy negation or conjugation (Tensor.numpy() refuses it)
        if not (t.is_neg() or t.is_conj()):
            raise
        if written:
            raise ValueError(
                f"{name} is a lazily negated or conjugated view; pass a tensor that owns its values"
            ) from None
        return _torch_to_numpy_checked(t.resolve_neg().resolve_conj(), name, written)


def to_numpy(a: Any, name: str, *, written: bool = False) -> np.ndarray:
    """A framework array (anything with ``__dlpack__`` but NumPy's own) as a NumPy view of
    its memory, without a copy.

    ``name`` is the parameter's, for messages; ``written``: the call will write into it
    (``out=``, ``inplace_grad=True``), so a read-only view is a ValueError, and so is a
    torch tensor that requires grad (one that is only read is read as data, through
    ``.detach()``). A non-CPU device is a TypeError naming it; so is a dtype that the
    kernels do not take and NumPy cannot represent (float8, say). NumPy's dtypes
    (complex included) come back as they are: the API's own checks name them.
    """
    kind = framework(a)
    if kind == "torch":
        return _torch_to_numpy(a, name, written)
    if kind is None:
        raise TypeError(f"{name} is a {type(a).__name__}, not an array that speaks DLPack")
    device = a.__dlpack_device__()
    if int(device[0]) != _DL_CPU:
        raise _device_error(name, a, device, "move it to the CPU first")
    view = None
    if kind == "jax":
        # A JAX CPU array's __array__ is a read-only view of its buffer, in ml_dtypes'
        # dtypes (bfloat16 included): 0.6 us (bfloat16 3 us) against 2 us by np.from_dlpack
        # (10 us by the capsule). A copy (an array spread over several devices) goes the
        # DLPack way instead, which refuses what it cannot view.
        view = np.asarray(a)
        if view.flags.owndata:
            view = None
    if view is None:
        try:
            view = np.from_dlpack(a)
        except (RuntimeError, BufferError, TypeError, ValueError):  # bfloat16, float8, ...
            view = from_dlpack(a, name)  # (TypeError naming the dtype if it cannot read it)
    if written and not view.flags.writeable:
        what = "a JAX array, which is immutable" if kind == "jax" else "a read-only buffer"
        raise ValueError(f"{name} is read-only ({what}); pass a writeable array")
    return view


# ---------------------------------------------------------------------------------------
# NumPy results -> the caller's array type


def _to_torch(r: np.ndarray) -> Any:
    """r as a torch tensor over the same memory (a copy only where torch.from_numpy
    cannot take it: read-only or negative strides, which no fresh result has)."""
    torch = sys.modules["torch"]
    if not r.flags.writeable:  # (torch.from_numpy would warn)
        r = r.copy()
    try:
        return torch.from_numpy(r)
    except (TypeError, ValueError):
        if r.dtype.kind == "V":  # ml_dtypes.bfloat16: torch.from_numpy knows its bits only
            return _to_torch(r.view(np.int16)).view(torch.bfloat16)
        if any(s < 0 for s in r.strides):
            return torch.from_numpy(r.copy())
        raise


def wrap(r: Any, kind: str | None) -> Any:
    """One NumPy result (an array or a NumPy scalar) in the array type ``kind``:
    a torch tensor sharing its memory, a JAX array (a copy), else NumPy as it is."""
    if kind == "torch":
        return _to_torch(r if type(r) is _ND else np.asarray(r))
    if kind == "jax":
        return importlib.import_module("jax.numpy").asarray(r)  # (imported with jax)
    return r


def wrap_result(result: Any, kind: str | None, written: Sequence[tuple[Any, Any]] = ()) -> Any:
    """The result of a call, in the array type ``kind``; a tuple element-wise. A result that
    is one of the ``written`` arrays (``out=``, the logits with ``inplace_grad``, as
    converted) is replaced by the argument as passed, so ``out`` itself is returned."""
    if type(result) is tuple:
        return tuple(wrap_result(r, kind, written) for r in result)
    for view, original in written:
        if result is view:
            return original
    return wrap(result, kind)


# ---------------------------------------------------------------------------------------
# the decorator of the public functions


_increment_version: Any = None  # torch's version-counter bump, once a tensor was written


def _bump_versions(tensors: tuple[Any, ...]) -> None:
    """Mark torch tensors as modified in place for autograd (as an in-place op does), so
    that a backward that saved one raises instead of using the new values. Through
    torch._C._increment_version, which torch.autograd.graph.increment_version wraps (0.1 us
    of a call that the issue bounds at 2 us more than NumPy's), where torch has it."""
    global _increment_version
    if _increment_version is None:
        torch = sys.modules["torch"]
        _increment_version = getattr(
            torch._C, "_increment_version", torch.autograd.graph.increment_version
        )
    # (an inference tensor has no version counter: it is left alone)
    _increment_version(tensors)


def _finish(result: Any, kind: str, written: list[tuple[Any, Any]]) -> Any:
    """The result of a converted call in the caller's array type; torch tensors that were
    written in place are marked so for autograd (_bump_versions); a result that is the one
    array written (out=) is the argument as passed."""
    if len(written) == 1:  # (out=, the common case: no loop)
        view, original = written[0]
        if _KNOWN.get(type(original)) == "torch":
            _bump_versions((original,))
        if result is view:
            return original
    elif written:
        tensors = tuple(o for _, o in written if _KNOWN.get(type(o)) == "torch")
        if tensors:
            _bump_versions(tensors)
    elif kind == "torch" and type(result) is _ND:  # (the common case, first)
        return _to_torch(result)
    return wrap_result(result, kind, written)


def _doc(names: Sequence[str], out: str | None, inplace: tuple[str, str] | None) -> str:
    """The paragraphs on framework arrays of a decorated function's docstring (for its
    Notes section: see :func:`_with_notes`)."""
    args = ", ".join(f"``{n}``" for n in names)
    which = f"each of {args}" if len(names) > 1 else args
    first = (
        f"*Framework arrays:* {which} may also be a PyTorch tensor, a JAX "
        "array or another CPU array that speaks DLPack (``__dlpack__``). It is read "
        "without a copy (bfloat16 too, as ``ml_dtypes.bfloat16``). The result has the "
        "type of the first such argument: a torch tensor gives a torch tensor (over the "
        "result's memory, no copy), a JAX array a JAX array (a copy, JAX arrays being "
        "immutable; JAX's dtype rules apply: without ``jax_enable_x64`` a float64 result "
        "becomes float32), any other DLPack array a NumPy array; NumPy stays NumPy."
    )
    paragraphs = [first]
    if out is not None:
        paragraphs.append(
            f"``{out}`` may be a torch tensor (or another writeable DLPack array) of the "
            "result's shape and dtype: it is written in place and returned itself. A "
            "read-only one (a JAX array) is a ValueError, and nothing is written."
        )
    if inplace is not None:
        paragraphs.append(
            f"With ``{inplace[1]}=True`` and a torch tensor ``{inplace[0]}``, the gradient "
            "is written into that tensor's storage, and the tensor itself is returned."
        )
    if "labels" in names or "target" in names:  # (the losses and the KL divergence)
        paragraphs.append(
            "A reduced (scalar) loss is a 0-d tensor when the logits or labels are "
            "framework arrays (a 0-d JAX array for JAX), as "
            ":func:`torch.nn.functional.cross_entropy` returns; a NumPy scalar otherwise."
        )
    paragraphs.append(
        "A tensor that requires grad is read as data (through ``.detach()``, no copy): "
        "this function has no autograd (the PyTorch integration, ``fastsoftmax.torch``, "
        "adds it). One that it would write into is refused (ValueError), as PyTorch "
        "refuses an in-place operation on it; pass ``.detach()`` to write it anyway. An "
        "array on another device (a GPU) is a TypeError naming the device; float8 and "
        "complex dtypes are TypeErrors naming the dtype."
    )
    return "\n\n".join(textwrap.fill(p, 76) for p in paragraphs)


def _with_notes(doc: str, text: str) -> str:
    """``doc`` (a cleaned numpydoc docstring) with ``text`` at the end of its Notes
    section, or in a new one before References / Examples (numpydoc knows a fixed set of
    sections: it would drop one of its own with a warning)."""
    lines = doc.splitlines()
    headers = [
        i
        for i in range(len(lines) - 1)
        if lines[i].strip() and lines[i + 1].strip() == "-" * len(lines[i].strip())
    ]
    titles = {lines[i].strip(): i for i in headers}
    if "Notes" in titles:  # at the end of the section, before the blank lines after it
        end = next((i for i in headers if i > titles["Notes"]), len(lines))
        while not lines[end - 1].strip():
            end -= 1
        return "\n".join([*lines[:end], "", text, *lines[end:]])
    notes = ["Notes", "-----", text]
    later = [titles[t] for t in ("References", "Examples") if t in titles]
    if not later:
        return "\n".join([doc.rstrip(), "", *notes])
    before = lines[: min(later)]
    if before[-1].strip():
        before.append("")
    return "\n".join([*before, *notes, "", *lines[min(later) :]])


def _any_dask(*arrays: Any) -> bool:
    """Whether any of the arrays is a dask array (by its class's module: dask is not
    imported for the question)."""
    return any(type(a).__module__.startswith("dask.") and _is_dask(a) for a in arrays)


def _is_dask(a: Any) -> bool:
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(a, da.Array)


def _dask_function(name: str) -> Callable[..., Any]:
    """fastsoftmax.dask's function `name`, which the top-level one hands dask arrays to;
    TypeError for a function that has none (rather than reading the array into memory)."""
    from . import dask as fsd  # (imports dask, which the caller has)

    f: Callable[..., Any] | None = getattr(fsd, name, None) if name in fsd.__all__ else None
    if f is None:
        raise TypeError(
            f"fastsoftmax.{name} does not take dask arrays (fastsoftmax.dask has "
            f"{', '.join(fsd.__all__)}); call .compute() first to work in memory"
        )
    return f


def _positional(f: Callable[..., Any]) -> Callable[..., Any]:
    """f, with its keyword-only parameters taken by position (the same code object but for
    the two counts: the arguments' slots are the same, in the same order). Passing a
    dozen keywords costs the wrapper of cross_entropy 0.09 us a call; this, nothing."""
    code = f.__code__
    positional = code.replace(
        co_argcount=code.co_argcount + code.co_kwonlyargcount, co_kwonlyargcount=0
    )
    return types.FunctionType(positional, f.__globals__, f.__name__, None, f.__closure__)


def accepts_arrays(
    *names: str, out: str | None = None, inplace: tuple[str, str] | None = None
) -> Callable[[F], F]:
    """Let the decorated function take framework arrays for the parameters ``names`` and
    ``out`` (the one it writes into, if it has one); ``inplace`` = (parameter, flag):
    that parameter is written into when the flag argument is true.

    The wrapper has the function's own signature (generated), so that a call whose array
    arguments are all exact ``numpy.ndarray`` objects or None goes straight through for
    the cost of one more call; any other call converts the framework arrays to NumPy
    views, and the result to the caller's array type. ``softmax`` gets::

        def softmax(x, axis=_d[1], *, out=_d[2]):
            if type(x) is _ND and (out is None or type(out) is _ND):
                return _f(x, axis, out)
            _k = None  # the kind of the first framework array: the result's
            _w = []  # (what the function writes, what the caller passed)
            if x is not None and type(x) is not _ND and (_t := _fw(x)) is not None:
                _k = _k or _t
                x = _tv(x, 'x', False) if _t == 'torch' else _v(x, 'x', written=False)
            if out is not None and type(out) is not _ND and (_t := _fw(out)) is not None:
                _k = _k or _t
                _o = out
                out = _tv(out, 'out', True) if _t == 'torch' else _v(out, 'out', written=True)
                if True:
                    _w.append((out, _o))
            elif out is not None and True:
                _w.append((out, out))
            if _k is None:
                return _f(x, axis, out)
            return _finish(_f(x, axis, out), _k, _w)

    (``_f``: the function, its keyword-only parameters made positional; ``_fw``:
    :func:`framework`; ``_tv``, ``_v``: the torch and the general conversion; ``True``
    stands where cross_entropy's ``logits`` have ``bool(inplace_grad)``.)
    """

    def decorate(f: F) -> F:
        params = list(inspect.signature(f).parameters.values())
        order = [p.name for p in params]
        arrays = [*names, *([out] if out else [])]
        if set(arrays) - set(order) or (inplace and not set(inplace) <= set(order)):
            raise TypeError(f"accepts_arrays: a name that is not a parameter of {f.__name__}")
        if any(p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params):
            raise TypeError(f"accepts_arrays: {f.__name__} has *args or **kwargs")
        sig = []
        for i, p in enumerate(params):
            if p.kind is p.KEYWORD_ONLY and (i == 0 or params[i - 1].kind is not p.KEYWORD_ONLY):
                sig.append("*")
            sig.append(p.name if p.default is p.empty else f"{p.name}=_d[{i}]")
        required = {p.name for p in params if p.default is p.empty}
        checks = [
            f"type({n}) is _ND" if n in required else f"({n} is None or type({n}) is _ND)"
            for n in arrays
        ]
        call = f"_f({', '.join(order)})"
        keywords = ", ".join(f"{n}={n}" for n in order)
        lines = [
            f"def {f.__name__}({', '.join(sig)}):",
            f"    if {' and '.join(checks)}:",
            f"        return {call}",
            "    _k = None",
            "    _w = []",
        ]
        for n in arrays:
            # written: out when given; the inplace parameter when its flag is true
            written = (
                "True"
                if n == out
                else f"bool({inplace[1]})"
                if inplace and n == inplace[0]
                else None
            )
            w = written or "False"
            view = f"_tv({n}, {n!r}, {w}) if _t == 'torch' else _v({n}, {n!r}, written={w})"
            framework_array = f"type({n}) is not _ND and (_t := _fw({n})) is not None"
            lines += [f"    if {n} is not None and {framework_array}:", "        _k = _k or _t"]
            if written is None:
                lines.append(f"        {n} = {view}")
            else:
                lines += [
                    f"        _o = {n}",
                    f"        {n} = {view}",
                    f"        if {written}:",
                    f"            _w.append(({n}, _o))",
                    f"    elif {n} is not None and {written}:",
                    f"        _w.append(({n}, {n}))",
                ]
        lines += [
            "    if _k is None:",  # (no framework array: NumPy's, a list, or dask's)
            f"        if _dk({', '.join(arrays)}):",
            f"            return _dd({f.__name__!r})({keywords})",
            f"        return {call}",
            f"    return _finish({call}, _k, _w)",
        ]
        src = "\n".join(lines) + "\n"
        scope: dict[str, Any] = {
            "_ND": _ND,
            "_f": _positional(f),
            "_fw": framework,
            "_tv": _torch_to_numpy,
            "_v": to_numpy,
            "_finish": _finish,
            "_dk": _any_dask,
            "_dd": _dask_function,
            "_d": [p.default for p in params],
        }
        filename = f"<fastsoftmax accepts_arrays: {f.__name__}>"
        linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)  # (tracebacks)
        code = compile(src, filename, "exec")
        exec(code, scope)  # noqa: S102  (our own source, as dataclasses makes __init__)
        wrapper = functools.update_wrapper(scope[f.__name__], f)
        wrapper.__doc__ = _with_notes(inspect.cleandoc(f.__doc__ or ""), _doc(names, out, inplace))
        return cast(F, wrapper)

    return decorate

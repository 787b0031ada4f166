"""NumPy's own BLAS for the one product ``np.matmul`` cannot do: ``c += a @ b``.

``np.matmul(a, b, out=c)`` overwrites ``c``; accumulating a product into a
large ``c`` (the weight gradient of a linear layer, summed over chunks of
tokens) would need a temporary the size of ``c``. BLAS's gemm does it with
``beta = 1``. NumPy does not expose gemm, but the BLAS it calls is loaded with
it: ``dlsym`` on NumPy's extension module searches that module's dependencies,
so the CBLAS entry point is found by its name under the conventions of the
OpenBLAS builds NumPy ships or links (``scipy_cblas_sgemm64_`` in the wheels'
ILP64 ``scipy-openblas64``, ``cblas_sgemm`` in a system OpenBLAS), and checked
on a small product before it is used. Where none is found (another BLAS, or no
CBLAS symbols), :func:`add_product` falls back to ``np.matmul`` into a
temporary of a few rows of ``c`` at a time, added to ``c``.
"""

from __future__ import annotations

import ctypes
import importlib
from typing import Any

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

# (symbol prefix, suffix, integer type) of the CBLAS interfaces tried, ILP64 first
_CONVENTIONS = (
    ("scipy_", "64_", ctypes.c_int64),
    ("", "64_", ctypes.c_int64),
    ("scipy_", "", ctypes.c_int32),
    ("", "", ctypes.c_int32),
)
# rows of c per temporary in the fallback (with c's columns: a few MiB at most)
_FALLBACK_BYTES = 4 << 20


def _numpy_library() -> ctypes.CDLL | None:
    for name in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            path = importlib.import_module(name).__file__
        except ImportError:  # pragma: no cover - NumPy 1.x has the second
            continue
        try:
            return None if path is None else ctypes.CDLL(path)
        except OSError:  # pragma: no cover - a statically linked or unusual build
            return None
    return None  # pragma: no cover


def _bind(lib: ctypes.CDLL, name: str, scalar: Any, index: Any) -> Any:
    fn = getattr(lib, name)
    p = ctypes.c_void_p
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, index, index, index,
                   scalar, p, index, p, index, scalar, p, index]  # fmt: skip
    fn.restype = None
    return fn


def _works(gemm: Any, dtype: type[np.floating[Any]]) -> bool:
    """Whether gemm computes c += a @ b on a small case exactly as matmul does."""
    a: np.ndarray = np.arange(6, dtype=dtype).reshape(2, 3)
    b: np.ndarray = np.arange(12, dtype=dtype).reshape(3, 4)
    c: np.ndarray = np.ones((2, 4), dtype)
    gemm(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, 2, 4, 3, 1.0, a.ctypes.data, 3, b.ctypes.data, 4,
         1.0, c.ctypes.data, 4)  # fmt: skip
    return bool(np.array_equal(c, a @ b + 1))


def _find() -> dict[np.dtype, Any]:
    lib = _numpy_library()
    if lib is None:  # pragma: no cover
        return {}
    for prefix, suffix, index in _CONVENTIONS:
        try:
            s = _bind(lib, f"{prefix}cblas_sgemm{suffix}", ctypes.c_float, index)
            d = _bind(lib, f"{prefix}cblas_dgemm{suffix}", ctypes.c_double, index)
        except AttributeError:
            continue
        if _works(s, np.float32) and _works(d, np.float64):
            return {np.dtype(np.float32): s, np.dtype(np.float64): d}
        return {}  # pragma: no cover - a symbol of that name that is not CBLAS's
    return {}  # pragma: no cover - depends on NumPy's build


_GEMM: dict[np.dtype, Any] | None = None


def gemm_source() -> str:
    """Where :func:`add_product` gets its products: "cblas" or "matmul"."""
    return "cblas" if _gemms() else "matmul"


def _gemms() -> dict[np.dtype, Any]:
    global _GEMM
    if _GEMM is None:
        _GEMM = _find()
    return _GEMM


def _operand(x: np.ndarray) -> tuple[int, int] | None:
    """(CBLAS transpose flag, leading dimension) of a row-major operand, or None."""
    if x.flags.c_contiguous:
        return _NO_TRANS, max(1, x.shape[1])
    if x.flags.f_contiguous:
        return _TRANS, max(1, x.shape[0])
    return None


def add_product(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """``c += a @ b`` for 2-D arrays of one float dtype (float32 or float64), ``c``
    C-contiguous and not overlapping ``a`` or ``b``."""
    m, k = a.shape
    n = b.shape[1]
    if c.shape != (m, n) or b.shape[0] != k or not (a.dtype == b.dtype == c.dtype):
        raise ValueError(
            f"add_product: c {c.shape} {c.dtype} += a {a.shape} {a.dtype} @ b {b.shape} {b.dtype}"
        )
    if m == 0 or n == 0 or k == 0:
        return
    gemm = _gemms().get(c.dtype)
    oa, ob = _operand(a), _operand(b)
    if gemm is not None and oa is not None and ob is not None and c.flags.c_contiguous:
        gemm(_ROW_MAJOR, oa[0], ob[0], m, n, k, 1.0, a.ctypes.data, oa[1],
             b.ctypes.data, ob[1], 1.0, c.ctypes.data, max(1, n))  # fmt: skip
        return
    rows = max(1, _FALLBACK_BYTES // (n * c.itemsize))
    tmp = np.empty((min(rows, m), n), c.dtype)
    for r in range(0, m, rows):
        part = tmp[: min(rows, m - r)]
        np.matmul(a[r : r + rows], b, out=part)
        c[r : r + rows] += part

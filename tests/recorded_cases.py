"""Fixed inputs for every public function, and the tools that record and compare their outputs.

``CASES`` is a deterministic list of :class:`Case`: a stable name that says what the case
covers (op/dtype/layout/shape...) and a function of no argument that builds its inputs and
returns the outputs of the public API (``import fastsoftmax as fs``) as a list of arrays
(a numpy scalar becomes a 0-d array) or Python floats. ``tests/test_recorded_outputs.py``
compares a hash of each case's outputs (:func:`digest`), on every usable SIMD target,
with ``tests/data/recorded_outputs.json``: a refactoring of the kernels must give bitwise the
same results as the commit the recording names.

Inputs are bit-for-bit the same on every NumPy version and CPU: ``np.random.default_rng(seed)
.random(shape)`` (the seed is the CRC-32 of the case's name), then only ``+ - * /``,
``floor``, ``max``, indexing and ``astype`` (no ``exp``/``log``/``tanh``, which NumPy runs
with SIMD code that differs between versions and CPUs); float16 inputs lie on a grid that
float16 holds exactly. The inputs of one case do not depend on any other case or on the
library's own results (the backward functions get made-up ``y``, ``cross_entropy_backward``
a made-up ``lse``), so a change in one kernel shows in its own cases only.

Command line (run from anywhere with the build to test installed)::

    python tests/recorded_cases.py --record                 # (re)write the json
    python tests/recorded_cases.py --save-npz DIR           # every output, DIR/<target>.npz
    python tests/recorded_cases.py --compare DIR [--case S] # this build against DIR/*.npz
    python tests/recorded_cases.py --list                   # the case names

``--compare`` names each differing case and output with the number of differing elements,
the largest difference in units in the last place, and the NaN / inf mismatches.

Outputs are compared bit for bit, but for the sign and payload bits of NaNs (every NaN
counts as ``np.nan``). Those bits follow from the order of operands in the machine code
(x86's invalid operations make a negative NaN, a NaN operand passes its own on), not from
the source alone: the recorded commit itself, built with ``--coverage`` or with the
sanitizers at ``-O2`` (ASan + UBSan), gave other NaN bits in 7 and 125 cases (values
bitwise the same in every case). The recording also holds, where they differ, the digest
with the NaNs' bits, which ``FASTSOFTMAX_TEST_NAN_BITS=1`` makes the test compare too.

Re-recording replaces the reference, and is legitimate only (a) on the commit the
recording names (e.g. to add a SIMD target or a machine), or (b) after a change of bits
that has been explained (which cases, which outputs, why) and shown to be at least as
accurate as before (``--compare`` against the outputs saved from the recorded commit, and
the accuracy tests), with that explanation in the commit message. Never to make a failing
test pass. Adding cases changes no recorded hash; record them on the recorded commit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import subprocess
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Union

import fastsoftmax as fs
import numpy as np
from fastsoftmax import _core

Output = Union[np.ndarray, float]
RECORDING = Path(__file__).resolve().parent / "data" / "recorded_outputs.json"

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
FORWARD = ("softmax", "log_softmax", "logsumexp")
BACKWARD = ("softmax_backward", "log_softmax_backward")
FAMILY = FORWARD + BACKWARD
INF, NAN = math.inf, math.nan

# row lengths around every threshold of the kernels: vector widths (1, 2, 4, 8, 16 lanes),
# the tiles of short rows (48 / 64 / 96 / 128), cross_entropy's groups (16 vectors), the
# grouped logs (2 KiB rows), one block (64 vectors), long rows (32 KiB)
LENGTHS = (
    *(1, 2, 3, 4, 7, 8, 9, 10, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65),
    *(95, 96, 97, 127, 128, 129, 200, 256, 257, 500, 511, 512, 513),
    *(1000, 1024, 1025, 2048, 4096, 4097, 4100, 8192, 8193),
)
MANY_ROWS = (3, 10, 16, 17, 48, 64, 96, 128)  # lengths that also get 70 rows
# lengths for the special values and the cross-entropy's options (one per path)
SOME_LENGTHS = (1, 2, 3, 8, 9, 16, 17, 33, 48, 64, 65, 97, 128, 129, 257, 1000, 4100)


@dataclass(frozen=True)
class Case:
    """One recorded case: its name and the function that computes its outputs."""

    name: str
    compute: Callable[[], list[Output]]


# ------------------------------------------------------------------ inputs --


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _uniform(
    rng: np.random.Generator, shape: tuple[int, ...], lo: float, hi: float, dtype: np.dtype
) -> np.ndarray:
    """Uniform values in [lo, hi) of dtype (for float16 on a grid it holds exactly)."""
    v = rng.random(shape) * (hi - lo) + lo
    if dtype == F16:  # 11 significant bits: steps of 2^(e-11) below 2^e
        step = 2.0 ** (math.frexp(max(abs(lo), abs(hi)))[1] - 11)
        v = np.floor(v / step) * step
    return v.astype(dtype)


def _labels(rng: np.random.Generator, shape: tuple[int, ...], n: int) -> np.ndarray:
    return np.floor(rng.random(shape) * n).astype(np.int64)


def _targets(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Soft labels in [0, 2 / shape[-1]) (they need not sum to 1: no reduction needed)."""
    return _uniform(rng, shape, 0.0, 2.0 / shape[-1], dtype)


def _cast(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    with np.errstate(over="ignore"):
        return x.astype(dtype)


def _set(r: np.ndarray, p: int, q: int, kind: str) -> None:
    """Put special values of `kind` into the float64 row r (p, q: two positions)."""
    if kind == "nan":
        r[p] = NAN
    elif kind == "+inf":
        r[p] = INF
    elif kind == "-inf":
        r[::4] = -INF
        r[p] = -INF
    elif kind == "only-inf":
        r[:] = -INF
    elif kind == "+inf,-inf":
        r[q] = -INF
        r[p] = INF
    elif kind == "nan,+inf":
        r[q] = INF
        r[p] = NAN
    elif kind == "nan,-inf":
        r[:] = -INF
        r[p] = NAN
    elif kind == "equal":
        r[:] = 1.25
    elif kind == "zeros":
        r[:] = 0.0
    elif kind == "ties":
        r[p] = r[q] = 20.0
    elif kind == "1e30":
        r[p] = 1e30
    elif kind == "-1e30":
        r[::2] = -1e30
    elif kind == "3e38":
        r[:] = 3e38 + r * 1e36
        r[p] = 3.3e38
    elif kind == "-3e38":
        r[:] = -3e38 + r * 1e36
    elif kind == "3e38,-3e38":
        r[q] = -3e38
        r[p] = 3e38
    elif kind == "1e-30":
        r *= 1e-30
    elif kind == "x100":
        r *= 100.0
    elif kind == "mixed":
        r[::2] *= 100.0
    elif kind == "60000":  # (float16's largest values)
        r[p] = 60000.0
    elif kind == "x64":
        r *= 64.0
    elif kind != "finite":
        raise ValueError(kind)


SPECIALS = (
    *("finite", "nan", "+inf", "-inf", "only-inf", "+inf,-inf", "nan,+inf", "nan,-inf"),
    *("equal", "zeros", "ties", "1e30", "-1e30", "3e38", "-3e38", "3e38,-3e38"),
    *("1e-30", "x100", "mixed"),
)
SPECIALS_F16 = (
    *("finite", "nan", "+inf", "-inf", "only-inf", "+inf,-inf", "nan,+inf", "nan,-inf"),
    *("equal", "zeros", "ties", "60000", "x64"),
)


def _special_rows(
    rng: np.random.Generator, n: int, dtype: np.dtype, lo: float = -8.0
) -> np.ndarray:
    """Each kind of special row twice (at other positions), then 3 finite rows."""
    kinds = SPECIALS_F16 if dtype == F16 else SPECIALS
    x = rng.random((2 * len(kinds) + 3, n)) * (-2 * lo) + lo
    if dtype == F16:
        x = np.floor(x * 64) / 64
    for r in range(2 * len(kinds)):
        p, q = (r * 7 + 3) % n, (r * 5 + 1) % n
        if r >= len(kinds):
            p, q = n - 1 - p, n - 1 - q
        _set(x[r], p, q, kinds[r % len(kinds)])
    return _cast(x, dtype)


# ----------------------------------------------------------------- outputs --


def _outputs(*results: Any) -> list[Output]:
    """The results as a flat list (tuples opened, numpy scalars as 0-d arrays, copies)."""
    out: list[Output] = []
    for r in results:
        if isinstance(r, tuple):
            out.extend(_outputs(*r))
        elif isinstance(r, float) and not isinstance(r, np.floating):
            out.append(r)
        else:
            out.append(np.array(r, copy=True))
    return out


def digest(outputs: Sequence[Output], nan_bits: bool = True) -> str:
    """The outputs' SHA-256 (its first 128 bits, in hex: plenty, and half the file): of each
    array's dtype, shape and bytes in C order, and of each float's hex. With
    ``nan_bits=False`` every NaN counts as ``np.nan`` (its sign and payload left out)."""
    h = hashlib.sha256()
    for o in outputs:
        if isinstance(o, np.ndarray):
            a = np.ascontiguousarray(o)
            if not nan_bits and a.dtype.kind == "f":
                a = np.where(np.isnan(a), a.dtype.type(np.nan), a)
            h.update(f"array {a.dtype.str} {o.shape}\n".encode())
            h.update(a.tobytes())
        else:
            h.update(f"float {float(o).hex()}\n".encode())
    return h.hexdigest()[:32]


def entry(outputs: Sequence[Output]) -> str:
    """The recording of one case on one target: its digest without the NaNs' sign and
    payload bits, followed (after a space) by the one with them where the two differ."""
    values, bits = digest(outputs, nan_bits=False), digest(outputs)
    return values if values == bits else f"{values} {bits}"


def describe(outputs: Sequence[Output]) -> str:
    """The outputs' dtypes and shapes (floats: their value), for messages."""
    return ", ".join(
        f"{o.dtype}{list(o.shape)}" if isinstance(o, np.ndarray) else f"float {o!r}"
        for o in outputs
    )


# --------------------------------------------------- the softmax family --


def _family_inputs(
    rng: np.random.Generator, op: str, shape: tuple[int, ...], dtype: np.dtype
) -> list[np.ndarray]:
    """x for the forward ops; (grad, y) for the backward ones (y made up, not computed)."""
    if op in FORWARD:
        return [_uniform(rng, shape, -8.0, 8.0, dtype)]
    g = _uniform(rng, shape, -2.0, 2.0, dtype)
    if op == "softmax_backward":
        return [g, _uniform(rng, shape, 0.0, 0.25, dtype)]
    return [g, _uniform(rng, shape, -16.0, 0.0, dtype)]


def _call(op: str, arrays: Sequence[np.ndarray], axis: Any = -1, **kw: Any) -> Any:
    return getattr(fs, op)(*arrays, axis=axis, **kw)


def _family_rows(name: str, op: str, dtype: np.dtype, rows: int, n: int) -> list[Output]:
    return _outputs(_call(op, _family_inputs(_rng(name), op, (rows, n), dtype)))


def _family_special(name: str, op: str, dtype: np.dtype, n: int) -> list[Output]:
    rng = _rng(name)
    if op in FORWARD:
        return _outputs(_call(op, [_special_rows(rng, n, dtype)]))
    if op == "softmax_backward":  # special values in y, then in grad
        y = _special_rows(rng, n, dtype, lo=-0.5)
        g = _uniform(rng, y.shape, -2.0, 2.0, dtype)
        r1 = _call(op, [g, y])
        return _outputs(r1, _call(op, [_special_rows(rng, n, dtype), np.abs(g)]))
    y = _special_rows(rng, n, dtype)
    g = _uniform(rng, y.shape, -2.0, 2.0, dtype)
    return _outputs(
        _call(op, [g, -np.abs(y)]), _call(op, [_special_rows(rng, n, dtype), -np.abs(g)])
    )


def _family_layout(name: str, op: str, dtype: np.dtype, layout: str, n: int) -> list[Output]:
    """One op on one layout (n: the length of the reduced axis)."""
    rng = _rng(name)
    arrays: list[np.ndarray]
    if layout == "cols":  # (3, n, 37), axis 1: the columns kernels
        arrays = _family_inputs(rng, op, (3, n, 37), dtype)
        return _outputs(_call(op, arrays, axis=1))
    if layout == "cols-special":  # special rows spread over the lanes of (3, n, 19)
        arrays = _family_inputs(rng, op, (3, 19, n), dtype)
        s = _special_rows(rng, n, dtype)
        flat = arrays[-1].reshape(-1, n)
        flat[: len(s)] = s if op != "log_softmax_backward" else -np.abs(s)
        arrays = [np.ascontiguousarray(a.transpose(0, 2, 1)) for a in arrays]
        return _outputs(_call(op, arrays, axis=1))
    if layout == "axis0":  # (n, 50), axis 0: columns of a 2-d array
        return _outputs(_call(op, _family_inputs(rng, op, (n, 50), dtype), axis=0))
    if layout == "axis0-3d":  # (n, 5, 9), axis 0
        return _outputs(_call(op, _family_inputs(rng, op, (n, 5, 9), dtype), axis=0))
    if layout == "axis1-rows-strided":  # (4, n, 6) axis 1 of a view whose other axes jump
        arrays = [a[:, :, ::2] for a in _family_inputs(rng, op, (4, n, 12), dtype)]
        return _outputs(_call(op, arrays, axis=1))
    if layout == "4d-strided":  # (3, 4, 3, n) of (6, 8, 6, n): three outer axes to walk
        arrays = [a[::2, ::2, ::2] for a in _family_inputs(rng, op, (6, 8, 6, n), dtype)]
        return _outputs(_call(op, arrays))
    if layout == "fortran":  # (21, n) in Fortran order, axis -1: columns
        arrays = [np.asfortranarray(a) for a in _family_inputs(rng, op, (21, n), dtype)]
        return _outputs(_call(op, arrays))
    if layout == "every-other-col":  # axis stride 2: gathered rows
        arrays = [a[:, ::2] for a in _family_inputs(rng, op, (21, 2 * n), dtype)]
        return _outputs(_call(op, arrays))
    if layout == "every-other-row":
        arrays = [a[::2] for a in _family_inputs(rng, op, (42, n), dtype)]
        return _outputs(_call(op, arrays))
    if layout == "reversed-rows":  # x[::-1]
        arrays = [a[::-1] for a in _family_inputs(rng, op, (21, n), dtype)]
        return _outputs(_call(op, arrays))
    if layout == "reversed-axis":  # x[:, ::-1]: negative stride on the axis
        arrays = [a[:, ::-1] for a in _family_inputs(rng, op, (21, n), dtype)]
        return _outputs(_call(op, arrays))
    if layout == "axis-tuple":  # (4, n, 3, 5) over axes (1, 3)
        arrays = _family_inputs(rng, op, (4, n, 3, 5), dtype)
        return _outputs(_call(op, arrays, axis=(1, 3)))
    if layout == "axis-none":  # (n, 3, 2), every axis
        return _outputs(_call(op, _family_inputs(rng, op, (n, 3, 2), dtype), axis=None))
    if layout == "1d":
        return _outputs(_call(op, _family_inputs(rng, op, (n,), dtype)))
    if layout == "out":  # a separate out=
        arrays = _family_inputs(rng, op, (21, n), dtype)
        out = np.full((21,) if op == "logsumexp" else (21, n), 7.0, dtype)
        r = _call(op, arrays, out=out)
        assert r is out
        return _outputs(out)
    if layout == "in-place":  # out=x (backward: out=grad, then out=y, on copies)
        arrays = _family_inputs(rng, op, (21, n), dtype)
        if op in FORWARD:
            x = arrays[0].copy()
            return _outputs(_call(op, [x], out=x))
        g, y = arrays[0].copy(), arrays[1].copy()
        r1 = _call(op, [g, arrays[1]], out=g)
        r2 = _call(op, [arrays[0], y], out=y)
        return _outputs(r1, r2)
    if layout == "misaligned":  # data one byte off its element size (copied by the API)
        arrays = _family_inputs(rng, op, (9, n), dtype)
        moved = []
        for a in arrays:
            buf = np.zeros(a.nbytes + 1, np.uint8)
            m = buf[1:].view(a.dtype).reshape(a.shape)
            m[...] = a
            moved.append(m)
        return _outputs(_call(op, moved))
    raise ValueError(layout)


def _logsumexp_keepdims(name: str, dtype: np.dtype) -> list[Output]:
    x = _uniform(_rng(name), (6, 33, 10), -8.0, 8.0, dtype)
    out = np.zeros((6, 1, 10), dtype)
    return _outputs(
        fs.logsumexp(x, axis=1, keepdims=True),
        fs.logsumexp(x, axis=-1, keepdims=True),
        fs.logsumexp(x, axis=(0, 2), keepdims=True),
        fs.logsumexp(x, axis=None, keepdims=True),
        fs.logsumexp(x, axis=1, keepdims=True, out=out),
    )


def _family_mixed_dtypes(name: str, op: str) -> list[Output]:
    """grad float32, y float64 (computed in float64), and integer input (as float64)."""
    g, y = _family_inputs(_rng(name), op, (21, 33), F64)
    return _outputs(_call(op, [g.astype(F32), y]), _call(op, [np.floor(g * 4).astype(np.int32), y]))


def _integer_input(name: str, op: str) -> list[Output]:
    x = np.floor(_rng(name).random((9, 17)) * 20 - 10).astype(np.int32)
    return _outputs(_call(op, [x]), _call(op, [x.astype(np.int8)]))


def _long_rows(name: str, op: str, dtype: np.dtype, rows: int, n: int, kind: str) -> list[Output]:
    """Rows of at least 65,536 elements: a few (at most 8) are cut into segments."""
    rng = _rng(name)
    arrays = _family_inputs(rng, op, (rows, n), dtype)
    x = arrays[-1] if op != "log_softmax_backward" else arrays[0]
    seg = 1 << 15
    if kind == "special":  # special values in other segments of other rows
        x[0, seg + 5] = NAN
        if rows > 1:
            x[1, min(2 * seg + 3, n - 1)] = INF
        if rows > 2:
            x[2, : seg + 100] = -INF  # a whole segment of -inf, then finite
        if rows > 3:
            x[3, :] = -INF
        if rows > 4:
            x[4, n - 1] = 60.0
            x[4, 7] = -INF
        if rows > 5:
            x[5, seg - 1] = 1e30 if dtype != F16 else 60000.0
    elif kind == "x100":
        arrays = [a * dtype.type(100) if a is x else a for a in arrays]
    return _outputs(_call(op, arrays))


# ----------------------------------------------------------- cross_entropy --


def _ce(x: np.ndarray, y: np.ndarray, **kw: Any) -> Any:
    return fs.cross_entropy(x, y, **kw)


# option sets of cross_entropy (integer labels unless "probs" in the name)
CE_OPTIONS: dict[str, dict[str, Any]] = {
    "mean": {},
    "mean+grad": {"return_grad": True},
    "sum+grad": {"reduction": "sum", "return_grad": True},
    "none+grad": {"reduction": "none", "return_grad": True},
    "int32-labels+grad": {"return_grad": True},  # (the general path)
    "weight+grad": {"return_grad": True},
    "ignore+grad": {"return_grad": True},
    "ignore=3+none+grad": {"ignore_index": 3, "reduction": "none", "return_grad": True},
    "smoothing+grad": {"label_smoothing": 0.1, "return_grad": True},
    "z_loss+grad": {"z_loss": 1e-3, "return_grad": True},
    "softcap+grad": {"softcap": 5.0, "return_grad": True},
    "all+mean+grad": {
        "label_smoothing": 0.2,
        "z_loss": 1e-4,
        "softcap": 7.0,
        "return_grad": True,
    },
    "all-but-softcap+sum+grad": {
        "label_smoothing": 0.05,
        "z_loss": 2e-3,
        "reduction": "sum",
        "return_grad": True,
    },
    "grad_out=0.5+mean": {"return_grad": True, "grad_out": 0.5},
    "grad_out=array+none": {"reduction": "none", "return_grad": True},
    "inplace+grad": {"return_grad": True, "inplace_grad": True},
    "inplace+smoothing+none": {
        "reduction": "none",
        "label_smoothing": 0.1,
        "return_grad": True,
        "inplace_grad": True,
    },
    "smoothing": {"label_smoothing": 0.1},  # (the loss alone: no gradient)
    "weight+smoothing": {"label_smoothing": 0.1},
    "softcap+smoothing": {"label_smoothing": 0.1, "softcap": 5.0},
    "softcap+smoothing+grad": {"label_smoothing": 0.1, "softcap": 5.0, "return_grad": True},
    "probs": {},
    "probs+weight": {},
    "probs+weight+softcap": {"softcap": 5.0},
    "probs+weight+softcap+grad": {"softcap": 5.0, "return_grad": True},
    "probs+mean+grad": {"return_grad": True},
    "probs+weight+smoothing+none+grad": {
        "reduction": "none",
        "label_smoothing": 0.1,
        "return_grad": True,
    },
    "probs+z_loss+softcap+sum+grad": {
        "reduction": "sum",
        "z_loss": 1e-3,
        "softcap": 6.0,
        "return_grad": True,
    },
}


def _ce_run(
    rng: np.random.Generator, x: np.ndarray, axis: int, option: str, labels: np.ndarray | None
) -> list[Output]:
    """cross_entropy of x with `option` (labels: made here unless given)."""
    kw = dict(CE_OPTIONS[option])
    n = x.shape[axis]
    ex_shape = x.shape[:axis] + x.shape[axis + 1 :] if axis >= 0 else x.shape[:-1]
    probs = option.startswith("probs")
    if probs:
        y = _targets(rng, x.shape, x.dtype)
    else:
        y = _labels(rng, ex_shape, n) if labels is None else labels
    if "weight" in option or option.startswith("all"):
        kw["weight"] = _uniform(rng, (n,), 0.0, 2.0, F64)
    if "ignore" in option:
        flat = y.reshape(-1)  # (a view: y is contiguous)
        flat[::5] = kw.get("ignore_index", -100)
    if option == "int32-labels+grad":
        y = y.astype(np.int32)
    if option == "grad_out=array+none":
        kw["grad_out"] = _uniform(rng, ex_shape, -2.0, 2.0, F64)
    if kw.get("inplace_grad"):
        x = x.copy()
        loss, grad = _ce(x, y, axis=axis, **kw)
        assert grad is x
        return _outputs(loss, grad)
    return _outputs(_ce(x, y, axis=axis, **kw))


def _ce_rows(name: str, option: str, dtype: np.dtype, rows: int, n: int) -> list[Output]:
    rng = _rng(name)
    x = _uniform(rng, (rows, n), -8.0, 8.0, dtype)
    return _ce_run(rng, x, -1, option, None)


def _ce_special_matrix(
    rng: np.random.Generator, n: int, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """Special rows with labels here and there, then rows whose label's logit is at the
    maximum (confident: tiny losses) or far below it, on -inf, on a NaN, or ignored."""
    x = _special_rows(rng, n, dtype).astype(F64)
    y = (np.arange(len(x)) * 3 + 1) % n
    extra = []
    labels = []
    gaps = (0.0, -30.0, -100.0, -0.5, 59.0, 61.0, 70.0, 100.0, 700.0, 1e4, INF)
    base = np.floor(rng.random((2 * len(gaps), n)) * 1024) / 128 - 4  # exact in float16
    for i, gap in enumerate(gaps * 2):
        r = base[i]
        label = (i * 5 + 2) % n
        top = r.max()
        if dtype == F16 and gap in (700.0, 1e4):
            gap = 200.0
        r[label] = top - gap  # (INF: -inf at the label)
        if dtype == F16:
            r[label] = np.floor(r[label])  # (exact in float16)
        if i >= len(gaps) and gap < 0:  # the second time, just below a neighbour
            r[(label + 1) % n] = r[label] + 1.0
        extra.append(r)
        labels.append(label)
    x = np.concatenate([x, np.array(extra)])
    y = np.concatenate([y, np.array(labels)]).astype(np.int64)
    y[3::11] = -100  # ignored rows (some hold NaN or inf)
    return _cast(x, dtype), y


def _ce_special(name: str, option: str, dtype: np.dtype, n: int) -> list[Output]:
    rng = _rng(name)
    x, y = _ce_special_matrix(rng, n, dtype)
    if option.startswith("probs"):  # probabilities, 0 on some -inf logits
        t = _targets(rng, x.shape, dtype)
        t[::2][np.isneginf(x[::2])] = 0
        return _outputs(_ce(x, t, **CE_OPTIONS[option]))
    return _ce_run(rng, x, -1, option, y)


def _ce_kdim(name: str, option: str, dtype: np.dtype, shape: tuple[int, ...]) -> list[Output]:
    """(N, C, ...) with the classes on axis 1: column tiles (or gathered rows)."""
    rng = _rng(name)
    x = _uniform(rng, shape, -8.0, 8.0, dtype)
    return _ce_run(rng, x, 1, option, None)


def _ce_kdim_special(name: str, option: str, dtype: np.dtype, c: int, hw: int) -> list[Output]:
    """Special rows (and labels) spread over the lanes of (N, C, hw)."""
    rng = _rng(name)
    s, ys = _ce_special_matrix(rng, c, dtype)
    rows = (len(s) + hw - 1) // hw * hw
    x = _uniform(rng, (rows, c), -8.0, 8.0, dtype)
    y = _labels(rng, (rows,), c)
    x[: len(s)], y[: len(s)] = s, ys
    x = np.ascontiguousarray(x.reshape(-1, hw, c).transpose(0, 2, 1))
    return _ce_run(rng, x, 1, option, y.reshape(-1, hw))


def _ce_layout(name: str, option: str, dtype: np.dtype, layout: str, n: int) -> list[Output]:
    rng = _rng(name)
    if layout == "axis0":
        return _ce_run(rng, _uniform(rng, (n, 30), -8.0, 8.0, dtype), 0, option, None)
    if layout == "every-other-col":
        return _ce_run(rng, _uniform(rng, (21, 2 * n), -8.0, 8.0, dtype)[:, ::2], -1, option, None)
    if layout == "every-other-row":
        return _ce_run(rng, _uniform(rng, (42, n), -8.0, 8.0, dtype)[::2], -1, option, None)
    if layout == "reversed-rows":
        return _ce_run(rng, _uniform(rng, (21, n), -8.0, 8.0, dtype)[::-1], -1, option, None)
    if layout == "reversed-axis":
        return _ce_run(rng, _uniform(rng, (21, n), -8.0, 8.0, dtype)[:, ::-1], -1, option, None)
    if layout == "fortran":
        x = np.asfortranarray(_uniform(rng, (21, n), -8.0, 8.0, dtype))
        return _ce_run(rng, x, -1, option, None)
    if layout == "4d-strided":  # (3, 4, 3, n) of (6, 8, 6, n)
        x = _uniform(rng, (6, 8, 6, n), -8.0, 8.0, dtype)[::2, ::2, ::2]
        return _ce_run(rng, x, -1, option, None)
    if layout == "3d-axis-1":  # (3, n, 5, 2) with an ignore
        return _ce_run(rng, _uniform(rng, (3, n, 5, 2), -8.0, 8.0, dtype), 1, option, None)
    raise ValueError(layout)


def _ce_backward(
    name: str, dtype: np.dtype, variant: str, shape: tuple[int, ...], axis: int
) -> list[Output]:
    """cross_entropy_backward: with a made-up lse (max + 0.75), or without, or out=."""
    rng = _rng(name)
    x = _uniform(rng, shape, -8.0, 8.0, dtype)
    n = shape[axis]
    ex = shape[:axis] + shape[axis + 1 :] if axis >= 0 else shape[:-1]
    y = _labels(rng, ex, n)
    y.reshape(-1)[::7] = -100
    lse = x.max(axis=axis) + dtype.type(0.75)
    kw: dict[str, Any] = {"axis": axis}
    if "softcap" in variant:
        kw["softcap"] = 4.0
        lse = np.full(ex, 4.5, dtype)
    if "options" in variant:
        kw.update(weight=_uniform(rng, (n,), 0.0, 2.0, F64), label_smoothing=0.1, z_loss=1e-3)
    if "smoothing" in variant:
        kw.update(label_smoothing=0.1)
    if "weight" in variant:
        kw.update(weight=_uniform(rng, (n,), 0.0, 2.0, F64))
    if "none" in variant:
        kw.update(reduction="none", grad_out=_uniform(rng, ex, -2.0, 2.0, F64))
    if "probs" in variant:
        y = _targets(rng, shape, dtype)
    if "no-lse" not in variant:
        kw["lse"] = lse
    if "out=logits" in variant:
        xc = x.copy()
        r = fs.cross_entropy_backward(xc, y, out=xc, **kw)
        assert r is xc
        return _outputs(r)
    if "out" in variant:
        out = np.full(shape, 3.0, dtype)
        return _outputs(fs.cross_entropy_backward(x, y, out=out, **kw))
    return _outputs(fs.cross_entropy_backward(x, y, **kw))


def _ce_all_ignored(name: str, dtype: np.dtype) -> list[Output]:
    """A mean over no example (NaN), a sum over none (0), none of them: zero gradients."""
    x = _uniform(_rng(name), (5, 10), -8.0, 8.0, dtype)
    y = np.full(5, -100, np.int64)
    return _outputs(
        _ce(x, y, return_grad=True),
        _ce(x, y, reduction="sum", return_grad=True),
        _ce(x, y, reduction="none", return_grad=True, label_smoothing=0.1),
    )


def _big(name: str, op: str, dtype: np.dtype, shape: tuple[int, int], variant: str) -> list[Output]:
    """At least 8 MiB: the streaming-store ("from memory") paths."""
    rng = _rng(name)
    x = _uniform(rng, shape, -8.0, 8.0, dtype)
    if variant == "special":  # the special rows spread over the array
        s = _special_rows(rng, shape[1], dtype)
        step = shape[0] // len(s)
        x[: step * len(s) : step] = s
    if op == "cross_entropy":
        y = _labels(rng, shape[:1], shape[1])
        if variant == "options":
            y[::9] = -100
            kw: dict[str, Any] = {"label_smoothing": 0.1, "z_loss": 1e-4, "reduction": "sum"}
            return _outputs(fs.cross_entropy(x, y, return_grad=True, **kw))
        loss, grad = fs.cross_entropy(x, y, return_grad=True)
        return _outputs(loss, grad, fs.cross_entropy(x, y, return_grad=True, inplace_grad=True))
    if variant == "in-place":
        return _outputs(_call(op, [x], out=x))
    return _outputs(_call(op, [x]))


def _empty(name: str, op: str, dtype: np.dtype) -> list[Output]:
    """Empty arrays: an empty axis (logsumexp: -inf), no rows, no columns."""
    rng = _rng(name)
    if op == "cross_entropy":
        x = _uniform(rng, (0, 10), -8.0, 8.0, dtype)
        y = np.zeros(0, np.int64)
        t = _uniform(rng, (0, 10), 0.0, 1.0, dtype)
        return _outputs(
            fs.cross_entropy(x, y, return_grad=True),
            fs.cross_entropy(x, y, reduction="sum", return_grad=True),
            fs.cross_entropy(x, t, reduction="none", return_grad=True),
            fs.cross_entropy(
                _uniform(rng, (2, 4, 0), -8.0, 8.0, dtype), np.zeros((2, 0), np.int64), axis=1
            ),
        )
    out: list[Output] = []
    for shape, axis in (((5, 0), -1), ((0, 7), -1), ((0, 7), 0), ((3, 0, 4), 1), ((3, 4, 0), 1)):
        out += _outputs(_call(op, _family_inputs(rng, op, shape, dtype), axis=axis))
    return out


# ---------------------------------------------------------------- the list --


def _s(shape: tuple[int, ...]) -> str:
    return "(" + ",".join(map(str, shape)) + ")"


def _build() -> list[Case]:
    cases: list[Case] = []

    def add(name: str, fn: Callable[..., list[Output]], *args: Any) -> None:
        cases.append(Case(name, partial(fn, name, *args)))

    def add_ce_rows(dn: str, dt: Any, option: str, rows: int, n: int) -> None:
        """cross_entropy over `rows` contiguous rows of n logits, named by what it covers."""
        add(f"cross_entropy/{dn}/{option}/rows/n={n}/rows={rows}", _ce_rows, option, dt, rows, n)

    def add_ce_kdim(dn: str, dt: Any, option: str, shape: tuple[int, ...]) -> None:
        """cross_entropy of (N, C, d1..dk) logits over axis 1, named by what it covers."""
        add(f"cross_entropy/{dn}/K-d/{_s(shape)}/axis=1/{option}", _ce_kdim, option, dt, shape)

    dtypes = {"float32": F32, "float64": F64}
    # the softmax family: rows of every length, special values, layouts
    for op in FAMILY:
        for dn, dt in dtypes.items():
            for n in LENGTHS:
                rows = 37 if n <= 1025 else 9
                add(f"{op}/{dn}/rows/n={n}/rows={rows}", _family_rows, op, dt, rows, n)
                if n in MANY_ROWS:
                    add(f"{op}/{dn}/rows/n={n}/rows=70", _family_rows, op, dt, 70, n)
            for n in (1, 5000, 9000, 20000):
                add(f"{op}/{dn}/rows/n={n}/rows=3", _family_rows, op, dt, 3, n)
            add(f"{op}/{dn}/rows/n=17/rows=1000", _family_rows, op, dt, 1000, 17)
            add(f"{op}/{dn}/rows/n=1000/rows=200", _family_rows, op, dt, 200, 1000)
            for n in (*SOME_LENGTHS, 8193, 9000):
                add(f"{op}/{dn}/special/n={n}", _family_special, op, dt, n)
            for n in (1, 2, 7, 16, 31, 32, 33, 64, 65, 100, 300):
                add(f"{op}/{dn}/cols/(3,n,37)/axis=1/n={n}", _family_layout, op, dt, "cols", n)
            for n in (1, 3, 31, 33, 65, 128):
                add(
                    f"{op}/{dn}/cols-special/(3,n,19)/axis=1/n={n}",
                    _family_layout,
                    op,
                    dt,
                    "cols-special",
                    n,
                )
            for layout, lengths in (
                ("axis0", (1, 9, 64, 200)),
                ("axis0-3d", (3, 40)),
                ("axis1-rows-strided", (5, 70)),
                ("4d-strided", (3, 40, 2000)),
                ("fortran", (8, 33, 129)),
                ("every-other-col", (2, 17, 100, 1000)),
                ("every-other-row", (5, 48, 300)),
                ("reversed-rows", (3, 16, 100, 2000)),
                ("reversed-axis", (3, 16, 100, 2000)),
                ("axis-tuple", (3, 20)),
                ("axis-none", (1, 7, 100)),
                ("1d", (1, 10, 1000, 100_001)),
                ("out", (9, 64, 1000)),
                ("in-place", (9, 64, 1000, 9000)),
                ("misaligned", (10, 300)),
            ):
                if layout == "in-place" and op == "logsumexp":  # (its out has another shape)
                    continue
                for n in lengths:
                    add(f"{op}/{dn}/{layout}/n={n}", _family_layout, op, dt, layout, n)
            # a few long rows: segments (at most 8 rows of >= 65,536), and just past that
            if op in FORWARD:
                for rows, n in ((2, 70000), (1, 300_000), (8, 65536), (3, 100_000)):
                    for kind in ("random", "special", "x100"):
                        add(
                            f"{op}/{dn}/segments/n={n}/rows={rows}/{kind}",
                            _long_rows,
                            op,
                            dt,
                            rows,
                            n,
                            kind,
                        )
                add(
                    f"{op}/{dn}/not-segments/n=65536/rows=9", _long_rows, op, dt, 9, 65536, "random"
                )
                add(
                    f"{op}/{dn}/not-segments/n=65535/rows=2", _long_rows, op, dt, 2, 65535, "random"
                )
            else:
                for rows, n in ((2, 70000), (1, 300_000)):
                    for kind in ("random", "special"):
                        add(
                            f"{op}/{dn}/long/n={n}/rows={rows}/{kind}",
                            _long_rows,
                            op,
                            dt,
                            rows,
                            n,
                            kind,
                        )
        for n in (1, 3, 16, 48, 100, 1000):
            add(f"{op}/float16/rows/n={n}/rows=37", _family_rows, op, F16, 37, n)
        for n in (3, 33, 200):
            add(f"{op}/float16/special/n={n}", _family_special, op, F16, n)
        add(f"{op}/float16/cols/(3,n,37)/axis=1/n=33", _family_layout, op, F16, "cols", 33)
        add(f"{op}/float16/out/n=64", _family_layout, op, F16, "out", 64)
        add(
            f"{op}/float16/segments/n=70000/rows=2/special",
            _long_rows,
            op,
            F16,
            2,
            70000,
            "special",
        )
        if op in BACKWARD:
            add(f"{op}/mixed-float32-float64-int32/rows/n=33", _family_mixed_dtypes, op)
        else:
            add(f"{op}/int32-int8/rows/n=17", _integer_input, op)
    for dn, dt in dtypes.items():
        add(f"logsumexp/{dn}/keepdims/(6,33,10)", _logsumexp_keepdims, dt)

    # cross_entropy: rows of every length (the fast path and probabilities), options,
    # special values, K-d (classes on axis 1), layouts, the backward
    for dn, dt in dtypes.items():
        for n in LENGTHS:
            rows = 37 if n <= 1025 else 9
            for option in ("mean+grad", "probs+mean+grad"):
                add_ce_rows(dn, dt, option, rows, n)
            if n in MANY_ROWS:
                add_ce_rows(dn, dt, "mean+grad", 70, n)
        for n in (9000, 20000, 70000):
            add_ce_rows(dn, dt, "mean+grad", 2, n)
            add_ce_rows(dn, dt, "all+mean+grad", 2, n)
        add_ce_rows(dn, dt, "mean+grad", 1000, 10)
        add(f"cross_entropy/{dn}/sum/rows/n=1000/rows=200", _ce_rows, "sum+grad", dt, 200, 1000)
        for option in CE_OPTIONS:
            if option in ("mean+grad", "probs+mean+grad"):  # (every length, above)
                continue
            for n in SOME_LENGTHS:
                add_ce_rows(dn, dt, option, 37 if n <= 1025 else 9, n)
        for option in (
            "mean+grad",
            "none+grad",
            "all-but-softcap+sum+grad",
            "softcap+grad",
            "probs+mean+grad",
        ):
            for n in SOME_LENGTHS:
                add(f"cross_entropy/{dn}/special/{option}/n={n}", _ce_special, option, dt, n)
        for c in (1, 3, 10, 21):
            for shape in ((2, c, 5, 7), (3, c, 9, 13), (2, c, 16)):
                for option in (
                    "mean",
                    "mean+grad",
                    "ignore+grad",
                    "weight+grad",
                    "none+grad",
                    "probs+mean+grad",
                ):
                    add_ce_kdim(dn, dt, option, shape)
        for shape in ((2, 21, 40, 50), (1, 300, 7, 11), (2, 4097, 3)):
            for option in (
                "mean+grad",
                "all-but-softcap+sum+grad",
                "probs+weight+smoothing+none+grad",
            ):
                add_ce_kdim(dn, dt, option, shape)
        for shape in ((2, 10, 5, 7), (2, 21, 33)):
            for option in (
                "softcap+grad",
                "all+mean+grad",
                "grad_out=array+none",
                "grad_out=0.5+mean",
                "inplace+grad",
                "inplace+smoothing+none",
                "probs+z_loss+softcap+sum+grad",
                "int32-labels+grad",
                "smoothing+grad",
                "z_loss+grad",
                "ignore=3+none+grad",
            ):
                add_ce_kdim(dn, dt, option, shape)
        for c, hw in ((3, 35), (10, 117), (21, 16), (64, 20)):
            for option in ("mean+grad", "none+grad", "all-but-softcap+sum+grad", "probs+mean+grad"):
                add(
                    f"cross_entropy/{dn}/K-d-special/C={c}/hw={hw}/{option}",
                    _ce_kdim_special,
                    option,
                    dt,
                    c,
                    hw,
                )
        for layout, lengths in (
            ("axis0", (1, 10, 200)),
            ("every-other-col", (3, 33, 1000)),
            ("every-other-row", (5, 100)),
            ("reversed-rows", (16, 129)),
            ("reversed-axis", (16, 129, 2000)),
            ("fortran", (10, 300)),
            ("3d-axis-1", (4, 40)),
            ("4d-strided", (3, 40, 2000)),
        ):
            for n in lengths:
                for option in ("mean+grad", "all+mean+grad", "probs+mean+grad", "none+grad"):
                    add(
                        f"cross_entropy/{dn}/{layout}/n={n}/{option}",
                        _ce_layout,
                        option,
                        dt,
                        layout,
                        n,
                    )
        add(f"cross_entropy/{dn}/all-ignored", _ce_all_ignored, dt)
        for variant in (
            "lse",
            "no-lse",
            "lse+options",
            "lse+softcap",
            "no-lse+softcap",
            "lse+none",
            "lse+probs",
            "lse+probs+options+none",
            "lse+smoothing",
            "lse+softcap+smoothing",
            "lse+probs+weight+softcap",
            "lse+out",
            "no-lse+out=logits",
        ):
            for bshape, axis in (
                ((37, 33), -1),
                ((9, 1000), -1),
                ((2, 5000), -1),
                ((2, 10, 5, 7), 1),
            ):
                add(
                    f"cross_entropy_backward/{dn}/{variant}/{_s(bshape)}/axis={axis}",
                    _ce_backward,
                    dt,
                    variant,
                    bshape,
                    axis,
                )
    for n in (3, 10, 100, 1000):
        for option in ("mean+grad", "all-but-softcap+sum+grad", "probs+mean+grad", "softcap+grad"):
            add_ce_rows("float16", F16, option, 37, n)
    for option in ("mean+grad", "none+grad"):
        add(f"cross_entropy/float16/special/{option}/n=33", _ce_special, option, F16, 33)
    add_ce_kdim("float16", F16, "mean+grad", (2, 10, 5, 7))
    add(
        "cross_entropy_backward/float16/lse/(37,33)/axis=-1", _ce_backward, F16, "lse", (37, 33), -1
    )

    # at least 8 MiB: the streaming ("from memory") paths
    for op, dt, size, variant in (
        ("softmax", F32, (2100, 1024), "random"),
        ("log_softmax", F32, (2100, 1024), "random"),
        ("logsumexp", F32, (2100, 1024), "random"),
        ("softmax", F32, (2100, 1024), "special"),
        ("log_softmax", F32, (2100, 1024), "special"),
        ("softmax", F32, (4200, 512), "random"),
        ("log_softmax", F32, (4200, 512), "special"),
        ("softmax", F32, (300, 9000), "special"),
        ("log_softmax", F32, (300, 9000), "special"),
        ("softmax", F32, (140_000, 16), "random"),
        ("log_softmax", F32, (140_000, 16), "special"),
        ("softmax", F64, (1100, 1024), "special"),
        ("log_softmax", F64, (1100, 1024), "special"),
        ("softmax", F32, (2100, 1024), "in-place"),
        ("log_softmax", F64, (1100, 1024), "in-place"),
        ("cross_entropy", F32, (2100, 1024), "grad+in-place"),
        ("cross_entropy", F64, (1100, 1024), "grad+in-place"),
        ("cross_entropy", F32, (2100, 1024), "options"),
    ):
        add(f"{op}/{dt}/big/{_s(size)}/{variant}", _big, op, dt, size, variant)
    for op in (*FAMILY, "cross_entropy"):
        for dn, dt in dtypes.items():
            add(f"{op}/{dn}/empty", _empty, op, dt)

    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    return cases


CASES: list[Case] = _build()


# ------------------------------------------------------------ command line --


def usable_targets() -> list[str]:
    return [name for name, usable in fs.simd_targets().items() if usable]


def _run_all(target: str, cases: Sequence[Case]) -> dict[str, list[Output]]:
    previous = fs.simd_target()
    _core.set_target(target)
    try:
        return {c.name: c.compute() for c in cases}
    finally:
        _core.set_target(previous)


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def record(path: Path = RECORDING) -> None:
    """Compute every case twice on every usable target and write the hashes to path.

    The file is JSON: the metadata, then ``"cases"``, one line per case,
    ``{target: entry}`` (so that a diff names the cases that changed).
    """
    info = _core.build_info()
    hashes: dict[str, dict[str, str]] = {}
    for t in usable_targets():
        first = {k: entry(v) for k, v in _run_all(t, CASES).items()}
        second = {k: entry(v) for k, v in _run_all(t, CASES).items()}
        unstable = [k for k in first if first[k] != second[k]]
        if unstable:
            raise SystemExit(f"not deterministic on {t}: {unstable}")
        hashes[t] = first
        print(f"{t}: {len(first)} cases", file=sys.stderr)
    meta = {
        "about": "digest() of each case's outputs (tests/recorded_cases.py), per SIMD target",
        "machine": platform.machine(),
        "recorded_from": _commit(),
        "fastsoftmax": fs.__version__,
        "compiler": f"{info['compiler']} ({info['build_type']})",
        "target_flags": info["target_flags"].strip(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": fs.get_num_threads(),
        "targets": list(hashes),
    }
    lines = [
        f"  {json.dumps(c.name)}: {json.dumps({t: h[c.name] for t, h in hashes.items()})}"
        for c in CASES
    ]
    text = json.dumps(meta, indent=1)[:-2] + ',\n "cases": {\n' + ",\n".join(lines) + "\n }\n}\n"
    assert json.loads(text)["targets"] == list(hashes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}", file=sys.stderr)


def load_recording(path: Path = RECORDING) -> dict[str, Any]:
    """The recording: metadata, ``targets`` (a list) and ``cases`` ({name: {target: hash}})."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def save_npz(directory: Path) -> None:
    """Every output of every case, per target: directory/<target>.npz, keys '<case>#<i>'."""
    directory.mkdir(parents=True, exist_ok=True)
    for t in usable_targets():
        arrays = {
            f"{name}#{i}": np.asarray(o)
            for name, outs in _run_all(t, CASES).items()
            for i, o in enumerate(outs)
        }
        np.savez_compressed(directory / f"{t}.npz", **arrays)  # type: ignore[arg-type]
        print(f"wrote {directory / f'{t}.npz'} ({len(arrays)} arrays)", file=sys.stderr)


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many floats lie between a and b (as float64: exact below 2^53)."""
    mask = (1 << (8 * a.itemsize - 1)) - 1
    i = a.view(f"i{a.itemsize}").astype(np.int64) & mask
    j = b.view(f"i{b.itemsize}").astype(np.int64) & mask
    same_sign = np.signbit(a) == np.signbit(b)
    with np.errstate(over="ignore"):  # (the other branch of the where)
        return np.where(same_sign, np.abs(i - j), i.astype(np.float64) + j.astype(np.float64))


def difference(got: np.ndarray, want: np.ndarray) -> str:
    """How two outputs differ, in words ('' when bitwise equal)."""
    if got.dtype != want.dtype or got.shape != want.shape:
        return f"got {got.dtype}{list(got.shape)}, recorded {want.dtype}{list(want.shape)}"
    g, w = np.ascontiguousarray(got).reshape(-1), np.ascontiguousarray(want).reshape(-1)
    if g.tobytes() == w.tobytes():
        return ""
    if g.dtype.kind != "f":
        return f"{int(np.count_nonzero(g != w))} of {g.size} differ"
    bits = g.view(f"u{g.itemsize}") != w.view(f"u{w.itemsize}")
    gn, wn = np.isnan(g), np.isnan(w)
    nan_bits = int(np.count_nonzero(bits & gn & wn))  # NaN on both sides, other bits
    nan_mismatch = int(np.count_nonzero(gn != wn))
    inf_mismatch = int(np.count_nonzero(np.isinf(g) != np.isinf(w)))
    both = bits & ~gn & ~wn & np.isfinite(g) & np.isfinite(w)
    ulp = _ulps(g[both], w[both]).max() if both.any() else 0
    with np.errstate(over="ignore", invalid="ignore"):
        absdiff = np.abs(g[both].astype(np.float64) - w[both]).max() if both.any() else 0.0
    first = int(np.flatnonzero(bits)[0])
    where = tuple(int(k) for k in np.unravel_index(first, got.shape)) if got.ndim else ()
    return (
        f"{int(np.count_nonzero(bits))} of {g.size} differ (finite ones: up to {ulp:.0f} ulp, "
        f"{absdiff:.3g} apart; only NaN sign/payload: {nan_bits}; NaN mismatches: "
        f"{nan_mismatch}; inf mismatches: {inf_mismatch}); the first at {where}: "
        f"got {float(g[first])!r}, recorded {float(w[first])!r}"
    )


def compare(directory: Path, only: str | None = None) -> tuple[int, int]:
    """Compare this build with directory/<target>.npz (from --save-npz), printing each
    differing case; (cases whose values differ, cases where only NaNs' bits do)."""
    values = nan_bits = 0
    cases = [c for c in CASES if only is None or only in c.name]
    for t in usable_targets():
        path = directory / f"{t}.npz"
        if not path.exists():
            print(f"{t}: no {path}, skipped")
            continue
        with np.load(path) as saved:
            for name, outs in _run_all(t, cases).items():
                keys = [f"{name}#{i}" for i in range(len(outs))]
                if any(k not in saved for k in keys) or f"{name}#{len(outs)}" in saved:
                    values += 1
                    print(f"{t} {name}: {len(outs)} outputs, not those saved")
                    continue
                want = [saved[k] for k in keys]
                lines = [
                    f"  #{i}: {d}"
                    for i, (o, w) in enumerate(zip(outs, want))
                    if (d := difference(np.asarray(o), w))
                ]
                if not lines:
                    continue
                if digest(outs, nan_bits=False) == digest(want, nan_bits=False):
                    nan_bits += 1
                    print(f"{t} {name} (only the sign or payload bits of NaNs):")
                else:
                    values += 1
                    print(f"{t} {name}:")
                print("\n".join(lines))
        print(f"{t}: {len(cases)} cases compared", file=sys.stderr)
    return values, nan_bits


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--record", action="store_true", help=f"(re)write {RECORDING}")
    p.add_argument(
        "--save-npz", type=Path, metavar="DIR", help="save every output to DIR/<target>.npz"
    )
    p.add_argument("--compare", type=Path, metavar="DIR", help="compare with DIR/<target>.npz")
    p.add_argument("--case", metavar="SUBSTRING", help="with --compare: only these cases")
    p.add_argument("--list", action="store_true", help="print the case names")
    a = p.parse_args(argv)
    if a.list:
        print("\n".join(c.name for c in CASES))
    if a.record:
        record()
    if a.save_npz:
        save_npz(a.save_npz)
    if a.compare:
        values, nan_bits = compare(a.compare, a.case)
        print(f"{values} case(s) with other values, {nan_bits} with only other NaN bits")
        return 1 if values else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

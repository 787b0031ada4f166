"""The neon and baseline SIMD targets, built for AArch64 and run under qemu-aarch64.

The x86 host cannot run NEON code. This script cross-compiles kernel_check.cpp (next to it)
with the C++ core and the per-target code of the neon and baseline targets, statically (qemu
then needs no AArch64 libraries); writes a file of cases (operation, dtype, shape, axis,
options, and each operand's memory, offset and strides); runs the program under
qemu-aarch64 once per target (FASTSOFTMAX_SIMD; the program must name that target as the
active one); and holds every output to the bounds the pytest suite holds the x86 targets to,
with the suite's own helpers and float64 / np.longdouble references (tests/reference.py and
the test_*.py files named at each check). Memory around an output's view must come back
as it was sent.

The same cases run first on the host's own fastsoftmax (its baseline target, through _core
with the same operands) and must pass the same checks there, so a wrong case or check shows
on the host too. Results are not promised bitwise equal across targets (the recorded outputs
are per target), so how many cases give the host baseline's values is reported, not
asserted.

Covered, for each target: softmax, log_softmax, logsumexp and both gradients in float32 and
float64, float16 and bfloat16 (which the C++ API takes natively): rows of 1 to 17, 31, 33,
48, 49, 64, 65, 96, 97, 128, 129, 1000, 1025, 4099, 9000, 32000 and 128256 classes (groups
of rows, rows past L1, segments), an array past 8 MiB (the streaming paths), columns (axis 0
of 2-d, axis 1 of 3-d), gathered rows of negative-stride views, Fortran order, out= views
and in place, temperature; NaN and +-inf at the ends, in vector tails and at block edges,
+-1e30, tiny and huge finite logits, all-equal and all -inf rows, one-element and empty
axes; where= masks (full, (1, C), (N, 1), rows with nothing included, NaN and inf under
the mask; the mask read in the kernels' passes with bytes_nonzero: the gradients at every
length, the register tiles, softmax's pipelined rows from 33 classes, log_softmax's and
logsumexp's groups and rows, and softmax from 8192 classes) bit for bit against the plain
call on the filled input (softmax from 8192 classes: within 4 ulp) and against the wide
reference; the fused cross-entropy with integer labels and probabilities, ignore_index,
class weights, label smoothing, the three reductions, scalar and per-example grad_out,
z-loss, softcap, temperature, a saved logsumexp, the per-example logsumexp out, the gradient
in place, classes on a strided axis, NaN and infinities; and the vector exp, log, log1p and
tanh (test_vecmath's ulp bounds, thresholds and special values).

    python tests/native/neon_check.py [--build-dir DIR] [--jobs N] [--only TEXT]

(.ci/neon installs the cross compiler and qemu, then runs this with build/neon-check.)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # the pytest suite's references and bounds
import fastsoftmax as fs
from fastsoftmax import _core
from reference import (
    LOG_ATOL,
    SOFTMAX_RTOL,
    assert_log_close,
    assert_softmax_close,
    check_like_scipy,
    describe_worst,
    make_logits,
    ref_log_softmax_backward,
    ref_logsumexp,
    ref_softmax_backward,
    ulp_error,
    widen,
)
from test_backward import assert_vjp_close
from test_cross_entropy import (
    TOL,
    assert_close,
    options_alone,
    random_labels,
    random_options,
    ref_cross_entropy,
)
from test_edge_cases import SMALL_TABLE, special_rows
from test_half_precision import CE_OPTIONS, assert_ulps
from test_softmax import SOFTMAX_TINY
from test_temperature import assert_backward_close, assert_probabilities_close
from test_temperature import reference as reference_at
from test_vecmath import (
    WIDE,
    assert_ulp,
    exact_exp,
    exact_log,
    exp_inputs,
    log1p_inputs,
    log_inputs,
    tanh_inputs,
)
from test_where import make_mask, reads_mask_in_passes, special_masked_rows
from test_where import reference as masked_reference
from test_where import reference_gradient as masked_reference_gradient

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
F16, BF16 = np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)
HALVES = (F16, BF16)
INF, NAN = np.inf, np.nan

# The case file's numbers (kernel_check.cpp).
DTYPES = {F32: 0, F64: 1, BF16: 2, F16: 3}
OPS = {
    "softmax": 0,
    "log_softmax": 1,
    "logsumexp": 2,
    "softmax_backward": 3,
    "log_softmax_backward": 4,
    "cross_entropy": 5,
    "exp": 6,
    "log": 7,
    "log1p": 8,
    "tanh": 9,
}
MATH = {"exp": "vexp", "log": "vlog", "log1p": "vlog1p", "tanh": "vtanh"}  # (_core's names)
REDUCTIONS = {"none": 0, "sum": 1, "mean": 2}
X, Y, OUT, WHERE, LABELS, TARGET, LSE, WEIGHT, GRAD_SCALE, LOSS_ROWS, LSE_ROWS = range(11)
OUTPUTS = (OUT, LOSS_ROWS, LSE_ROWS)
OWN, FRESH = 0xFFFFFFFF, 0xFFFFFFFE  # an operand's own bytes follow; an output's poison
POISON = 0x5A  # a fresh output's bytes: no kernel's answer (1.5e16 in float32)
FORWARD = ("softmax", "log_softmax", "logsumexp")
BACKWARD = {"softmax_backward": "softmax", "log_softmax_backward": "log_softmax"}

CXX_FLAGS = [
    "-std=c++17",
    "-O3",
    "-DNDEBUG",
    "-Wall",
    "-Wextra",
    "-Wpedantic",
    "-Werror",
    "-ffp-contract=off",
    "--param=inline-unit-growth=100",  # (cpp/CMakeLists.txt: the targets' inlining budget)
]
TARGETS = ("neon", "baseline")


def compute_dtype(dtype: np.dtype) -> np.dtype:
    return F32 if dtype in HALVES else dtype


# ------------------------------------------------------------------------ the cases --


@dataclass
class Operand:
    """An operand as the C++ API sees it: memory (1-d), an offset and strides in elements.
    `reduced` is the axis the view lacks (per-example operands, logsumexp's out): its
    stride is 0 in `strides`, as the bindings insert it."""

    memory: np.ndarray
    offset: int
    strides: tuple[int, ...]
    shape: tuple[int, ...]
    shares: int | None = None
    reduced: int | None = None
    fresh: int | None = None  # the size in bytes of a poisoned output (memory is then empty)

    def initial(self) -> np.ndarray:
        """The memory as sent: its own, or POISON bytes."""
        if self.fresh is None:
            return self.memory
        return np.full(self.fresh, POISON, np.uint8).view(self.memory.dtype)

    def view(self, memory: np.ndarray) -> np.ndarray:
        """This operand's view into `memory` (this one's, or a copy of it)."""
        strides = [s for d, s in enumerate(self.strides) if d != self.reduced]
        item = memory.dtype.itemsize
        return np.ndarray(
            self.shape,
            memory.dtype,
            buffer=memory.view(np.uint8),
            offset=self.offset * item,
            strides=[s * item for s in strides],
        )


def operand(
    view: np.ndarray, base: np.ndarray | None = None, reduced: int | None = None
) -> Operand:
    """`view` as it lies in `base` (C-contiguous; None: a contiguous copy of view alone)."""
    if base is None:  # (np.ascontiguousarray would make a 0-d array 1-d)
        view = base = view if view.flags.c_contiguous else view.copy(order="C")
    assert base.flags.c_contiguous
    memory = base.reshape(-1)
    item = view.dtype.itemsize
    start = view.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    offset = start // item if view.size else 0
    strides = tuple(s // item for s in view.strides)
    if reduced is not None:
        strides = (*strides[:reduced], 0, *strides[reduced:])
    return Operand(memory, offset, strides, view.shape, reduced=reduced)


def poison(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An array whose every byte is POISON: no check accepts it where a kernel writes nothing."""
    size = int(np.prod(shape, dtype=np.int64))
    return np.full(size * dtype.itemsize, POISON, np.uint8).view(dtype).reshape(shape)


def fresh(view: np.ndarray, base: np.ndarray | None = None, reduced: int | None = None) -> Operand:
    """An output operand in poisoned memory (sent as its size alone)."""
    o = operand(view, base, reduced)
    o.fresh, o.memory = o.memory.nbytes, o.memory[:0]
    return o


Lookup = Callable[[str], "Result"]  # another case's result on the same target
Check = Callable[["Result", Lookup], None]


@dataclass
class Case:
    name: str
    op: str
    dtype: np.dtype
    shape: tuple[int, ...]
    axis: int
    operands: dict[int, Operand]
    check: Check
    temperature: float = 1.0
    smoothing: float = 0.0
    z_loss: float = 0.0
    softcap: float = 0.0
    ignore_index: int = -100
    reduction: str = "mean"
    loss_dtype: np.dtype = F32

    def encode(self) -> bytes:
        parts = [
            struct.pack("<4I", OPS[self.op], DTYPES[self.dtype], len(self.shape), self.axis),
            struct.pack(f"<{len(self.shape)}Q", *self.shape),
            struct.pack(
                "<4dqI",
                self.temperature,
                self.smoothing,
                self.z_loss,
                self.softcap,
                self.ignore_index,
                REDUCTIONS[self.reduction],
            ),
            struct.pack("<I", len(self.operands)),
        ]
        for role, o in self.operands.items():
            memory = o.shares if o.shares is not None else OWN if o.fresh is None else FRESH
            size = o.memory.nbytes if o.fresh is None else o.fresh
            parts.append(struct.pack("<IIQqI", role, memory, size, o.offset, len(o.strides)))
            parts.append(struct.pack(f"<{len(o.strides)}q", *o.strides))
            if memory == OWN:
                parts.append(o.memory.tobytes())
        return b"".join(parts)


@dataclass
class Result:
    """A case's outputs on one target: the reduced loss and the memory of each output."""

    case: Case
    error: str | None
    value: float
    memory: dict[int, np.ndarray] = field(default_factory=dict)

    def view(self, role: int) -> np.ndarray:
        return self.case.operands[role].view(self.memory[role])

    @property
    def out(self) -> np.ndarray:
        return self.view(OUT)

    @property
    def loss(self) -> Any:
        """The cross-entropy's loss as the Python API returns it (in the loss dtype)."""
        with np.errstate(over="ignore"):
            if self.case.reduction == "none":
                rows = self.memory[LOSS_ROWS].reshape(self.case.operands[LOSS_ROWS].shape)
                return rows.astype(self.case.loss_dtype)
            return self.case.loss_dtype.type(self.value)


def owner(case: Case, role: int) -> int:
    shares = case.operands[role].shares
    return role if shares is None else shares


# ---- the family


def placed(a: np.ndarray, reduced: int | None = None) -> Operand:
    """An array as it lies in the array that owns its memory: a strided, reversed or
    Fortran-ordered view keeps its strides (a contiguous copy where that fails)."""
    owner = a
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    if owner.flags.f_contiguous and not owner.flags.c_contiguous:
        owner = owner.T  # (the same memory, C-contiguous)
    if a.flags.c_contiguous or not owner.flags.c_contiguous:
        return operand(a, reduced=reduced)
    return operand(a, owner, reduced)


def family(
    name: str,
    op: str,
    x: np.ndarray,
    check: Check,
    *,
    axis: int = -1,
    y: np.ndarray | None = None,
    temperature: float = 1.0,
    where: Any = None,
    out: Any = None,
) -> Case:
    """One call of op on x (and y), each sent as it lies in memory (placed). out: None (a
    poisoned contiguous array), a role (X or Y: in place) or a (view, base) pair of a
    poisoned array."""
    xo = placed(x)
    shape = x.shape
    ax = axis % len(shape)
    ops = {X: xo}
    if y is not None:
        ops[Y] = placed(y)
    reduced = ax if op == "logsumexp" else None
    if isinstance(out, int):
        o = ops[out]
        ops[OUT] = Operand(o.memory, o.offset, o.strides, shape, shares=out)
    elif out is not None:
        view, base = out
        ops[OUT] = fresh(view, base, reduced)
    else:
        out_shape = shape[:ax] + shape[ax + 1 :] if reduced is not None else shape
        ops[OUT] = fresh(poison(out_shape, x.dtype), reduced=reduced)
    if where is not None:
        ops[WHERE] = placed(np.broadcast_to(np.asarray(where, bool), shape).view(np.uint8))
    return Case(name, op, x.dtype, shape, ax, ops, check, temperature=temperature)


def forward_check(op: str, x: np.ndarray, axis: int = -1, t: float = 1.0) -> Check:
    """Finite logits: test_softmax's / test_logsumexp's bounds (test_temperature's at T != 1,
    test_half_precision's 1 ulp for float16 and bfloat16)."""
    dtype = x.dtype

    def ref() -> np.ndarray:
        return reference_at(x, t, axis)[op]

    def check(res: Result, _: Lookup) -> None:
        got = res.out
        if dtype in HALVES:
            assert_ulps(got, ref(), dtype, op)
        elif op != "softmax":
            assert_log_close(got, ref(), LOG_ATOL[dtype.type])
        elif t != 1.0:
            assert_probabilities_close(got, ref(), dtype.type)
        else:
            assert_softmax_close(got, ref(), SOFTMAX_RTOL[dtype.type], SOFTMAX_TINY[dtype.type])
            if dtype == F32:  # test_softmax: at most 2 ulp worse than NumPy's float32 formula
                e = np.exp(x - x.max(axis=axis, keepdims=True))
                naive = e / e.sum(axis=axis, keepdims=True)
                excess = ulp_error(got, ref(), F32) - ulp_error(naive, ref(), F32)
                assert (excess <= 2).all(), "more than 2 ulp worse than NumPy; " + describe_worst(
                    excess, ("got", got), ("ref", ref())
                )

    return check


def backward_check(
    op: str, grad: np.ndarray, y: np.ndarray, axis: int = -1, t: float = 1.0
) -> Check:
    """test_backward's 8 eps x condition (test_temperature's 10 / T at T != 1; half
    precision: test_half_precision's 1 ulp or the float32 terms' rounding)."""
    which = BACKWARD[op]
    dtype = grad.dtype

    def check(res: Result, _: Lookup) -> None:
        got = res.out
        if dtype in HALVES:
            reference = ref_softmax_backward if which == "softmax" else ref_log_softmax_backward
            ref = reference(grad, y, axis) / t
            atol = 2e-7 * float(np.max(np.abs(grad.astype(np.float64)))) / t
            if which == "log_softmax":
                atol *= grad.shape[axis]
            assert_ulps(got, ref, dtype, op, atol)
        elif t == 1.0:
            assert_vjp_close(which, got, grad, y, axis, dtype.type)
        else:
            assert_backward_close(which, got, grad, y, axis, dtype.type, t)

    return check


def grad_and_y(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    dtype: np.dtype,
    op: str,
    axis: int = -1,
    t: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(grad, y), y the forward op's output of random logits (test_backward's make_case)."""
    y = reference_at(rng.standard_normal(shape) * 3, t, axis)[BACKWARD[op]]
    return rng.standard_normal(shape).astype(dtype), y.astype(dtype)


def seeded(group: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(group.encode()))


def family_ops(
    name: str,
    x: np.ndarray,
    rng: np.random.Generator,
    *,
    axis: int = -1,
    t: float = 1.0,
    view: Callable[[np.ndarray], np.ndarray] | None = None,
    ops: tuple[str, ...] = (*FORWARD, *BACKWARD),
) -> Iterator[Case]:
    """The ops on finite x (the gradients on grad and y of x's shape), each operand seen
    through `view` (a strided or reordered view of it, sent as it lies in memory)."""
    see = view or (lambda a: a)
    for op in ops:
        if op in BACKWARD:
            grad, y = (see(a) for a in grad_and_y(rng, x.shape, x.dtype, op, axis, t))
            check = backward_check(op, grad, y, axis, t)
            yield family(f"{name} {op}", op, grad, check, axis=axis, y=y, temperature=t)
        else:
            xv = see(x)
            check = forward_check(op, xv, axis, t)
            yield family(f"{name} {op}", op, xv, check, axis=axis, temperature=t)


# Row lengths: one element, every length up to 17 (vector tails of 4 and 2 lanes), the
# old tile limits and one past them, grouped rows, pipelined rows, rows past 32 KiB (block
# by block), and rows cut into segments (65,536 and up, at most 8 rows).
ROW_LENGTHS = [*range(1, 18), 31, 33, 48, 49, 64, 65, 96, 97, 128, 129]
ROW_LENGTHS += [1000, 1025, 4099, 9000, 32000, 128256]
SCALES = ["1", "10", "100", "equal"]


def rows_of(n: int) -> int:
    return 37 if n <= 129 else 8 if n <= 4099 else 4 if n <= 9000 else 2 if n <= 32000 else 1


def row_cases() -> Iterator[Case]:
    rng = seeded("rows")
    for dtype in (F32, F64):
        shapes = [(rows_of(n), n) for n in ROW_LENGTHS] + [(300, 3), (300, 10)]
        for i, shape in enumerate(shapes):
            x = make_logits(rng, shape, SCALES[i % len(SCALES)], dtype)
            yield from family_ops(f"rows {dtype} {shape} scale {SCALES[i % 4]}", x, rng)
        for n in (3, 8, 33, 100, 1000, 5000):
            x = (rng.standard_normal((37, n)) * 2).astype(dtype)
            for t in (0.3, 2.5) if dtype == F32 else (0.7,):
                yield from family_ops(f"rows {dtype} (37, {n}) T={t}", x, rng, t=t)
    # segments at a temperature, the later ones far below the first (test_temperature)
    x = (rng.standard_normal((2, 70000)) * 2).astype(F32)
    x[1, 20000:] -= 30
    yield from family_ops("segments float32 (2, 70000) T=0.7", x, rng, t=0.7, ops=FORWARD)
    # an array past 8 MiB (kStreamBytes): the from-memory paths
    x = (rng.standard_normal((1024, 2100)) * 2).astype(F32)
    streamed = ("softmax", "log_softmax", "softmax_backward")
    yield from family_ops("streamed float32 (1024, 2100)", x, rng, ops=streamed)


# test_backward's layouts (test_temperature's views among them)
VIEWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "fortran": np.asfortranarray,
    "reversed": lambda a: a[::-1, :, ::-1],
    "strided": lambda a: a[:, ::2, ::3],
    "transposed3d": lambda a: np.ascontiguousarray(a.transpose(2, 0, 1)).transpose(1, 2, 0),
    "mixed": lambda a: a[::-2, 1:, ::-1],
}


def layout_cases() -> Iterator[Case]:
    rng = seeded("layouts")
    for dtype in (F32, F64):
        # columns: the axis strided, the other contiguous
        for shape in [(7, 1), (5, 19), (300, 17), (1000, 64), (33, 4097), (1, 6)]:
            x = make_logits(rng, shape, "10", dtype)
            yield from family_ops(f"columns {dtype} {shape} axis 0", x, rng, axis=0)
        for n in (1, 33, 1000):
            x = make_logits(rng, (3, n, 20), "10", dtype)
            yield from family_ops(f"columns {dtype} (3, {n}, 20) axis 1", x, rng, axis=1)
        x = (rng.standard_normal((33, 100)) * 2).astype(dtype)
        yield from family_ops(f"columns {dtype} (33, 100) axis 0 T=2.5", x, rng, axis=0, t=2.5)
        for view, f in VIEWS.items():
            x = make_logits(rng, (6, 10, 34), "10", dtype)
            for axis in (-1, 1):
                name = f"view {view} {dtype} (6, 10, 34) axis {axis}"
                yield from family_ops(name, x, rng, axis=axis, view=f)
        for n in (5, 1000):  # gathered rows: a negative stride along the axis
            x = (rng.standard_normal((40, n)) * 2).astype(dtype)
            rev = (lambda a: a[:, ::-1], lambda a: a[::-3, ::-2])
            for i, f in enumerate(rev):
                for axis in (-1, 0):
                    name = f"negative strides {i} {dtype} (40, {n}) axis {axis} T=2.5"
                    yield from family_ops(name, x, rng, axis=axis, t=2.5, view=f)
    yield from out_cases(rng)


def out_cases(rng: np.random.Generator) -> Iterator[Case]:
    """out= a strided view of a larger array, and in place (test_temperature's)."""
    for dtype in (F32, F64, F16, BF16):
        x = (rng.standard_normal((40, 100)) * 2).astype(dtype)
        for op in ("softmax", "log_softmax"):
            base = poison((40, 300), dtype)
            check = forward_check(op, x, -1, 0.7)
            yield family(
                f"out strided {op} {dtype}",
                op,
                x,
                check,
                temperature=0.7,
                out=(base[:, ::-3], base),
            )
            yield family(f"in place {op} {dtype}", op, x.copy(), check, temperature=0.7, out=X)
        base = poison((80,), dtype)
        check = forward_check("logsumexp", x, -1, 0.7)
        yield family(
            f"out strided logsumexp {dtype}",
            "logsumexp",
            x,
            check,
            temperature=0.7,
            out=(base[::-2], base),
        )
        for op in BACKWARD:
            g, y = grad_and_y(rng, x.shape, dtype, op, -1, 0.7)
            check = backward_check(op, g, y, -1, 0.7)
            for role in (X, Y):
                yield family(
                    f"in place {op} {dtype} out={'grad' if role == X else 'y'}",
                    op,
                    g.copy(),
                    check,
                    y=y.copy(),
                    temperature=0.7,
                    out=role,
                )


# ------------------------------------------------------------------ special values --


def laid_out(x: np.ndarray, layout: str) -> tuple[np.ndarray, int]:
    """(input, axis) that computes along the rows of x (R, n) by one of the driver's ways
    (test_edge_cases' run_layout): rows, columns of a transposed copy, columns of a 3-d
    array, gathered rows of a reversed view."""
    if layout == "columns":
        return np.ascontiguousarray(x.T), 0
    if layout == "columns3d":
        rows, n = x.shape
        return np.ascontiguousarray(x.reshape(2, rows // 2, n).transpose(0, 2, 1)), 1
    return (x[:, ::-1] if layout == "gather" else x), -1


def as_rows(r: np.ndarray, x: np.ndarray, layout: str, reduced: bool) -> np.ndarray:
    """laid_out's result back in the order of x's rows."""
    if layout == "columns":
        return r if reduced else r.T
    if layout == "columns3d":
        return r.reshape(x.shape[0]) if reduced else r.transpose(0, 2, 1).reshape(x.shape)
    return r[:, ::-1] if layout == "gather" and not reduced else r


def scipy_like(
    name: str, x: np.ndarray, labels: list[str], layout: str, exact_zeros: bool = True
) -> Check:
    """check_like_scipy on the output in the order of x's rows."""

    def check(res: Result, _: Lookup) -> None:
        got = as_rows(res.out, x, layout, name == "logsumexp")
        check_like_scipy(name, got, x, labels, x.dtype.type, exact_zeros)

    return check


def exactly(want: np.ndarray, signed_zeros: bool = False) -> Check:
    def check(res: Result, _: Lookup) -> None:
        got = res.out
        np.testing.assert_array_equal(got, want)
        zero = want == 0
        if signed_zeros:
            np.testing.assert_array_equal(np.signbit(got[zero]), np.signbit(want[zero]), "signs")

    return check


def special_cases() -> Iterator[Case]:
    rng = seeded("special values")
    for dtype in (F32, F64):
        for n in [1, 2, 4, 5, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 1025, 4097]:
            x, labels = special_rows(n, rng, dtype)
            if len(labels) % 2:  # (columns3d splits the rows in two halves)
                x = np.concatenate([x, rng.normal(0, 3, (1, n)).astype(dtype)])
                labels.append("finite (padding)")
            layouts = ["rows", "gather"]
            if n in (1, 5, 17, 65, 1025):
                layouts += ["columns", "columns3d"]
            for layout in layouts:
                xv, axis = laid_out(x, layout)
                for op in FORWARD:
                    check = scipy_like(op, x, labels, layout)
                    yield family(f"special {layout} {dtype} n={n} {op}", op, xv, check, axis=axis)
        # test_short_rows: rows of NaN, -inf, all equal, +-max/2 among ordinary ones
        for n in [2, 3, 7, 8, 9, 15, 16, 17, 33, 48, 49, 64, 65, 96, 97, 128, 129]:
            x = (rng.standard_normal((40, n)) * 10).astype(dtype)
            big = np.finfo(dtype).max / 2
            specials = {
                0: np.full(n, NAN),
                3: np.full(n, -INF),
                5: np.full(n, 7.5),
                8: np.linspace(-1, 1, n) * big,
                11: np.r_[INF, np.zeros(n - 1)],
                14: np.r_[np.zeros(n - 1), NAN],
                16: np.r_[-INF, np.arange(n - 1)],
            }
            for r, row in specials.items():
                x[r] = row
            labels = [f"row {r}" for r in range(40)]
            for op in FORWARD:
                check = scipy_like(op, x, labels, "rows", exact_zeros=False)
                yield family(f"short special {dtype} n={n} {op}", op, x, check)
        # the documented table, exact (at T = 0.5 too: test_temperature)
        for t in (1.0, 0.5):
            for i, (row, *wants) in enumerate(SMALL_TABLE):
                x = np.array(row, dtype)
                for op, want in zip(FORWARD, wants):
                    want = np.array(want, dtype)
                    yield family(
                        f"table {i} {dtype} T={t} {op}", op, x, exactly(want), temperature=t
                    )
        # large finite logits; +-1e30 and tiny ones; x - max overflowing to -inf
        hi = np.finfo(dtype).max
        big = (rng.uniform(-1, 1, (5, 40)) * 50).astype(dtype) + dtype.type(hi / 4)
        yield from family_ops(f"large {dtype}", big, rng, ops=FORWARD)
        huge = np.array(
            [
                np.full(50, 1e30) + np.arange(50) * 1e24,
                rng.standard_normal(50) * 1e-30,
                -np.full(50, 1e30) + np.arange(50) * 1e24,
            ]
        ).astype(dtype)
        yield from family_ops(f"1e30 and tiny {dtype}", huge, rng, ops=FORWARD)
        extreme = np.array([[hi, -hi, 0.0, hi], [-hi, -hi, -hi, -hi], [hi, hi, hi, hi]], dtype)
        yield from family_ops(f"extreme {dtype}", extreme, rng, ops=("softmax", "log_softmax"))
        for n in (2, 3, 17, 1000, 4097):  # all equal: 1/n rounded once
            x = np.full((3, n), -7.25, dtype)
            eps = float(np.finfo(dtype).eps)
            yield family(
                f"all equal {dtype} n={n} softmax",
                "softmax",
                x,
                close(np.full(x.shape, 1.0 / n), eps),
            )
            yield family(
                f"all equal {dtype} n={n} log_softmax",
                "log_softmax",
                x,
                close(np.full(x.shape, -np.log(n)), 2 * eps),
            )
            want = np.full(3, np.longdouble(-7.25) + np.log(np.longdouble(n)))
            yield family(f"all equal {dtype} n={n} logsumexp", "logsumexp", x, log_close(want))
    yield from one_element_cases()
    yield from empty_cases()


def close(want: np.ndarray, rtol: float) -> Check:
    def check(res: Result, _: Lookup) -> None:
        np.testing.assert_allclose(res.out, want.astype(res.out.dtype), rtol=rtol, atol=0)

    return check


def log_close(want: np.ndarray) -> Check:
    def check(res: Result, _: Lookup) -> None:
        assert_log_close(res.out, want, LOG_ATOL[res.out.dtype.type])

    return check


def one_element_cases() -> Iterator[Case]:
    """test_few_classes: one class gives softmax 1, log_softmax 0, logsumexp the logit (+0
    for -0), NaN where the logit is not finite; any layout and dtype."""
    for dtype in (F32, F64, F16, BF16):
        for rows in (5, 37):
            rng = np.random.default_rng(rows)
            x = (rng.standard_normal(rows) * 30).astype(dtype)
            special = [INF, -INF, NAN, -0.0, 0.0, float(np.finfo(dtype).max)]
            x[: min(rows, 6)] = np.array(special[:rows], np.float64).astype(dtype)
            v = x.astype(np.float64)
            finite = np.isfinite(v)
            wants = {
                "softmax": np.where(finite, 1.0, NAN),
                "log_softmax": np.where(finite, 0.0, NAN),
                "logsumexp": v + 0.0,
            }
            for op, want in wants.items():
                w = want.astype(dtype)
                for view, xv, axis in (
                    ("(rows, 1)", x.reshape(rows, 1), -1),
                    ("(1, rows) axis 0", x.reshape(1, rows), 0),
                ):
                    shaped = w.reshape(rows) if op == "logsumexp" else w.reshape(xv.shape)
                    name = f"one class {dtype} {rows} {view} {op}"
                    yield family(name, op, xv, exactly(shaped, op == "logsumexp"), axis=axis)


def empty_cases() -> Iterator[Case]:
    for dtype in (F32, F64):
        for shape, axis in (((3, 0), -1), ((0, 3), 0), ((2, 0, 5), 1), ((0,), 0)):
            reduced = shape[:axis] + shape[axis + 1 :] if axis >= 0 else shape[:-1]
            want = np.full(reduced, -INF, dtype)
            x = np.zeros(shape, dtype)
            yield family(
                f"empty {dtype} {shape} logsumexp", "logsumexp", x, exactly(want), axis=axis
            )
            for op in ("softmax", "log_softmax"):
                yield family(f"empty {dtype} {shape} {op}", op, x, exactly(x), axis=axis)
            for op in BACKWARD:
                yield family(f"empty {dtype} {shape} {op}", op, x, exactly(x), axis=axis, y=x)


# ---------------------------------------------------------- float16 and bfloat16 --


def half_cases() -> Iterator[Case]:
    """test_half_precision: within 1 ulp of the correctly rounded reference."""
    rng = seeded("half precision")
    for dtype in HALVES:
        shapes = [(1, 1), (7, 3), (64, 10), (33, 100), (4, 1000), (2, 40000), (3, 1, 17)]
        for shape in shapes:
            x = (rng.standard_normal(shape) * 3).astype(dtype)
            for axis in (-1, 0):
                yield from family_ops(
                    f"half {dtype} {shape} axis {axis}", x, rng, axis=axis, ops=FORWARD
                )
        for shape in ((64, 10), (8, 3000)):  # peaked rows: log_softmax near 0
            x = (rng.standard_normal(shape) * 10).astype(dtype)
            yield from family_ops(
                f"half peaked {dtype} {shape}", x, rng, ops=("log_softmax", "logsumexp")
            )
        x = (rng.standard_normal((2, 70000)) * 3).astype(dtype)
        yield from family_ops(f"half segments {dtype}", x, rng, ops=FORWARD)
        for shape, axis in (((64, 10), -1), ((8, 1000), -1), ((30, 7, 5), 1)):
            x = (rng.standard_normal(shape) * 3).astype(dtype)
            yield from family_ops(
                f"half {dtype} {shape} axis {axis}", x, rng, axis=axis, ops=tuple(BACKWARD)
            )
        for shape, axis in (((7, 3), -1), ((33, 100), 0), ((2, 40000), -1)):
            x = (rng.standard_normal(shape) * 3).astype(dtype)
            for t in (0.3, 2.5):
                yield from family_ops(
                    f"half {dtype} {shape} axis {axis} T={t}", x, rng, axis=axis, t=t
                )
        base = (rng.standard_normal((40, 64)) * 3).astype(dtype)
        for i, view in enumerate((base[:, ::2], base[::-1], base.T, base[3:30:3, 5:50])):
            for axis in (-1, 0):
                name = f"half view {i} {dtype} axis {axis} softmax"
                yield family(name, "softmax", view, forward_check("softmax", view, axis), axis=axis)
        p, emin, big = (11, -14, 65504.0) if dtype == F16 else (8, -126, 3.3895313892515355e38)
        tiny = 2.0 ** (emin - (p - 1))
        rows = [
            [0.0] * 5,
            [big, big, 0.0, -big, 1.0],
            [tiny, -tiny, 2 * tiny, 0.0, 2.0**emin],
            [-INF, 0.0, 1.0, -INF, 2.0],
            [-INF] * 5,
            [INF, 0.0, 1.0, 2.0, 3.0],
            [NAN, 0.0, 1.0, 2.0, 3.0],
            [-20.0, 0.0, -30.0, 3.0, -40.0],
        ]
        x = np.array(rows).astype(dtype)
        with np.errstate(all="ignore"):  # (the host's float64 results, as the test's)
            wide = {op: getattr(fs, op)(x.astype(np.float64)) for op in FORWARD}
        for op in FORWARD:
            yield family(f"half special {dtype} {op}", op, x, ulps(wide[op]))
    x = (rng.standard_normal((2048, 2100)) * 3).astype(F16)  # past 8 MiB: streamed
    yield from family_ops(
        "half streamed float16 (2048, 2100)", x, rng, ops=("softmax", "log_softmax")
    )


def ulps(ref: np.ndarray) -> Check:
    def check(res: Result, _: Lookup) -> None:
        assert_ulps(res.out, ref, res.out.dtype, res.case.op)

    return check


# ----------------------------------------------------------------------- where= --

MASKS = ("full", "(1, C)", "(N, 1)", "empty rows")


def filled_rows(res: Result, w: np.ndarray, value: float) -> np.ndarray:
    """A plain call's output with the rows that have nothing included set to `value`."""
    r = res.out.copy()
    r[~np.broadcast_to(w, res.case.shape).any(axis=-1)] = value
    return r


def same_as_plain(plain: str, w: np.ndarray, value: float, within: float = 0.0) -> Check:
    """Bit for bit the plain call on the filled input (test_where), or within `within`
    relative where the mask is read in the kernels' passes."""

    def check(res: Result, lookup: Lookup) -> None:
        got, want = res.out, filled_rows(lookup(plain), w, value)
        if within:
            np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
            np.testing.assert_allclose(got, want, rtol=within, atol=0)
        else:
            np.testing.assert_array_equal(got, want)

    return check


def same_bits_as(
    other: str, back: Callable[[np.ndarray], np.ndarray] = lambda a: a, part: Any = ...
) -> Check:
    """back(output) is bit for bit `part` of the other case's output (NaN as NaN)."""

    def check(res: Result, lookup: Lookup) -> None:
        np.testing.assert_array_equal(back(res.out), lookup(other).out[part])

    return check


def masked_accuracy(
    op: str, x: np.ndarray, w: np.ndarray, t: float, g: Any = None, y: Any = None
) -> Check:
    """test_where's bounds against the formulas on the included entries alone."""
    eps = float(np.finfo(x.dtype).eps)
    wb = np.broadcast_to(w, x.shape)

    def check(res: Result, _: Lookup) -> None:
        got = res.out
        if op in BACKWARD:
            ref = masked_reference_gradient(op, g, y, w, t)
            scale = np.max(np.abs(ref), axis=-1, keepdims=True) + np.max(np.abs(widen(g))) / t
            err = np.abs(got - ref) / (64 * eps * scale)
            assert np.all(err <= 1), "beyond 64 eps; " + describe_worst(err, ("got", got))
            assert np.all(got[~wb] == 0), "excluded gradients not 0"
            return
        ref = masked_reference(op, x, w, t)
        assert np.array_equal(np.isneginf(got), np.isneginf(ref)), "-inf pattern"
        if op == "softmax":
            pos = ref > 0
            err = np.abs(got[pos] - ref[pos]) / (
                8 * eps * (1 + np.abs(np.log(ref[pos]))) * ref[pos]
            )
            assert np.all(err <= 1), "beyond 8 eps (1 + |log p|); " + describe_worst(err)
            assert np.all(got[~pos] == 0), "excluded entries not 0"
        else:
            fin = np.isfinite(ref)
            err = np.abs(got[fin] - ref[fin]) / np.maximum(1, np.abs(ref[fin]))
            assert err.max(initial=0) <= 16 * eps, f"beyond 16 eps: {err.max()!r}"

    return check


def mask_cases() -> Iterator[Case]:
    rng = seeded("where")
    for dtype in (F32, F64, F16, BF16):
        lengths = [1, 2, 3, 5, 8, 10, 16, 33, 64, 100, 130, 1000, 5000, 9000]
        if dtype in HALVES:
            lengths = [3, 33, 130, 1000, 9000]
        for n in lengths:
            shape = (37 if n < 1000 else 5 if n < 9000 else 3, n)
            x = rng.normal(0, 3, shape).astype(dtype)
            g = rng.normal(0, 1, shape).astype(dtype)
            for kind in MASKS:
                w = make_mask(kind, shape, rng)
                wb = np.broadcast_to(w, shape)
                tag = f"where {kind} {dtype} {shape}"
                filled = np.where(wb, x, -INF).astype(dtype)
                for op in FORWARD:
                    plain = f"{tag} {op} plain"
                    yield family(plain, op, filled, no_check)
                    passes = reads_mask_in_passes(op, dtype, kind, n)
                    check = same_as_plain(
                        plain,
                        w,
                        0 if op == "softmax" else -INF,
                        4 * float(np.finfo(dtype).eps) if passes else 0.0,
                    )
                    yield family(f"{tag} {op}", op, x, check, where=w)
                if n > 5000:
                    continue
                for op, of in BACKWARD.items():
                    y = masked_reference(of, x, w).astype(dtype)
                    plain = f"{tag} {op} plain"
                    yield family(plain, op, np.where(wb, g, 0).astype(dtype), no_check, y=y)
                    g7 = np.where(wb, g, 7).astype(dtype)  # (excluded grads are ignored)
                    check = same_as_plain(plain, w, 0)
                    yield family(f"{tag} {op}", op, g7, check, y=y, where=w)
    for dtype in (F32, F64):
        eps = float(np.finfo(dtype).eps)
        for n in (2, 100, 1000, 9000):
            shape = (37 if n < 1000 else 3, n)
            x = (rng.normal(0, 3, shape) + 100).astype(dtype)
            g = rng.normal(0, 1, shape).astype(dtype)
            for kind in MASKS:
                w = make_mask(kind, shape, rng)
                for t in (1.0, 0.7):
                    tag = f"where accuracy {kind} {dtype} {shape} T={t}"
                    for op in FORWARD:
                        yield family(
                            f"{tag} {op}",
                            op,
                            x,
                            masked_accuracy(op, x, w, t),
                            where=w,
                            temperature=t,
                        )
                    for op, of in BACKWARD.items():
                        y = masked_reference(of, x, w, t).astype(dtype)
                        check = masked_accuracy(op, x, w, t, g, y)
                        yield family(f"{tag} {op}", op, g, check, y=y, where=w, temperature=t)
        for n in (5, 100, 5000):  # a mask of all True is the plain call
            x = rng.normal(0, 3, (37 if n < 5000 else 5, n)).astype(dtype)
            for op in FORWARD:
                yield family(f"all true {dtype} {n} {op} plain", op, x, no_check)
                for kind, w in (
                    ("full", np.ones(x.shape, bool)),
                    ("(1, C)", np.ones((1, n), bool)),
                    ("(N, 1)", np.ones((1, 1), bool)),
                ):
                    within = 4 * eps if reads_mask_in_passes(op, dtype, kind, n) else 0.0
                    check = same_as_plain(f"all true {dtype} {n} {op} plain", w, NAN, within)
                    yield family(f"all true {kind} {dtype} {n} {op}", op, x, check, where=w)
        for n in (4, 33, 1000, 9000):
            yield from special_mask_cases(dtype, n)
    for dtype in (F32, F64, F16, BF16):  # nothing included: 0, -inf, zero gradients
        for n in (1, 7, 64, 1000, 9000):
            x = np.array([[NAN] * n, [INF] * n, [-INF] * n, list(range(n))], dtype=dtype)
            for kind in ("full", "(N, 1)"):
                w = np.zeros(x.shape if kind == "full" else (4, 1), bool)
                tag = f"nothing included {kind} {dtype} {n}"
                for op, v in (("softmax", 0.0), ("log_softmax", -INF), ("logsumexp", -INF)):
                    want = np.full(x.shape[:-1] if op == "logsumexp" else x.shape, v, dtype)
                    yield family(f"{tag} {op}", op, x, exactly(want), where=w)
                for op in BACKWARD:
                    want = np.zeros(x.shape, dtype)
                    yield family(f"{tag} {op}", op, x, exactly(want), y=x, where=w)
    for dtype in (F32, F16):  # NaN and inf under the mask do not leak
        for n in (3, 100, 9000):
            x = rng.normal(0, 3, (6, n)).astype(dtype)
            w = rng.random(x.shape) < 0.5
            w[:, 0], w[:, 1] = True, False
            for op in FORWARD:
                clean = f"under the mask {dtype} {n} {op} clean"
                yield family(clean, op, x, no_check, where=w)
                for v in (NAN, INF, -INF):
                    dirty = x.copy()
                    dirty[:, 1] = v
                    dirty[~w] = v
                    yield family(
                        f"under the mask {dtype} {n} {op} {v}",
                        op,
                        dirty,
                        same_bits_as(clean),
                        where=w,
                    )
    yield from mask_layout_cases(rng)


def no_check(res: Result, _: Lookup) -> None:
    """(a case that others compare with)"""


def special_mask_cases(dtype: np.dtype, n: int) -> Iterator[Case]:
    """test_where: SciPy's rules on the included entries; the excluded keep their values."""
    x, w = special_masked_rows(dtype, n)
    inc = w[0]
    rtol = 4 * float(np.finfo(dtype).eps)

    def softmax(res: Result, _: Lookup) -> None:
        sm = res.out
        assert np.all(np.isnan(sm[:3][:, inc]))
        assert np.all(sm[:, ~inc] == 0)
        np.testing.assert_allclose(sm[3, inc], 1 / (n - 1), rtol=rtol)
        assert sm[4, 0] == 0

    def log_softmax(res: Result, _: Lookup) -> None:
        lsm = res.out
        assert np.all(np.isnan(lsm[0, inc]))
        assert np.all(np.isnan(lsm[2, inc]))
        assert np.isnan(lsm[1, 2])
        assert np.all(lsm[1, inc & (np.arange(n) != 2)] == -INF)
        assert np.all(lsm[:, ~inc] == -INF)
        assert lsm[4, 0] == -INF

    def logsumexp(res: Result, _: Lookup) -> None:
        lse = res.out
        np.testing.assert_array_equal(lse[:3], [NAN, INF, -INF])
        np.testing.assert_allclose(lse[3], np.log(n - 1), rtol=rtol)

    for op, check in (("softmax", softmax), ("log_softmax", log_softmax), ("logsumexp", logsumexp)):
        yield family(f"where specials {dtype} {n} {op}", op, x, check, where=w)


def mask_layout_cases(rng: np.random.Generator) -> Iterator[Case]:
    """test_where: columns, gathered rows and Fortran order give the bits of the contiguous
    call with the axis last."""
    base = rng.normal(0, 3, (6, 9, 20))
    wbase = rng.random(base.shape) < 0.6
    wbase[:, ::4, :] = False  # lines with nothing included along axis 0 and 2
    views = {
        "fortran": (np.asfortranarray(base, np.float32), np.asfortranarray(wbase)),
        "negative strides": (base.astype(np.float32)[::-1, :, ::-1], wbase[::-1, :, ::-1]),
    }
    for view, (x, w) in views.items():
        for axis in (0, 2):
            tag = f"where layout {view} axis {axis}"
            for op in (*FORWARD, *BACKWARD):
                last = np.ascontiguousarray(np.moveaxis(x, axis, -1))
                wl = np.moveaxis(w, axis, -1)
                back = (
                    (lambda a: a)
                    if op == "logsumexp"
                    else (lambda a, ax=axis: np.moveaxis(a, ax, -1))
                )
                y = yl = None
                if op in BACKWARD:
                    y = masked_reference(BACKWARD[op], np.moveaxis(x, axis, -1), wl)
                    y = np.moveaxis(y, -1, axis).astype(np.float32)
                    yl = np.ascontiguousarray(np.moveaxis(y, axis, -1))
                yield family(f"{tag} {op} last", op, last, no_check, y=yl, where=wl)
                yield family(
                    f"{tag} {op}",
                    op,
                    x,
                    same_bits_as(f"{tag} {op} last", back),
                    axis=axis,
                    y=y,
                    where=w,
                )


# ---------------------------------------------------------------- cross-entropy --


def cross_entropy(
    name: str,
    x: np.ndarray,
    labels: Any,
    check: Check,
    *,
    axis: int = -1,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    temperature: float = 1.0,
    grad_out: Any = None,
    grad: bool = True,
    in_place: bool = False,
    lse: Any = None,
    lse_out: bool = False,
) -> Case:
    """One call of the fused cross-entropy with the operands _cross_entropy._Call.run
    gives the binding (labels or probabilities as they lie in memory, weights in the
    compute type, grad_out as per-example factors)."""
    shape = x.shape
    ax = axis % len(shape)
    examples = shape[:ax] + shape[ax + 1 :]
    compute = compute_dtype(x.dtype)
    ops = {X: placed(x)}
    lab = np.asarray(labels)
    if lab.dtype.kind in "iu":
        ops[LABELS] = placed(lab if lab.dtype == np.int64 else lab.astype(np.int64), ax)
    else:
        ops[TARGET] = placed(lab.astype(x.dtype, copy=False))
    if weight is not None:
        ops[WEIGHT] = operand(np.asarray(weight).astype(compute))
    if lse is not None:
        ops[LSE] = placed(np.asarray(lse).astype(compute, copy=False), ax)
    if grad:
        o = ops[X]
        ops[OUT] = (
            Operand(o.memory, o.offset, o.strides, shape, shares=X)
            if in_place
            else fresh(poison(shape, x.dtype))
        )
        if grad_out is not None:
            g = np.asarray(grad_out, np.float64)
            if g.ndim or float(g) != 1.0:
                ops[GRAD_SCALE] = operand(np.ascontiguousarray(np.broadcast_to(g, examples)))
    if reduction == "none":
        ops[LOSS_ROWS] = fresh(poison(examples, F64))
    if lse_out:
        ops[LSE_ROWS] = fresh(poison(examples, F64))
    return Case(
        name,
        "cross_entropy",
        x.dtype,
        shape,
        ax,
        ops,
        check,
        temperature=temperature,
        smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=0.0 if softcap is None else softcap,
        ignore_index=ignore_index,
        reduction=reduction,
        loss_dtype=F64 if x.dtype == F64 else F32,
    )


def ce_check(x: np.ndarray, labels: Any, *, t: float = 1.0, saved_lse: bool = False, **kw) -> Check:
    """test_cross_entropy's check (loss relative, gradient absolute per its largest
    element); test_half_precision's (1 ulp or the float32 terms) for float16 / bfloat16;
    test_cross_entropy_temperature's at T != 1; test_backward_from_a_saved_logsumexp's
    with a saved lse (which rounds the softmax)."""
    dtype = x.dtype

    def ref() -> tuple[Any, np.ndarray]:
        loss, grad = ref_cross_entropy(x if t == 1.0 else widen(x) / t, labels, **kw)
        return loss, grad / t

    def check(res: Result, _: Lookup) -> None:
        ref_loss, ref_grad = ref()
        grad = res.out if OUT in res.case.operands else None
        scale = float(np.nanmax(np.abs(ref_grad), initial=0))
        if saved_lse:
            if dtype in HALVES:
                assert_ulps(grad, ref_grad, dtype, "gradient from a saved lse", 2**-20 * scale)
            else:
                tol = 50 * TOL[np.float32] if dtype == F32 else 1e-12
                np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=tol * scale)
            return
        loss = res.loss
        if dtype in HALVES:
            rtol, atol = (3e-6, 1e-6) if t == 1.0 else (1e-6, 0.0)
            np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=atol, err_msg="loss")
            if grad is not None and t == 1.0:
                assert_ulps(grad, ref_grad, dtype, "gradient", 2**-22 * scale)
            elif grad is not None:
                np.testing.assert_allclose(
                    grad.astype(np.float64), ref_grad, rtol=0, atol=2e-3 * scale, err_msg="gradient"
                )
        elif t != 1.0:
            rtol, atol, gtol = (
                (2e-5, 1e-6, 2e-6 * max(1.0, scale)) if dtype == F32 else (1e-12, 0.0, 1e-14)
            )
            np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=atol, err_msg="loss")
            if grad is not None:
                np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=gtol, err_msg="gradient")
        else:
            assert_close(loss, ref_loss, dtype.type, "loss")
            if grad is not None:
                assert_close(grad, ref_grad, dtype.type, "gradient", scale=max(scale or 1.0, 1e-30))

    return check


def ce_pair(name: str, x: np.ndarray, labels: Any, **kw: Any) -> Iterator[Case]:
    """The loss and gradient, and the loss alone, against the reference."""
    t = kw.pop("temperature", 1.0)
    yield cross_entropy(name, x, labels, ce_check(x, labels, t=t, **kw), temperature=t, **kw)
    kw.pop("grad_out", None)
    check = ce_check(x, labels, t=t, **kw)
    yield cross_entropy(f"{name} loss only", x, labels, check, grad=False, temperature=t, **kw)


def ce_cases() -> Iterator[Case]:
    rng = seeded("cross-entropy")
    shapes = [
        (1, 1),
        (3, 2),
        (7, 10),
        (16, 17),
        (33, 64),
        (9, 200),
        (4, 1000),
        (3, 5000),
        (2, 40000),
    ]
    for dtype in (F32, F64):
        for soft in (False, True):
            kind = "probabilities" if soft else "labels"
            for shape in shapes:  # test_random_options_match_the_reference
                for trial in range(2):
                    kw = random_options(rng, shape[-1], dtype.type, soft)
                    x = (rng.standard_normal(shape) * 4).astype(dtype)
                    labels = random_labels(
                        rng, shape, -1, soft, dtype.type, kw.get("ignore_index", -100)
                    )
                    if kw["reduction"] == "none" and rng.random() < 0.5:
                        kw["grad_out"] = rng.standard_normal(shape[:-1])
                    elif rng.random() < 0.5:
                        kw["grad_out"] = float(rng.uniform(0.5, 2))
                    name = f"ce random {kind} {dtype} {shape} {trial} ({', '.join(kw)})"
                    yield from ce_pair(name, x, labels, **kw)
            shape = (9, 37)  # test_every_option_alone
            x = (rng.standard_normal(shape) * 3).astype(dtype)
            labels = random_labels(rng, shape, -1, soft, dtype.type)
            for i, kw in enumerate(options_alone(rng, shape[-1], dtype)):
                yield from ce_pair(f"ce option {i} {kind} {dtype}", x, labels, **kw)
            for n in (2, 10, 16, 17, 96, 97, 128, 129):  # test_short_rows
                kw = random_options(rng, n, dtype.type, soft)
                kw.pop("softcap", None)
                x = (rng.standard_normal((17, n)) * 4).astype(dtype)
                labels = random_labels(
                    rng, (17, n), -1, soft, dtype.type, kw.get("ignore_index", -100)
                )
                yield from ce_pair(
                    f"ce short {kind} {dtype} {n} ({', '.join(kw)})", x, labels, **kw
                )
            for shape in ((4, 6, 5), (2, 20, 33)):  # test_k_dimensional_inputs_with_axis_1
                x = rng.standard_normal(shape).astype(dtype)
                labels = random_labels(rng, shape, 1, soft, dtype.type)
                for reduction in ("none", "mean"):
                    yield from ce_pair(
                        f"ce axis 1 {kind} {dtype} {shape} {reduction}",
                        x,
                        labels,
                        axis=1,
                        reduction=reduction,
                        label_smoothing=0.1,
                    )
            yield from ce_saved_lse(rng, dtype, soft)
        yield from ce_layouts(rng, dtype)
        yield from ce_special(rng, dtype)
    yield from ce_temperature(rng)
    yield from ce_half(rng)
    yield from ce_in_place(rng)


def ce_saved_lse(rng: np.random.Generator, dtype: np.dtype, soft: bool) -> Iterator[Case]:
    """test_backward_from_a_saved_logsumexp, and the per-example lse out."""
    shape = (6, 300)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    labels = random_labels(rng, shape, -1, soft, dtype.type)
    kind = "probabilities" if soft else "labels"
    for i, kw in enumerate(
        (
            {},
            {"weight": rng.random(300), "label_smoothing": 0.2, "z_loss": 0.01},
            {"softcap": 4.0, "reduction": "none", "grad_out": rng.standard_normal(6)},
        )
    ):
        capped = x if "softcap" not in kw else 4.0 * np.tanh(x.astype(np.float64) / 4.0)
        lse = ref_logsumexp(np.asarray(capped, dtype)).astype(dtype)
        check = ce_check(x, labels, saved_lse=True, **kw)
        yield cross_entropy(f"ce saved lse {i} {kind} {dtype}", x, labels, check, lse=lse, **kw)
        yield cross_entropy(
            f"ce lse out {i} {kind} {dtype}",
            x,
            labels,
            lse_out_check(x, labels, kw),
            lse_out=True,
            **kw,
        )


def lse_out_check(x: np.ndarray, labels: Any, kw: dict[str, Any], t: float = 1.0) -> Check:
    """Each example's logsumexp of the (soft-capped) logits / T: logsumexp's bound; 0 for
    an ignored example. (The loss and gradient as ce_check.)"""
    loss_check = ce_check(x, labels, t=t, **kw)

    def check(res: Result, lookup: Lookup) -> None:
        loss_check(res, lookup)
        z = widen(x) / t
        cap = kw.get("softcap")
        if cap is not None:
            z = cap * np.tanh(z / cap)
        want = ref_logsumexp(z, axis=kw.get("axis", -1))
        lab = np.asarray(labels)
        if lab.dtype.kind in "iu":
            want = np.where(lab == kw.get("ignore_index", -100), 0, want)
        got = res.view(LSE_ROWS)
        assert_log_close(got, want, LOG_ATOL[compute_dtype(x.dtype).type], "lse out")

    return check


def ce_layouts(rng: np.random.Generator, dtype: np.dtype) -> Iterator[Case]:
    """test_every_axis_and_layout_gives_the_contiguous_answer, and the classes on a
    strided axis ((N, C, 1): the column kernel)."""
    base = (rng.standard_normal((6, 40, 5)) * 3).astype(dtype)
    for axis in range(3):
        views = {
            "fortran": np.asfortranarray(base),
            "reversed": base[::-1, ::-1, ::-1],
            "strided": np.repeat(base, 2, axis=axis)[
                (slice(None),) * axis + (slice(None, None, 2),)
            ],
        }
        for soft in (False, True):
            labels = random_labels(rng, base.shape, axis, soft, dtype.type)
            for view, x in views.items():
                lab = labels
                if view == "reversed":
                    lab = labels[::-1, ::-1, ::-1] if soft else labels[::-1, ::-1]
                name = f"ce layout {view} axis {axis} soft={soft} {dtype}"
                yield from ce_pair(name, x, lab, axis=axis, reduction="none")
    for n in (10, 1000):  # confident rows, the classes on axis 1
        rows = 24
        x = rng.standard_normal((rows, n)) - 12.0 - np.log(n)
        y = rng.integers(0, n, rows)
        x[np.arange(rows), y] = rng.uniform(0, 3, rows)
        x3 = x.astype(dtype)[:, :, None]
        yield from ce_pair(f"ce columns {dtype} {n}", x3, y[:, None], axis=1, reduction="sum")
        w = rng.random(n).astype(dtype)
        yield from ce_pair(
            f"ce columns weighted {dtype} {n}",
            x3,
            y[:, None],
            axis=1,
            reduction="mean",
            weight=w,
            label_smoothing=0.1,
            z_loss=1e-3,
        )


def ce_special(rng: np.random.Generator, dtype: np.dtype) -> Iterator[Case]:
    big = 1e4 if dtype == F32 else 1e6
    n = 50
    rows = [
        rng.standard_normal(n) * big,
        rng.standard_normal(n) * 1e-30,
        np.full(n, 7.0),
        np.full(n, -3e4),
        np.full(n, 1e30) + np.arange(n) * 1e24,
        np.where(np.arange(n) % 3 == 0, -INF, rng.standard_normal(n)),
    ]
    x = np.array(rows).astype(dtype)
    y = np.array([0, 1, 2, 3, 4, 1])
    for i, kw in enumerate(({}, {"reduction": "none"}, {"weight": rng.random(n).astype(dtype)})):
        yield from ce_pair(f"ce adversarial {i} {dtype}", x, y, **kw)

    def smoothing_over_masked(res: Result, _: Lookup) -> None:
        loss = res.loss
        assert np.all(np.isfinite(loss[:5])), loss
        assert loss[5] == INF, loss

    yield cross_entropy(
        f"ce adversarial smoothing {dtype}",
        x,
        y,
        smoothing_over_masked,
        grad=False,
        reduction="none",
        label_smoothing=0.1,
    )
    x = np.array(
        [
            [1.0, 2.0, 3.0],
            [NAN, 1.0, 2.0],
            [INF, 1.0, 2.0],
            [-INF, -INF, -INF],
            [-INF, 1.0, 2.0],
            [-INF, 1.0, 2.0],
        ],
        dtype,
    )
    y = np.array([0, 1, 1, 0, 0, 1])

    def like_pytorch(res: Result, _: Lookup) -> None:
        loss, grad = res.loss, res.out
        assert np.all(np.isfinite(loss[[0, 5]])), loss
        assert loss[4] == INF, loss
        assert np.all(np.isnan(loss[1:4])), loss
        assert np.all(np.isnan(grad[1:4])), grad
        assert np.all(np.isfinite(grad[[0, 4, 5]])), grad
        np.testing.assert_allclose(grad[4], [-1, 1 / (1 + np.e), np.e / (1 + np.e)], rtol=1e-6)

    yield cross_entropy(f"ce nan and inf {dtype}", x, y, like_pytorch, reduction="none")
    y_ign = np.array([0, -100, -100, -100, -100, 1])

    def ignored(res: Result, _: Lookup) -> None:
        assert np.all(res.loss[1:5] == 0), res.loss
        assert np.all(res.out[1:5] == 0), res.out

    yield cross_entropy(f"ce nan and inf ignored {dtype}", x, y_ign, ignored, reduction="none")
    yield from ce_pair(
        f"ce nan and inf soft-capped {dtype}", x[[2, 3]], y[[2, 3]], reduction="none", softcap=5.0
    )
    xi = rng.standard_normal((12, 5)).astype(dtype)  # test_ignore_index_and_a_custom_one
    yi = rng.integers(0, 5, 12)
    yi[[1, 4, 7]] = 3
    for ignore in (3, -100, -1):
        for reduction in ("none", "sum", "mean"):
            yield from ce_pair(
                f"ce ignore {ignore} {reduction} {dtype}",
                xi,
                yi,
                ignore_index=ignore,
                reduction=reduction,
            )
    ones = np.ones((3, 4), dtype)
    nobody = np.full(3, -100)
    for reduction, want in (("mean", NAN), ("sum", 0.0), ("none", np.zeros(3))):

        def no_example(res: Result, _: Lookup, want: Any = want) -> None:
            np.testing.assert_array_equal(res.loss, want)

        yield cross_entropy(
            f"ce no example {reduction} {dtype}", ones, nobody, no_example, reduction=reduction
        )
    yield from ce_pair(f"ce one class {dtype}", np.array([[2.5]], dtype), np.array([0]))
    yield from ce_pair(
        f"ce one class probabilities {dtype}",
        np.array([[2.5]], dtype),
        np.array([[1.0]], dtype),
        label_smoothing=0.3,
    )
    x1 = rng.standard_normal(7).astype(dtype)
    yield from ce_pair(f"ce one example {dtype}", x1, np.int64(3))
    yield from ce_pair(f"ce one example none {dtype}", x1, np.array(3), reduction="none")


def ce_temperature(rng: np.random.Generator) -> Iterator[Case]:
    """test_cross_entropy_temperature."""
    options = [
        {},
        {"label_smoothing": 0.1},
        {"z_loss": 1e-3},
        {"softcap": 5.0},
        {"weight": "w", "reduction": "sum"},
        {"reduction": "none", "ignore_index": 1},
    ]
    for n in (1, 3, 33, 5000):
        x = (rng.standard_normal((37, n)) * 3).astype(F32)
        labels = rng.integers(0, n, 37)
        for i, opts in enumerate(options):
            kw = dict(opts)
            if kw.get("weight") == "w":
                kw["weight"] = np.linspace(0.5, 2.0, n)
            for t in (0.5, 2.5):
                yield from ce_pair(f"ce T={t} {n} option {i}", x, labels, temperature=t, **kw)
    x = rng.standard_normal((6, 40, 9))[:, ::-1]
    for axis in range(3):
        t = reference_at(rng.standard_normal(x.shape), 1.0, axis)["softmax"].astype(np.float64)
        yield from ce_pair(
            f"ce T=1.7 probabilities axis {axis}", x, t, axis=axis, temperature=1.7, z_loss=1e-2
        )
    x = (rng.standard_normal((4, 50, 30)) * 2).astype(F32)
    labels = rng.integers(0, 50, (4, 30))
    yield from ce_pair("ce T=0.8 axis 1 of 3-d", x, labels, axis=1, temperature=0.8)
    for half in HALVES:
        x = (rng.standard_normal((16, 700)) * 3).astype(half)
        labels = rng.integers(0, 700, 16)
        yield from ce_pair(f"ce T=2 {half}", x, labels, temperature=2.0)


def ce_half(rng: np.random.Generator) -> Iterator[Case]:
    """test_half_precision's cross-entropy."""
    options = CE_OPTIONS
    for dtype in HALVES:
        for shape in ((64, 10), (16, 1000), (3, 20001)):
            x = (rng.standard_normal(shape) * 3).astype(dtype)
            labels = rng.integers(0, shape[-1], shape[0])
            labels[::5] = 1
            for i, opts in enumerate(options):
                kw = dict(opts)
                if kw.get("weight") == "w":
                    kw["weight"] = rng.uniform(0.5, 2.0, shape[-1]).astype(np.float32)
                yield from ce_pair(f"ce half {dtype} {shape} option {i}", x, labels, **kw)
        x = (rng.standard_normal((6, 9, 4, 5)) * 3).astype(dtype)
        t = rng.dirichlet(np.ones(9), size=(6, 4, 5)).transpose(0, 3, 1, 2).astype(dtype)
        yield from ce_pair(f"ce half probabilities axis 1 {dtype}", x, t, axis=1)
        labels = rng.integers(0, 9, (6, 4, 5))
        yield from ce_pair(f"ce half labels axis 1 {dtype}", x, labels, axis=1, label_smoothing=0.2)
        lse = ref_logsumexp(x.astype(np.float32), axis=1).astype(np.float32)
        check = ce_check(x, labels, saved_lse=True, axis=1, label_smoothing=0.2)
        yield cross_entropy(
            f"ce half saved lse {dtype}", x, labels, check, axis=1, lse=lse, label_smoothing=0.2
        )
        x = np.array([[0.0, -INF, 1.0], [NAN, 0.0, 1.0], [INF, 0.0, 1.0]]).astype(dtype)

        def special(res: Result, _: Lookup) -> None:
            loss, grad = res.loss, res.out
            assert np.isfinite(loss[0]), loss
            assert np.isnan(loss[1:]).all(), loss
            assert grad[0, 1] == 0, grad
            assert np.isnan(grad[1:].astype(np.float32)).all(), grad

        yield cross_entropy(
            f"ce half special {dtype}", x, np.array([0, 1, 2]), special, reduction="none"
        )


def ce_in_place(rng: np.random.Generator) -> Iterator[Case]:
    """The gradient written into the logits: the bits of the gradient written apart."""
    for dtype in (F32, F64, F16):
        for layout in ("contiguous", "strided", "axis0", "long rows"):
            shape = (3, 5000) if layout == "long rows" else (8, 30)
            base = (rng.standard_normal(shape) * 2).astype(dtype)
            axis = 0 if layout == "axis0" else -1
            y = rng.integers(0, base.shape[axis], base.shape[1 - axis % 2])
            x = np.repeat(base, 2, axis=1)[:, ::2] if layout == "strided" else base
            kw = {"axis": axis, "label_smoothing": 0.1, "z_loss": 1e-3, "reduction": "sum"}
            apart = f"ce in place {layout} {dtype} apart"
            yield cross_entropy(apart, x, y, ce_check(x, y, **kw), **kw)
            yield cross_entropy(
                f"ce in place {layout} {dtype}", x, y, same_bits_as(apart), in_place=True, **kw
            )


# ------------------------------------------------------------------- vector math --


def math_case(name: str, fn: str, x: np.ndarray, check: Check) -> Case:
    x = np.ascontiguousarray(x)
    ops = {X: operand(x), OUT: fresh(poison(x.shape, x.dtype))}
    return Case(name, fn, x.dtype, x.shape, 0, ops, check)


def ulps_within(ref: np.ndarray, limit: float, where: np.ndarray | None = None) -> Check:
    def check(res: Result, _: Lookup) -> None:
        mask = np.ones(ref.shape, bool) if where is None else where
        assert_ulp(res.out, ref, res.out.dtype.type, mask, limit, res.case.op)
        if res.case.op == "tanh":
            assert np.all(np.abs(res.out) <= 1), "|tanh| > 1"

    return check


def subnormal_steps(ref: np.ndarray) -> Check:
    """Within one step of the smallest subnormal."""

    def check(res: Result, _: Lookup) -> None:
        got = res.out
        step = ref.dtype.type(np.finfo(got.dtype).smallest_subnormal)
        err = np.abs(got.astype(ref.dtype) - ref) / step
        assert (err <= 1).all(), "subnormal results: " + describe_worst(err, ("got", got))

    return check


def overflowing(ref: np.ndarray, finite: np.ndarray) -> Check:
    """+inf where the result overflows, within 2 ulp below."""
    within = ulps_within(ref, 2.0, finite)

    def check(res: Result, lookup: Lookup) -> None:
        np.testing.assert_array_equal(res.out[~finite], INF, "beyond the overflow threshold")
        within(res, lookup)

    return check


def math_cases() -> Iterator[Case]:
    """test_vecmath: each function's stated ulp bound, thresholds and special values (an
    eighth of its inputs), and short arrays (vector tails) the bits of a long one."""
    rng = seeded("vector math")
    for dtype in (F32, F64):
        dt, info = dtype.type, np.finfo(dtype)
        x = exp_inputs(rng, dt)[::8]
        ref = exact_exp(x)
        with np.errstate(over="ignore"):
            rounded = ref.astype(dt)
        normal = np.isfinite(rounded) & (rounded >= info.tiny)
        yield math_case(f"exp {dtype}", "exp", x, ulps_within(ref, 2.0, normal))
        lo, hi = float(np.log(info.smallest_subnormal)) - 0.7, float(np.log(info.tiny))
        x = rng.uniform(lo, hi, 1 << 15).astype(dt)
        yield math_case(f"exp subnormal {dtype}", "exp", x, subnormal_steps(exact_exp(x)))
        t = dt(np.log(info.max))
        x = (t + np.arange(-2000, 2000) * np.spacing(t)).astype(dt)
        ref = exact_exp(x)
        with np.errstate(over="ignore"):
            finite = np.isfinite(ref.astype(dt))
        yield math_case(f"exp overflow {dtype}", "exp", x, overflowing(ref, finite))
        t = dt(np.log(info.smallest_subnormal))
        x = (t + np.arange(-3000, 3000) * np.spacing(t)).astype(dt)
        yield math_case(f"exp underflow {dtype}", "exp", x, subnormal_steps(exact_exp(x)))
        very_negative, large = (-200.0, 89.0) if dtype == F32 else (-1000.0, 710.0)
        x = np.array([-INF, INF, NAN, very_negative, -info.max, large, info.max, 0, -0.0], dt)
        want = np.array([0, INF, NAN, 0, 0, INF, INF, 1, 1], dt)
        yield math_case(f"exp specials {dtype}", "exp", x, exactly(want, True))
        x = log_inputs(rng, dt)[::8]
        yield math_case(f"log {dtype}", "log", x, ulps_within(exact_log(x), 2.0))
        steps = np.unique(np.r_[np.arange(1, 4097), rng.integers(1, 2**info.nmant, 6000)])
        x = (steps.astype(np.float64) * float(info.smallest_subnormal)).astype(dt)
        yield math_case(f"log subnormal {dtype}", "log", x, ulps_within(exact_log(x), 2.0))
        x = np.array([info.max, info.tiny, info.smallest_subnormal, 2.0, 0.5], dt)
        yield math_case(f"log extremes {dtype}", "log", x, ulps_within(exact_log(x), 2.0))
        x = np.array([0, -0.0, -1, -INF, INF, NAN, 1, -info.smallest_subnormal], dt)
        want = np.array([-INF, -INF, NAN, NAN, INF, NAN, 0, NAN], dt)
        yield math_case(f"log specials {dtype}", "log", x, exactly(want))
        x = log1p_inputs(rng, dt)[::8]
        with np.errstate(all="ignore"):
            ref = np.log1p(x.astype(WIDE[dt]))
        yield math_case(f"log1p {dtype}", "log1p", x, ulps_within(ref, 2.3))
        x = np.array([0, -0.0, -1, NAN, info.tiny, 1e-30], dt)
        want = np.array([0, -0.0, -INF, NAN, info.tiny, 1e-30], dt)
        yield math_case(f"log1p specials {dtype}", "log1p", x, exactly(want, True))
        x = tanh_inputs(rng, dt)[::8]
        ref = np.tanh(x.astype(WIDE[dt]))
        yield math_case(f"tanh {dtype}", "tanh", x, ulps_within(ref, 4.0))
        x = np.array([0, INF, -INF, NAN, info.max, -info.max, info.tiny, -0.0], dt)
        want = np.array([0, 1, -1, NAN, 1, -1, info.tiny, -0.0], dt)
        yield math_case(f"tanh specials {dtype}", "tanh", x, exactly(want, True))
        for fn in MATH:
            lo = 0.1 if fn == "log" else -20
            x = rng.uniform(lo, 20, 80).astype(dt)
            whole = f"{fn} tails {dtype} whole"
            yield math_case(whole, fn, x, no_check)
            for n in (1, 2, 3, 5, 7, 9, 15, 17, 33, 67):
                part = slice(3, 3 + n)
                check = same_bits_as(whole, part=part)
                yield math_case(f"{fn} tails {dtype} [3:{3 + n}]", fn, x[part], check)


# ---- rows of few classes (test_few_classes)


def same_gradient_bits(
    other: str, back: Callable[[np.ndarray], np.ndarray], part: Any = ...
) -> Check:
    """The cross-entropy's gradient and per-example losses (as the kernels wrote them, in
    float64), bit for bit `part` of the other case's."""

    def check(res: Result, lookup: Lookup) -> None:
        want = lookup(other)
        np.testing.assert_array_equal(back(res.out), want.out[part], "gradient")
        got_losses, want_losses = res.view(LOSS_ROWS), want.view(LOSS_ROWS)
        np.testing.assert_array_equal(back(got_losses), want_losses[part], "losses")

    return check


def few_class_cases() -> Iterator[Case]:
    """Rows of 1 to 9 classes, and around NEON's tile limits (softmax to 7, the rest to 32
    classes): laid end to end they go by the short transposes (register tiles, n < 4) or
    by tiles of 4 x 4 blocks; reversed or apart, by the blocks or element by element. A
    row's bits must not depend on that, on its lane or on its batch: each case is bit for
    bit the contiguous rows' answer, which is held to the references."""
    rng = seeded("few classes")
    views: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Any, Any]] = {
        # name: (the view of an operand, how its output goes back, which rows it holds)
        "reversed": (lambda a: a[::-1], lambda a: a[::-1], ...),
        "apart": (lambda a: np.repeat(a, 2, axis=-1)[:, ::2], lambda a: a, ...),
        "rows 5:16": (lambda a: a[5:16], lambda a: a, slice(5, 16)),
        "row 7": (lambda a: a[7:8], lambda a: a, slice(7, 8)),
    }
    for dtype in (F32, F64, F16):
        for n in (*range(1, 10), 16, 32, 33):
            clean = (rng.standard_normal((45, n)) * 3).astype(dtype)
            special = clean.copy()
            special[3, 0], special[9, n - 1], special[20] = NAN, INF, -INF
            special[30, 0] = -INF
            for kind, x in (("clean", clean), ("special", special)):
                tag = f"few classes {dtype} {n} {kind}"
                for op in (*FORWARD, *BACKWARD):
                    grad = y = None
                    if op in BACKWARD:
                        grad, y = grad_and_y(rng, x.shape, dtype, op)
                        if kind == "special":
                            y = y.copy()
                            y[3, 0] = NAN
                        check = backward_check(op, grad, y) if kind == "clean" else no_check
                        yield family(f"{tag} {op}", op, grad, check, y=y)
                    else:
                        check = forward_check(op, x) if kind == "clean" else no_check
                        yield family(f"{tag} {op}", op, x, check)
                    for view, (see, back, part) in views.items():
                        same = same_bits_as(f"{tag} {op}", back, part)
                        if op in BACKWARD:
                            yield family(f"{tag} {op} {view}", op, see(grad), same, y=see(y))
                        else:
                            yield family(f"{tag} {op} {view}", op, see(x), same)
                labels = rng.integers(0, n, 45)
                labels[11] = -100
                check = ce_check(x, labels, reduction="none") if kind == "clean" else no_check
                yield cross_entropy(f"{tag} ce", x, labels, check, reduction="none")
                for view, (see, back, part) in views.items():
                    same = same_gradient_bits(f"{tag} ce", back, part)
                    yield cross_entropy(
                        f"{tag} ce {view}",
                        see(x),
                        see(labels[:, None])[:, 0],
                        same,
                        reduction="none",
                    )


def all_cases() -> list[Case]:
    cases = [
        *row_cases(),
        *layout_cases(),
        *special_cases(),
        *half_cases(),
        *mask_cases(),
        *ce_cases(),
        *math_cases(),
        *few_class_cases(),
    ]
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    return cases


# ---------------------------------------------------------------- build and run --


def sources() -> list[tuple[Path, list[str], str]]:
    """(source, definitions, object) for the program: each target's instantiation, the
    C++ core (no Python) and the driver."""
    src = ROOT / "cpp" / "src"
    core = sorted(src.glob("*.cpp")) + sorted((src / "layout").glob("*.cpp"))
    per_target = [
        (src / "arch" / "instantiate.cpp", [f"-DFASTSOFTMAX_TARGET={t}"], f"target_{t}.o")
        for t in TARGETS
    ]
    rest = [(p, ["-DFASTSOFTMAX_HAVE_NEON"], f"{p.stem}.o") for p in core]
    driver = Path(__file__).with_name("kernel_check.cpp")
    return [*per_target, *rest, (driver, ["-DFASTSOFTMAX_HAVE_NEON"], "kernel_check.o")]


def build_stamp(cxx: str) -> str:
    """What the program is built from: the compiler, the flags and every C++ file."""
    h = hashlib.sha256()
    try:
        h.update(subprocess.run([cxx, "--version"], capture_output=True, check=True).stdout)
    except FileNotFoundError:
        sys.exit(f"build: no {cxx} (Debian: apt-get install g++-aarch64-linux-gnu; .ci/neon does)")
    h.update(" ".join(CXX_FLAGS).encode())
    files = [
        *sorted((ROOT / "cpp" / "include").rglob("*")),
        *sorted((ROOT / "cpp" / "src").rglob("*")),
    ]
    for p in [*files, Path(__file__).with_name("kernel_check.cpp")]:
        if p.is_file():
            h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def build(build_dir: Path, cxx: str, jobs: int) -> Path:
    """The statically linked AArch64 program (reused when nothing it is built from changed)."""
    exe, stamp_file = build_dir / "kernel_check", build_dir / "stamp"
    stamp = build_stamp(cxx)
    if exe.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        print(f"build: {exe} is up to date")
        return exe
    build_dir.mkdir(parents=True, exist_ok=True)
    include = [f"-I{ROOT / 'cpp' / 'include'}", f"-I{ROOT / 'cpp' / 'src'}"]
    start = time.perf_counter()

    def compile_one(job: tuple[Path, list[str], str]) -> Path:
        source, defs, obj = job
        cmd = [cxx, *CXX_FLAGS, *include, *defs, "-c", str(source), "-o", str(build_dir / obj)]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"build: {source.relative_to(ROOT)} failed:\n{proc.stdout}{proc.stderr}")
        return build_dir / obj

    with ThreadPoolExecutor(max(1, jobs)) as pool:  # (the two targets first: the slowest)
        objects = list(pool.map(compile_one, sources()))
    link = [cxx, "-static", "-pthread", *map(str, objects), "-o", str(exe)]
    proc = subprocess.run(link, check=False, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"build: linking failed:\n{proc.stdout}{proc.stderr}")
    stamp_file.write_text(stamp)
    print(f"build: {exe} in {time.perf_counter() - start:.1f} s ({jobs} jobs)")
    return exe


def write_cases(path: Path, cases: list[Case]) -> None:
    with path.open("wb") as f:
        f.write(b"FSNC" + struct.pack("<I", len(cases)))
        for case in cases:
            f.write(case.encode())


def decode(data: bytes, cases: list[Case]) -> list[Result]:
    """The program's outputs file: one Result per case."""
    if data[:4] != b"FSNR" or struct.unpack_from("<I", data, 4)[0] != len(cases):
        raise RuntimeError("the outputs file does not match the cases")
    pos, results = 8, []
    for case in cases:
        status, length = struct.unpack_from("<II", data, pos)
        pos += 8
        message = data[pos : pos + length].decode(errors="replace")
        pos += length
        value, count = struct.unpack_from("<dI", data, pos)
        pos += 12
        memory = {}
        for _ in range(count):
            role, size = struct.unpack_from("<IQ", data, pos)
            pos += 12
            dtype = case.operands[owner(case, role)].memory.dtype
            memory[role] = np.frombuffer(data, dtype, size // dtype.itemsize, pos)
            pos += size
        results.append(Result(case, message if status else None, value, memory))
    return results


def run_on_host(case: Case) -> Result:
    """The case on the host's own fastsoftmax, through _core with the same operands."""
    memory = {r: o.initial().copy() for r, o in case.operands.items() if o.shares is None}
    views = {r: o.view(memory[owner(case, r)]) for r, o in case.operands.items()}
    value, error = 0.0, None
    try:
        if case.op in MATH:
            views[OUT][...] = getattr(_core, MATH[case.op])(views[X])
        elif case.op == "cross_entropy":
            value = _core.cross_entropy(
                views[X],
                case.axis,
                views.get(LABELS),
                views.get(TARGET),
                views.get(LSE),
                views.get(OUT),
                memory.get(GRAD_SCALE),
                memory.get(LOSS_ROWS),
                memory.get(LSE_ROWS),
                case.reduction,
                memory.get(WEIGHT),
                case.smoothing,
                case.z_loss,
                case.softcap,
                case.ignore_index,
                case.temperature,
            )
        else:
            inputs = (views[X], views[Y]) if case.op in BACKWARD else (views[X],)
            where = views[WHERE].view(bool) if WHERE in views else None
            getattr(_core, case.op)(*inputs, case.axis, views[OUT], False, case.temperature, where)
    except Exception as e:  # (reported as the case's failure)  # noqa: BLE001
        error = f"{type(e).__name__}: {e}"
    outputs = {r: memory[owner(case, r)] for r in OUTPUTS if r in case.operands}
    return Result(case, error, value, outputs)


def run_under_qemu(
    args: argparse.Namespace, exe: Path, work: Path, target: str, cases: list[Case]
) -> list[Result]:
    cases_file, outputs_file = work / "cases.bin", work / f"outputs-{target}.bin"
    env = {**os.environ, "FASTSOFTMAX_SIMD": target}
    command = [args.qemu, str(exe), str(cases_file), str(outputs_file), str(args.threads)]
    if shutil.which(args.qemu) is None:
        sys.exit(f"no {args.qemu} (Debian: apt-get install qemu-user; .ci/neon does)")
    proc = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{target}: kernel_check failed ({proc.returncode}):\n{proc.stderr}")
    lines = proc.stdout.splitlines()
    if lines[:1] != [f"target {target}"] or len(lines) > 1:
        raise RuntimeError(f"FASTSOFTMAX_SIMD={target}, but the program says: {proc.stdout!r}")
    return decode(outputs_file.read_bytes(), cases)


def untouched_around(case: Case, res: Result) -> None:
    """The output's memory outside its view is what was sent."""
    for role in OUTPUTS:
        if role not in res.memory or role != OUT:
            continue
        o = case.operands[role]
        expected = case.operands[owner(case, role)].initial().copy()
        o.view(expected)[...] = o.view(res.memory[role])
        if expected.tobytes() != res.memory[role].tobytes():
            raise AssertionError("the call wrote outside its output's view")


def failure(res: Result, lookup: Lookup) -> str | None:
    """Why a result is wrong (its check's message), or None."""
    try:
        if res.error is not None:
            raise AssertionError(f"raised {res.error}")
        untouched_around(res.case, res)
        with np.errstate(all="ignore"):
            res.case.check(res, lookup)
    except Exception as e:  # noqa: BLE001
        lines = [line for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
        return "\n    ".join(lines[:12])
    return None


def check_all(results: list[Result], where: str) -> list[str]:
    by_name = {r.case.name: r for r in results}

    def lookup(name: str) -> Result:
        if name not in by_name:
            raise AssertionError(f"compares with case {name!r}, which did not run (--only)")
        return by_name[name]

    return [
        f"FAIL [{where}] {r.case.name}: {why}"
        for r in results
        if (why := failure(r, lookup)) is not None
    ]


def digest(res: Result) -> bytes:
    """The values of a result's outputs (every NaN the same, as tests/recorded_cases.py)."""
    h = hashlib.sha256(struct.pack("<d", res.value))
    for role in sorted(res.memory):
        values = res.memory[role].astype(np.float64)
        values[np.isnan(values)] = NAN
        h.update(values.tobytes())
    return h.digest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, help="where to build (default: a temporary one)")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--threads", type=int, default=2, help="of the calls under qemu")
    parser.add_argument("--cxx", default="aarch64-linux-gnu-g++")
    parser.add_argument("--qemu", default="qemu-aarch64")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    cases = [c for c in all_cases() if args.only in c.name]
    print(f"{len(cases)} cases, made in {time.perf_counter() - start:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        build_dir = args.build_dir or Path(tmp) / "build"
        exe = build(build_dir, args.cxx, args.jobs)
        work = Path(tmp)
        write_cases(work / "cases.bin", cases)

        start = time.perf_counter()
        previous = fs.simd_target()
        _core.set_target("baseline")
        try:
            results = [run_on_host(c) for c in cases]
        finally:
            _core.set_target(previous)
        ran = time.perf_counter() - start
        failures = check_all(results, "host baseline")
        host = [digest(r) for r in results]
        del results
        print(
            f"host baseline: {len(cases)} cases, {len(failures)} failed, {ran:.1f} s to run, "
            f"{time.perf_counter() - start - ran:.1f} s to check"
        )
        for target in filter(None, args.targets.split(",")):
            start = time.perf_counter()
            results = run_under_qemu(args, exe, work, target, cases)
            ran = time.perf_counter() - start
            failed = check_all(results, target)
            equal = sum(digest(r) == h for r, h in zip(results, host))
            print(
                f"{target}: {len(cases)} cases, {len(failed)} failed, {ran:.1f} s under "
                f"qemu-aarch64, {time.perf_counter() - start - ran:.1f} s to check; "
                f"the values of the host's baseline in {equal} (not promised)"
            )
            failures += failed
            del results
    for f in failures:
        print(f, file=sys.stderr)
    if failures:
        print(f"{len(failures)} failures", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

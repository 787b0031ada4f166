"""The NumPy-style API: dtypes, out=, in place, aliasing, axes, errors and their messages."""

from __future__ import annotations

import re
import threading

import fastsoftmax as fs
import ml_dtypes
import numpy as np
import pytest
from fastsoftmax import _core
from numpy.exceptions import AxisError
from numpy.lib.stride_tricks import as_strided
from reference import (
    ref_log_softmax,
    ref_log_softmax_backward,
    ref_logsumexp,
    ref_softmax,
    ref_softmax_backward,
    scipy_op,
)

UNARY = [fs.softmax, fs.log_softmax]
BINARY = [fs.softmax_backward, fs.log_softmax_backward]
REF_UNARY = {fs.softmax: ref_softmax, fs.log_softmax: ref_log_softmax}
REF_BINARY = {
    fs.softmax_backward: ref_softmax_backward,
    fs.log_softmax_backward: ref_log_softmax_backward,
}
ALL_OPS = [fs.softmax, fs.log_softmax, fs.logsumexp, fs.softmax_backward, fs.log_softmax_backward]


def op_id(op) -> str:
    return op.__name__


def call(op, x, *args, **kwargs):
    """Call a unary op on x, or a backward op on (x, a valid y derived from x)."""
    if op in BINARY:
        return op(x, backward_y(op, x), *args, **kwargs)
    return op(x, *args, **kwargs)


def backward_y(op, x):
    """A y for the backward op, of x's shape and dtype (a softmax or log_softmax of something)."""
    with np.errstate(all="ignore"):
        a = np.cos(np.asarray(x, dtype=np.float64))
    y = ref_softmax(a) if op is fs.softmax_backward else ref_log_softmax(a)
    return y.astype(np.asarray(x).dtype)


# ----------------------------------------------------------------- dtypes ---


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_dtypes_are_kept(rng, op, dtype):
    x = rng.standard_normal((3, 5)).astype(dtype)
    assert call(op, x).dtype == dtype


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
def test_float16_is_computed_in_float32_and_returned_as_float16(rng, op):
    x = rng.standard_normal((4, 33)).astype(np.float16)
    got = call(op, x)
    assert got.dtype == np.float16
    if op in BINARY:
        y = backward_y(op, x)
        expected = op(x.astype(np.float32), y.astype(np.float32)).astype(np.float16)
    else:
        expected = op(x.astype(np.float32)).astype(np.float16)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
def test_longdouble_is_computed_in_float64_and_returned_as_longdouble(rng, op):
    x = rng.standard_normal((4, 33)).astype(np.longdouble)
    got = call(op, x)
    assert got.dtype == np.longdouble
    if op in BINARY:
        y = backward_y(op, x)
        expected = op(x.astype(np.float64), y.astype(np.float64)).astype(np.longdouble)
    else:
        expected = op(x.astype(np.float64)).astype(np.longdouble)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint64, np.bool_])
def test_integers_and_bools_are_computed_and_returned_as_float64(rng, op, dtype):
    x = rng.integers(0, 2 if dtype == np.bool_ else 50, (3, 17)).astype(dtype)
    if op in BINARY:
        got = op(x, x)
        expected = op(x.astype(np.float64), x.astype(np.float64))
    else:
        got = op(x)
        expected = op(x.astype(np.float64))
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("op", [fs.softmax, fs.log_softmax, fs.logsumexp], ids=op_id)
def test_integer_results_match_scipy(op):
    x = np.arange(-5, 7, dtype=np.int32).reshape(3, 4)
    np.testing.assert_allclose(op(x), scipy_op(op.__name__, x), rtol=1e-14)


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize(
    "dtype", [np.complex64, np.complex128, object, "U3", "S3", "datetime64[s]"], ids=str
)
def test_unsupported_dtypes_raise_type_error_naming_the_dtype(op, dtype):
    x = np.zeros((2, 3), dtype=dtype)
    args = (x, x) if op in BINARY else (x,)
    with pytest.raises(TypeError, match=re.escape(str(np.dtype(dtype)))):
        op(*args)


@pytest.mark.parametrize("op", [*ALL_OPS, fs.cross_entropy], ids=op_id)
def test_a_conversion_too_large_for_numpy_names_the_argument_and_its_shape(op):
    # 2^62 int8 elements are a valid (zero-stride) array; as float64 they would not be
    huge = as_strided(np.zeros(1, np.int8), shape=(2**31, 2**31), strides=(0, 0))
    name = {fs.cross_entropy: "logits", **dict.fromkeys(BINARY, "grad")}.get(op, "x")
    labels = as_strided(np.zeros(1, np.int64), shape=(2**31,), strides=(0,))
    second = {fs.cross_entropy: labels, **dict.fromkeys(BINARY, huge)}
    args = (huge, second[op]) if op in second else (huge,)
    with pytest.raises(
        ValueError, match=rf"{name} of shape \(2147483648, 2147483648\) and dtype int8 is too large"
    ):
        op(*args)


@pytest.mark.parametrize("op", BINARY, ids=op_id)
def test_backward_type_error_names_the_argument(op):
    good = np.zeros((2, 3))
    with pytest.raises(TypeError, match="grad"):
        op(good.astype(complex), good)
    with pytest.raises(TypeError, match="y"):
        op(good, good.astype(complex))


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize("dtype", [">f4", ">f8", ">f2", "<f4", "<f8"])
def test_non_native_byte_order(rng, op, dtype):
    x = rng.standard_normal((3, 21)).astype(dtype)
    native = x.astype(np.dtype(dtype).newbyteorder("="))
    got = call(op, x)
    assert got.dtype == native.dtype
    assert got.dtype.isnative
    np.testing.assert_array_equal(got, call(op, native))


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize("dtype", ["f4", "f8", "f2", ml_dtypes.bfloat16])
def test_dtypes_equal_to_a_native_one_but_not_it(rng, op, dtype):
    """The binding matches dtypes by identity first (NumPy keeps one object per builtin
    dtype), then by equality: a dtype carrying metadata is another object, equal to the
    native one, and must give the same results, through the public function and through
    the binding itself (which the public function's canonical view would bypass), out=
    included."""
    x = rng.standard_normal((3, 21)).astype(dtype)
    other = np.dtype(dtype, metadata={"unit": "nat"})
    assert other is not x.dtype
    assert other == x.dtype
    want = call(op, x)
    np.testing.assert_array_equal(call(op, x.view(other)), want)
    if op in (fs.softmax, fs.log_softmax, fs.logsumexp):
        kernel = getattr(_core, op.__name__)
        np.testing.assert_array_equal(kernel(x.view(other), 1), op(x, axis=1))
    if op in (fs.softmax, fs.log_softmax):
        out = np.empty(x.shape, other)
        assert op(x, out=out) is out
        np.testing.assert_array_equal(out, want)
        out2 = np.empty(x.shape, other)
        assert getattr(_core, op.__name__)(x.view(other), 1, out2) is out2
        np.testing.assert_array_equal(out2, want)


@pytest.mark.parametrize("op", BINARY, ids=op_id)
@pytest.mark.parametrize(
    ("gdt", "ydt", "result"),
    [
        (np.float32, np.float64, np.float64),
        (np.float64, np.float32, np.float64),
        (np.float16, np.float32, np.float32),
        (np.float16, np.float16, np.float16),
        (np.int64, np.float32, np.float64),
        (np.float32, np.longdouble, np.longdouble),
    ],
)
def test_backward_mixed_dtypes_use_the_common_type(rng, op, gdt, ydt, result):
    g = rng.standard_normal((3, 9)).astype(gdt)
    y = backward_y(op, rng.standard_normal((3, 9))).astype(ydt)
    got = op(g, y)
    assert got.dtype == result
    ref = REF_BINARY[op](g.astype(np.float64), y.astype(np.float64))
    tol = 1e-2 if result == np.float16 else 1e-5
    np.testing.assert_allclose(got.astype(np.float64), ref.astype(np.float64), rtol=tol, atol=tol)


# ------------------------------------------------------- inputs and shapes ---


@pytest.mark.parametrize("op", [fs.softmax, fs.log_softmax, fs.logsumexp], ids=op_id)
def test_list_inputs(op):
    x = [[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]]
    got = op(x)
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, op(np.array(x)))
    np.testing.assert_array_equal(op([1, 2, 3]), op(np.array([1.0, 2.0, 3.0])))


@pytest.mark.parametrize("op", BINARY, ids=op_id)
def test_backward_list_inputs(op):
    g = [[1.0, -2.0, 0.5]]
    y = backward_y(op, np.array([[0.1, 0.2, 0.3]])).tolist()
    np.testing.assert_array_equal(op(g, y), op(np.array(g), np.array(y)))


@pytest.mark.parametrize("op", [fs.softmax, fs.log_softmax, fs.logsumexp], ids=op_id)
@pytest.mark.parametrize("x", [np.float64(3.5), np.array(-1e30), 0.0, np.float32(2.0)], ids=repr)
def test_zero_d_inputs_with_axis_none_give_0d_results(op, x):
    got = op(x, axis=None)
    expected = scipy_op(op.__name__, np.asarray(x), axis=None)
    assert isinstance(got, np.ndarray)
    assert got.shape == (), f"{op.__name__} of a 0-d input has shape {got.shape}, expected ()"
    assert got.dtype == np.asarray(x).dtype
    assert got == expected, f"{op.__name__}({x!r}) = {got!r}, SciPy gives {expected!r}"


def test_zero_d_logsumexp_with_keepdims():
    got = fs.logsumexp(np.float64(1.5), axis=None, keepdims=True)
    assert got.shape == ()
    assert got == 1.5


@pytest.mark.parametrize("op", BINARY, ids=op_id)
def test_zero_d_backward_with_axis_none_gives_a_0d_result(op):
    y = 1.0 if op is fs.softmax_backward else 0.0  # softmax of one element, and its log
    got = op(2.0, y, axis=None)
    assert got.shape == (), f"{op.__name__} of 0-d inputs has shape {got.shape}, expected ()"
    assert got == 0.0  # the gradient of a constant output


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize("axis", [0, -1, 1])
def test_zero_d_inputs_with_an_axis_raise_axis_error(op, axis):
    with pytest.raises(AxisError):
        call(op, np.float32(1.0), axis=axis)


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((3, 4), 2),
        ((3, 4), -3),
        ((5,), 1),
        ((2, 3, 4), (0, 3)),
        ((3, 4), 2**70),  # beyond C long: no OverflowError
        ((3, 4), -(2**70)),
        ((2, 3, 4), (0, 2**70)),
    ],
)
def test_bad_axis_raises_axis_error_naming_it(op, shape, axis):
    x = np.ones(shape)
    bad = axis if isinstance(axis, int) else axis[-1]
    with pytest.raises(AxisError, match=str(bad)):
        call(op, x, axis=axis)


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize("axis", [1.0, "0", [0, 1]], ids=repr)
def test_non_integer_axis_raises_type_error(op, axis):
    with pytest.raises(TypeError, match="axis"):
        call(op, np.ones((2, 3)), axis=axis)


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
def test_repeated_axis_raises_value_error(op):
    with pytest.raises(ValueError, match=r"repeated axis in axis \(1, -2\)"):
        call(op, np.ones((2, 3, 4)), axis=(1, -2))


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize("axis", [(0, 0.5), ("a",), (0, None)], ids=repr)
def test_non_integer_entry_of_an_axis_tuple_raises_type_error_naming_the_axis(op, axis):
    with pytest.raises(TypeError, match=re.escape(f"got {axis!r}")):
        call(op, np.ones((2, 3)), axis=axis)


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
def test_numpy_integer_axis(rng, op):
    x = rng.standard_normal((4, 6))
    np.testing.assert_array_equal(call(op, x, axis=np.int64(0)), call(op, x, axis=0))
    np.testing.assert_array_equal(call(op, x, axis=np.uint8(1)), call(op, x, axis=-1))


@pytest.mark.parametrize("op", [fs.softmax, fs.log_softmax, fs.logsumexp], ids=op_id)
@pytest.mark.parametrize(
    "axis", [None, (0,), (0, 2), (2, 0), (-1, 0), (0, 1, 2), (1,), ()], ids=repr
)
def test_axis_tuples_and_none_match_scipy(rng, op, axis):
    x = rng.standard_normal((3, 5, 4))
    np.testing.assert_allclose(
        op(x, axis=axis), scipy_op(op.__name__, x, axis=axis), rtol=1e-13, atol=1e-15
    )


@pytest.mark.parametrize("op", BINARY, ids=op_id)
@pytest.mark.parametrize("axis", [None, (0, 2), (1,), (-1, -2)], ids=repr)
def test_backward_axis_tuples(rng, op, axis):
    g = rng.standard_normal((3, 5, 4))
    y = ref_softmax(rng.standard_normal((3, 5, 4)), axis=axis).astype(np.float64)
    if op is fs.log_softmax_backward:
        y = np.log(y)
    ref = REF_BINARY[op](g, y, axis=axis)
    np.testing.assert_allclose(op(g, y, axis=axis), ref.astype(np.float64), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("op", BINARY, ids=op_id)
def test_backward_shape_mismatch_names_both_shapes(op):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        op(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 1\)"):
        op(np.ones((2, 3)), np.ones((2, 1)))  # no broadcasting


# -------------------------------------------------- inputs are left alone ---


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("layout", ["c", "f", "strided", "reversed"])
@pytest.mark.parametrize("axis", [0, -1, None])
def test_inputs_are_not_modified(rng, op, dtype, layout, axis):
    base = rng.standard_normal((9, 34)).astype(dtype)
    base[1, 3] = np.nan
    base[2, 5] = -np.inf
    base[4, 0] = np.inf
    views = {
        "c": base,
        "f": np.asfortranarray(base),
        "strided": base[::2, ::3],
        "reversed": base[::-1, ::-1],
    }
    x = views[layout]
    y = backward_y(op, x) if op in BINARY else None
    x_before = x.copy()
    y_before = None if y is None else y.copy()
    base_before = base.copy()
    if y is None:
        op(x, axis=axis)
    else:
        op(x, y, axis=axis)
    np.testing.assert_array_equal(x, x_before, err_msg="input modified")
    np.testing.assert_array_equal(base, base_before, err_msg="array under the input view modified")
    if y is not None:
        np.testing.assert_array_equal(y, y_before, err_msg="y modified")


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_read_only_inputs(rng, op, dtype):
    x = rng.standard_normal((5, 19)).astype(dtype)
    expected = call(op, x)
    x.setflags(write=False)
    if op in BINARY:
        y = backward_y(op, x)
        y.setflags(write=False)
        got = op(x, y)
    else:
        got = op(x)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("op", [fs.softmax, fs.log_softmax, fs.logsumexp], ids=op_id)
@pytest.mark.parametrize("axis", [0, 1])
def test_broadcast_inputs_with_zero_strides(rng, op, axis):
    row = rng.standard_normal(37)
    x = np.broadcast_to(row, (6, 37)) if axis == 1 else np.broadcast_to(row[:, None], (37, 6))
    assert not x.flags.writeable
    got = op(x, axis=axis)
    np.testing.assert_allclose(
        got,
        REF_UNARY.get(op, ref_logsumexp)(np.array(x), axis=axis).astype(float),
        rtol=1e-13,
        atol=1e-15,
    )


# ------------------------------------------------------------------- out= ---


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("axis", [0, -1, (0, 1), None])
def test_out_receives_the_result_and_is_returned(rng, op, dtype, axis):
    x = rng.standard_normal((6, 35)).astype(dtype)
    expected = call(op, x, axis=axis)
    out = np.full(expected.shape, 7.0, dtype=dtype)
    got = call(op, x, axis=axis, out=out)
    assert got is out
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize("layout", ["strided", "fortran", "reversed"])
@pytest.mark.parametrize("axis", [0, -1])
def test_non_contiguous_out(rng, op, layout, axis):
    x = rng.standard_normal((8, 40)).astype(np.float32)
    expected = call(op, x, axis=axis)
    if layout == "strided":
        big = np.zeros((2 * expected.shape[0], *expected.shape[1:]), dtype=np.float32)
        out = big[::2]
    elif layout == "fortran":
        out = np.zeros(expected.shape, dtype=np.float32, order="F")
    else:
        out = np.zeros(expected.shape, dtype=np.float32)[::-1]
    assert call(op, x, axis=axis, out=out) is out
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
    if layout == "strided":
        np.testing.assert_array_equal(
            big[1::2], 0, err_msg="wrote between the strided out's elements"
        )


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
def test_unaligned_input_and_out(op):
    n = 24
    buf = np.zeros(8 * n * 2 + 16, dtype=np.uint8)
    x = buf[1 : 1 + 8 * n].view(np.float64).reshape(4, n // 4)
    x[...] = np.linspace(-3, 3, n).reshape(4, n // 4)
    assert not x.flags.aligned
    aligned = np.ascontiguousarray(x)
    expected = call(op, aligned)
    np.testing.assert_array_equal(call(op, x), expected)
    obuf = np.zeros(8 * n + 8, dtype=np.uint8)
    out = obuf[3 : 3 + expected.nbytes].view(np.float64).reshape(expected.shape)
    assert not out.flags.aligned
    assert call(op, aligned, out=out) is out
    np.testing.assert_array_equal(out, expected)


def packed_field(values: np.ndarray) -> np.ndarray:
    """values as a field of a packed structured array: the data aligned, the strides not."""
    rec = np.zeros(values.shape, [("v", values.dtype), ("pad", np.uint8)])
    field = rec["v"]
    field[...] = values
    assert field.__array_interface__["data"][0] % values.dtype.alignment == 0
    assert field.strides[-1] % values.dtype.itemsize != 0
    assert not field.flags.aligned
    return field


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strides_that_are_not_multiples_of_the_itemsize(rng, op, dtype):
    """Such views took the fast path to the kernel, which refused them with a ValueError;
    they take the general path (a copy), as unaligned data does."""
    x = rng.standard_normal((3, 7)).astype(dtype)
    expected = call(op, x)
    np.testing.assert_array_equal(call(op, packed_field(x)), expected)
    if op in BINARY:
        np.testing.assert_array_equal(op(x, packed_field(backward_y(op, x))), expected)
    out = packed_field(np.zeros_like(expected))
    assert call(op, x, out=out) is out
    np.testing.assert_array_equal(out, expected)


def packed_record(values: np.ndarray) -> np.ndarray:
    """values (shape (1, n)) as the field of one packed record: NumPy calls it aligned (the
    odd stride is that of a length-1 dimension), which the kernels must agree with."""
    rec = np.zeros(1, [("v", values.dtype, values.shape[1:]), ("pad", np.uint8)])
    field = rec["v"]
    field[...] = values
    assert field.strides[0] % values.dtype.itemsize != 0
    assert field.flags.aligned
    return field


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_odd_strides_that_address_nothing(rng, op, dtype):
    """Odd strides of a length-1 dimension, or of an empty array, raised _core.Fallback
    from the general path; they are not used, and the arrays go straight to the kernel."""
    x = rng.standard_normal((1, 7)).astype(dtype)
    expected = call(op, x)
    np.testing.assert_array_equal(call(op, packed_record(x)), expected)
    out = packed_record(np.zeros((1, 7), dtype)) if op is not fs.logsumexp else None
    if out is not None:
        assert call(op, x, out=out) is out
        np.testing.assert_array_equal(out, expected)
    empty = np.lib.stride_tricks.as_strided(np.zeros(4, dtype), (0, 3), (5, dtype().itemsize))
    assert empty.flags.aligned
    np.testing.assert_array_equal(call(op, empty), call(op, np.zeros((0, 3), dtype)))


def one_byte_off(shape, dtype) -> np.ndarray:
    """Zeros of `shape` whose data pointer is one byte off the dtype's alignment."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    a = np.zeros(size + 16, np.uint8)[1:][:size].view(dtype).reshape(shape)  # ([1:1]: offset 0)
    assert a.__array_interface__["data"][0] % np.dtype(dtype).alignment
    return a


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4)], ids=str)
def test_empty_unaligned_inputs_and_out(op, dtype, shape):
    """NumPy calls every empty array aligned, even one a byte off, but the kernels check
    the pointer itself: such arrays must take the general path, not raise _core.Fallback."""
    others = [np.zeros(shape, dtype)] if op in BINARY else []  # (y for the backward ops)
    expected = op(np.zeros(shape, dtype), *others)
    np.testing.assert_array_equal(op(one_byte_off(shape, dtype), *others), expected)
    if op in BINARY:
        np.testing.assert_array_equal(op(others[0], one_byte_off(shape, dtype)), expected)
    out = one_byte_off(expected.shape, dtype)  # (logsumexp over (3, 0): 3 results)
    assert op(np.zeros(shape, dtype), *others, out=out) is out
    np.testing.assert_array_equal(out, expected)


# float16 inputs whose float32 results are too large for float16
OVERFLOWING_FLOAT16 = {
    "log_softmax": ([[60000.0, -60000.0]],),  # -120000
    "softmax_backward": ([[60000.0, 60000.0, -60000.0]], [[1.0, 1.0, 1.0]]),  # -120000
    "log_softmax_backward": ([[-60000.0, 60000.0, 60000.0]], [[0.0, 0.0, 0.0]]),  # -120000
}


@pytest.mark.parametrize("name", list(OVERFLOWING_FLOAT16))
@pytest.mark.parametrize("axis", [-1, (0, 1)], ids=str)
@pytest.mark.parametrize("with_out", [False, True], ids=["", "out"])
def test_float16_results_too_large_are_infinite_without_a_warning(name, axis, with_out):
    """As for float32 results ("a result too large for the dtype is +-inf"): no NumPy
    RuntimeWarning from the conversion (pytest turns one into an error)."""
    args = [np.array(a, np.float16) for a in OVERFLOWING_FLOAT16[name]]
    op = getattr(fs, name)
    with np.errstate(over="ignore"):
        expected = op(*[a.astype(np.float32) for a in args], axis=axis).astype(np.float16)
    assert np.isneginf(expected).any()
    kw = {"out": np.empty_like(args[0])} if with_out else {}
    got = op(*args, axis=axis, **kw)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
def test_out_of_the_wrong_shape_names_both_shapes(op):
    x = np.ones((3, 5))
    expected_shape = call(op, x).shape
    bad = np.empty((3, 4))
    with pytest.raises(ValueError, match=rf"{re_shape(bad.shape)}.*{re_shape(expected_shape)}"):
        call(op, x, out=bad)


def re_shape(shape) -> str:
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize(
    ("xdt", "outdt"),
    [
        (np.float64, np.float32),
        (np.float32, np.float64),
        (np.float16, np.float32),
        (np.int64, np.int64),
        (np.float32, np.longdouble),
    ],
)
def test_out_of_the_wrong_dtype_names_both_dtypes(op, xdt, outdt):
    x = np.ones((3, 5), dtype=xdt)
    result_dtype = call(op, x).dtype
    out = np.empty(call(op, x).shape, dtype=outdt)
    with pytest.raises(ValueError, match="dtype") as info:
        call(op, x, out=out)
    msg = str(info.value)
    assert np.dtype(outdt).name in msg, msg
    assert result_dtype.name in msg, msg


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
@pytest.mark.parametrize("bad", [[0.0] * 5, 3.0, "out"], ids=repr)
def test_out_that_is_not_an_ndarray_raises_type_error(op, bad):
    with pytest.raises(TypeError, match="out"):
        call(op, np.ones(5), out=bad)


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
def test_read_only_out_raises_value_error(op):
    x = np.ones((3, 5))
    out = np.empty(call(op, x).shape)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        call(op, x, out=out)
    if op is not fs.logsumexp:  # read-only x as its own out
        x.setflags(write=False)
        with pytest.raises(ValueError, match="read-only"):
            call(op, x, out=x)


@pytest.mark.parametrize("op", [fs.logsumexp], ids=op_id)
@pytest.mark.parametrize("axis", [0, 1, (0, 2), None])
def test_logsumexp_out_with_and_without_keepdims(rng, op, axis):
    x = rng.standard_normal((4, 5, 6))
    for keepdims in (False, True):
        expected = op(x, axis=axis, keepdims=keepdims)
        out = np.empty(expected.shape)
        assert op(x, axis=axis, keepdims=keepdims, out=out) is out
        np.testing.assert_array_equal(out, expected)
    # an out of the other shape is refused
    wrong = np.empty((*op(x, axis=axis, keepdims=False).shape, 1))
    with pytest.raises(ValueError, match="shape"):
        op(x, axis=axis, keepdims=False, out=wrong)


# --------------------------------------------------------------- in place ---


@pytest.mark.parametrize("op", UNARY, ids=op_id)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("layout", ["c", "f", "strided", "reversed"])
@pytest.mark.parametrize("axis", [0, -1, (0, 1), None])
def test_in_place_gives_the_out_of_place_result(rng, op, dtype, layout, axis):
    base = (rng.standard_normal((12, 70)) * 5).astype(dtype)
    base[3, 7] = -np.inf
    make = {
        "c": lambda: base.copy(),
        "f": lambda: np.asfortranarray(base),
        "strided": lambda: base.copy()[::2, ::3],
        "reversed": lambda: base.copy()[::-1, ::-1],
    }[layout]
    x = make()
    # the expected result goes to a separate out of the same layout, so that
    # both calls take the same kernel path (the layout of out selects it too)
    expected = make()
    op(make(), axis=axis, out=expected)
    got = op(x, axis=axis, out=x)
    assert got is x
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize("op", BINARY, ids=op_id)
@pytest.mark.parametrize("which", ["grad", "y"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["c", "f", "reversed"])
@pytest.mark.parametrize("axis", [0, -1])
def test_backward_in_place_into_grad_or_y(rng, op, which, dtype, layout, axis):
    g0 = rng.standard_normal((10, 37)).astype(dtype)
    y0 = backward_y(op, rng.standard_normal((10, 37))).astype(dtype)
    fix = {"c": np.array, "f": np.asfortranarray, "reversed": lambda a: a.copy()[::-1, ::-1]}[
        layout
    ]
    g, y = fix(g0), fix(y0)
    expected = fix(np.zeros_like(g0))  # same layout as the in-place out: same kernel path
    op(fix(g0), fix(y0), axis=axis, out=expected)
    target = g if which == "grad" else y
    assert op(g, y, axis=axis, out=target) is target
    np.testing.assert_array_equal(target, expected)


# ------------------------------------------------------- partial overlap ---


@pytest.mark.parametrize("op", UNARY, ids=op_id)
@pytest.mark.parametrize("axis", [-1, 0, (0, 1), None], ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_out_overlapping_the_input_partially_raises(op, axis, dtype):
    buf = np.arange(40, dtype=dtype)
    x = buf[:30].reshape(3, 10)
    out = buf[10:40].reshape(3, 10)
    before = buf.copy()
    with pytest.raises(ValueError, match="overlap"):
        op(x, axis=axis, out=out)
    np.testing.assert_array_equal(buf, before, err_msg="memory written before the error")


@pytest.mark.parametrize("op", UNARY, ids=op_id)
def test_out_overlapping_as_a_different_view_raises(op):
    buf = np.arange(16, dtype=np.float64).reshape(4, 4)
    with pytest.raises(ValueError, match="overlap"):
        op(buf, out=buf.T)  # the same memory, other strides
    with pytest.raises(ValueError, match="overlap"):
        op(buf[:, ::-1], out=buf)


@pytest.mark.parametrize("op", BINARY, ids=op_id)
@pytest.mark.parametrize("which", ["grad", "y"])
@pytest.mark.parametrize("axis", [-1, (0, 1)], ids=repr)
def test_backward_out_overlapping_an_input_partially_raises(op, which, axis):
    buf = np.linspace(0.01, 1, 40)
    other = np.linspace(0.02, 0.5, 30).reshape(3, 10)
    part = buf[:30].reshape(3, 10)
    out = buf[5:35].reshape(3, 10)
    args = (part, other) if which == "grad" else (other, part)
    with pytest.raises(ValueError, match="overlap"):
        op(*args, axis=axis, out=out)


@pytest.mark.parametrize("op", ALL_OPS, ids=op_id)
def test_out_overlapping_a_non_ndarray_input_raises(op):
    """An input given as a memoryview (or any object NumPy views rather than copies) was
    not checked for overlap, and the result came out wrong."""
    buf = np.linspace(0.01, 1, 40)
    x = memoryview(buf[:30].reshape(3, 10))
    out = buf[5:35].reshape(3, 10) if op is not fs.logsumexp else buf[5:8]
    before = buf.copy()
    with pytest.raises(ValueError, match="overlap"):
        call(op, x, out=out) if op not in BINARY else op(x, x, out=out)
    np.testing.assert_array_equal(buf, before, err_msg="memory written before the error")


@pytest.mark.parametrize("op", [*UNARY, *BINARY], ids=op_id)
def test_in_place_with_other_strides_on_length_one_dimensions(rng, op):
    """The same elements, strides apart on a length-1 dimension: in place, not overlap."""
    v = rng.standard_normal(6)
    expected = call(op, v[None].copy())
    x = v[None]  # strides (0, 8)
    out = v.reshape(1, 6)  # strides (48, 8)
    assert x.strides != out.strides
    assert (op(x, out=out) if op in UNARY else op(x, backward_y(op, x).copy(), out=out)) is out
    np.testing.assert_array_equal(out, expected)


def test_logsumexp_out_overlapping_the_input_raises():
    x = np.ones((4, 5))
    with pytest.raises(ValueError, match="overlap"):
        fs.logsumexp(x, axis=-1, out=x[:, 0])
    with pytest.raises(ValueError, match="overlap"):
        fs.logsumexp(x.reshape(2, 2, 5), axis=(1, 2), out=x[0, :2])


@pytest.mark.parametrize("op", UNARY, ids=op_id)
def test_out_sharing_a_buffer_without_overlap_is_fine(rng, op):
    buf = rng.standard_normal((6, 10))
    x, out = buf[::2], buf[1::2]  # interleaved rows: same buffer, no common element
    expected = op(x.copy())
    assert op(x, out=out) is out
    np.testing.assert_array_equal(out, expected)


# ---------------------------------------------------------------- threads ---


def test_concurrent_calls_give_the_same_results(rng):
    xs = [rng.standard_normal((64, 513)).astype(np.float32) for _ in range(4)]
    expected = [fs.softmax(x) for x in xs]
    results: dict[int, list[np.ndarray]] = {}

    def work(i: int) -> None:
        results[i] = [fs.softmax(xs[i]) for _ in range(20)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        for r in results[i]:
            np.testing.assert_array_equal(r, expected[i])

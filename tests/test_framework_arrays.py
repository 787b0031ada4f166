"""Framework arrays in and out (issue 13, parts 3 and 4): torch tensors, JAX arrays and
other DLPack producers are read without a copy, results come back in the caller's type,
``out=`` and ``inplace_grad=True`` write into a tensor's own memory, and what is not
supported (another device, float8, complex, a read-only ``out``) is a clear error with
nothing written.

The torch tests skip without torch and the JAX tests without JAX, each on its own
(``pip install torch==2.13.0 jax jaxlib``; ``pytest -m peers``). The bfloat16 *reading*
layer (``fastsoftmax._interop``) is tested directly, and the bfloat16 computations on
framework arrays against the float32 results.
"""

from __future__ import annotations

import ctypes
import gc
import warnings
from typing import Any

import fastsoftmax as fs
import ml_dtypes
import numpy as np
import pytest
from fastsoftmax import _interop
from reference import PUBLIC_OPS

pytestmark = pytest.mark.peers

BF16 = np.dtype(ml_dtypes.bfloat16)


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


@pytest.fixture
def jnp() -> Any:
    pytest.importorskip("jax")
    import jax.numpy

    return jax.numpy


def address(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def tdtype(torch: Any, name: str) -> Any:
    return getattr(torch, name)


ELEMENTWISE = {
    "softmax": lambda x, **kw: fs.softmax(x, **kw),
    "log_softmax": lambda x, **kw: fs.log_softmax(x, **kw),
    "logsumexp": lambda x, **kw: fs.logsumexp(x, **kw),
    "softmax_backward": lambda x, **kw: fs.softmax_backward(x, x, **kw),
    "log_softmax_backward": lambda x, **kw: fs.log_softmax_backward(x, x, **kw),
}
ops = pytest.mark.parametrize("op", list(ELEMENTWISE))


# -------------------------------------------------------------------------------- torch


@ops
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_torch_in_torch_out(torch, rng, op, dtype):
    f = ELEMENTWISE[op]
    t = torch.from_numpy(rng.standard_normal((4, 37)).astype(dtype))
    r = f(t)
    assert type(r) is torch.Tensor
    assert r.dtype == tdtype(torch, dtype)
    np.testing.assert_array_equal(r.numpy(), f(t.numpy().copy()))
    r0 = f(t, axis=0)
    np.testing.assert_array_equal(r0.numpy(), f(t.numpy().copy(), axis=0))


@ops
@pytest.mark.parametrize("view", ["t", "step", "t_step", "offset"])
def test_torch_non_contiguous(torch, rng, op, view):
    f = ELEMENTWISE[op]
    base = torch.from_numpy(rng.standard_normal((9, 12)).astype(np.float32))
    t = {
        "t": base.t(),
        "step": base[:, ::2],
        "t_step": base.t()[1::3],
        "offset": base[2:, 3:],
    }[view]
    v = _interop.to_numpy(t, "x")
    assert address(v) == t.data_ptr()  # read in place: no copy
    assert v.strides == tuple(s * 4 for s in t.stride())
    for axis in (0, -1):
        r = f(t, axis=axis)
        assert type(r) is torch.Tensor
        np.testing.assert_array_equal(r.numpy(), f(t.numpy(), axis=axis))  # the same view


@ops
def test_torch_requires_grad_is_read_as_data(torch, rng, op):
    f = ELEMENTWISE[op]
    t = torch.from_numpy(rng.standard_normal((3, 10))).requires_grad_()
    v = _interop.to_numpy(t, "x")
    assert address(v) == t.data_ptr()
    r = f(t)
    assert type(r) is torch.Tensor
    assert not r.requires_grad  # no autograd here: fastsoftmax.torch adds it
    np.testing.assert_array_equal(r.numpy(), f(t.detach().numpy().copy()))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_torch_zero_copy_reads(torch, dtype):
    t = torch.arange(24, dtype=tdtype(torch, dtype)).reshape(4, 6)
    for view in (t, t.t(), t[1:, ::2], t[3]):
        v = _interop.to_numpy(view, "x")
        assert address(v) == view.data_ptr()
        assert v.shape == tuple(view.shape)
        np.testing.assert_array_equal(v, view.numpy())


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_torch_out(torch, rng, dtype):
    x = rng.standard_normal((5, 8)).astype(dtype)
    expected = fs.softmax(x)
    for xin in (torch.from_numpy(x.copy()), x):  # torch or NumPy input: out is returned
        out = torch.full((5, 8), 7.0, dtype=tdtype(torch, dtype))
        ptr = out.data_ptr()
        r = fs.softmax(xin, out=out)
        assert r is out
        assert out.data_ptr() == ptr
        np.testing.assert_array_equal(out.numpy(), expected)
    out_t = torch.zeros((8, 5), dtype=tdtype(torch, dtype)).t()  # a non-contiguous out
    assert fs.softmax(torch.from_numpy(x), out=out_t) is out_t
    np.testing.assert_array_equal(out_t.numpy(), expected)


def test_torch_out_of_every_op(torch, rng):
    x = torch.from_numpy(rng.standard_normal((3, 9)))
    for f in ELEMENTWISE.values():
        expected = f(x.numpy().copy())
        out = torch.empty(expected.shape, dtype=torch.float64)
        ptr = out.data_ptr()
        assert f(x, out=out) is out
        assert out.data_ptr() == ptr
        np.testing.assert_array_equal(out.numpy(), expected)


def test_torch_in_place(torch, rng):
    x = rng.standard_normal((4, 7)).astype(np.float32)
    t = torch.from_numpy(x.copy())
    ptr = t.data_ptr()
    assert fs.softmax(t, out=t) is t
    assert t.data_ptr() == ptr
    np.testing.assert_array_equal(t.numpy(), fs.softmax(x))


def test_numpy_out_with_torch_input_is_returned_as_is(torch, rng):
    x = rng.standard_normal((3, 4))
    out = np.empty_like(x)
    assert fs.softmax(torch.from_numpy(x), out=out) is out
    np.testing.assert_array_equal(out, fs.softmax(x))


def test_torch_out_wrong_shape_or_dtype(torch):
    x = torch.ones(3, 4)
    for out in (torch.zeros(4, 3), torch.zeros(3, 4, dtype=torch.float64)):
        with pytest.raises(ValueError, match="out has"):
            fs.softmax(x, out=out)
        assert not out.any()  # nothing written
    with pytest.raises(ValueError, match="out has"):
        fs.logsumexp(x, out=torch.zeros(4))


def test_torch_out_that_requires_grad_is_refused(torch):
    out = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match=r"out requires grad.*out\.detach\(\)"):
        fs.softmax(torch.ones(2, 3), out=out)
    assert not out.detach().any()


def test_torch_out_tells_autograd(torch):
    """A tensor that autograd saved and fastsoftmax then overwrote: the backward raises,
    as after any in-place operation, instead of using the new values."""
    a = torch.ones(2, 3, requires_grad=True)
    y = a.exp()  # saves its result for the backward
    v = y._version
    fs.softmax(torch.zeros(2, 3), out=y.detach())
    assert y._version > v
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_torch_inference_tensor_out(torch):
    with torch.inference_mode():
        out = torch.zeros(2, 3)
    assert fs.softmax(torch.zeros(2, 3), out=out) is out
    np.testing.assert_array_equal(out.numpy(), np.full((2, 3), 1 / 3, np.float32))


def test_torch_results_share_memory_with_the_numpy_result(torch):
    """A result tensor is torch.from_numpy of the computed array: no copy on the way out."""
    for dtype in (np.float32, np.float64, np.float16):
        r = np.ones((2, 5), dtype)
        t = _interop.wrap(r, "torch")
        assert type(t) is torch.Tensor
        assert t.data_ptr() == address(r)
    assert _interop.wrap(r, None) is r  # NumPy stays NumPy
    r = np.ones((3, 4))[::-1]  # (no fresh result has negative strides; torch needs a copy)
    np.testing.assert_array_equal(_interop.wrap(r, "torch").numpy(), r)


def test_torch_empty_and_0d(torch):
    r = fs.softmax(torch.empty(0, 3))
    assert type(r) is torch.Tensor
    assert tuple(r.shape) == (0, 3)
    s = fs.logsumexp(torch.tensor([0.0, 0.0]))
    assert type(s) is torch.Tensor
    assert s.shape == ()
    assert s.item() == pytest.approx(np.log(2))


def test_mixed_inputs_take_the_first_framework_type(torch, rng):
    g = rng.standard_normal((2, 6))
    y = fs.softmax(rng.standard_normal((2, 6)))
    r = fs.softmax_backward(g, torch.from_numpy(y))
    assert type(r) is torch.Tensor
    np.testing.assert_array_equal(r.numpy(), fs.softmax_backward(g, y))


def test_torch_subclass_parameter(torch):
    p = torch.nn.Parameter(torch.zeros(2, 4))
    r = fs.softmax(p)
    assert type(r) is torch.Tensor
    np.testing.assert_array_equal(r.numpy(), np.full((2, 4), 0.25, np.float32))


def test_torch_integer_and_bool_tensors(torch):
    r = fs.softmax(torch.tensor([[1, 2, 3]]))
    assert r.dtype == torch.float64  # integers are computed as float64, as for NumPy
    np.testing.assert_array_equal(r.numpy(), fs.softmax(np.array([[1, 2, 3]])))


def test_torch_lazy_negation(torch):
    """A tensor with the negative bit (a lazy negation) has no memory holding its values:
    it is resolved (a copy) to be read, and refused as out."""
    if not hasattr(torch, "_neg_view"):
        pytest.skip("no torch._neg_view")
    x = torch.randn(2, 3, dtype=torch.float64)
    np.testing.assert_array_equal(fs.softmax(torch._neg_view(x)).numpy(), fs.softmax(-x.numpy()))
    out = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="out is a lazily negated"):
        fs.softmax(x, out=torch._neg_view(out))
    assert not out.any()


def test_torch_sparse_is_refused(torch):
    with pytest.raises(TypeError, match=r"x is a torch.sparse_coo tensor.*to_dense"):
        fs.softmax(torch.zeros(2, 2).to_sparse())


# --------------------------------------------------------------------- cross-entropy


def test_cross_entropy_torch_labels(torch, rng):
    F = torch.nn.functional
    x = rng.standard_normal((6, 11)).astype(np.float32)
    y = rng.integers(0, 11, 6)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    loss = fs.cross_entropy(tx, ty)
    assert type(loss) is torch.Tensor
    assert loss.shape == ()  # a 0-d tensor, as F.cross_entropy's
    assert loss.dtype == torch.float32
    assert loss.item() == fs.cross_entropy(x, y)
    torch.testing.assert_close(loss, F.cross_entropy(tx, ty))
    rows = fs.cross_entropy(tx, ty, reduction="none")
    assert type(rows) is torch.Tensor
    np.testing.assert_array_equal(rows.numpy(), fs.cross_entropy(x, y, reduction="none"))
    loss, grad = fs.cross_entropy(tx, ty, return_grad=True)
    assert type(loss) is torch.Tensor
    assert type(grad) is torch.Tensor
    _, g = fs.cross_entropy(x, y, return_grad=True)
    np.testing.assert_array_equal(grad.numpy(), g)


def test_cross_entropy_torch_weights_and_probabilities(torch, rng):
    F = torch.nn.functional
    x = torch.from_numpy(rng.standard_normal((5, 7)))
    w = torch.from_numpy(rng.random(7))
    y = torch.from_numpy(rng.integers(0, 7, 5))
    p = torch.from_numpy(fs.softmax(rng.standard_normal((5, 7))))
    torch.testing.assert_close(
        fs.cross_entropy(x, y, weight=w, label_smoothing=0.1),
        F.cross_entropy(x, y, weight=w, label_smoothing=0.1),
    )
    torch.testing.assert_close(fs.cross_entropy(x, p), F.cross_entropy(x, p))
    loss, grad = fs.cross_entropy(x, p, weight=w, return_grad=True, reduction="none")
    assert type(loss) is torch.Tensor
    assert type(grad) is torch.Tensor
    go = torch.from_numpy(rng.random(5))
    _, g2 = fs.cross_entropy(x, y, return_grad=True, reduction="none", grad_out=go)
    xr = x.clone().requires_grad_()
    F.cross_entropy(xr, y, reduction="none").backward(go)
    torch.testing.assert_close(g2, xr.grad)


def test_cross_entropy_numpy_logits_torch_labels(torch, rng):
    x = rng.standard_normal((3, 4))
    y = rng.integers(0, 4, 3)
    loss = fs.cross_entropy(x, torch.from_numpy(y))
    assert type(loss) is torch.Tensor  # the first framework array sets the type
    assert loss.item() == fs.cross_entropy(x, y)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cross_entropy_inplace_grad_writes_the_tensor(torch, rng, dtype):
    x = rng.standard_normal((4, 9)).astype(dtype)
    y = rng.integers(0, 9, 4)
    t = torch.from_numpy(x.copy())
    ptr = t.data_ptr()
    loss, grad = fs.cross_entropy(t, torch.from_numpy(y), return_grad=True, inplace_grad=True)
    assert grad is t
    assert t.data_ptr() == ptr
    expected_loss, expected = fs.cross_entropy(x, y, return_grad=True)
    np.testing.assert_array_equal(t.numpy(), expected)
    assert loss.item() == expected_loss


def test_cross_entropy_inplace_grad_refuses_requires_grad(torch):
    t = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="logits requires grad"):
        fs.cross_entropy(t, torch.tensor([0, 1]), return_grad=True, inplace_grad=True)
    assert not t.detach().any()
    # without inplace_grad it is read as data
    loss = fs.cross_entropy(t, torch.tensor([0, 1]))
    assert loss.item() == pytest.approx(np.log(3))


def test_cross_entropy_backward_torch(torch, rng):
    x = torch.from_numpy(rng.standard_normal((4, 6)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 6, 4))
    lse = fs.logsumexp(x)
    assert type(lse) is torch.Tensor
    g = fs.cross_entropy_backward(x, y, lse=lse)
    assert type(g) is torch.Tensor
    np.testing.assert_array_equal(
        g.numpy(), fs.cross_entropy_backward(x.numpy(), y.numpy(), lse=lse.numpy())
    )
    out = torch.zeros(4, 6)
    ptr = out.data_ptr()
    assert fs.cross_entropy_backward(x, y, out=out) is out
    assert out.data_ptr() == ptr
    np.testing.assert_array_equal(out.numpy(), fs.cross_entropy_backward(x.numpy(), y.numpy()))


# ---------------------------------------------------------------------------- bfloat16


def test_torch_bfloat16_read_in_place(torch):
    t = torch.arange(40, dtype=torch.float32).reshape(5, 8).to(torch.bfloat16)
    for view in (t, t.t(), t[1:, 1::3], t[2]):
        v = _interop.to_numpy(view, "x")
        assert v.dtype == BF16
        assert address(v) == view.data_ptr()
        assert v.strides == tuple(2 * s for s in view.stride())
        np.testing.assert_array_equal(v.astype(np.float32), view.float().numpy())


def test_torch_bfloat16_result_wrapping(torch):
    r = np.arange(6, dtype=np.float32).reshape(2, 3).astype(BF16)
    t = _interop.wrap(r, "torch")
    assert t.dtype == torch.bfloat16
    assert t.data_ptr() == address(r)  # no copy
    np.testing.assert_array_equal(t.float().numpy(), r.astype(np.float32))
    s = _interop.wrap(r[0, 1], "torch")  # a NumPy bfloat16 scalar: a 0-d tensor
    assert s.shape == ()
    assert s.dtype == torch.bfloat16
    assert s.item() == 1.0


def test_dlpack_capsule_bfloat16_from_torch(torch):
    """The capsule reader itself (what np.from_dlpack cannot do): strides, an offset into
    the storage, the versioned capsule's flags, and the producer kept alive by the view."""
    t = torch.arange(60, dtype=torch.float32).reshape(6, 10).to(torch.bfloat16)
    view = t[2:, 1::3]
    expected = view.float().numpy().copy()
    v = _interop.from_dlpack(view, "x")
    assert v.dtype == BF16
    assert v.shape == (4, 3)
    assert v.strides == (20, 6)
    assert address(v) == view.data_ptr()
    assert v.flags.writeable  # torch's versioned capsule does not say READ_ONLY
    del t, view
    gc.collect()
    np.testing.assert_array_equal(v.astype(np.float32), expected)  # still alive


def test_dlpack_capsule_bfloat16_from_jax(jnp):
    j = jnp.arange(12, dtype=jnp.bfloat16).reshape(3, 4)[1:]  # (JAX slices are copies)
    v = _interop.from_dlpack(j, "x")
    assert v.dtype == BF16
    assert v.shape == (2, 4)
    assert address(v) == j.unsafe_buffer_pointer()
    assert not v.flags.writeable  # an unversioned capsule: read-only, as np.from_dlpack
    del j
    gc.collect()
    np.testing.assert_array_equal(v.astype(np.float32), np.arange(4, 12).reshape(2, 4))


def test_jax_bfloat16_read_in_place(jnp):
    j = jnp.linspace(-3, 3, 20, dtype=jnp.bfloat16).reshape(4, 5)
    v = _interop.to_numpy(j, "x")
    assert v.dtype == BF16
    assert address(v) == j.unsafe_buffer_pointer()
    np.testing.assert_array_equal(v, np.asarray(j))


class Managed:
    """A DLPack tensor made by hand over a NumPy buffer, with a counting deleter: what a
    capsule may hold that torch and JAX do not produce (a byte offset, no strides, the
    READ_ONLY flag, an unversioned capsule)."""

    def __init__(
        self,
        buffer: np.ndarray,
        shape: tuple[int, ...],
        strides: tuple[int, ...] | None,
        byte_offset: int,
        *,
        code: int = 4,
        bits: int = 16,
        versioned: bool = True,
        read_only: bool = False,
    ) -> None:
        self.buffer = buffer
        self.deleted = 0
        self.shape = (ctypes.c_int64 * len(shape))(*shape)
        self.strides = None if strides is None else (ctypes.c_int64 * len(shape))(*strides)
        self.deleter = _interop._Deleter(self._delete)
        tensor = _interop._DLTensor()
        tensor.data = address(buffer)
        tensor.device = _interop._DLDevice(1, 0)
        tensor.ndim = len(shape)
        tensor.dtype = _interop._DLDataType(code, bits, 1)
        tensor.shape = ctypes.cast(self.shape, ctypes.POINTER(ctypes.c_int64))
        if self.strides is not None:
            tensor.strides = ctypes.cast(self.strides, ctypes.POINTER(ctypes.c_int64))
        tensor.byte_offset = byte_offset
        self.managed: Any
        if versioned:
            self.managed = _interop._DLManagedTensorVersioned()
            self.managed.version = _interop._DLPackVersion(1, 0)
            self.managed.flags = 1 if read_only else 0
        else:
            self.managed = _interop._DLManagedTensor()
        self.managed.dl_tensor = tensor
        self.managed.deleter = ctypes.cast(self.deleter, ctypes.c_void_p)
        new = ctypes.PYFUNCTYPE(
            ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p
        )(("PyCapsule_New", ctypes.pythonapi))
        name = b"dltensor_versioned" if versioned else b"dltensor"
        self.capsule = new(ctypes.addressof(self.managed), name, None)

    def _delete(self, pointer: int | None) -> None:
        assert pointer == ctypes.addressof(self.managed)
        self.deleted += 1


def test_dlpack_capsule_offset_strides_and_deleter():
    buffer = np.arange(32, dtype=np.float32).astype(BF16)
    m = Managed(buffer, (3, 4), (8, 2), byte_offset=2 * 5)  # elements 5, 7, ..., by rows of 8
    v = _interop.from_dlpack(m.capsule, "x")
    assert v.dtype == BF16
    assert address(v) == address(buffer) + 10
    assert v.strides == (16, 4)
    np.testing.assert_array_equal(v, buffer[5:29].reshape(3, 8)[:, ::2])
    assert v.flags.writeable
    v2 = v[1:]  # a view of the view keeps the tensor too
    del v
    gc.collect()
    assert m.deleted == 0
    np.testing.assert_array_equal(v2, buffer[13:29].reshape(2, 8)[:, ::2])
    del v2
    gc.collect()
    assert m.deleted == 1  # exactly once, when the last view died
    with pytest.raises(TypeError, match="already used"):
        _interop.from_dlpack(m.capsule, "x")
    assert m.deleted == 1


def test_dlpack_capsule_without_strides_and_read_only():
    buffer = np.arange(6, dtype=np.float32).astype(BF16)
    m = Managed(buffer, (2, 3), None, 0, read_only=True)  # no strides: C order
    v = _interop.from_dlpack(m.capsule, "x")
    assert v.flags.c_contiguous
    assert not v.flags.writeable  # READ_ONLY honored
    np.testing.assert_array_equal(v, buffer.reshape(2, 3))
    legacy = Managed(buffer, (6,), (1,), 0, versioned=False)
    lv = _interop.from_dlpack(legacy.capsule, "x")
    assert not lv.flags.writeable  # unversioned: read-only, as np.from_dlpack
    del v, lv
    gc.collect()
    assert (m.deleted, legacy.deleted) == (1, 1)


def test_dlpack_capsule_refused_before_taking_it_over():
    """A dtype it cannot read is a TypeError naming it, and the capsule keeps the tensor
    (the capsule's own destructor frees it, not the reader)."""
    buffer = np.zeros(4, np.uint8)
    m = Managed(buffer, (4,), (1,), 0, code=10, bits=8)  # kDLFloat8_e4m3fn
    with pytest.raises(TypeError, match="float8_e4m3fn"):
        _interop.from_dlpack(m.capsule, "x")
    assert ctypes.pythonapi.PyCapsule_IsValid(ctypes.py_object(m.capsule), b"dltensor_versioned")
    assert m.deleted == 0


def test_torch_bfloat16_compute(torch, rng):
    x = rng.standard_normal((3, 50)).astype(np.float32)
    t = torch.from_numpy(x).to(torch.bfloat16)
    r = fs.softmax(t)
    assert type(r) is torch.Tensor
    assert r.dtype == torch.bfloat16
    expected = fs.softmax(t.float().numpy()).astype(BF16)
    ulps = np.abs(r.view(torch.int16).numpy().astype(int) - expected.view(np.int16).astype(int))
    assert ulps.max() <= 1


def test_jax_bfloat16_compute(jnp, rng):
    x = rng.standard_normal((3, 50)).astype(np.float32)
    j = jnp.asarray(x.astype(BF16))
    r = fs.log_softmax(j)
    assert r.dtype == jnp.bfloat16
    expected = fs.log_softmax(x.astype(BF16).astype(np.float32)).astype(BF16)
    ulps = np.abs(np.asarray(r).view(np.int16).astype(int) - expected.view(np.int16).astype(int))
    assert ulps.max() <= 1


# -------------------------------------------------------------------------------- JAX


@ops
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_jax_in_jax_out(jnp, rng, op, dtype):
    import jax

    f = ELEMENTWISE[op]
    x = rng.standard_normal((4, 21)).astype(dtype)
    j = jnp.asarray(x)
    v = _interop.to_numpy(j, "x")
    assert address(v) == j.unsafe_buffer_pointer()  # read in place
    r = f(j)
    assert isinstance(r, jax.Array)
    assert r.dtype == dtype
    np.testing.assert_array_equal(np.asarray(r), f(x))


def test_jax_cross_entropy(jnp, rng):
    import jax

    x = rng.standard_normal((5, 8)).astype(np.float32)
    y = rng.integers(0, 8, 5).astype(np.int32)
    loss, grad = fs.cross_entropy(jnp.asarray(x), jnp.asarray(y), return_grad=True)
    assert isinstance(loss, jax.Array)
    assert loss.shape == ()
    assert isinstance(grad, jax.Array)
    expected_loss, expected = fs.cross_entropy(x, y, return_grad=True)
    assert float(loss) == expected_loss
    np.testing.assert_array_equal(np.asarray(grad), expected)


def test_jax_out_is_refused(jnp):
    out = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match=r"out is read-only \(a JAX array"):
        fs.softmax(np.ones((2, 3), np.float32), out=out)
    assert not np.asarray(out).any()
    with pytest.raises(ValueError, match="writeable"):
        fs.cross_entropy(out, np.array([0, 1]), return_grad=True, inplace_grad=True)


# ------------------------------------------------------------ other producers, errors


class Producer:
    """An array of no framework we know that speaks DLPack (over a NumPy array)."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self.a.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)


class GpuArray:
    """An array on a CUDA device (DLPack device type 2), as far as DLPack says."""

    def __init__(self, shape: tuple[int, ...] = (2, 3)) -> None:
        self.shape = shape

    def __dlpack__(self, **kwargs: Any) -> Any:
        raise AssertionError("a GPU array must not be exported")

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)


# NumPy exports versioned DLPack capsules, which say whether the memory may be written,
# from 2.1 on. An unversioned capsule is read-only to us (as to np.from_dlpack), and NumPy
# 2.0 (the last for Python 3.9) refuses to export a read-only array at all.
VERSIONED_NUMPY = np.lib.NumpyVersion(np.__version__) >= "2.1.0"


def test_other_producer_gives_numpy(rng):
    x = rng.standard_normal((3, 5))
    r = fs.softmax(Producer(x))
    assert type(r) is np.ndarray
    np.testing.assert_array_equal(r, fs.softmax(x))


@pytest.mark.skipif(not VERSIONED_NUMPY, reason="NumPy < 2.1: unversioned, read-only capsules")
def test_other_producer_as_out_is_written_and_returned(rng):
    x = rng.standard_normal((3, 5))
    out = np.zeros_like(x)
    p = Producer(out)
    assert fs.softmax(x, out=p) is p  # out is returned itself
    np.testing.assert_array_equal(out, fs.softmax(x))


def test_read_only_buffer_as_out_is_refused():
    buffer = np.zeros((2, 3))
    buffer.flags.writeable = False
    # (NumPy 2.0, the producer's own export refuses it)
    error, message = (
        (ValueError, "out is read-only") if VERSIONED_NUMPY else (BufferError, "readonly")
    )
    with pytest.raises(error, match=message):
        fs.softmax(np.ones((2, 3)), out=Producer(buffer))
    assert not buffer.any()


@pytest.mark.parametrize(
    "call",
    [
        lambda g: fs.softmax(g),
        lambda g: fs.logsumexp(g, axis=0),
        lambda g: fs.softmax_backward(np.ones((2, 3)), g),
        lambda g: fs.softmax(np.ones((2, 3)), out=g),
        lambda g: fs.cross_entropy(g, np.array([0, 1])),
        lambda g: fs.cross_entropy(np.ones((2, 3)), np.array([0, 1]), weight=g),
        lambda g: fs.cross_entropy_backward(np.ones((2, 3)), np.array([0, 1]), out=g),
    ],
)
def test_gpu_array_is_refused_naming_the_device(call):
    with pytest.raises(TypeError, match=r"is on device cuda:0; fastsoftmax computes on the CPU"):
        call(GpuArray())


def test_torch_other_device_is_refused(torch):
    x = torch.zeros(2, 3, device="meta")
    with pytest.raises(TypeError, match=r"x is on device meta; .*\.cpu\(\)"):
        fs.softmax(x)
    out = torch.zeros(2, 3)
    with pytest.raises(TypeError, match="out is on device meta"):
        fs.softmax(out, out=torch.zeros(2, 3, device="meta"))
    assert not out.any()


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2"])
def test_float8_is_refused_naming_the_dtype(torch, dtype):
    x = torch.zeros(4, dtype=tdtype(torch, dtype))
    with pytest.raises(TypeError, match=rf"x has dtype torch\.{dtype}"):
        fs.softmax(x)
    out = torch.ones(4)
    with pytest.raises(TypeError, match=rf"out has dtype torch\.{dtype}"):
        fs.softmax(out, out=x)


def test_float8_numpy_is_refused_naming_the_dtype():
    # (the NumPy path, as before; ml_dtypes gives float8_e5m2 the kind "f", and that path
    # computes it through float32: the dtype rules of _api.py decide, not this layer)
    with pytest.raises(TypeError, match="float8_e4m3fn"):
        fs.softmax(np.zeros(4, ml_dtypes.float8_e4m3fn))


def test_float8_jax_is_refused_naming_the_dtype(jnp):
    with pytest.raises(TypeError, match="float8_e4m3fn"):
        fs.softmax(jnp.zeros(4, jnp.float8_e4m3fn))


@pytest.mark.parametrize("dtype", ["complex64", "complex128", "complex32"])
def test_complex_is_refused_naming_the_dtype(torch, dtype):
    with warnings.catch_warnings():  # ("ComplexHalf support is experimental")
        warnings.simplefilter("ignore", UserWarning)
        x = torch.zeros(3, dtype=tdtype(torch, dtype))
    with pytest.raises(TypeError, match=f"x has dtype (torch.)?{dtype}"):
        fs.softmax(x)
    with pytest.raises(TypeError, match=f"logits have dtype|logits has dtype (torch.)?{dtype}"):
        fs.cross_entropy(x, torch.tensor(0))


def test_complex_jax_is_refused_naming_the_dtype(jnp):
    with pytest.raises(TypeError, match="complex64"):
        fs.log_softmax(jnp.zeros(3, jnp.complex64))


# --------------------------------------------------------------------------- NumPy


def test_numpy_calls_are_unchanged(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    r = fs.softmax(x)
    assert type(r) is np.ndarray
    assert type(fs.softmax([[1.0, 2.0]])) is np.ndarray  # array-likes as before
    with pytest.raises(TypeError, match=r"out must be a numpy\.ndarray, got list"):
        fs.softmax(x, out=[[0.0] * 4] * 3)


def test_signatures_and_docstrings():
    import inspect

    for f in (getattr(fs, name) for name in PUBLIC_OPS):
        assert inspect.signature(f) == inspect.signature(f.__wrapped__)  # type: ignore[attr-defined]
        assert f.__doc__ is not None
        assert "Framework arrays" in f.__doc__
        assert "requires grad" in f.__doc__
        assert "device" in f.__doc__

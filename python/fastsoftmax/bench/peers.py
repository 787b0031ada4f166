"""The implementations that are timed: fastsoftmax and its peers.

Each peer turns a :class:`Case` (one operation on one set of arrays) into
:class:`Impl` objects: a call to time and a way to get its result as NumPy for
the error. Inputs are converted to the peer's own arrays once, outside the
timing; every call then does the whole operation and waits for its result
(JAX: ``block_until_ready``).

Optional libraries (SciPy, PyTorch, JAX, TensorFlow) are imported only when
their peer is loaded; a missing one is skipped with a note. They are imported
through ``importlib`` so that the package type-checks without them.

float16 and bfloat16 (``ml_dtypes.bfloat16``) cases go to fastsoftmax, PyTorch,
JAX and TensorFlow in their own dtype (bfloat16 tensors are zero-copy views of
the NumPy arrays). NumPy and SciPy have no bfloat16 arithmetic beyond
ml_dtypes' element-by-element ufuncs (and SciPy's logsumexp refuses bfloat16),
so their implementations convert the inputs to float32, compute there and cast
the result back, all inside the timed call (``Impl.via``). A peer that cannot
do a case (its conversion or its call raises) is skipped for it with a note.

``--framework-arrays`` also times fastsoftmax called with the PyTorch and JAX
peers' own arrays (``fastsoftmax[torch]``, ``fastsoftmax[jax]``: zero-copy
reads, results in the caller's array type), as a user of that framework
would call it; their speed-up column is their time over NumPy-fed
fastsoftmax's, the cost of passing framework arrays.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from .. import _api, _cross_entropy
from .._threads import get_num_threads, use_threads
from . import numpy_impls as npi
from .accuracy import DTYPES, HALF_DTYPES, Result

OPS = (
    "softmax",
    "log_softmax",
    "logsumexp",
    "softmax_backward",
    "log_softmax_backward",
    "cross_entropy",
    "cross_entropy_grad",
)
BACKWARD_OPS = ("softmax_backward", "log_softmax_backward")


@dataclass
class Case:
    """One operation on (rows, classes) arrays, along the last axis.

    ``x`` is the input: the logits of the forward operations and the
    cross-entropy, the forward output ``y`` (softmax or log_softmax of the
    logits) of the backward operations, whose upstream gradient is ``grad``.
    ``labels`` are the int64 class indices of the cross-entropy. Operations
    ignore the arrays they do not use.
    """

    op: str
    x: np.ndarray
    grad: np.ndarray
    labels: np.ndarray

    def arrays(self) -> list[np.ndarray]:
        """The operation's array arguments, in the order of the frameworks' calls."""
        if self.op in BACKWARD_OPS:
            return [self.grad, self.x]
        if self.op.startswith("cross_entropy"):
            return [self.x, self.labels]
        return [self.x]

    def traffic_bytes(self) -> int:
        """Bytes any implementation must read and write: the arrays in and the result out."""
        rows, n, item = int(self.x.shape[0]), int(self.x.nbytes), int(self.x.itemsize)
        if self.op in ("softmax", "log_softmax"):
            return 2 * n
        if self.op == "logsumexp":
            return n + rows * item
        if self.op in BACKWARD_OPS:
            return 3 * n
        labels = rows * 8
        return (2 * n if self.op == "cross_entropy_grad" else n) + labels


@dataclass
class Impl:
    """One implementation of a case: ``call`` is timed, ``result`` gives its output as NumPy.

    ``preallocated``: it writes into arrays allocated beforehand (``out=`` or in
    place) rather than allocating its result on each call. ``via``: the dtype
    it computes in when that is not the case's own ("float32" for NumPy and
    SciPy on float16 and bfloat16: the inputs are converted and the result cast
    back within ``call``). ``peer``: the library (set by the suite).
    """

    name: str
    call: Callable[[], object]
    result: Callable[[], Result]
    preallocated: bool = False
    via: str = ""
    peer: str = ""


def optional_module(name: str) -> ModuleType | None:
    """The module, or None when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


class Peer:
    """A library compared with fastsoftmax."""

    name: ClassVar[str]
    module: ClassVar[str]  # imported by load(); its __version__ is reported
    install: ClassVar[str] = ""  # how to get it, for the note when it is missing
    threads_doc: ClassVar[str] = "one thread at every setting"

    def __init__(self) -> None:
        self.version = ""

    def load(self) -> bool:
        """Import the library; False when it is not installed."""
        mod = optional_module(self.module)
        if mod is None:
            return False
        self.version = str(getattr(mod, "__version__", ""))
        self.setup(mod)
        return True

    def setup(self, mod: ModuleType) -> None:
        """Prepare the calls once the library is imported."""

    def runs_at(self, threads: int, all_threads: int) -> bool:
        """Whether this peer has rows at this thread setting."""
        return True

    @contextmanager
    def threads(self, n: int) -> Iterator[None]:
        """Run the enclosed calls on n threads (where the library lets us)."""
        yield

    def thread_info(self) -> dict[str, Any]:
        """What the library reports about its threads, for the JSON file."""
        return {"doc": self.threads_doc}

    def build(self, case: Case) -> list[Impl]:
        """The implementations of this case (none if the library lacks the operation)."""
        raise NotImplementedError


class FastSoftmax(Peer):
    """fastsoftmax itself: with a new result array per call, and with out= (or in place).

    Every dtype natively: float16 and bfloat16 arrays in, results in the same
    dtype (the cross-entropy's loss of half-precision logits is float32).
    """

    name = "fastsoftmax"
    module = "fastsoftmax"
    threads_doc = "fastsoftmax.use_threads(n)"

    @contextmanager
    def threads(self, n: int) -> Iterator[None]:
        with use_threads(n):
            yield

    def thread_info(self) -> dict[str, Any]:
        return {"doc": self.threads_doc, "default": get_num_threads()}

    def build(self, case: Case) -> list[Impl]:
        """Both variants where the result is an array the size of the input."""
        return fastsoftmax_impls(self.name, case, lambda a: a, _numpy_result, np.empty_like)


def fastsoftmax_impls(
    name: str,
    case: Case,
    array: Callable[[np.ndarray], Any],
    result: Callable[[Any], Result],
    empty_like: Callable[[Any], Any] | None,
) -> list[Impl]:
    """fastsoftmax's implementations of a case, on the arrays ``array`` makes of the
    case's (NumPy's own, or a framework's: --framework-arrays), ``result`` turning what
    a call returns into NumPy. With ``empty_like`` (arrays that can be written), also the
    variant into a preallocated array: ``out=``, or for the cross-entropy's gradient in
    place into the logits."""
    x, op = array(case.x), case.op
    impls: list[Impl] = []

    def add(label: str, call: Callable[[], Any], preallocated: bool = False) -> None:
        impls.append(Impl(label, call, lambda: result(call()), preallocated))

    if op in ("softmax", "log_softmax", "logsumexp") or op in BACKWARD_OPS:
        f = getattr(_api, op)
        args = (array(case.grad), x) if op in BACKWARD_OPS else (x,)
        add(name, partial(f, *args))
        if op != "logsumexp" and empty_like is not None:
            add(f"{name} out=", partial(f, *args, out=empty_like(x)), True)
        return impls
    ce, labels = _cross_entropy.cross_entropy, array(case.labels)
    if op == "cross_entropy":
        add(name, partial(ce, x, labels))
        return impls
    add(name, partial(ce, x, labels, return_grad=True))
    if empty_like is not None:
        # The in-place variant's later calls run on the previous call's gradient
        # (values in [-1, 1]): the same work on any finite data, and no page
        # faults of a fresh gradient array, which have nothing to do with the kernel.
        # Its result is taken from a fresh copy of the logits.
        scratch = array(case.x.copy())

        def inplace_result() -> Result:
            fresh = array(case.x.copy())
            return result(ce(fresh, labels, return_grad=True, inplace_grad=True))

        call = partial(ce, scratch, labels, return_grad=True, inplace_grad=True)
        impls.append(Impl(f"{name} out=", call, inplace_result, True))
    return impls


def _numpy_result(r: Any) -> Result:
    """A NumPy result (an array, a numpy scalar loss, or (loss, gradient)) as a Result."""
    if isinstance(r, tuple):
        return float(r[0]), np.array(r[1])
    return float(r) if np.ndim(r) == 0 else np.array(r)


def _via(x: np.ndarray) -> str:
    """The dtype NumPy and SciPy compute a case of x's dtype in, when not x's own."""
    return "float32" if x.dtype in HALF_DTYPES else ""


class NumpyCareful(Peer):
    """Careful NumPy: max, subtract, exp, sum, ... all in place into preallocated arrays.

    float16 and bfloat16: the inputs are copied into preallocated float32 arrays,
    computed there, and the result cast into a preallocated array of their dtype.
    """

    name = "numpy"
    module = "numpy"

    def build(self, case: Case) -> list[Impl]:
        x, op = case.x, case.op
        via = _via(x)
        work = np.dtype(via) if via else x.dtype
        xw, gw = (np.empty(x.shape, work), np.empty(x.shape, work)) if via else (x, case.grad)
        rows = (x.shape[0], 1)
        o, m, s = np.empty(x.shape, work), np.empty(rows, work), np.empty(rows, work)
        call: Callable[[], Any]
        if op in npi.NUMPY_IMPLS:
            call = partial(npi.NUMPY_IMPLS[op], xw, o, m, s)
        elif op == "softmax_backward":
            call = partial(npi.numpy_softmax_backward, gw, xw, o, s)
        elif op == "log_softmax_backward":
            call = partial(npi.numpy_log_softmax_backward, gw, xw, o, s)
        elif op == "cross_entropy":
            call = partial(npi.numpy_cross_entropy_loss, xw, case.labels, o, m, s)
        else:
            call = partial(npi.numpy_cross_entropy, xw, case.labels, o, m, s)
        if via:
            inputs = [(case.grad, gw), (x, xw)] if op in BACKWARD_OPS else [(x, xw)]
            out: np.ndarray | None = np.empty_like(x)
            if op == "logsumexp":
                out = np.empty(x.shape[0], x.dtype)
            elif op == "cross_entropy":
                out = None  # the loss: a Python float
            call = partial(npi.via_into, call, inputs, out)

        def result() -> Result:
            r = call()
            if isinstance(r, tuple):
                return r[0], r[1].copy()
            return r if isinstance(r, float) else np.array(r)

        return [Impl(self.name, call, result, True, via=via)]


class NumpyNaive(Peer):
    """Textbook NumPy (max subtracted), allocating its temporaries and its result.

    float16 and bfloat16: x.astype(float32), the formula, .astype(dtype) of the result.
    """

    name = "numpy-naive"
    module = "numpy"

    def build(self, case: Case) -> list[Impl]:
        x, op = case.x, case.op
        f: Callable[..., Any]
        args: list[np.ndarray]
        if op in BACKWARD_OPS:
            f, args = getattr(npi, f"naive_{op}"), [case.grad, x]
        elif op == "cross_entropy":
            f, args = npi.naive_cross_entropy_loss, [x, case.labels]
        elif op == "cross_entropy_grad":
            f, args = npi.naive_cross_entropy, [x, case.labels]
        else:
            f, args = getattr(npi, f"naive_{op}"), [x]
        via = _via(x)
        call = partial(npi.via, np.dtype(via), f, *args) if via else partial(f, *args)
        return [Impl(self.name, call, call, via=via)]


class Scipy(Peer):
    """scipy.special's softmax, log_softmax and logsumexp (it has no gradients).

    float16 and bfloat16: computed in float32 as numpy-naive does.
    """

    name = "scipy"
    module = "scipy.special"
    install = "pip install scipy"

    def load(self) -> bool:
        ok = super().load()
        scipy = optional_module("scipy")
        self.version = str(getattr(scipy, "__version__", ""))
        return ok

    def setup(self, mod: ModuleType) -> None:
        self.special = mod

    def build(self, case: Case) -> list[Impl]:
        if case.op not in ("softmax", "log_softmax", "logsumexp"):
            return []
        f = partial(getattr(self.special, case.op), axis=-1)
        via = _via(case.x)
        call = partial(npi.via, np.dtype(via), f, case.x) if via else partial(f, case.x)
        return [Impl(self.name, call, lambda: np.asarray(call()), via=via)]


class Torch(Peer):
    """PyTorch on the CPU, eager, with torch.set_num_threads(n).

    float16 and bfloat16 natively (torch.float16, torch.bfloat16); a bfloat16
    tensor is a view of the NumPy array's bits, and so is its result's array.
    """

    name = "torch"
    module = "torch"
    install = "pip install torch"
    threads_doc = "torch.set_num_threads(n)"

    def setup(self, mod: ModuleType) -> None:
        self.torch = mod
        self.F = importlib.import_module("torch.nn.functional")

    @contextmanager
    def threads(self, n: int) -> Iterator[None]:
        before = self.torch.get_num_threads()
        self.torch.set_num_threads(n)
        try:
            yield
        finally:
            self.torch.set_num_threads(before)

    def thread_info(self) -> dict[str, Any]:
        return {
            "doc": self.threads_doc,
            "default": self.torch.get_num_threads(),
            "interop": self.torch.get_num_interop_threads(),
        }

    def tensor(self, a: np.ndarray) -> Any:
        """A tensor sharing a's memory (NumPy's bfloat16 is ml_dtypes', unknown to torch)."""
        if a.dtype == DTYPES["bfloat16"]:
            return self.torch.from_numpy(a.view(np.int16)).view(self.torch.bfloat16)
        return self.torch.from_numpy(a)

    def array(self, t: Any) -> np.ndarray:
        """A NumPy array sharing t's memory, of t's dtype (bfloat16: ml_dtypes.bfloat16)."""
        if t.dtype == self.torch.bfloat16:
            out: np.ndarray = t.view(self.torch.int16).numpy().view(DTYPES["bfloat16"])
            return out
        return np.asarray(t.numpy())

    def build(self, case: Case) -> list[Impl]:
        torch, F, op = self.torch, self.F, case.op
        t = self.tensor(case.x)
        call: Callable[[], Any]
        if op in ("softmax", "log_softmax", "logsumexp"):
            call = partial(getattr(torch, op), t, -1)
        elif op in BACKWARD_OPS:
            f = getattr(torch, f"_{op}_data")  # the kernel autograd runs
            call = partial(f, self.tensor(case.grad), t, -1, t.dtype)
        elif op == "cross_entropy":
            # t does not require grad, so no graph is built (a torch.no_grad() block
            # around the call cost as much as the whole call on one row of 1000)
            call = partial(F.cross_entropy, t, torch.from_numpy(case.labels))
        else:
            labels = torch.from_numpy(case.labels)
            tx = self.tensor(case.x.copy()).requires_grad_(True)

            def call() -> Any:
                tx.grad = None
                loss = F.cross_entropy(tx, labels)
                loss.backward()
                return loss

            def grad_result() -> Result:
                return float(call().item()), self.array(tx.grad).copy()

            return [Impl(self.name, call, grad_result)]

        def result() -> Result:
            r = call()
            return float(r.item()) if r.ndim == 0 else self.array(r)

        return [Impl(self.name, call, result)]

    def fastsoftmax_impls(self, case: Case) -> list[Impl]:
        """fastsoftmax called with this case's arrays as torch tensors (--framework-arrays).

        The tensors share the NumPy arrays' memory; fastsoftmax reads them without a
        copy and returns tensors (out= a tensor, the gradient in place into one).
        """

        def result(r: Any) -> Result:
            if isinstance(r, tuple):
                return float(r[0].item()), self.array(r[1]).copy()
            return float(r.item()) if r.ndim == 0 else self.array(r).copy()

        return fastsoftmax_impls(
            "fastsoftmax[torch]", case, self.tensor, result, self.torch.empty_like
        )


class _FixedPool(Peer):
    """A library whose thread pool is sized when it starts: rows under all threads only."""

    threads_doc = "its own pool, sized at startup (all threads): rows under all threads only"

    def runs_at(self, threads: int, all_threads: int) -> bool:
        return threads == all_threads


class Jax(_FixedPool):
    """JAX on the CPU: each operation jitted; float64 enabled (jax_enable_x64).

    float16 and bfloat16 natively: JAX takes and returns ml_dtypes' arrays.
    """

    name = "jax"
    module = "jax"
    install = "pip install jax"

    def setup(self, mod: ModuleType) -> None:
        jax = self.jax = mod
        jax.config.update("jax_enable_x64", True)  # else float64 inputs silently become float32
        jnp = importlib.import_module("jax.numpy")

        def loss(x: Any, labels: Any) -> Any:
            picked = jnp.take_along_axis(x, labels[:, None], axis=-1)[:, 0]
            return jnp.mean(jax.nn.logsumexp(x, axis=-1) - picked)

        self.fns = {
            "softmax": jax.jit(partial(jax.nn.softmax, axis=-1)),
            "log_softmax": jax.jit(partial(jax.nn.log_softmax, axis=-1)),
            "logsumexp": jax.jit(partial(jax.nn.logsumexp, axis=-1)),
            # what jax.grad of jax.nn.softmax / log_softmax computes
            "softmax_backward": jax.jit(
                lambda g, y: y * (g - jnp.sum(g * y, axis=-1, keepdims=True))
            ),
            "log_softmax_backward": jax.jit(
                lambda g, y: g - jnp.exp(y) * jnp.sum(g, axis=-1, keepdims=True)
            ),
            "cross_entropy": jax.jit(loss),
            "cross_entropy_grad": jax.jit(jax.value_and_grad(loss)),
        }

    def thread_info(self) -> dict[str, Any]:
        return {
            "doc": self.threads_doc,
            "devices": [str(d) for d in self.jax.devices()],
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        }

    def build(self, case: Case) -> list[Impl]:
        jax, op = self.jax, case.op
        args = [jax.device_put(a) for a in case.arrays()]
        f = self.fns[op]

        def call() -> Any:
            return jax.block_until_ready(f(*args))

        def result() -> Result:
            r = call()
            if op == "cross_entropy_grad":
                return float(r[0]), np.asarray(r[1])
            return float(r) if op == "cross_entropy" else np.asarray(r)

        return [Impl(self.name, call, result)]

    def fastsoftmax_impls(self, case: Case) -> list[Impl]:
        """fastsoftmax called with this case's arrays as JAX arrays (--framework-arrays).

        fastsoftmax reads a JAX CPU array without a copy and returns a new JAX array
        (JAX arrays are immutable: no out= or in-place variant).
        """

        def result(r: Any) -> Result:
            if isinstance(r, tuple):
                return float(r[0]), np.asarray(r[1])
            return float(r) if r.ndim == 0 else np.asarray(r)

        return fastsoftmax_impls("fastsoftmax[jax]", case, self.jax.device_put, result, None)


class TensorFlow(_FixedPool):
    """TensorFlow on the CPU: each operation a tf.function (graph, no XLA).

    float16 and bfloat16 go to tf.constant as they are (not tried here: where
    TensorFlow's NumPy bfloat16 is not ml_dtypes', the conversion fails and the
    peer is skipped for the case with a note).
    """

    name = "tensorflow"
    module = "tensorflow"
    install = "pip install tensorflow-cpu"

    def load(self) -> bool:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no start-up chatter
        return super().load()

    def setup(self, mod: ModuleType) -> None:
        tf = self.tf = mod

        def loss(x: Any, labels: Any) -> Any:
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=x)
            return tf.reduce_mean(per_example)

        def value_and_grad(x: Any, labels: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = loss(x, labels)
            return value, tape.gradient(value, x)

        self.fns = {
            "softmax": tf.function(lambda x: tf.nn.softmax(x, axis=-1)),
            "log_softmax": tf.function(lambda x: tf.nn.log_softmax(x, axis=-1)),
            "logsumexp": tf.function(lambda x: tf.reduce_logsumexp(x, axis=-1)),
            # the gradients TensorFlow registers for Softmax and LogSoftmax
            "softmax_backward": tf.function(
                lambda g, y: (g - tf.reduce_sum(g * y, axis=-1, keepdims=True)) * y
            ),
            "log_softmax_backward": tf.function(
                lambda g, y: g - tf.exp(y) * tf.reduce_sum(g, axis=-1, keepdims=True)
            ),
            "cross_entropy": tf.function(loss),
            "cross_entropy_grad": tf.function(value_and_grad),
        }

    def thread_info(self) -> dict[str, Any]:
        threading = self.tf.config.threading
        return {
            "doc": self.threads_doc + " (0 = TensorFlow's default: all)",
            "intra_op": threading.get_intra_op_parallelism_threads(),
            "inter_op": threading.get_inter_op_parallelism_threads(),
        }

    def build(self, case: Case) -> list[Impl]:
        tf, op = self.tf, case.op
        args = [tf.constant(a) for a in case.arrays()]
        f = self.fns[op]

        def call() -> Any:
            return f(*args)

        def result() -> Result:
            r = call()
            if op == "cross_entropy_grad":
                return float(r[0]), r[1].numpy()
            return float(r) if op == "cross_entropy" else r.numpy()

        return [Impl(self.name, call, result)]


PEERS: dict[str, type[Peer]] = {
    p.name: p for p in (NumpyCareful, NumpyNaive, Scipy, Torch, Jax, TensorFlow)
}
PEER_ALIASES = {"tf": "tensorflow", "pytorch": "torch", "numpy-careful": "numpy"}

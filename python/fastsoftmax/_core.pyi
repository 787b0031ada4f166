# Hand-written stubs for the compiled module (cpp/bindings/). Axes are
# non-negative and dtypes float32/float64 here: fastsoftmax._api normalizes them.
# overlap_checked=True: the caller has proven that out overlaps no input exactly;
# otherwise a possible overlap (by address ranges) or a misaligned array raises
# Fallback, and the Python layer's general path takes over.
import numpy as np

class Fallback(ValueError): ...

def softmax(
    x: np.ndarray,
    axis: int,
    out: np.ndarray | None = None,
    overlap_checked: bool = False,
    temperature: float = 1.0,
    where: np.ndarray | None = None,
) -> np.ndarray: ...
def log_softmax(
    x: np.ndarray,
    axis: int,
    out: np.ndarray | None = None,
    overlap_checked: bool = False,
    temperature: float = 1.0,
    where: np.ndarray | None = None,
) -> np.ndarray: ...
def logsumexp(
    x: np.ndarray,
    axis: int,
    out: np.ndarray | None = None,
    overlap_checked: bool = False,
    temperature: float = 1.0,
    where: np.ndarray | None = None,
) -> np.ndarray: ...
def softmax_backward(
    grad: np.ndarray,
    y: np.ndarray,
    axis: int,
    out: np.ndarray | None = None,
    overlap_checked: bool = False,
    temperature: float = 1.0,
    where: np.ndarray | None = None,
) -> np.ndarray: ...
def log_softmax_backward(
    grad: np.ndarray,
    y: np.ndarray,
    axis: int,
    out: np.ndarray | None = None,
    overlap_checked: bool = False,
    temperature: float = 1.0,
    where: np.ndarray | None = None,
) -> np.ndarray: ...
def cross_entropy(
    logits: np.ndarray,
    axis: int,
    labels: np.ndarray | None,
    target: np.ndarray | None,
    lse: np.ndarray | None,
    grad: np.ndarray | None,
    grad_scale: np.ndarray | None,
    loss: np.ndarray | None,
    lse_out: np.ndarray | None,
    reduction: str,
    weight: np.ndarray | None,
    label_smoothing: float,
    z_loss: float,
    softcap: float,
    ignore_index: int,
    temperature: float = 1.0,
) -> float: ...
def logsumexp_parts(
    x: np.ndarray, axis: int, for_softmax: bool = False
) -> tuple[np.ndarray, np.ndarray]: ...
def softmax_from_parts(
    x: np.ndarray, axis: int, max: np.ndarray, sum: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray: ...
def log_softmax_from_parts(
    x: np.ndarray, axis: int, max: np.ndarray, sum: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray: ...
def entropy(
    x: np.ndarray, axis: int, temperature: float, want_grad: bool, grad_scale: float
) -> tuple[np.ndarray, np.ndarray | None]: ...
def kl_div(
    x: np.ndarray,
    target: np.ndarray,
    axis: int,
    target_kind: str,
    temperature: float,
    want_grad: bool,
    grad_scale: float,
) -> tuple[np.ndarray, np.ndarray | None]: ...
def sample(
    logits: np.ndarray,
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
    seed: int,
    want_logprobs: bool,
    want_probs: bool,
    first_row: int = 0,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]: ...
def philox4x64(counter: list[int], key: list[int]) -> tuple[int, int, int, int]: ...
def simd_target() -> str: ...
def targets() -> list[tuple[str, bool, bool]]: ...
def set_target(name: str) -> None: ...
def env_warning() -> str: ...
def num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def default_num_threads() -> int: ...
def build_info() -> dict[str, str]: ...
def vexp(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray: ...
def vlog(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray: ...
def vlog1p(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray: ...
def vtanh(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray: ...
